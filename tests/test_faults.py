"""Issue 15, first part: bad input reaches the right error (one line, the file and key
named, nothing huge allocated, no torch imported for a typo) and a closed stdout ends the
run like a Unix tool. Each case is tried the way the fault sweep found it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from media import read_jsonl, write_clip

from realtime.errors import ModelError
from realtime.model.format import parse_metadata

ROOT = Path(__file__).resolve().parents[1]
ENV = dict(os.environ, PYTHONPATH=str(ROOT))


def camloc(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "realtime", *args], cwd=cwd, env=ENV,
                          capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def clip(tmp_path_factory, photos):
    return write_clip(tmp_path_factory.mktemp("faults") / "clip.mp4", photos, 12, fps=12.0)


def _with_meta(src: Path, dst: Path, **changes: str) -> Path:
    """A copy of the camloc model ``src`` with some metadata values replaced."""
    import onnx

    model = onnx.load(str(src))
    props = {p.key: p.value for p in model.metadata_props}
    props.update({k.replace("_", ".", 1): v for k, v in changes.items()})
    del model.metadata_props[:]
    onnx.helper.set_model_props(model, props)
    onnx.save(model, str(dst))
    return dst


def _meta(**changes: str) -> dict[str, str]:
    meta = {"camloc.labels": '["a", "b"]', "camloc.mean": "[0, 0, 0]",
            "camloc.std": "[1, 1, 1]", "camloc.stride": "32", "camloc.input_size": "[224, 224]"}
    meta.update({k.replace("_", ".", 1): v for k, v in changes.items()})
    return meta


@pytest.mark.parametrize(("changes", "message"), [
    ({"camloc_stride": "100000000"}, r"m.onnx: metadata camloc.stride must be in \[1, 512\], "
                                     "got 100000000"),
    ({"camloc_stride": "a"}, r"m.onnx: metadata camloc.stride must be an integer, got 'a'"),
    ({"camloc_input_size": '["a", 224]'}, r"m.onnx: metadata camloc.input_size must be an "
                                          "integer, got 'a'"),
    ({"camloc_input_size": "[224, 99999]"}, r"camloc.input_size must be in \[1, 4096\]"),
    ({"camloc_input_size": "224"}, r"camloc.input_size must be \[height, width\], got 224"),
    ({"camloc_format": "a"}, r"m.onnx: metadata camloc.format must be an integer, got 'a'"),
    ({"camloc_format": "2"}, r"m.onnx: camloc.format 2 is not supported"),
])
def test_every_metadata_error_names_the_file_and_the_key(changes, message):
    with pytest.raises(ModelError, match=message):
        parse_metadata(_meta(**changes), "m.onnx")


def test_a_model_claiming_a_huge_stride_is_one_line_and_status_2(clip, tiny_onnx, tmp_path):
    bad = _with_meta(tiny_onnx, tmp_path / "huge.onnx", camloc_stride="100000000")
    r = camloc("--source", str(clip), "--model", str(bad), "--save-json", "o.jsonl",
               cwd=tmp_path)
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
    assert f"{bad}: metadata camloc.stride must be in [1, 512]" in r.stderr
    assert not (tmp_path / "o.jsonl").exists()


def test_imgsz_has_an_upper_bound(clip, tiny_onnx, tmp_path):
    r = camloc("--source", str(clip), "--model", str(tiny_onnx), "--imgsz", "100000",
               "--save-json", "o.jsonl", cwd=tmp_path)
    assert (r.returncode, r.stderr) == (
        2, "camloc: error: argument --imgsz: must be in [32, 4096], got 100000\n")


def test_an_unknown_model_name_is_answered_without_importing_torch(clip, tmp_path):
    code = ("import sys; from realtime import cli; "
            f"s = cli.main(['--source', {str(clip)!r}, '--model', 'resnet1', "
            "'--save-json', 'o.jsonl']); print(s, 'torch' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=ENV,
                       capture_output=True, text=True, timeout=120)
    assert r.stdout.split() == ["2", "False"], (r.stdout, r.stderr)
    assert r.stderr.startswith("camloc: error: unknown model 'resnet1'; valid names: "
                               "efficientnet_lite0, ") and r.stderr.count("\n") == 1


def test_the_torch_free_name_list_is_torchvision_s(tmp_path):
    import torchvision

    from models.zoo import TORCHVISION_MODELS

    assert list(TORCHVISION_MODELS) == sorted(
        torchvision.models.list_models(module=torchvision.models))


def test_stdout_closed_early_ends_quietly_with_complete_outputs(clip, tiny_onnx, tmp_path):
    """``python -m realtime ... | head -c 0``: no traceback; 141 as for a tool ended by
    SIGPIPE (the summary was not delivered), and the files are whole."""
    p = subprocess.Popen([sys.executable, "-m", "realtime", "--source", str(clip), "--model",
                          str(tiny_onnx), "--save", "o.mp4", "--save-json", "o.jsonl"],
                         cwd=tmp_path, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    p.stdout.close()  # the reader went away before the summary
    err = p.stderr.read().decode()
    assert p.wait(timeout=120) == 141, err
    assert "Traceback" not in err and "BrokenPipe" not in err, err
    assert [r["frame"] for r in read_jsonl(tmp_path / "o.jsonl")] == list(range(12))
    import cv2

    cap = cv2.VideoCapture(str(tmp_path / "o.mp4"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 12
    cap.release()


def test_an_output_that_is_an_input_is_refused_before_anything_is_written(
        clip, photos, tiny_onnx, tmp_path):
    """Same path, ./ spelling, symlink, hard link, an image of a folder or a glob, the
    model: exit 2 with one line, and the input is byte for byte what it was."""
    import cv2

    video = tmp_path / "s.mp4"
    video.write_bytes(clip.read_bytes())
    (tmp_path / "link.mp4").symlink_to(video)
    os.link(video, tmp_path / "hard.mp4")
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("cat", "espresso"):
        cv2.imwrite(str(folder / f"{name}.png"), photos[name][:64, :64, ::-1])
    before = {p: p.read_bytes() for p in (video, folder / "cat.png", tiny_onnx)}
    m = ["--model", str(tiny_onnx)]
    cases = [
        (["--source", "s.mp4", "--save", "s.mp4"], "--save s.mp4: is the input s.mp4"),
        (["--source", "s.mp4", "--save-json", "./s.mp4"], "--save-json ./s.mp4: is the input"),
        (["--source", str(video), "--save", "link.mp4"], "--save link.mp4: is the input"),
        (["--source", "link.mp4", "--save", "hard.mp4"], "--save hard.mp4: is the input"),
        (["--source", "photos", "--save-json", "photos/../photos/cat.png"], "is the input"),
        (["--source", "photos/*.png", "--save-json", "photos/cat.png"], "is the input"),
        (["--source", "s.mp4", "--save-json", str(tiny_onnx)], "is the input"),
    ]
    for args, message in cases:
        r = camloc(*args, *m, cwd=tmp_path)
        assert (r.returncode, r.stdout) == (2, ""), (args, r.stderr)
        assert r.stderr.count("\n") == 1 and message in r.stderr, (args, r.stderr)
    assert {p: p.read_bytes() for p in before} == before


def test_a_folder_with_tiny_first_images_makes_a_video_of_its_common_size(
        photos, tiny_onnx, tmp_path):
    """A 1x1 and a 3x3 image first, then real photos: both are skipped and counted, the
    video takes the most common size (two cats, 451x300 -> 450x300 for MPEG-4) and every
    good photo is in it, the square astronaut letterboxed."""
    import cv2

    from realtime.sources.framesize import choose_frame_size, image_sizes

    folder = tmp_path / "photos"
    folder.mkdir()
    cv2.imwrite(str(folder / "0_dot.png"), photos["cat"][:1, :1, ::-1])
    cv2.imwrite(str(folder / "1_speck.png"), photos["cat"][:3, :3, ::-1])
    cv2.imwrite(str(folder / "2_cat.jpg"), photos["cat"][:, :, ::-1])
    cv2.imwrite(str(folder / "3_astronaut.jpg"), photos["astronaut"][:, :, ::-1])
    cv2.imwrite(str(folder / "4_cat.png"), photos["cat"][::-1, :, ::-1])
    assert choose_frame_size(image_sizes(sorted(folder.iterdir()))) == (451, 300)
    r = camloc("--source", "photos", "--model", str(tiny_onnx), "--save", "o.mp4",
               "--save-json", "o.jsonl", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "5 frames read" not in r.stdout and "2 too small skipped" in r.stdout, r.stdout
    assert "skipped photos/0_dot.png: 1x1 pixels, too small" in r.stderr
    assert "video: o.mp4 (3 frames)" in r.stdout
    assert [Path(x["source"]).name for x in read_jsonl(tmp_path / "o.jsonl")] == [
        "2_cat.jpg", "3_astronaut.jpg", "4_cat.png"]
    cap = cv2.VideoCapture(str(tmp_path / "o.mp4"))
    frames = [cap.read()[1] for _ in range(3)]
    assert all(f is not None and f.shape == (300, 450, 3) for f in frames)
    assert frames[1][:, :70].max() < 30 < frames[1][:, 80:370].mean()  # 512x512: bands
    cap.release()


def test_frame_size_choice_without_pillow_and_for_a_single_tiny_image(
        photos, tiny_onnx, tmp_path, monkeypatch):
    import cv2

    from realtime.sources import framesize
    assert framesize.choose_frame_size([(1, 1), (3, 3)]) is None
    assert framesize.choose_frame_size([(640, 480), (8000, 2000), (8000, 2000)]) == (3840, 960)
    cv2.imwrite(str(tmp_path / "a.png"), photos["cat"][:, :, ::-1])
    cv2.imwrite(str(tmp_path / "b.png"), photos["cat"][:2, :2, ::-1])
    monkeypatch.setitem(sys.modules, "PIL", None)  # Pillow not installed: decode a sample
    assert framesize.image_sizes([tmp_path / "b.png", tmp_path / "a.png"]) == [
        (2, 2), (451, 300)]
    r = camloc("--source", "b.png", "--model", str(tiny_onnx), cwd=tmp_path)
    assert (r.returncode, r.stderr) == (2, "camloc: error: b.png: 2x2 pixels is too small to "
                                           "localize (sides of at least 8)\n")
