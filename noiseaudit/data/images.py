"""Decode one image file into a fixed-size RGB uint8 array.

Every mode Pillow opens is brought to 8-bit RGB the same way: 16-bit and
32-bit grayscale are scaled down from the bit depth their values use (8, 10,
12, 14 or 16 bits), transparency is composited onto white,
palettes and CMYK are converted, and EXIF orientation is applied. Whether a
dataset is really grayscale is decided later, from the decoded pixels.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

GRAY_MODES = frozenset({"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"})
LUMA = (0.299, 0.587, 0.114)  # ITU-R 601, as Pillow converts RGB to L
# the bit depths integer gray images are stored at; a 16-bit file's white is that of the smallest that holds its
# largest value (X-ray and microscopy sensors write 10-, 12- or 14-bit data into 16-bit PNG and TIFF)
BIT_DEPTHS = (8, 10, 12, 14, 16)
GRAY_TOLERANCE = 2  # channel spread (levels) still read as gray: lossy codecs such as WebP leave gray pixels 1 apart


def max_pixels() -> int:
    """Images above Pillow's MAX_IMAGE_PIXELS (a decompression-bomb guard) are refused, not decoded."""
    return int(Image.MAX_IMAGE_PIXELS or 2**62)


class DecodeError(Exception):
    """The file is not an image Pillow can decode; ``status`` says why, for the report's status column.

    status is one of ``empty`` (zero bytes), ``not_image`` (not a recognised
    image format), ``too_large`` (over the pixel limit), ``unreadable`` (the
    file's permissions refuse reading) or ``corrupt`` (truncated or damaged).
    """

    def __init__(self, message: str, status: str = "corrupt"):
        super().__init__(message)
        self.status = status


def image_header(path: Path) -> tuple[int, int, str]:
    """Width, height and mode, read from the header without decoding pixels."""
    try:
        with Image.open(path) as img:
            return img.width, img.height, img.mode
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise _decode_error(path, exc) from None


def _full_scale(top: float) -> float:
    """The white level of integer gray pixels whose largest value is ``top``: that of the smallest of
    :data:`BIT_DEPTHS` that holds it (12-bit sensor data in a 16-bit file is 4095, not 65535), or ``top``."""
    return next((2.0**bits - 1 for bits in BIT_DEPTHS if top <= 2.0**bits - 1), top)


def _to_rgb(img: Image.Image) -> Image.Image:
    mode = img.mode
    if mode in ("I", "F") or mode.startswith("I;16"):
        arr = np.nan_to_num(np.asarray(img).astype(np.float32), nan=0.0)  # a float TIFF's NaN (masked) is black
        if mode == "F":
            arr = arr * 255.0 if arr.max(initial=0) <= 1.0 else arr
        else:
            arr = arr * (255.0 / _full_scale(float(arr.max(initial=0))))
        return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "L").convert("RGB")
    # a palette, RGB or L image may name one transparent colour (PNG's tRNS chunk) instead of an alpha channel
    has_alpha = mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode in ("P", "RGB", "L") and "transparency" in img.info)
    if has_alpha:
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")


def decode_image(path: Path, size: int) -> np.ndarray:
    """Decode ``path`` to an (size, size, 3) uint8 array.

    Raises :class:`DecodeError` for anything Pillow cannot decode, truncated
    files and decompression bombs included.
    """
    try:
        with Image.open(path) as img:
            if img.width * img.height > max_pixels():
                raise Image.DecompressionBombError("too many pixels")
            img.load()
            img = ImageOps.exif_transpose(img) or img
            rgb = _to_rgb(img)
        if rgb.size != (size, size):
            rgb = rgb.resize((size, size), Image.Resampling.BILINEAR, reducing_gap=None)
        return np.asarray(rgb, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise _decode_error(path, exc) from None


def _decode_error(path: Path, exc: BaseException) -> DecodeError:
    if isinstance(exc, PermissionError):
        return DecodeError("cannot read the file (permission denied)", "unreadable")
    try:
        empty = path.stat().st_size == 0
    except OSError:
        empty = False
    if empty:
        return DecodeError("empty file (0 bytes)", "empty")
    if isinstance(exc, Image.DecompressionBombError):
        return DecodeError(_describe(exc), "too_large")
    if isinstance(exc, UnidentifiedImageError):
        return DecodeError(_describe(exc), "not_image")
    return DecodeError(_describe(exc), "corrupt")


def _describe(exc: BaseException) -> str:
    if isinstance(exc, Image.DecompressionBombError):
        return f"image is too large to decode safely (over {max_pixels():,} pixels)"
    if isinstance(exc, UnidentifiedImageError):
        return "not a recognised image file"
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return f"cannot decode image ({text})"
