"""Pillow work on uploaded images: decode fully, re-encode clean, thumbnail, avatar crop.

Only decode + re-encode stops polyglots (a `GIF89a/*...*/=alert(1)` file passes
every magic-byte sniffer): what is served is always a fresh image written by
Pillow from pixels alone, never the uploaded bytes, so EXIF (GPS included),
comments, ICC profiles and anything appended after the image are gone.
Animated images keep their first frame only (docs/media.md). The upload is
read through a decrypting file object and the renditions come back as bytes,
for the caller to encrypt: no plaintext image touches the disk. These
functions block for up to ~150 ms on a large photo: call them in a thread.
"""

from __future__ import annotations

import ctypes
import dataclasses
import io
import warnings
from typing import IO

from PIL import Image, ImageOps

from secure_link.errors import AppError

THUMBNAIL_PX = 320
_M_MMAP_THRESHOLD = -3  # glibc's malloc.h
_MMAP_FROM_BYTES = 1024 * 1024
AVATAR_PX = 512
_RESAMPLE = Image.Resampling.LANCZOS


@dataclasses.dataclass(frozen=True)
class Output:
    """How a decoded image is written back: Pillow format, MIME type, extension, options."""

    format: str
    content_type: str
    extension: str
    options: tuple[tuple[str, object], ...] = ()


# A GIF is served as a PNG of its first frame: lossless, and honest about not moving.
OUTPUTS = {
    "PNG": Output("PNG", "image/png", ".png"),
    "GIF": Output("PNG", "image/png", ".png"),
    "JPEG": Output("JPEG", "image/jpeg", ".jpg", (("quality", 85),)),
    "WEBP": Output("WEBP", "image/webp", ".webp", (("quality", 85),)),
}


@dataclasses.dataclass(frozen=True)
class Rendition:
    """What will be served: the encoded image and its thumbnail, with the image's type and size."""

    content_type: str
    extension: str
    width: int
    height: int
    image: bytes
    thumbnail: bytes


def invalid_image(reason: str = "The image could not be decoded.") -> AppError:
    """422 for bytes that claim to be an image but do not decode cleanly."""
    return AppError(422, "invalid_image", reason, fields={"file": "is not a valid image"})


def return_freed_pixels_to_the_system() -> None:
    """Make glibc map large allocations, so a decoded image's memory leaves the worker with it.

    glibc raises its mmap threshold after each large free, up to 32 MiB, and
    Pillow's 16 MiB pixel blocks then come from heaps that never shrink: after
    four 40 Mpx uploads a worker kept 550 MiB. A fixed 1 MiB threshold
    (`mallopt`) unmaps them when freed. Other C libraries are left alone.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return
    libc.mallopt(_M_MMAP_THRESHOLD, _MMAP_FROM_BYTES)


def render(source: IO[bytes], decoder: str, avatar: bool, max_pixels: int) -> Rendition:
    """Decode `source` and encode the image and its thumbnail anew; refuse bombs and broken files."""
    output = OUTPUTS[decoder]
    # The filter is the same for every call, so threads interleaving here can
    # at worst leave "error" in place, which is what every call wants anyway.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        with _decode(source, decoder, max_pixels) as image:
            clean = _pixels_only(image, output.format)
            if avatar:
                side = min(AVATAR_PX, *clean.size)
                clean = ImageOps.fit(clean, (side, side), _RESAMPLE)  # a new image: no metadata either
            width, height = clean.size
            encoded = _encoded(clean, output)
            clean.thumbnail((THUMBNAIL_PX, THUMBNAIL_PX), _RESAMPLE)
            thumbnail = _encoded(clean, output)
    return Rendition(output.content_type, output.extension, width, height, encoded, thumbnail)


def _encoded(image: Image.Image, output: Output) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, output.format, **dict(output.options))
    return buffer.getvalue()


def _decode(source: IO[bytes], decoder: str, max_pixels: int) -> Image.Image:
    """Open with one allowed decoder, check the size before decoding, decode fully, apply EXIF rotation."""
    try:
        image = Image.open(source, formats=[decoder])
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise _too_large(max_pixels) from None
    except Exception:  # noqa: BLE001 - any failure to parse untrusted bytes means "not an image"
        raise invalid_image() from None
    try:
        _check_size(image, max_pixels)
        image.load()  # a full decode: verify() passes a JPEG cut in half
        ImageOps.exif_transpose(image, in_place=True)
    except AppError:
        image.close()
        raise
    except Exception:  # noqa: BLE001 - a decoder's failure on untrusted bytes: a broken image
        image.close()
        raise invalid_image("The image is truncated or corrupt.") from None
    return image


def _check_size(image: Image.Image, max_pixels: int) -> None:
    width, height = image.size
    if width < 1 or height < 1:
        raise invalid_image("The image has no pixels.")
    if width * height > max_pixels:
        raise _too_large(max_pixels)


def _too_large(max_pixels: int) -> AppError:
    return AppError(422, "image_too_large", f"The image is over {max_pixels} pixels.",
                    fields={"file": "has too many pixels"})


def _pixels_only(image: Image.Image, output_format: str) -> Image.Image:
    """The decoded pixels, in a mode the output format takes, with no info, EXIF, comment or ICC.

    Pillow's encoders take metadata only from `info` (or from save() arguments,
    which we never pass), so emptying it is enough, and keeps one full-size
    copy per decode instead of two: a 40 Mpx image is 160 MB of pixels.
    """
    mode = _mode_for(image, output_format)
    if image.mode != mode:
        image = image.convert(mode)  # a new image; the decoded one is freed by the caller's `with`
    image.info.clear()
    return image


def _mode_for(image: Image.Image, output_format: str) -> str:
    if output_format == "JPEG":
        return "L" if image.mode in ("1", "L") else "RGB"
    if image.mode in ("L", "LA", "RGB", "RGBA"):
        return image.mode
    if image.mode == "1":
        return "L"
    return "RGBA" if image.has_transparency_data or "A" in image.mode else "RGB"
