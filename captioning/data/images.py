"""Load any image file as an 8-bit RGB PIL image (or fail with a BadImageError that says what to do),
and turn it into the normalised tensor an encoder reads."""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torchvision.transforms.functional as TF
import torchvision.transforms.v2.functional as F2
from PIL import Image, ImageOps, UnidentifiedImageError
from torchvision.transforms import InterpolationMode

FIX_HINT = "replace or re-download the file, or set on_bad_image=skip to drop it from the run"

# Modes that carry transparency; they are composited on white so that a transparent background
# looks like paper rather than like whatever colour the hidden pixels happen to have (often black).
_ALPHA_MODES = {"RGBA", "LA", "PA", "RGBa", "La"}
_SIXTEEN_BIT_MODES = {"I;16", "I;16L", "I;16B", "I;16N", "I"}
# Filters resized on the uint8 tensor (torchvision's antialiased kernels); the rest go through PIL.
_TENSOR_MODES = {InterpolationMode.BILINEAR, InterpolationMode.BICUBIC}


class BadImageError(ValueError):
    """An image file that cannot be used; ``path`` names it and the message says why and what to do."""

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"bad image {self.path}: {reason}; {FIX_HINT}")


def load_rgb(path: str | os.PathLike) -> Image.Image:
    """Decode ``path`` fully and return it upright (EXIF orientation applied) as an RGB image (grayscale,
    alpha, palette, 16-bit, CMYK converted)."""
    path = Path(path)
    if not path.is_file():
        raise BadImageError(path, "file not found" if not path.exists() else "not a regular file")
    if path.stat().st_size == 0:
        raise BadImageError(path, "file is empty (0 bytes)")
    image = _decode(path)
    return to_rgb(image)


def _decode(path: Path) -> Image.Image:
    """Open and fully decode ``path``; refuse decompression bombs before decoding any pixel."""
    limit = Image.MAX_IMAGE_PIXELS
    try:
        with warnings.catch_warnings():
            # PIL only warns between MAX_IMAGE_PIXELS and twice that; we refuse the whole range.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                width, height = image.size
                if limit is not None and width * height > limit:
                    raise BadImageError(path, f"{width}x{height} pixels exceeds the decompression-bomb "
                                              f"limit of {limit} pixels (PIL.Image.MAX_IMAGE_PIXELS)")
                image.load()
                # phones store portrait photos sideways with an EXIF Orientation tag: turn them upright
                upright = _upright(image)
                return upright if upright is not image else image.copy()  # detached from the closed file
    except Image.DecompressionBombError as e:
        raise BadImageError(path, f"refused as a decompression bomb ({e})") from None
    except UnidentifiedImageError:
        raise BadImageError(path, "not an image file PIL can read") from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        if isinstance(e, BadImageError):
            raise
        # Truncated or corrupt data surfaces here (e.g. "image file is truncated").
        raise BadImageError(path, f"corrupt or truncated image data ({e})") from None


def _upright(image: Image.Image) -> Image.Image:
    """``image`` turned by its EXIF Orientation tag; as stored when the EXIF data cannot be read."""
    try:
        return ImageOps.exif_transpose(image)
    except Exception:  # noqa: BLE001 - malformed EXIF must not lose an image whose pixels decode
        return image


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert a decoded PIL image of any mode to 8-bit RGB."""
    mode = image.mode
    if mode == "RGB":
        return image
    if mode in _SIXTEEN_BIT_MODES:
        return _sixteen_bit_to_rgb(image)
    if mode == "F":
        return Image.fromarray(np.clip(np.asarray(image), 0, 255).astype(np.uint8)).convert("RGB")
    if mode == "P":
        mode = "RGBA" if "transparency" in image.info else "RGB"
        image = image.convert(mode)
    if mode in _ALPHA_MODES:
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    # L, 1, CMYK (PIL undoes Adobe's inverted CMYK itself), YCbCr, LAB, HSV.
    return image.convert("RGB")


def _sixteen_bit_to_rgb(image: Image.Image) -> Image.Image:
    """Scale 16-bit grayscale (0..65535) to 8 bits; PIL's own convert would clip everything above 255."""
    values = np.asarray(image, dtype=np.float64)
    values = np.clip(values, 0, 65535) / 257.0
    return Image.fromarray(np.rint(values).astype(np.uint8)).convert("RGB")


@dataclass(frozen=True)
class ImageTransform:
    """RGB PIL image -> normalised float tensor [3, size, size], split in two halves so that data-loader
    workers can ship compact uint8 tensors and the main process normalises whole batches at once."""

    size: int
    resize: str = "squash"            # squash: whole image to size x size; center_crop: shorter side, then crop
    interpolation: str = "bicubic"
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)

    def to_uint8(self, image: Image.Image) -> torch.Tensor:
        """Resize an RGB image and return it as uint8 [3, size, size].

        Bilinear and bicubic resize the uint8 tensor with torchvision's antialiased uint8 kernels, which
        follow PIL's filters (pixels equal or 1-2 levels apart; ``key`` names the resizer) in less time;
        the other filters (box, hamming, lanczos, nearest) resize the PIL image. The result keeps PIL's HWC
        memory (a [3, S, S] view of it), which ``collate_rows`` stacks without transposing.
        """
        if image.size == (self.size, self.size):
            return TF.pil_to_tensor(image)  # already the right size (e.g. the synthetic scenes): no resampling
        mode = InterpolationMode(self.interpolation)
        if mode in _TENSOR_MODES:
            image, resize, crop = TF.pil_to_tensor(image), F2.resize, F2.center_crop
        else:
            resize, crop = TF.resize, TF.center_crop
        if self.resize == "squash":
            image = resize(image, [self.size, self.size], interpolation=mode, antialias=True)
        else:
            image = crop(resize(image, self.size, interpolation=mode, antialias=True), self.size)
        return image if isinstance(image, torch.Tensor) else TF.pil_to_tensor(image)

    def normalize(self, batch: torch.Tensor, channels_last: bool = False) -> torch.Tensor:
        """uint8 [B, 3, S, S] (or [3, S, S]) -> float32 (x / 255 - mean) / std.

        Computed as x * (1 / (255 std)) - mean / std (equal to (x / 255 - mean) / std within 2e-7). A batch
        in NHWC memory (``collate_rows``) is computed as rows of W x 3 values, each channel's scale and shift
        repeated along the row (a per-channel broadcast over the innermost 3 values would not vectorise),
        and comes out channels-last as it is; an NCHW batch is computed per channel and copied to
        channels-last if asked. Both give the same numbers bit for bit.
        """
        std = torch.tensor(self.std, device=batch.device)
        scale, shift = 1.0 / (255.0 * std), torch.tensor(self.mean, device=batch.device) / std
        if batch.dim() == 4 and batch.is_contiguous(memory_format=torch.channels_last) and not batch.is_contiguous():
            n, _, h, w = batch.shape
            rows = batch.permute(0, 2, 3, 1).reshape(n * h, w * 3)
            x = torch.mul(rows, scale.repeat(w)).sub_(shift.repeat(w)).view(n, h, w, 3).permute(0, 3, 1, 2)
            return x if channels_last else x.contiguous()
        x = batch.to(dtype=torch.float32, memory_format=torch.contiguous_format, copy=True)
        x = x.mul_(scale.view(3, 1, 1)).sub_(shift.view(3, 1, 1))
        return x.contiguous(memory_format=torch.channels_last) if channels_last and batch.dim() == 4 else x

    def __call__(self, image: Image.Image) -> torch.Tensor:
        """Normalised float tensor [3, size, size] of an RGB PIL image."""
        return self.normalize(self.to_uint8(image))

    @property
    def key(self) -> str:
        """Every parameter, for cache keys."""
        fmt = lambda xs: ",".join(f"{x:.6g}" for x in xs)  # noqa: E731
        resizer = "torch-uint8" if InterpolationMode(self.interpolation) in _TENSOR_MODES else "pil"
        return (f"size={self.size}|resize={self.resize}|interp={self.interpolation}|resizer={resizer}"
                f"|mean={fmt(self.mean)}|std={fmt(self.std)}")
