"""Helpers shared by the tests (real files and images, built in memory)."""

from __future__ import annotations

import base64
import struct
import zlib


def png_bytes(width: int, height: int) -> bytes:
    """A real, minimal PNG of the given size (one grey channel, all zero)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    raw = b"".join(b"\x00" + b"\x00" * width for _ in range(height))
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


def png_block(width: int, height: int) -> dict:
    data = base64.b64encode(png_bytes(width, height)).decode()
    return {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": data}}
