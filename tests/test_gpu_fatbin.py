"""tools/gpu/fatbin.py on the CUDA provider library that onnxruntime-gpu installs here:
every architecture's kernels found, and keeping sm_90 zeroes exactly the others'
payloads while every header, size and the sm_90 code stay byte for byte."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import onnxruntime as ort
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools" / "gpu"))
import fatbin  # noqa: E402

LIB = Path(ort.__file__).parent / "capi" / "libonnxruntime_providers_cuda.so"


@pytest.fixture(scope="module")
def cuda_lib() -> Path:
    if not LIB.is_file():
        pytest.skip("this onnxruntime build has no CUDA provider (not onnxruntime-gpu)")
    return LIB


def test_keep_one_architecture(cuda_lib: Path, tmp_path: Path) -> None:
    original = cuda_lib.read_bytes()
    where = fatbin.fatbin_section(original)
    assert where is not None
    entries = list(fatbin._entries(original, *where))
    sizes = fatbin.scan(original)
    assert "elf:sm_90" in sizes and all(k.startswith("elf:") for k in sizes)
    assert sum(sizes.values()) == sum(e[2] for e in entries)
    copy = tmp_path / cuda_lib.name
    shutil.copy(cuda_lib, copy)
    done = fatbin.keep_arch(copy, 90)
    assert done["kept"] == sizes["elf:sm_90"]
    assert done["zeroed"] == sum(v for k, v in sizes.items() if k != "elf:sm_90")
    kept = copy.read_bytes()
    assert len(kept) == len(original) and fatbin.scan(kept) == sizes    # headers intact
    for e, head, size, _, arch in entries:
        payload = kept[e + head:e + head + size]
        assert payload == (original[e + head:e + head + size] if arch == 90 else bytes(size))
    outside = [(0, where[0]), (where[0] + where[1], len(original))]
    assert all(kept[a:b] == original[a:b] for a, b in outside)
    with pytest.raises(ValueError, match="no code for sm_70"):
        fatbin.keep_arch(copy, 70)
