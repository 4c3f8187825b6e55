"""Click option declarations shared by the command-line tools: the flags that name a model (script, class,
IO spec, kwargs, checkpoint, `--config` file, device) are declared here once, for trt-convert and trt-bench.

Every option defaults to None, so that a flag the user did not type is absent from the flag layer of
options.build_options and a weaker layer (checkpoint config.json, `--config`, defaults) decides.
"""

from __future__ import annotations

import click


def option(*names, **kwargs):
    """click.option defaulting to None and printing no default (the help text states it)."""
    kwargs.setdefault("default", None)
    kwargs.setdefault("show_default", False)
    return click.option(*names, **kwargs)


MODEL_FLAGS = {
    "ckpt_path": option("--ckpt-path", type=click.Path(dir_okay=False),
                        help="PyTorch checkpoint (state_dict): .pt/.pth/.bin/.safetensors."),
    "model_script_path": option("--model-script-path", type=click.Path(dir_okay=False),
                                help="Python file that defines the model class (it is executed)."),
    "model_class_name": option("--model-class-name", help="Name of the model class in the script."),
    "model_io_config": option("--model-io-config", help="IO spec: a JSON string or a path to a JSON/YAML file."),
    "device": option("--device", type=click.Choice(["cpu", "cuda"]),
                     help="Device the model is loaded and run on by PyTorch.  [default: cpu]"),
    "config_path": option("--config", "config_path", type=click.Path(dir_okay=False),
                          help="YAML/JSON with any option (flags and config.json win over it)."),
    "model_kwargs": option("--model-kwargs",
                           help="JSON object of constructor kwargs (overrides config.json and the YAML's, key by key)."),
}


def apply_options(options):
    """Decorator adding `options` to a click command, the first listed first in --help."""
    def decorate(function):
        for declared in reversed(options):
            function = declared(function)
        return function
    return decorate
