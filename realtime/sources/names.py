"""Output names for sources: a file-name-safe name per ``--source`` and distinct names
for several sources written side by side (``realtime.batch``, several ``--source``)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlsplit

__all__ = ["safe_name", "source_name", "unique_names"]


def safe_name(text: str, fallback: str = "run") -> str:
    """``text`` with everything but letters, digits, ``-``, ``_`` and ``.`` replaced by ``_``."""
    name = "".join(c if c.isalnum() or c in "-_." else "_" for c in text).strip("._")
    return name or fallback


def source_name(spec: str) -> str:
    """A short name for outputs: the file's stem, ``camera0``, or a stream's host and path."""
    s = str(spec).strip().rstrip("/\\")
    if s.isdigit():
        return f"camera{s}"
    if s.startswith("/dev/video"):
        return f"camera{s[len('/dev/video'):]}" if s[10:].isdigit() else safe_name(s)
    if "://" in s:
        parts = urlsplit(s)
        path = Path(parts.path).stem if Path(parts.path).suffix else parts.path.strip("/")
        words = [parts.hostname or "", str(parts.port or ""), path]
        return safe_name("_".join(w for w in words if w), "stream")
    return safe_name(Path(s).stem)


def unique_names(specs: Sequence[str]) -> list[str]:
    """:func:`source_name` of each spec, with ``2``, ``3``... added where names repeat."""
    taken: set[str] = set()
    out = []
    for spec in specs:
        base = name = source_name(spec)
        n = 1
        while name in taken:
            n += 1
            name = f"{base}{n}"
        taken.add(name)
        out.append(name)
    return out
