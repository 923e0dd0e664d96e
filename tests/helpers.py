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


MODEL = "claude-sonnet-4-6"


def quick_client(sim, **kw):
    """A Client on the simulator whose retry sleeps do not wait."""
    from convo import Client

    return Client(api_key="test", base_url=sim.base_url, model=MODEL, sleep=lambda s: None, **kw)


def quick_aclient(sim, **kw):
    """The async twin of :func:`quick_client`."""
    from convo import AsyncClient

    async def nap(seconds):
        return None

    return AsyncClient(api_key="test", base_url=sim.base_url, model=MODEL, sleep=nap, **kw)
