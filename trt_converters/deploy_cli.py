"""`trt-deploy kserve|kubernetes --repo s3://... --name NAME`: manifests that serve a model repository in a cluster.

The repository is read (its configs and requirements.txt) to choose the Triton image release and GPU or CPU
resources. The manifests go to stdout or `--output`; apply them with `kubectl apply -f`. What the cluster must
provide: the bucket, a Secret with the S3 credentials (`--secret`), and for engines a GPU node pool.
Exit status: 0 written, 1 the repository could not be read, 2 a usage error.
"""

from __future__ import annotations

from pathlib import Path

import click

from trt_converters.cli_errors import errors_reported
from trt_converters.errors import UserError

EPILOG = """\b
Examples:
  trt-deploy kserve --repo s3://models/prod --name minilm --output minilm-isvc.yaml
  trt-deploy kubernetes --repo s3://models/prod --name minilm --min-replicas 2 --max-replicas 8 | kubectl apply -f -
"""


def _common(function):
    options = [
        click.option("--repo", required=True, help="The model repository: s3://[HOST:PORT/]BUCKET/PREFIX."),
        click.option("--name", required=True, help="Name of the deployed objects (a DNS label)."),
        click.option("--namespace", help="Namespace of the objects.  [default: kubectl's]"),
        click.option("--triton-version", help="NGC tritonserver release YY.MM (needed for TensorRT engines).  "
                                               "[default: 24.10, the release the repositories are tested with]"),
        click.option("--image", help="A tritonserver image with the repository's requirements.txt installed."),
        click.option("--secret", help="Secret with AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY.  [default: NAME-s3]"),
        click.option("--min-replicas", default=1, show_default=True, type=click.IntRange(1)),
        click.option("--max-replicas", default=4, show_default=True, type=click.IntRange(1)),
        click.option("--gpus", type=click.IntRange(0), help="GPUs per replica.  [default: 1 when the repository "
                                                             "holds engines or GPU instances, else 0]"),
        click.option("--cpu", default="2", show_default=True, help="CPU request per replica."),
        click.option("--memory", default="8Gi", show_default=True, help="Memory request and limit per replica."),
        click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path),
                     help="Write the manifests here (stdout when not given)."),
        click.option("--overwrite", is_flag=True, help="Replace an existing --output file."),
        click.option("--verbose", is_flag=True, help="Show tracebacks."),
    ]
    for option in reversed(options):
        function = option(function)
    return function


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110}, epilog=EPILOG)
def main():
    """Kubernetes or KServe manifests that serve a Triton model repository from object storage."""


@main.command()
@_common
@click.option("--scale-target", default=8, show_default=True, type=click.IntRange(1),
              help="Concurrent requests per replica that KServe scales at.")
def kserve(scale_target, **flags):
    """A KServe InferenceService (Triton predictor reading storageUri) and its storage ServiceAccount."""
    _write("kserve", scale_target=scale_target, poll_seconds=0, **flags)


@main.command()
@_common
@click.option("--scale-target", default=70, show_default=True, type=click.IntRange(1, 100),
              help="Average CPU utilization (%) the HorizontalPodAutoscaler keeps.")
@click.option("--poll-secs", default=30, show_default=True, type=click.IntRange(0),
              help="Seconds between Triton's polls of the repository for new models and versions (0: never).")
def kubernetes(scale_target, poll_secs, **flags):
    """A Deployment of tritonserver reading the repository, a Service and a HorizontalPodAutoscaler."""
    _write("kubernetes", scale_target=scale_target, poll_seconds=poll_secs, **flags)


def _write(kind: str, *, repo, output, overwrite, verbose, triton_version, **settings) -> None:
    with errors_reported(verbose):
        from trt_converters.atomic import atomic_write_text
        from trt_converters.deploy.manifests import (DeploySettings, kserve_manifests, kubernetes_manifests,
                                                     render_yaml)
        from trt_converters.deploy.repository import inspect_repository

        chosen = DeploySettings(triton_release=triton_version, **settings)
        chosen.check()
        if output is not None and output.exists() and not overwrite:
            raise UserError(f"{output} already exists; pass --overwrite to replace it")
        facts = inspect_repository(repo)
        build = kserve_manifests if kind == "kserve" else kubernetes_manifests
        documents = build(facts, chosen)
        header = (f"trt-deploy {kind}: {facts.location} ({len(facts.models)} models: {', '.join(facts.models)})\n"
                  f"needs: the Secret {chosen.secret_name!r} with AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY"
                  + (" and the serving.kserve.io/s3-endpoint annotation" if kind == "kserve" else "")
                  + ("; GPU nodes (nvidia.com/gpu)" if any("nvidia.com/gpu" in str(d) for d in documents) else ""))
        text = render_yaml(documents, header)
        if facts.requirements and not chosen.image:
            click.echo(f"warning: the repository's python models import {', '.join(facts.requirements)}; the stock "
                       "tritonserver image lacks them: build an image with its requirements.txt and pass --image",
                       err=True)
        if output is None:
            click.echo(text, nl=False)
        else:
            atomic_write_text(output, text)
            click.echo(f"wrote {output}", err=True)


if __name__ == "__main__":
    main()
