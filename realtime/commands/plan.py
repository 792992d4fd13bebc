"""Where a run's outputs go, decided and checked before any frame is read: one rule for
any number of sources.

- ``--save``/``--save-json`` name a folder (a path ending in ``/`` or an existing
  folder): one file per source in it, named by :func:`realtime.sources.names.unique_names`
  (``front.mp4``, ``front.jsonl``...). With one source they may also name a file.
- Neither given (and no ``--show``/``--serve``/``--events``): a fresh folder under ``--runs-dir``
  named after the source (``runs/demo/``; several sources: ``runs/multi/``).
- Every planned output is checked against every input (sources, model) first: an
  output that is an input is refused (exit 2) before anything is opened for writing.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from realtime.commands.parser import fresh_folder
from realtime.errors import UsageError
from realtime.outputs.guard import input_files, refuse_overwrites
from realtime.outputs.recorder import video_suffixes
from realtime.outputs.sinks import check_output_path
from realtime.sources.names import unique_names

__all__ = ["OutputPlan", "plan_outputs"]


@dataclass
class OutputPlan:
    """Each source's video and JSONL path (None: not written), in source order."""

    names: list[str]
    videos: list[Path | None]
    jsonls: list[Path | None]
    folder: Path | None = None  # a fresh folder under --runs-dir, made once the run starts


def _is_folder(value: str) -> bool:
    return value.endswith(("/", os.sep)) or Path(value).expanduser().is_dir()


def _paths(flag: str, value: str | None, names: list[str], suffix: str) -> list[Path | None]:
    if not value:
        return [None] * len(names)
    if _is_folder(value):
        return [Path(value).expanduser() / f"{n}{suffix}" for n in names]
    if len(names) > 1:
        raise UsageError(f"{flag} {value}: with several sources, give a folder (one file per "
                         "source goes in it)")
    return [Path(value).expanduser()]


def plan_outputs(args: Any, specs: Sequence[str], run_name: str) -> OutputPlan:
    """The outputs of ``python -m realtime`` for ``specs`` (see the module docstring)."""
    names = unique_names(specs)
    suffix = ".avi" if args.codec == "mjpeg" else ".mp4"
    if args.save or args.save_json or args.show or args.serve or getattr(args, "events", None):
        videos = _paths("--save", args.save, names, suffix)
        jsonls = _paths("--save-json", args.save_json, names, ".jsonl")
        folder = None
    else:
        folder = fresh_folder(Path(args.runs_dir), run_name if len(specs) == 1 else "multi")
        base = folder
        while not base.exists():  # created only once the run starts: nothing left on errors
            base = base.parent
        if not base.is_dir() or not os.access(base, os.W_OK | os.X_OK):
            raise UsageError(f"--runs-dir {args.runs_dir}: cannot create {folder} "
                             f"({base} is not a writable folder)")
        videos = [folder / f"{n}{suffix}" for n in names]
        jsonls = [folder / f"{n}.jsonl" for n in names]
    inputs = input_files(list(specs), args.model)
    for flag, value, paths in (("--save", args.save, videos),
                               ("--save-json", args.save_json, jsonls)):
        for p in paths:  # before anything is opened: the inputs stay as they are
            shown = value if value and not _is_folder(value) else str(p)  # as the user wrote it
            refuse_overwrites(inputs, {flag: shown if p else None})
    for v, j in zip(videos, jsonls):
        if v is not None and j is not None and v.resolve() == j.resolve():
            raise UsageError("--save and --save-json point to the same file")
    if folder is None:
        for i, (v, j) in enumerate(zip(videos, jsonls)):
            videos[i] = check_output_path(v, "--save", video_suffixes(args.codec)) if v else None
            jsonls[i] = check_output_path(j, "--save-json") if j else None
    return OutputPlan(names, videos, jsonls, folder)
