"""Hostile compressed images for the decoder-limit tests and ``benchmarks/adversarial.py``:
valid PNG/JPEG canvases of a given size and a PNG whose header alone claims a canvas (what a
decompression bomb looks like to a header check). One home, so the tests and the benchmark
craft the same bytes."""

from __future__ import annotations

import io
import struct
import zlib

__all__ = ["jpeg", "png", "png_header_only"]


def png(h: int, w: int, level: int = 1) -> bytes:
    """A valid grey PNG of h x w pixels (highly compressible, so a bag of them stays small)."""
    from PIL import Image

    buf = io.BytesIO()
    Image.new("L", (w, h), 90).save(buf, format="PNG", compress_level=level)
    return buf.getvalue()


def jpeg(h: int, w: int) -> bytes:
    """A valid grey JPEG of h x w pixels."""
    from PIL import Image

    buf = io.BytesIO()
    Image.new("L", (w, h), 90).save(buf, format="JPEG", quality=50)
    return buf.getvalue()


def png_header_only(h: int, w: int) -> bytes:
    """PNG signature + IHDR claiming h x w RGB + one empty IDAT: what a bomb's header says."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b""))
        + chunk(b"IEND", b"")
    )
