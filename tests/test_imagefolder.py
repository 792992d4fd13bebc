"""A training folder as a user's camera fills it: 12-megapixel JPEGs kept at MAX_SIDE (not
36 MB each in memory), decoded upright by their EXIF orientation, progressive JPEGs, large
PNGs, grey, 16-bit and transparent PNGs, and files that only look like JPEGs."""

from __future__ import annotations

import struct

import cv2
import numpy as np

from export.imagefolder import MAX_SIDE, jpeg_size, load_images, read_rgb, scan_folder


def _camera_photo(photo: np.ndarray) -> np.ndarray:
    """A 4000x3000 BGR frame from a real photo, with sensor-like noise (JPEG-sized like a phone's)."""
    big = cv2.resize(photo[:, :, ::-1], (4000, 3000), interpolation=cv2.INTER_CUBIC)
    noise = np.random.default_rng(0).integers(-6, 7, big.shape, dtype=np.int16)
    return np.clip(big.astype(np.int16) + noise, 0, 255).astype(np.uint8)


def _with_orientation(jpeg: bytes, orientation: int) -> bytes:
    """``jpeg`` with an EXIF APP1 segment holding only the orientation tag (0x0112)."""
    ifd = struct.pack("<H", 1) + struct.pack("<HHIHH", 0x0112, 3, 1, orientation, 0) + b"\0" * 4
    app1 = b"Exif\0\0" + b"II*\0" + struct.pack("<I", 8) + ifd
    return jpeg[:2] + b"\xff\xe1" + struct.pack(">H", len(app1) + 2) + app1 + jpeg[2:]


def _encode(img: np.ndarray, ext: str, *params: int) -> bytes:
    ok, buf = cv2.imencode(ext, img, list(params))
    assert ok
    return buf.tobytes()


def test_camera_jpegs_are_kept_small_and_upright(tmp_path, photos):
    frame = _camera_photo(photos["astronaut"])
    want = cv2.resize(frame, (MAX_SIDE, MAX_SIDE * 3 // 4), interpolation=cv2.INTER_AREA)[:, :, ::-1]
    plain = _encode(frame, ".jpg", cv2.IMWRITE_JPEG_QUALITY, 92)
    files = {"plain.jpg": plain,
             "portrait.jpg": _with_orientation(plain, 6),   # held upright: rotate 90 clockwise
             "progressive.jpg": _encode(frame, ".jpg", cv2.IMWRITE_JPEG_PROGRESSIVE, 1),
             "big.png": _encode(frame, ".png", cv2.IMWRITE_PNG_COMPRESSION, 1)}
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    assert jpeg_size(plain) == jpeg_size(files["portrait.jpg"]) == (3000, 4000)
    assert jpeg_size(files["progressive.jpg"]) == (3000, 4000)
    assert jpeg_size(files["big.png"]) is None
    for name in files:
        img = read_rgb(tmp_path / name)
        upright = np.rot90(want, -1) if name == "portrait.jpg" else want
        assert img.dtype == np.uint8 and img.shape == upright.shape, name
        # the same picture as a full decode shrunk at once (JPEG's scaled decoding differs a little)
        assert np.abs(img.astype(np.int16) - upright).mean() < 4.0, name
    small = read_rgb(tmp_path / "plain.jpg", max_side=300)
    assert small.shape == (225, 300, 3)
    large = read_rgb(tmp_path / "plain.jpg", max_side=5000)   # nothing to shrink: full size
    assert large.shape == (3000, 4000, 3)


def test_grey_16_bit_and_transparent_pngs_are_rgb(tmp_path, photos):
    rgb = photos["astronaut"][:200, :300]
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    (tmp_path / "grey.png").write_bytes(_encode(grey, ".png"))
    (tmp_path / "deep.png").write_bytes(_encode(rgb[:, :, ::-1].astype(np.uint16) * 257, ".png"))
    rgba = np.dstack([rgb[:, :, ::-1], np.full(rgb.shape[:2], 255, np.uint8)])
    (tmp_path / "alpha.png").write_bytes(_encode(rgba, ".png"))
    assert np.array_equal(read_rgb(tmp_path / "grey.png"), np.dstack([grey] * 3))
    assert np.array_equal(read_rgb(tmp_path / "deep.png"), rgb)
    assert np.array_equal(read_rgb(tmp_path / "alpha.png"), rgb)


def test_files_that_only_look_like_jpegs(tmp_path, photos):
    """A JPEG header cut short, a JPEG without a frame header and a renamed PNG: no size
    from the header, no crash, and the readable one still read."""
    jpeg = _encode(photos["astronaut"][:, :, ::-1], ".jpg")
    assert jpeg_size(jpeg[:40]) is None
    assert jpeg_size(b"\xff\xd8\xff\xda\x00\x02") is None
    assert jpeg_size(b"\xff\xd8garbage") is None
    (tmp_path / "cut.jpg").write_bytes(jpeg[:40])
    assert read_rgb(tmp_path / "cut.jpg") is None
    (tmp_path / "renamed.jpg").write_bytes(_encode(photos["astronaut"][:, :, ::-1], ".png"))
    assert read_rgb(tmp_path / "renamed.jpg").shape == (512, 512, 3)


def test_a_folder_of_camera_photos_loads_at_max_side(tmp_path, photos):
    frame = _camera_photo(photos["espresso"])
    for k, c in enumerate(("mug", "background")):
        (tmp_path / c).mkdir()
        for i in range(4):
            view = np.roll(frame, 97 * i + 701 * k, axis=1)
            (tmp_path / c / f"IMG_{i:04d}.JPG").write_bytes(_encode(view, ".jpg"))
    images = load_images(scan_folder(tmp_path))
    assert [[im.shape for im in c] for c in images] == [[(768, 1024, 3)] * 4] * 2


def _photo_files(folder, photo: np.ndarray, n: int, start: int = 0) -> list[bytes]:
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for i in range(start, start + n):
        data = _encode(np.ascontiguousarray(np.roll(photo[:, :, ::-1], 13 * i, axis=1)), ".jpg")
        (folder / f"{i}.jpg").write_bytes(data)
        files.append(data)
    return files


def test_unzipped_and_nas_folders_add_no_classes_or_images(tmp_path, photos, caplog):
    """A folder unzipped on a Mac (__MACOSX/ with ._ files), copied from a Synology NAS
    (@eaDir/ thumbnails of every photo) or browsed by a file manager (.thumbnails/):
    the two real classes, their own photos only."""
    import logging

    cat = _photo_files(tmp_path / "cat", photos["cat"], 5)
    _photo_files(tmp_path / "cup", photos["espresso"], 4)
    for sub in ("__MACOSX/cat", "__MACOSX/cup"):
        (tmp_path / sub).mkdir(parents=True)
        (tmp_path / sub / "._0.jpg").write_bytes(b"\0\5\26\7 AppleDouble")
    (tmp_path / "cat" / "._1.jpg").write_bytes(b"\0\5\26\7 AppleDouble")
    for i, data in enumerate(cat):
        thumb = tmp_path / "cat" / "@eaDir" / f"{i}.jpg" / "SYNOPHOTO_THUMB_M.jpg"
        thumb.parent.mkdir(parents=True)
        thumb.write_bytes(data)   # the same bytes: would also be duplicates
    (tmp_path / "cup" / ".thumbnails").mkdir()
    (tmp_path / "cup" / ".thumbnails" / "t.png").write_bytes(_encode(photos["cat"], ".png"))
    with caplog.at_level(logging.INFO):
        folder = scan_folder(tmp_path)
        images = load_images(folder)
    assert folder.labels == ["cat", "cup"] and folder.counts == [5, 4] and folder.ignored == 7
    assert [len(c) for c in images] == [5, 4]
    assert not folder.skipped and not folder.duplicates and not folder.conflicts
    assert "ignored 7 image file(s) in hidden or system folders" in caplog.text


def test_copies_are_used_once_and_files_in_two_classes_in_neither(tmp_path, photos, caplog):
    """A photo saved twice in its class would sit on both sides of the held-out split; one
    in two classes has no one label: used once, left out, and said so."""
    import logging
    import shutil

    import pytest

    from export.imagefolder import DatasetError

    cat = _photo_files(tmp_path / "cat", photos["cat"], 6)
    _photo_files(tmp_path / "cup", photos["espresso"], 5)
    (tmp_path / "cat" / "0 (copy).jpg").write_bytes(cat[0])
    (tmp_path / "cat" / "sub").mkdir()
    (tmp_path / "cat" / "sub" / "again.jpg").write_bytes(cat[0])
    shutil.copyfile(tmp_path / "cat" / "5.jpg", tmp_path / "cup" / "looks_like_a_cup.jpg")
    folder = scan_folder(tmp_path)
    with caplog.at_level(logging.WARNING):
        images = load_images(folder)
    assert [len(c) for c in images] == [5, 5]   # cat: 0-4 once each; cup: its own 5
    assert sorted(p.name for p in folder.duplicates) == ["0.jpg", "again.jpg"]  # "0 (copy)" sorts first
    assert sorted(p.name for p in folder.conflicts) == ["5.jpg", "looks_like_a_cup.jpg"]
    assert "used once: 2 image(s) that repeat another of their class" in caplog.text
    assert "left out: 2 image(s) whose same file is in two classes" in caplog.text
    assert np.array_equal(images[0][0], read_rgb(tmp_path / "cat" / "0 (copy).jpg"))
    few = tmp_path / "few"
    _photo_files(few / "cat", photos["cat"], 2)
    for i in range(3):
        shutil.copyfile(few / "cat" / "0.jpg", few / "cat" / f"copy{i}.jpg")
    _photo_files(few / "cup", photos["espresso"], 4)
    with pytest.raises(DatasetError, match=r"too few in: cat \(2 usable of 5: unreadable, duplicate"):
        load_images(scan_folder(few))


def test_avif_and_gif_are_read_and_iphone_or_raw_files_are_named(tmp_path, photos, caplog):
    """AVIF and GIF decode here and are trained on; HEIC (an iPhone's default) and camera
    raw files do not: they are named, with how to convert them, never silently missing."""
    import logging

    import pytest

    from export.imagefolder import DatasetError

    heic = b"\0\0\0\x18ftypheic\0\0\0\0mif1heic" + bytes(64)
    for c, name in enumerate(("cat", "cup")):
        folder = tmp_path / "ok" / name
        folder.mkdir(parents=True)
        for i, ext in enumerate((".jpg", ".avif", ".gif", ".png")):
            view = np.ascontiguousarray(np.roll(photos["cat" if c == 0 else "espresso"], 50 * i, axis=1))
            (folder / f"{i}{ext}").write_bytes(_encode(view[:, :, ::-1], ext))
        (folder / "IMG_0001.HEIC").write_bytes(heic)
    with caplog.at_level(logging.WARNING):
        folder = scan_folder(tmp_path / "ok")
        images = load_images(folder)
    assert folder.counts == [4, 4] and [len(c) for c in images] == [4, 4] and not folder.skipped
    assert "left out 2 .heic file(s), which cannot be read here: convert them to JPEG" in caplog.text
    phone = tmp_path / "phone"
    for name in ("cat", "cup"):
        (phone / name).mkdir(parents=True)
        for i in range(6):
            (phone / name / f"IMG_{i:04d}.HEIC").write_bytes(heic)
    (phone / "cup" / "raw.DNG").write_bytes(b"II*\0" + bytes(32))
    with pytest.raises(DatasetError, match=r"too few in: cat \(0 and 6 \.heic\), cup \(0 and 7 "
                                           r"\.dng, \.heic\); \.dng, \.heic files cannot be read here: "
                                           "convert them to JPEG"):
        scan_folder(phone)
