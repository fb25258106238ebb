"""Hostile bags (issue 14): strict inspect, pixel budgets, MCAP chunk CRCs, corrupt sqlite3.

Each test here failed on the code before the fix it guards; the docstrings say what it was.
"""

from __future__ import annotations

import io
import sqlite3
import struct
import time

import numpy as np
import pytest
from hostile_images import png, png_header_only
from mcap.reader import make_reader

from world_monitor.cli import main
from world_monitor.data.bag import BagError, codec, export_episode_bag, import_episode_bag
from world_monitor.data.bag.codec import Rejected, encode_compressed
from world_monitor.data.inspect import inspect_path


class _Compressed:
    def __init__(self, data: bytes, fmt: str = "png") -> None:
        self.data = np.frombuffer(data, np.uint8)
        self.format = fmt


# ---- item 4: inspect --strict ------------------------------------------------------------------


def test_strict_inspect_fails_when_messages_are_unreadable(tmp_path, make_ep, capsys):
    """Before: a bag whose storage held fewer messages than its metadata (read 0 of N, or a
    read error part-way) reported ``accounted: true`` and ``--strict`` exited 0."""
    path = export_episode_bag(make_ep(0, length=6, size=8), tmp_path / "b", storage="sqlite3")
    db = next(path.glob("*.db3"))
    con = sqlite3.connect(db)
    con.execute("DELETE FROM messages")
    con.commit()
    con.close()
    rep = inspect_path(path)
    assert rep["messages_read"] == 0 and rep["messages_in_metadata"] > 0
    assert rep["accounted"] is False
    assert main(["inspect", str(path), "--strict"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--strict" in err[0] and "0 of" in err[0], err
    assert main(["inspect", str(path)]) == 0  # without --strict it is a report, not a failure


def test_strict_inspect_fails_on_rejected_messages_with_exit_2(tmp_path, rawbag, capsys):
    """Before: exit 1 and no line saying why; now exit 2 and one line naming the reasons."""

    def depth(i, ns, frame):
        return rawbag.image(ns, frame[:, :, 0].astype(np.uint16), "16UC1") if i == 1 else None

    path = rawbag.write(tmp_path / "b", rawbag.simple(4, image_fn=depth)[0])
    assert main(["inspect", str(path), "--strict"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "bad_encoding" in err[0] and "Traceback" not in err[0]


# ---- item 6: pixel budget ---------------------------------------------------------------------


def test_compressed_image_over_pixel_budget_is_rejected_from_its_header():
    """Before: a 5000x5000 PNG (25 Mpx) was decoded in full; a header claiming 60000x60000 was
    rejected only because PIL's own bomb check raised ('undecodable'), not by our budget."""
    assert codec.MAX_IMAGE_PIXELS >= 3840 * 2160  # 4K cameras must pass
    big = _Compressed(png(5000, 5000))
    with pytest.raises(Rejected) as info:
        codec.decode_compressed_image(big)
    assert info.value.reason == "too_large" and "5000x5000" in info.value.detail
    t0 = time.perf_counter()
    with pytest.raises(Rejected) as info:
        codec.decode_compressed_image(_Compressed(png_header_only(60000, 60000)))
    assert info.value.reason == "too_large"
    assert time.perf_counter() - t0 < 1.0
    # a budget can be lowered per call (the node's parameter); within budget decodes as before
    small = _Compressed(encode_compressed(np.zeros((40, 30, 3), np.uint8), "png"))
    assert codec.decode_compressed_image(small).shape == (40, 30, 3)
    with pytest.raises(Rejected, match="too_large"):
        codec.decode_compressed_image(small, max_pixels=1000)


def test_4k_jpeg_is_within_the_budget():
    frame = np.zeros((2160, 3840, 3), np.uint8)
    assert codec.decode_compressed_image(
        _Compressed(encode_compressed(frame, "jpeg"), "jpeg")
    ).shape == (
        2160,
        3840,
        3,
    )


def test_compressed_formats_other_than_png_jpeg_are_refused():
    """Before: any format PIL could open (TIFF, BMP, ICO, EPS via Ghostscript ...) was decoded."""
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buf, format="BMP")
    with pytest.raises(Rejected) as info:
        codec.decode_compressed_image(_Compressed(buf.getvalue(), "bmp"))
    assert info.value.reason == "bad_encoding"


class _Raw:
    def __init__(self, h: int, w: int, step: int, data: np.ndarray, encoding: str = "mono8"):
        self.height, self.width, self.step, self.data, self.encoding = h, w, step, data, encoding


def test_raw_image_size_must_agree_with_its_data_and_budget():
    """Before: trailing bytes beyond step*height were silently ignored, and a frame of any
    pixel count was accepted."""
    ok = _Raw(4, 4, 4, np.zeros(16, np.uint8))
    assert codec.decode_image(ok).shape == (4, 4, 3)
    with pytest.raises(Rejected) as info:
        codec.decode_image(_Raw(4, 4, 4, np.zeros(20, np.uint8)))
    assert info.value.reason == "bad_size" and "20" in info.value.detail
    n = codec.MAX_IMAGE_PIXELS + 1
    with pytest.raises(Rejected) as info:
        codec.decode_image(_Raw(1, n, n, np.zeros(n, np.uint8)))
    assert info.value.reason == "too_large"


def test_inspect_counts_oversized_frames_without_decoding_them(tmp_path, rawbag):
    """Before: 16 frames of 9000x9000 PNG made inspect take ~54 s; each is now rejected from
    its header (a 5000x5000 frame keeps the test small) and counted."""

    def big(i, ns, frame):
        return rawbag.compressed(ns, data) if i in (1, 2) else rawbag.compressed(ns, ok(frame))

    data = png(5000, 5000)

    def ok(frame):
        return encode_compressed(frame, "png")

    path = rawbag.write(tmp_path / "b", rawbag.simple(4, image_fn=big)[0])
    rep = inspect_path(path)
    assert rep["accounted"] and rep["topics"]["/cam"]["rejected"] == {"too_large": 2}


# ---- item 10: MCAP chunk CRCs -----------------------------------------------------------------


def _flip_in_chunk(mcap_path, rel: float = 0.5) -> None:
    """Flip one bit inside the data of the first chunk (not in any header field)."""
    with mcap_path.open("rb") as f:
        ci = make_reader(f).get_summary().chunk_indexes[0]
    data = bytearray(mcap_path.read_bytes())
    start = ci.chunk_start_offset + ci.chunk_length - ci.compressed_size
    data[start + int(ci.compressed_size * rel)] ^= 0x10
    mcap_path.write_bytes(bytes(data))


def test_exported_mcap_has_chunk_crcs(tmp_path, make_ep):
    path = export_episode_bag(make_ep(0, length=5, size=8), tmp_path / "b")
    with next(path.glob("*.mcap")).open("rb") as f:
        reader = make_reader(f, validate_crcs=True)
        crcs = []
        for ci in reader.get_summary().chunk_indexes:
            f.seek(ci.chunk_start_offset + 9 + 24)
            crcs.append(struct.unpack("<I", f.read(4))[0])
        assert crcs and all(crcs)
        assert sum(1 for _ in reader.iter_messages()) > 0


@pytest.mark.parametrize("rel", [0.1, 0.5, 0.9])
def test_byte_flip_inside_an_mcap_chunk_is_a_counted_rejection(tmp_path, make_ep, rel):
    """Before: the flipped bit was read as valid data (30 of 40 random flips accepted)."""
    path = export_episode_bag(make_ep(0, length=6, size=8), tmp_path / "b")
    clean = inspect_path(path)
    _flip_in_chunk(next(path.glob("*.mcap")), rel)
    rep = inspect_path(path)
    assert rep["read_error"] is None and rep["accounted"], rep
    assert rep["integrity"]["corrupt_chunks"] == 1
    assert rep["rejected"] == clean["messages_read"]  # the bag's only chunk: every message
    cam = rep["topics"]["/camera/image_raw"]
    assert (
        cam["rejected"] == {"corrupt_chunk": 6}
        and "CRC" in cam["rejection_examples"]["corrupt_chunk"]
    )
    with pytest.raises(BagError) as info:
        import_episode_bag(path)
    assert info.value.kind == "corrupt_chunk"


def test_byte_flip_in_the_mcap_summary_is_a_clean_error(tmp_path, make_ep):
    """Before: a flip in the summary (chunk index, channel table) was trusted."""
    path = export_episode_bag(make_ep(0, length=6, size=8), tmp_path / "b")
    f = next(path.glob("*.mcap"))
    data = bytearray(f.read_bytes())
    summary_start = struct.unpack_from("<Q", data, len(data) - 8 - 29 + 9)[0]
    data[summary_start + 20] ^= 0x01
    f.write_bytes(bytes(data))
    with pytest.raises(BagError, match="summary section CRC mismatch"):
        inspect_path(path)


def test_corrupt_sqlite_db_is_a_readable_error(tmp_path, make_ep):
    """Before: a corrupt page reached the user as 'try `mcap recover`' on a sqlite3 bag, or
    not at all; now PRAGMA quick_check names the damage."""
    path = export_episode_bag(make_ep(0, length=30, size=32), tmp_path / "b", storage="sqlite3")
    db = next(path.glob("*.db3"))
    data = bytearray(db.read_bytes())
    page = 4096
    for off in range(2 * page, len(data), page):  # b-tree page headers of the data pages
        data[off] = 0x7F
    db.write_bytes(bytes(data))
    with pytest.raises(BagError) as info:
        inspect_path(path)
    msg = str(info.value)
    assert "b.db3" in msg or str(path) in msg
    assert "sqlite3" in msg and "mcap recover" not in msg
