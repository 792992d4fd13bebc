"""Refuse outputs that would overwrite an input, before anything is opened for writing.

``--save s.mp4 --source s.mp4`` used to truncate the video while it was being
read (19 of 300 frames processed, exit 0). An output is the same file as an
input when the paths resolve to one file: equal paths, ``./`` spellings,
symlinks (followed) and hard links (same device and inode, ``os.path.samefile``).
The inputs are the source file, every image of a folder or glob, and the model.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterable
from pathlib import Path

from realtime.outputs.sinks import SinkError
from realtime.sources import IMAGE_SUFFIXES, classify_source

__all__ = ["input_files", "refuse_overwrites", "same_file"]


def same_file(a: str | os.PathLike[str], b: str | os.PathLike[str]) -> bool:
    """True when ``a`` and ``b`` name one file (path, symlink or hard link)."""
    try:
        return os.path.samefile(a, b)  # st_dev and st_ino: links of every kind
    except OSError:  # one of them does not exist (yet): compare where they would be
        return Path(a).expanduser().resolve() == Path(b).expanduser().resolve()


def input_files(source: str, model: str | None = None) -> list[Path]:
    """The files a run reads: the source (or each image of a folder or glob) and the
    model when it is a file. Live sources read no file."""
    kind = classify_source(source)
    files: list[Path] = []
    if kind in ("video", "image") and "://" not in source:
        files.append(Path(source))
    elif kind == "folder":
        files += [p for p in Path(source).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES]
    elif kind == "glob":
        files += [Path(p) for p in glob.glob(source, recursive=True)
                  if Path(p).suffix.lower() in IMAGE_SUFFIXES]
    if model and Path(model).expanduser().is_file():
        files.append(Path(model).expanduser())
    return files


def refuse_overwrites(inputs: Iterable[Path], outputs: dict[str, str | None]) -> None:
    """Raise SinkError when an output (flag -> path) is one of the ``inputs``."""
    inputs = list(inputs)
    for flag, out in outputs.items():
        if not out:
            continue
        for path in inputs:
            if same_file(out, path):
                raise SinkError(f"{flag} {out}: is the input {path}; writing it would destroy "
                                "what is being read (choose another file)")
