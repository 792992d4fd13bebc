"""Refuse outputs that would overwrite an input, before anything is opened for writing.

``--save s.mp4 --source s.mp4`` used to truncate the video while it was being
read (19 of 300 frames processed, exit 0), and ``python -m realtime.batch
clips/a.mp4 --output clips`` replaced its input videos with their annotated copies.
An output is the same file as an input when the paths resolve to one file: equal
paths, ``./`` spellings, symlinks (followed) and hard links (same device and inode).
The inputs are the sources (each image of a folder or glob), the model, and what a
command reads besides (labels, calibration frames, a training folder).

Every command that writes calls :func:`refuse_overwrites` with its inputs and every
file it plans to write (a folder output expanded to its per-source names with
:func:`folder_outputs`) before it opens any of them: one line, exit status 2.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from realtime.outputs.sinks import SinkError
from realtime.sources import IMAGE_SUFFIXES, classify_source

__all__ = ["files_under", "folder_outputs", "input_files", "refuse_inside",
           "refuse_overwrites", "same_file"]

PathLike = str | os.PathLike[str]


def same_file(a: PathLike, b: PathLike) -> bool:
    """True when ``a`` and ``b`` name one file (path, symlink or hard link)."""
    try:
        return os.path.samefile(a, b)  # st_dev and st_ino: links of every kind
    except OSError:  # one of them does not exist (yet): compare where they would be
        return Path(a).expanduser().resolve() == Path(b).expanduser().resolve()


def input_files(source: str | Sequence[str], model: str | None = None) -> list[Path]:
    """The files a run reads: each source (or each image of a folder or glob) and the
    model when it is a file. Live sources read no file."""
    files: list[Path] = []
    for spec in [source] if isinstance(source, str) else source:
        kind = classify_source(spec)
        if kind in ("video", "image") and "://" not in spec:
            files.append(Path(spec))
        elif kind == "folder":
            files += [p for p in Path(spec).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES]
        elif kind == "glob":
            files += [Path(p) for p in glob.glob(spec, recursive=True)
                      if Path(p).suffix.lower() in IMAGE_SUFFIXES]
    if model and Path(model).expanduser().is_file():
        files.append(Path(model).expanduser())
    return files


def files_under(folder: PathLike) -> list[Path]:
    """Every file in ``folder`` and its sub-folders (a training set, a calibration folder);
    ``folder`` itself when it is a file, nothing when it does not exist."""
    root = Path(folder).expanduser()
    if root.is_file():
        return [root]
    return [p for p in root.rglob("*") if p.is_file()] if root.is_dir() else []


def folder_outputs(folder: PathLike, names: Iterable[str], suffixes: Iterable[str]
                   ) -> list[Path]:
    """The files a folder output will hold: ``folder/NAME.SUFFIX`` for every source name."""
    suffixes = list(suffixes)
    return [Path(folder) / f"{name}{suffix}" for name in names for suffix in suffixes]


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)  # follows symlinks: a link to the input is the input
    except OSError:
        return None
    return st.st_dev, st.st_ino


def refuse_overwrites(inputs: Iterable[PathLike],
                      outputs: Mapping[str, PathLike | Iterable[PathLike] | None]) -> None:
    """Raise SinkError (one line, exit status 2) when a planned output is one of the
    ``inputs``. ``outputs`` maps the flag that chose them (for the message) to one path or
    to every file it will write; empty entries are skipped. Nothing is opened."""
    by_id: dict[tuple[int, int], Path] = {}
    by_path: dict[Path, Path] = {}
    for path in map(Path, inputs):
        ident = _identity(path)
        if ident is not None:
            by_id.setdefault(ident, path)
        by_path.setdefault(path.expanduser().resolve(), path)
    for flag, planned in outputs.items():
        if not planned:
            continue
        paths = [planned] if isinstance(planned, (str, os.PathLike)) else list(planned)
        for raw in paths:
            out = Path(raw)
            ident = _identity(out)
            hit = by_id.get(ident) if ident is not None else None
            if hit is None:
                hit = by_path.get(out.expanduser().resolve())
            if hit is not None:  # named as the user spelled it (./s.mp4)
                raise SinkError(f"{flag} {os.fspath(raw)}: is the input {hit}; writing it would destroy "
                                "what is being read (choose another file)")


def refuse_inside(inputs: Iterable[PathLike], flag: str, folder: PathLike) -> None:
    """Raise SinkError when an input lies in ``folder``, a folder the command fills with
    temporary files and removes (its inputs would go with it)."""
    root = Path(folder).expanduser().resolve()
    for path in map(Path, inputs):
        real = path.expanduser().resolve()
        if real == root or root in real.parents:
            raise SinkError(f"{flag}: the input {path} is inside {folder}, which this command "
                            "fills with temporary files and removes (move the input)")
