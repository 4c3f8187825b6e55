"""How the command-line tools end on errors: one `error:` line, exit 2 for usage, 1 for a failed stage."""

from __future__ import annotations

import contextlib
import sys

import click

from trt_converters.errors import StageError, UserError


@contextlib.contextmanager
def errors_reported(verbose: bool, *, interrupted: str = "interrupted"):
    """Turns exceptions into one line on stderr and the exit status; a traceback only with --verbose."""
    try:
        yield
    except UserError as exc:
        fail(exc, 2, verbose)
    except StageError as exc:
        fail(exc, 1, verbose)
    except KeyboardInterrupt:
        click.echo(f"error: {interrupted}", err=True)
        sys.exit(130)
    except Exception as exc:  # an unexpected failure still gets one line; --verbose shows where
        if verbose:
            import traceback

            traceback.print_exception(exc)
        fail(f"unexpected {type(exc).__name__}: {exc} (rerun with --verbose for the traceback)", 1, False)


def fail(error, status: int, verbose: bool) -> None:
    if verbose and isinstance(error, BaseException):
        import traceback

        traceback.print_exception(error)
    message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    click.echo(f"error: {message}", err=True)
    sys.exit(status)
