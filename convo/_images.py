"""Image sizes from their headers, and the API's documented image-token formula."""

from __future__ import annotations

import math
import struct

__all__ = ["image_size", "image_tokens"]

# The API scales an image down until its long edge is at most 1568 px and it costs at most
# about 1600 tokens, then charges width * height / 750 tokens (Anthropic's vision docs).
MAX_EDGE = 1568
MAX_IMAGE_TOKENS = 1600
PIXELS_PER_TOKEN = 750


def image_tokens(width: int, height: int) -> int:
    """Tokens the API charges for an image of ``width`` x ``height`` pixels."""
    if width <= 0 or height <= 0:
        return MAX_IMAGE_TOKENS
    scale = min(1.0, MAX_EDGE / max(width, height))
    w, h = width * scale, height * scale
    tokens = w * h / PIXELS_PER_TOKEN
    tokens = min(tokens, MAX_IMAGE_TOKENS)
    return max(1, math.ceil(tokens))


def image_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) read from a PNG, GIF, WebP or JPEG header; None if unrecognized."""
    if data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) >= 24:
        return struct.unpack(">II", data[16:24])
    if data[:6] in (b"GIF87a", b"GIF89a") and len(data) >= 10:
        return struct.unpack("<HH", data[6:10])
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP" and len(data) >= 30:
        return _webp_size(data)
    if data[:2] == b"\xff\xd8":
        return _jpeg_size(data)
    return None


def _webp_size(data: bytes) -> tuple[int, int] | None:
    chunk = data[12:16]
    if chunk == b"VP8X":
        w = int.from_bytes(data[24:27], "little") + 1
        h = int.from_bytes(data[27:30], "little") + 1
        return w, h
    if chunk == b"VP8L":
        bits = int.from_bytes(data[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8 ":
        w, h = struct.unpack("<HH", data[26:30])
        return w & 0x3FFF, h & 0x3FFF
    return None


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    i = 2
    n = len(data)
    while i + 9 < n:
        if data[i] != 0xFF:
            i += 1
            continue
        marker = data[i + 1]
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7 or marker == 0xFF:
            i += 1 if marker == 0xFF else 2
            continue
        length = struct.unpack(">H", data[i + 2 : i + 4])[0]
        # SOF0..SOF15 carry the frame size, except DHT (C4), JPG (C8) and DAC (CC).
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            h, w = struct.unpack(">HH", data[i + 5 : i + 9])
            return w, h
        i += 2 + length
    return None
