"""Lists of sources: ``--source`` values where a ``.streams``/``.txt`` file stands for the
sources it lists, one per line (blank lines and ``#`` comments skipped)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from realtime.sources.base import SourceError

__all__ = ["LIST_SUFFIXES", "expand_sources", "read_source_list"]

LIST_SUFFIXES = (".streams", ".txt")


def read_source_list(path: str | Path) -> list[str]:
    """The sources in a text file: one per line; blank lines and ``#`` comments skipped."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise SourceError(f"cannot read source list {path}: {exc.strerror or exc}") from None
    return [s for s in (line.strip() for line in text.splitlines()) if s and not s.startswith("#")]


def expand_sources(values: Sequence[str]) -> list[str]:
    """``--source`` values with every ``.streams``/``.txt`` file replaced by its lines."""
    specs: list[str] = []
    for value in values:
        is_list = value.lower().endswith(LIST_SUFFIXES) and Path(value).is_file()
        listed = read_source_list(value) if is_list else [value]
        if not listed:
            raise SourceError(f"no sources listed in {value}")
        specs += listed
    return specs
