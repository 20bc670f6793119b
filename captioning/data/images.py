"""Load any image file as an 8-bit RGB PIL image, or fail with a BadImageError that says what to do."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

FIX_HINT = "replace or re-download the file, or set on_bad_image=skip to drop it from the run"

# Modes that carry transparency; they are composited on white so that a transparent background
# looks like paper rather than like whatever colour the hidden pixels happen to have (often black).
_ALPHA_MODES = {"RGBA", "LA", "PA", "RGBa", "La"}
_SIXTEEN_BIT_MODES = {"I;16", "I;16L", "I;16B", "I;16N", "I"}


class BadImageError(ValueError):
    """An image file that cannot be used; ``path`` names it and the message says why and what to do."""

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"bad image {self.path}: {reason}; {FIX_HINT}")


def load_rgb(path: str | os.PathLike) -> Image.Image:
    """Decode ``path`` fully and return it as an RGB image (grayscale, alpha, palette, 16-bit, CMYK converted)."""
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
                return image.copy()  # detached from the file, which the with-block closes
    except Image.DecompressionBombError as e:
        raise BadImageError(path, f"refused as a decompression bomb ({e})") from None
    except UnidentifiedImageError:
        raise BadImageError(path, "not an image file PIL can read") from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        if isinstance(e, BadImageError):
            raise
        # Truncated or corrupt data surfaces here (e.g. "image file is truncated").
        raise BadImageError(path, f"corrupt or truncated image data ({e})") from None


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
