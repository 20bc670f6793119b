"""load_rgb: odd-but-valid images become RGB; broken ones raise BadImageError naming the file."""

import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from captioning.data.images import BadImageError, load_rgb


def _save(tmp_path, name, image, **kw):
    path = tmp_path / name
    image.save(path, **kw)
    return path


def _pixels(path):
    image = load_rgb(path)
    assert image.mode == "RGB"
    return np.asarray(image).astype(int)


def test_rgb_png_is_returned_unchanged(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    path = _save(tmp_path, "a.png", Image.fromarray(rgb))
    np.testing.assert_array_equal(_pixels(path), rgb)


def test_grayscale_and_bilevel_become_gray_rgb(tmp_path):
    gray = np.array([[0, 100], [200, 255]], dtype=np.uint8)
    px = _pixels(_save(tmp_path, "g.png", Image.fromarray(gray)))
    np.testing.assert_array_equal(px, np.repeat(gray[..., None], 3, axis=2))
    bits = Image.fromarray(gray > 128).convert("1")
    px = _pixels(_save(tmp_path, "b.png", bits))
    assert px[0, 0].tolist() == [0, 0, 0] and px[1, 1].tolist() == [255, 255, 255]


def test_alpha_is_composited_on_white(tmp_path):
    rgba = np.array([[[255, 0, 0, 255], [0, 0, 0, 0], [0, 0, 255, 128]]], dtype=np.uint8)
    px = _pixels(_save(tmp_path, "a.png", Image.fromarray(rgba, "RGBA")))
    assert px[0, 0].tolist() == [255, 0, 0]
    assert px[0, 1].tolist() == [255, 255, 255]  # fully transparent black shows as white
    assert abs(px[0, 2] - [127, 127, 255]).max() <= 1  # half blue over white
    la = Image.fromarray(np.array([[[50, 0], [50, 255]]], dtype=np.uint8), "LA")
    px = _pixels(_save(tmp_path, "la.png", la))
    assert px[0, 0].tolist() == [255] * 3 and px[0, 1].tolist() == [50] * 3


def test_palette_with_and_without_transparency(tmp_path):
    pal = Image.new("P", (2, 1))
    pal.putpalette([255, 0, 0, 0, 255, 0] + [0] * 762)
    pal.putpixel((1, 0), 1)
    px = _pixels(_save(tmp_path, "p.png", pal))
    assert px[0, 0].tolist() == [255, 0, 0] and px[0, 1].tolist() == [0, 255, 0]
    px = _pixels(_save(tmp_path, "t.png", pal, transparency=1))
    assert px[0, 0].tolist() == [255, 0, 0] and px[0, 1].tolist() == [255, 255, 255]
    px = _pixels(_save(tmp_path, "t.gif", pal, transparency=0))
    assert px[0, 0].tolist() == [255, 255, 255] and px[0, 1].tolist() == [0, 255, 0]


def test_sixteen_bit_png_is_scaled_not_clipped(tmp_path):
    values = np.array([[0, 257 * 128, 65535]], dtype=np.uint16)
    path = _save(tmp_path, "16.png", Image.fromarray(values))
    assert Image.open(path).mode.startswith("I")
    assert _pixels(path)[0, :, 0].tolist() == [0, 128, 255]


def test_cmyk_jpeg_keeps_its_colours(tmp_path):
    red = Image.new("RGB", (16, 16), (220, 30, 30))
    path = _save(tmp_path, "c.jpg", red.convert("CMYK"), quality=95)
    assert Image.open(path).mode == "CMYK"
    assert abs(_pixels(path)[8, 8] - [220, 30, 30]).max() <= 12


def test_one_pixel_image(tmp_path):
    assert _pixels(_save(tmp_path, "1.png", Image.new("RGB", (1, 1), (1, 2, 3)))).tolist() == [[[1, 2, 3]]]


def _png_claiming_size(tmp_path, width, height):
    """A tiny PNG whose header claims ``width`` x ``height``: a decompression bomb's calling card."""
    data = bytearray(_save(tmp_path, "tiny.png", Image.new("L", (1, 1))).read_bytes())
    ihdr = 8 + 8  # signature, then length+type of the IHDR chunk
    data[ihdr:ihdr + 8] = struct.pack(">II", width, height)
    crc = zlib.crc32(bytes(data[ihdr - 4:ihdr + 13]))
    data[ihdr + 13:ihdr + 17] = struct.pack(">I", crc)
    path = tmp_path / f"bomb{width}.png"
    path.write_bytes(bytes(data))
    return path


@pytest.mark.parametrize("side", [10_000, 30_000])  # PIL warns above 89M pixels and errors above 179M
def test_decompression_bomb_is_refused(tmp_path, side):
    path = _png_claiming_size(tmp_path, side, side)
    with pytest.raises(BadImageError) as info:
        load_rgb(path)
    assert "decompression" in info.value.reason


def _bad(path, reason):
    with pytest.raises(BadImageError) as info:
        load_rgb(path)
    assert reason in info.value.reason
    assert info.value.path == str(path)
    assert str(path) in str(info.value) and "on_bad_image=skip" in str(info.value)


def test_missing_empty_and_directory(tmp_path):
    _bad(tmp_path / "nope.jpg", "not found")
    (tmp_path / "empty.png").write_bytes(b"")
    _bad(tmp_path / "empty.png", "empty")
    _bad(tmp_path, "not a regular file")


def test_truncated_jpeg_and_not_an_image(tmp_path):
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    whole = _save(tmp_path, "whole.jpg", Image.fromarray(noise)).read_bytes()
    (tmp_path / "cut.jpg").write_bytes(whole[: len(whole) // 2])
    _bad(tmp_path / "cut.jpg", "truncated")
    (tmp_path / "notes.jpg").write_text("this is not a picture")
    _bad(tmp_path / "notes.jpg", "not an image")


def test_transform_resizes_and_normalises():
    from captioning.data.images import ImageTransform

    wide = Image.new("RGB", (40, 20), (255, 0, 51))
    squash = ImageTransform(16, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    x = squash(wide)
    assert x.shape == (3, 16, 16) and x.dtype.is_floating_point
    assert x[:, 8, 8].tolist() == pytest.approx([1.0, -1.0, 51 / 255 * 2 - 1], abs=1e-6)
    stripes = np.zeros((20, 40, 3), dtype=np.uint8)
    stripes[:, :6] = 255  # white left edge: squash keeps it, center_crop cuts it off
    img = Image.fromarray(stripes)
    assert squash.to_uint8(img)[:, :, 0].min() == 255
    assert ImageTransform(16, resize="center_crop").to_uint8(img)[:, :, 0].max() == 0
    native = np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    out = squash.to_uint8(Image.fromarray(native))  # already 16x16: exactly the pixels
    np.testing.assert_array_equal(out.permute(1, 2, 0).numpy(), native)


@pytest.mark.parametrize("orientation, turn", [(1, lambda a: a), (3, lambda a: np.rot90(a, 2)),
                                               (6, lambda a: np.rot90(a, -1)), (8, lambda a: np.rot90(a, 1))])
def test_exif_orientation_is_applied(tmp_path, orientation, turn):
    # a phone's portrait photo: pixels stored sideways plus an Orientation tag saying how to turn them
    stored = np.zeros((4, 6, 3), dtype=np.uint8)
    stored[0, 0] = (255, 0, 0)  # a red corner shows which way the image was turned
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = _save(tmp_path, "p.png", Image.fromarray(stored), exif=exif)
    np.testing.assert_array_equal(_pixels(path), turn(stored))


def test_a_sideways_jpeg_photo_loads_upright(tmp_path):
    # what a phone writes for a portrait photo: landscape JPEG pixels plus EXIF Orientation 6 (turn 90° clockwise)
    stored = np.zeros((32, 48, 3), dtype=np.uint8)
    stored[:, :24] = (255, 0, 0)  # left half red: after the turn it is the top half
    stored[:, 24:] = (0, 0, 255)
    exif = Image.Exif()
    exif[0x0112] = 6
    path = _save(tmp_path, "portrait.jpg", Image.fromarray(stored), format="JPEG", quality=95, exif=exif.tobytes())
    with Image.open(path) as raw:
        assert raw.size == (48, 32) and raw.getexif()[0x0112] == 6  # stored sideways, as written
    upright = _pixels(path)
    assert upright.shape == (48, 32, 3)  # portrait: 48 rows of 32 pixels
    np.testing.assert_allclose(upright[:20].mean((0, 1)), (255, 0, 0), atol=12)  # red on top (JPEG is lossy)
    np.testing.assert_allclose(upright[28:].mean((0, 1)), (0, 0, 255), atol=12)


def test_unreadable_exif_keeps_the_pixels(tmp_path, monkeypatch):
    from PIL import ImageOps

    rgb = np.random.default_rng(1).integers(0, 256, (3, 4, 3), dtype=np.uint8)
    path = _save(tmp_path, "a.png", Image.fromarray(rgb))
    monkeypatch.setattr(ImageOps, "exif_transpose", lambda image: (_ for _ in ()).throw(SyntaxError("bad EXIF")))
    np.testing.assert_array_equal(_pixels(path), rgb)


def test_batch_normalise_matches_the_formula_in_either_layout():
    import torch

    from captioning.data.images import ImageTransform

    t = ImageTransform(8, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
    batch = torch.randint(0, 256, (2, 3, 8, 8), dtype=torch.uint8)
    mean, std = torch.tensor(t.mean).view(3, 1, 1), torch.tensor(t.std).view(3, 1, 1)
    expected = (batch.double() / 255 - mean.double()) / std.double()
    for channels_last in (False, True):
        out = t.normalize(batch, channels_last=channels_last)
        assert out.dtype == torch.float32
        assert out.is_contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
        torch.testing.assert_close(out.double(), expected, atol=1e-6, rtol=0)
    floats = batch.float()
    t.normalize(floats)  # works on a copy: the caller's tensor is untouched
    assert torch.equal(floats, batch.float())


@pytest.mark.parametrize("interpolation", ["bilinear", "bicubic"])
@pytest.mark.parametrize("resize", ["squash", "center_crop"])
@pytest.mark.parametrize("size_in", [(48, 30), (13, 20)])  # down- and upsampling
def test_tensor_resize_follows_pil(interpolation, resize, size_in):
    # bilinear/bicubic resize the uint8 tensor (torchvision's antialiased kernels): PIL's filter, to a level or two
    from captioning.data.images import ImageTransform
    import torchvision.transforms.functional as TF
    from torchvision.transforms import InterpolationMode

    rng = np.random.default_rng(0)
    smooth = Image.fromarray(rng.integers(0, 256, (6, 5, 3), dtype=np.uint8)).resize(size_in, Image.BICUBIC)
    t = ImageTransform(24, resize=resize, interpolation=interpolation)
    mode = InterpolationMode(interpolation)
    if resize == "squash":  # what to_uint8 did before: PIL resizes the image
        pil = TF.resize(smooth, [24, 24], interpolation=mode, antialias=True)
    else:
        pil = TF.center_crop(TF.resize(smooth, 24, interpolation=mode, antialias=True), 24)
    ours, theirs = t.to_uint8(smooth), TF.pil_to_tensor(pil)
    assert ours.shape == theirs.shape == (3, 24, 24) and ours.dtype == theirs.dtype
    diff = (ours.int() - theirs.int()).abs()
    assert diff.max() <= 2 and (diff > 0).float().mean() < 0.05
    assert "resizer=torch-uint8" in t.key and "resizer=pil" in ImageTransform(24, interpolation="lanczos").key


def test_normalising_an_nhwc_batch_equals_the_nchw_path_bit_for_bit():
    # collate_rows hands over NHWC memory; the row-wise arithmetic must give exactly the per-channel one
    import torch

    from captioning.data.images import ImageTransform

    t = ImageTransform(8)
    nhwc = torch.randint(0, 256, (2, 8, 8, 3), dtype=torch.uint8).permute(0, 3, 1, 2)
    nchw = nhwc.contiguous()
    assert not nhwc.is_contiguous() and nhwc.is_contiguous(memory_format=torch.channels_last)
    for channels_last in (True, False):
        a, b = t.normalize(nhwc, channels_last), t.normalize(nchw, channels_last)
        assert torch.equal(a, b) and a.dtype == torch.float32
        assert a.is_contiguous(memory_format=torch.channels_last) if channels_last else a.is_contiguous()
    expected = (nchw[1, 2, 3, 4].item() / 255 - t.mean[2]) / t.std[2]
    assert t.normalize(nhwc)[1, 2, 3, 4].item() == pytest.approx(expected, abs=1e-6)
