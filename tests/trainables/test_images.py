"""Image files are decoded in full, converted to RGB by one documented rule, bounded in size,
and checked once: a re-run decodes only what changed since the folder last passed."""

import io
import json
import os
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from trainables import images
from trainables.data import DataError, load_imagefolder_task, open_image
from trainables.images import MAX_IMAGE_PIXELS, ImageProblem, load_rgb


def _save(path, image, fmt=None):
    image.save(path, fmt)
    return path


def test_16_bit_grayscale_is_scaled_not_clipped(tmp_path):
    values = np.array([[0, 257, 32768, 65535]], dtype=np.uint16)
    for name, image in (
        ("le.png", Image.fromarray(values)),  # I;16
        ("be.tif", Image.frombytes("I;16B", (4, 1), values.astype(">u2").tobytes())),
    ):
        rgb = load_rgb(_save(tmp_path / name, image))
        assert rgb.mode == "RGB"
        assert np.asarray(rgb)[0, :, 0].tolist() == [0, 1, 128, 255]


def test_32_bit_integers_in_16_bit_range_are_scaled_and_beyond_refused(tmp_path):
    fine = _save(tmp_path / "i.tif", Image.fromarray(np.array([[0, 65535]], dtype=np.int32)))
    assert np.asarray(load_rgb(fine))[0, :, 0].tolist() == [0, 255]
    beyond = _save(tmp_path / "big.tif", Image.fromarray(np.array([[-1, 5]], dtype=np.int32)))
    with pytest.raises(ImageProblem, match="beyond 16 bits"):
        load_rgb(beyond)


def test_float_images_are_refused(tmp_path):
    path = _save(tmp_path / "f.tif", Image.fromarray(np.ones((4, 4), dtype=np.float32)))
    with pytest.raises(ImageProblem, match="32-bit float pixels"):
        load_rgb(path)


def test_transparency_is_composited_onto_white(tmp_path):
    rgba = Image.new("RGBA", (2, 1))
    rgba.putpixel((0, 0), (255, 0, 0, 0))  # fully transparent red: shown as white
    rgba.putpixel((1, 0), (255, 0, 0, 255))
    assert list(load_rgb(_save(tmp_path / "a.png", rgba)).getdata()) == [(255, 255, 255), (255, 0, 0)]
    la = Image.new("LA", (1, 1), (0, 128))  # half-transparent black over white
    assert load_rgb(_save(tmp_path / "la.png", la)).getpixel((0, 0)) in ((127, 127, 127), (128, 128, 128))
    palette = Image.new("P", (1, 1), 0)
    palette.putpalette([0, 0, 0] * 256)
    palette.info["transparency"] = 0
    assert load_rgb(_save(tmp_path / "p.png", palette)).getpixel((0, 0)) == (255, 255, 255)


@pytest.mark.parametrize("mode", ["1", "L", "P", "CMYK", "YCbCr", "RGB"])
def test_other_modes_become_rgb(tmp_path, mode):
    fmt = "JPEG" if mode in ("CMYK", "YCbCr") else "TIFF"
    path = _save(tmp_path / f"x.{fmt.lower()}", Image.new(mode, (3, 2)), fmt)
    image = load_rgb(path)
    assert image.mode == "RGB" and image.size == (3, 2)


def test_training_opens_images_the_way_they_were_checked(tmp_path):
    path = _save(tmp_path / "d.png", Image.fromarray(np.full((2, 2), 65535, dtype=np.uint16)))
    assert open_image(str(path)).getpixel((0, 0)) == (255, 255, 255) == load_rgb(path).getpixel((0, 0))
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\nnope")
    with pytest.raises(DataError, match="bad.png: corrupt or unreadable image"):
        open_image(str(tmp_path / "bad.png"))


def _png_header(width, height):
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0")) + chunk(b"IEND", b"")


@pytest.mark.parametrize("side", [10_000, 20_000, 100_000])
def test_decompression_bombs_are_refused_by_pixel_count_without_a_warning(tmp_path, side, capfd):
    path = tmp_path / "bomb.png"
    path.write_bytes(_png_header(side, side))
    with images.quiet_decoders(), pytest.raises(ImageProblem, match=f"{MAX_IMAGE_PIXELS:,}"):
        load_rgb(path)
    assert capfd.readouterr().err == ""


def test_truncated_files_fail_the_check_that_verify_passed(tmp_path):
    out = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(out, "JPEG")
    path = tmp_path / "cut.jpg"
    path.write_bytes(out.getvalue()[: len(out.getvalue()) * 2 // 3])
    with Image.open(path) as image:
        image.verify()  # the old check: headers only
    with pytest.raises(ImageProblem, match="truncated"):
        load_rgb(path)


def _folder(root, per_class=4):
    for c, cls in enumerate(("a", "b")):
        (root / cls).mkdir(parents=True)
        for i in range(per_class):
            pixels = np.full((8, 8, 3), (10 * i + c) % 256, dtype=np.uint8)
            Image.fromarray(pixels).save(root / cls / f"{i}.png")
    return root


@pytest.fixture
def decodes(monkeypatch, tmp_path):
    """Counts the files the check decodes, with a cache of its own."""
    monkeypatch.setenv("ORCHESTRATOR_CACHE_DIR", str(tmp_path / "cache"))
    seen = []
    real = images.image_problem

    def counting(path):
        seen.append(path)
        return real(path)

    monkeypatch.setattr(images, "image_problem", counting)
    return seen


def test_a_rerun_decodes_only_what_changed(tmp_path, decodes):
    root = _folder(tmp_path / "data")
    load_imagefolder_task(root)
    assert len(decodes) == 8
    decodes.clear()
    load_imagefolder_task(root)
    assert decodes == []
    changed = root / "a" / "1.png"
    os.utime(changed, ns=(1, 1))
    load_imagefolder_task(root)
    assert decodes == [str(changed)]
    assert not [p for p in (tmp_path / "cache").rglob("*") if p.suffix == ".tmp"]  # written whole


def test_a_cache_is_written_only_when_the_whole_folder_passed(tmp_path, decodes):
    root = _folder(tmp_path / "data")
    (root / "b" / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\nnope")
    with pytest.raises(DataError, match="bad.png"):
        load_imagefolder_task(root)
    assert not (tmp_path / "cache").exists()
    (root / "b" / "bad.png").unlink()
    load_imagefolder_task(root)
    decodes.clear()
    (root / "b" / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\nnope")  # a new file is decoded, never assumed good
    with pytest.raises(DataError, match="bad.png"):
        load_imagefolder_task(root)
    assert decodes == [str(root / "b" / "bad.png")]


@pytest.mark.parametrize(
    "spoil",
    [
        lambda path: path.write_bytes(b"\x00garbage"),
        lambda path: path.write_text(json.dumps({"version": "0", "key": "x", "files": {}})),
        lambda path: path.write_text(json.dumps([1, 2])),
        lambda path: path.write_text(
            json.dumps(
                {
                    **json.loads(path.read_text()),
                    "files": {k: ["big", 0] for k in json.loads(path.read_text())["files"]},
                }
            )
        ),
        lambda path: path.write_text(json.dumps({**json.loads(path.read_text()), "version": "another rule"})),
    ],
    ids=["not_json", "old_version", "not_a_mapping", "bad_stamps", "other_rule"],
)
def test_a_corrupt_or_foreign_cache_is_ignored(tmp_path, decodes, spoil):
    root = _folder(tmp_path / "data")
    load_imagefolder_task(root)
    (cache_file,) = (tmp_path / "cache").rglob("*.json")
    spoil(cache_file)
    decodes.clear()
    load_imagefolder_task(root)
    assert len(decodes) == 8


def test_an_unwritable_cache_is_no_error(tmp_path, monkeypatch):
    (tmp_path / "cache").write_text("a file where the cache directory should be")
    monkeypatch.setenv("ORCHESTRATOR_CACHE_DIR", str(tmp_path / "cache"))
    assert len(load_imagefolder_task(_folder(tmp_path / "data")).train) == 6


def test_the_first_bad_image_is_reported_whatever_the_order_of_decoding(tmp_path, decodes):
    root = _folder(tmp_path / "data", per_class=40)
    for name in ("a/7.png", "a/30.png", "b/2.png"):
        (root / name).write_bytes(b"not an image")
    with pytest.raises(DataError, match=r"a/30\.png"):  # sorted by path: a/30 before a/7
        load_imagefolder_task(root)
