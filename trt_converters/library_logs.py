"""Log lines of the libraries a conversion drives (ModelOpt) kept for the report instead of the terminal.

ModelOpt reconfigures its loggers (handlers, level INFO) whenever some of its modules are imported or a
quantization starts, so handlers cannot be relied on; a filter on the logger objects themselves stays.
The same goes for records sent to the root logger itself (`WARNING:root:3 ops are not supported in
'float16' ...`) and for ONNX GraphSurgeon's own logger, which prints (`[W] colored module is not installed`).
"""

from __future__ import annotations

import contextlib
import logging
import sys

MODELOPT_LOGGERS = ("modelopt", "modelopt.onnx", "modelopt.onnx.autocast")
MAX_LINES = 500


class _Collector(logging.Filter):
    def __init__(self, lines: list[str], echo: bool):
        super().__init__()
        self.lines, self.echo = lines, echo

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.ERROR:
            return True  # errors stay visible
        if len(self.lines) < MAX_LINES:
            self.lines.append(f"{record.name} {record.levelname}: {record.getMessage()}")
        if self.echo:
            print(f"  [{record.name}] {record.getMessage()}", file=sys.stderr, flush=True)
        return False


@contextlib.contextmanager
def captured(names=MODELOPT_LOGGERS, *, echo: bool = False):
    """Collects the named loggers' (and their children's) INFO and WARNING records into the yielded list,
    echoed to stderr if asked; errors stay on the terminal. Levels are INFO meanwhile, so the report holds the
    same lines whether or not the library was already imported in this process."""
    lines: list[str] = []
    collector = _Collector(lines, echo)
    known = [name for name in logging.root.manager.loggerDict if name.startswith(tuple(f"{n}." for n in names))]
    loggers = [logging.getLogger(name) for name in {*names, *known}]
    levels = {logger: logger.level for logger in loggers}
    for logger in loggers:
        logger.addFilter(collector)
        logger.setLevel(logging.INFO)
    logging.root.addFilter(collector)  # records logged on the root logger itself; its level is left alone
    restore = _capture_graphsurgeon(lines, echo)
    try:
        yield lines
    finally:
        restore()
        logging.root.removeFilter(collector)
        for logger in loggers:
            logger.removeFilter(collector)
            logger.setLevel(levels[logger])


# ONNX GraphSurgeon prints through its own logger; onnxslim (which ModelOpt's INT8 quantization runs) carries a
# copy of it. Both print `[W] It looks like this model contains foldable nodes that produce large outputs` with a
# dictionary of every such tensor, tens of KB on a large model.
GRAPHSURGEON_LOGGERS = (("onnx_graphsurgeon", "onnx_graphsurgeon.logger"),
                        ("onnxslim", "onnxslim.third_party.onnx_graphsurgeon.logger"))


def _capture_graphsurgeon(lines: list[str], echo: bool):
    """Routes the printed warnings of each GraphSurgeon logger into `lines` (errors still print); returns the
    undo."""
    undo = [_capture_printing_logger(package, module, lines, echo) for package, module in GRAPHSURGEON_LOGGERS]
    return lambda: [restore() for restore in reversed(undo)]


def _capture_printing_logger(package: str, module: str, lines: list[str], echo: bool):
    import importlib
    import importlib.util

    if importlib.util.find_spec(package) is None:
        return lambda: None
    try:
        logger = importlib.import_module(module).G_LOGGER
    except (ImportError, AttributeError):
        return lambda: None
    printing = logger.log

    def log(message, severity, mode=None, stack_depth=2):
        if severity >= logger.ERROR:
            return printing(message, severity, stack_depth=stack_depth + 1, **({"mode": mode} if mode else {}))
        if severity < max(logger.severity, logger.WARNING):
            return None
        text = message() if callable(message) else str(message)
        if len(lines) < MAX_LINES:
            lines.append(f"{module.split('.logger')[0]} WARNING: {text}")
        if echo:
            print(f"  [{package}] {text}", file=sys.stderr, flush=True)
        return None

    logger.log = log
    return lambda: vars(logger).pop("log", None)
