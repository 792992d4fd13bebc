"""Every file ``export`` writes (FP32, FP16, INT8, the runtime's zoo cache) is written
here first: a temporary file beside the target, verified by the writer, then moved into
place with ``os.replace``. A failed step, a failed check or Ctrl-C leaves nothing at the
target (and an older file there untouched)."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from realtime.errors import CamlocError

__all__ = ["OutputError", "atomic_output", "check_writable"]


class OutputError(CamlocError, OSError):
    """The output path cannot be written (a folder, no permission, a file in the way)."""


def check_writable(output: Path) -> None:
    """Raise OutputError unless a file can be created at ``output`` (creating its folder)."""
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=output.parent, prefix=".camloc-probe-"):
            pass
    except OSError as exc:
        raise OutputError(f"cannot write {output}: {exc.strerror or exc}") from exc
    if output.is_dir():
        raise OutputError(f"cannot write {output}: it is a directory")


@contextlib.contextmanager
def atomic_output(output: str | Path) -> Iterator[Path]:
    """A temporary path beside ``output`` for the body to write and verify; moved to
    ``output`` when the body returns, removed when it raises.

    The file gets ordinary permissions (``mkstemp`` makes 0600; an export is a file
    like any other)."""
    output = Path(output)
    check_writable(output)
    fd, name = tempfile.mkstemp(dir=output.parent, prefix=f".{output.stem}-", suffix=".onnx.tmp")
    os.close(fd)
    tmp = Path(name)
    try:
        umask = os.umask(0)
        os.umask(umask)
        tmp.chmod(0o666 & ~umask)
        yield tmp
        os.replace(tmp, output)
    finally:
        tmp.unlink(missing_ok=True)
