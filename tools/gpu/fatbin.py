"""Keep one GPU architecture's code in a CUDA library's fatbins, for packing.

A CUDA library carries its kernels once per GPU architecture (``.nv_fatbin``: one
fatbin container per translation unit, one entry per architecture, ELF machine code
(SASS) or PTX). ONNX Runtime's CUDA provider for CUDA 13 holds SASS for sm_75, 80, 86,
89, 90 and 120 and no PTX: on a Hopper GPU (sm_90) only the sm_90 entries can ever be
loaded, since SASS runs only on its own major architecture. :func:`keep_arch` zeroes
the payload of every other entry and leaves every header, size and offset as it was,
so the driver still reads a well-formed fatbin and picks the same sm_90 image; the
zeroes then compress to almost nothing.

Layout (as cuobjdump and the CUDA runtime read it): a container header
``<IHHQ`` (magic 0xBA55ED50, version, header size, size of the entries), then per entry
``<HHIQ`` (kind: 1 PTX, 2 ELF; version; header size; payload size) with the
architecture as a u32 at offset 28 of the entry header.
"""

from __future__ import annotations

import struct
from collections import Counter
from pathlib import Path

__all__ = ["FATBIN_MAGIC", "fatbin_section", "keep_arch", "scan"]

FATBIN_MAGIC = 0xBA55ED50
_KINDS = {1: "ptx", 2: "elf"}


def fatbin_section(data: bytes | bytearray) -> tuple[int, int] | None:
    """(file offset, size) of the ELF section ``.nv_fatbin``, or None (64-bit ELF only)."""
    if data[:4] != b"\x7fELF" or data[4] != 2:
        return None
    shoff, = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)
    def header(i: int) -> tuple[int, int, int]:
        base = shoff + i * shentsize
        name, = struct.unpack_from("<I", data, base)
        offset, size = struct.unpack_from("<QQ", data, base + 0x18)
        return name, offset, size
    _, str_off, _ = header(shstrndx)
    for i in range(shnum):
        name, offset, size = header(i)
        end = data.index(b"\0", str_off + name)
        if bytes(data[str_off + name:end]) == b".nv_fatbin":
            return offset, size
    return None


def _entries(data: bytes | bytearray, offset: int, size: int):
    """(entry header offset, header size, payload size, kind, arch) of every entry."""
    pos, end = offset, offset + size
    while pos + 16 <= end:
        magic, _, hsize, fsize = struct.unpack_from("<IHHQ", data, pos)
        if magic != FATBIN_MAGIC:
            pos += 8  # containers are 8-byte aligned, padding between them
            continue
        e, stop = pos + hsize, pos + hsize + fsize
        while e < stop:
            kind, _, ehsize, psize = struct.unpack_from("<HHIQ", data, e)
            arch, = struct.unpack_from("<I", data, e + 28)
            yield e, ehsize, psize, kind, arch
            e += ehsize + psize
        pos = stop


def scan(data: bytes | bytearray) -> dict[str, int]:
    """Bytes of payload per ``kind:sm_arch`` (e.g. ``elf:sm_90``); empty without fatbins."""
    where = fatbin_section(data)
    totals: Counter[str] = Counter()
    if where is not None:
        for _, _, psize, kind, arch in _entries(data, *where):
            totals[f"{_KINDS.get(kind, kind)}:sm_{arch}"] += psize
    return dict(totals)


def keep_arch(path: Path, arch: int) -> dict[str, int]:
    """Zero, in place, the payload of every fatbin entry of ``path`` not for ``arch``.
    Refuses (ValueError) a library with PTX (a JIT could pick it) or with no ``arch``
    entry at all. Returns {"zeroed": bytes, "kept": bytes}."""
    data = bytearray(path.read_bytes())
    where = fatbin_section(data)
    if where is None:
        raise ValueError(f"{path.name}: no .nv_fatbin section")
    entries = list(_entries(data, *where))
    if any(kind != 2 for *_, kind, _ in entries):
        raise ValueError(f"{path.name}: holds PTX; keep every architecture")
    if not any(a == arch for *_, a in entries):
        raise ValueError(f"{path.name}: no code for sm_{arch}")
    zeroed = kept = 0
    for e, ehsize, psize, _, a in entries:
        if a == arch:
            kept += psize
        else:
            data[e + ehsize:e + ehsize + psize] = bytes(psize)
            zeroed += psize
    path.write_bytes(bytes(data))
    return {"zeroed": zeroed, "kept": kept}
