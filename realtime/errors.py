"""camloc's one error story, shared by ``python -m realtime``, ``python -m export`` and
``python -m realtime.bench``.

- A user error (bad input, bad flags, missing files, a model that is not a camloc model,
  a device that is not there) is a :class:`CamlocError`: the CLIs print its message as
  one line and exit with status 2. Every such class subclasses ``CamlocError`` (and the
  built-in type a Python caller would expect, ``ValueError`` or ``RuntimeError``, so
  ``except ValueError`` keeps working in the Python API).
- Anything else is a failed stage or a bug: one line that says which (a
  :class:`StageError`, such as a full disk or a live source lost for good, is printed as
  it is; a stage that failed on I/O names the stage and the cause; any other exception
  is reported as a bug in camloc), exit status 1; ``-vv`` prints the traceback as well.
"""

from __future__ import annotations

import sys
import traceback

__all__ = ["CamlocError", "DeviceError", "ModelError", "OptionError", "PipelineError",
           "StageError", "UsageError", "error_line", "exit_status", "first_line", "report_error"]


class CamlocError(Exception):
    """Root of the user errors: something the user asked for cannot be done as asked."""


class ModelError(CamlocError, ValueError):
    """The model file is missing, corrupt, or lacks what CAMs need."""


class DeviceError(CamlocError, RuntimeError):
    """An explicitly requested device (execution provider) cannot be used."""


class OptionError(CamlocError, ValueError):
    """An option has a value out of its range or not among its choices (topk, device...)."""


class UsageError(CamlocError, ValueError):
    """Malformed or conflicting command-line flags."""


class StageError(RuntimeError):
    """A stage failed for a reason that is neither the user's request nor a bug in camloc
    (an output that cannot be written: full disk, I/O error; a live source lost for good):
    exit status 1, the message printed as it is (it names the file or source and the
    cause). Subclasses: realtime.outputs.writes.WriteError."""


class PipelineError(RuntimeError):
    """A pipeline stage failed for a reason that is not the user's (a full disk, a lost
    device, a bug); the message names the stage and the cause, ``stage`` the stage."""

    def __init__(self, stage: str, cause: BaseException) -> None:
        super().__init__(f"{stage} stage failed: {type(cause).__name__}: {first_line(cause)}")
        self.stage = stage


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type name when it has none), for
    one-line user messages: libraries (ONNX Runtime, torch, fx) often raise pages."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def exit_status(exc: BaseException) -> int:
    """2 for a user error, 1 for a failed stage or a bug."""
    return 2 if isinstance(exc, CamlocError) else 1


def _is_environment(exc: BaseException) -> bool:
    """A failure of the machine rather than of camloc's code: I/O, memory."""
    return isinstance(exc, (OSError, MemoryError))


def error_line(exc: BaseException) -> str:
    """The one line a CLI prints for ``exc`` (after ``prog: error: ``)."""
    if isinstance(exc, (CamlocError, StageError)):
        return first_line(exc)
    cause = exc.__cause__ if isinstance(exc, PipelineError) and exc.__cause__ else exc
    if _is_environment(cause):
        return first_line(exc) if isinstance(exc, PipelineError) else (
            f"{type(exc).__name__}: {first_line(exc)}")
    what = first_line(exc) if isinstance(exc, PipelineError) else (
        f"{type(exc).__name__}: {first_line(exc)}")
    return f"internal error, a bug in camloc (please report it; -vv shows the traceback): {what}"


def report_error(prog: str, exc: BaseException, verbose: int = 0) -> int:
    """Print ``exc`` for a CLI user (the traceback first with ``verbose >= 2``, then one
    line) on stderr and return the exit status."""
    if verbose >= 2:
        traceback.print_exception(exc, file=sys.stderr)
    print(f"{prog}: error: {error_line(exc)}", file=sys.stderr, flush=True)
    return exit_status(exc)
