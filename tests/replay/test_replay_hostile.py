"""Hostile bags through replay (issue 14): clock jumps, oversized frames, corrupt MCAP chunks.

Each test failed on the code before its fix; the docstrings say how.
"""

from __future__ import annotations

import io
import time

import numpy as np
import pytest
from conftest import FPS, make_episode
from mcap.reader import make_reader
from rosbags.rosbag2 import StoragePlugin, Writer

from world_monitor.data.bag.codec import COMPRESSED, FLOAT_ARRAY, get_store, ns_to_time
from world_monitor.data.episode import Episode, EpisodeMeta
from world_monitor.replay import BundleMismatch, replay_bag


def _replay(bag, monitor, out=None, **kw):
    kw.setdefault("progress", False)
    return replay_bag(bag, out, monitor=monitor, **kw)


@pytest.mark.parametrize("jump", [2000.0, 1.76e9])
def test_clock_jump_is_bounded_and_reported_once(make_bag, fake_monitor, jump):
    """Before: the heartbeat walked every 100 ms of the gap: 2000 s -> 20 000 lock samples
    (seconds of work), an NTP-style 1.76e9 s jump -> never finished."""
    ep = make_episode(length=20)
    ep.stamps[10:] += jump
    t0 = time.perf_counter()
    s = _replay(make_bag(ep), fake_monitor(), write_bag=False).summary
    assert time.perf_counter() - t0 < 20
    # work bounded by messages (+ the short simulated stretch after each message), not the gap
    assert s["lock"]["samples"] < 400, s["lock"]
    gaps = s["clock"]["gaps"]
    assert gaps["count"] == 1 and len(gaps["examples"]) == 1
    gap = gaps["examples"][0]
    assert gap["seconds"] == pytest.approx(jump + 1 / FPS, rel=1e-9)
    assert gap["start"] == pytest.approx(100.0 + 9 / FPS)
    # the gap is reported as what it is: stale inputs, lock engaged at the heartbeat after it
    assert gap["lock"] is True and gap["reason"].startswith("stale")
    assert s["messages"]["accounted"]
    assert s["clock"]["duration"] == pytest.approx(jump + 19 / FPS, rel=1e-6)


def test_a_normal_bag_has_no_gaps(make_bag, fake_monitor):
    s = _replay(make_bag(make_episode(length=20)), fake_monitor(), write_bag=False).summary
    assert s["clock"]["gaps"] == {"count": 0, "examples": []}


def _png(h: int, w: int) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (w, h), (25, 25, 25)).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def _compressed_bag(path, frame: bytes, n: int = 4):
    """CompressedImage frames (all ``frame``) + Float32MultiArray chunks [1, 4], 10 Hz."""
    store = get_store("jazzy")
    t = store.types
    dim = t["std_msgs/msg/MultiArrayDimension"]
    layout = t["std_msgs/msg/MultiArrayLayout"](
        dim=[dim(label="h", size=1, stride=4), dim(label="a", size=4, stride=4)], data_offset=0
    )
    with Writer(path, version=9, storage_plugin=StoragePlugin.MCAP) as w:
        ci = w.add_connection("/cam", COMPRESSED, typestore=store)
        ca = w.add_connection("/chunk", FLOAT_ARRAY, typestore=store)
        for i in range(n):
            ns = round((100.0 + i / FPS) * 1e9)
            header = t["std_msgs/msg/Header"](stamp=ns_to_time(store, ns), frame_id="cam")
            img = t[COMPRESSED](header=header, format="png", data=np.frombuffer(frame, np.uint8))
            w.write(ci, ns, store.serialize_cdr(img, COMPRESSED))
            arr = t[FLOAT_ARRAY](layout=layout, data=np.zeros(4, np.float32))
            w.write(ca, ns, store.serialize_cdr(arr, FLOAT_ARRAY))
    return path


def test_oversized_compressed_frames_are_rejected_before_decoding(tmp_path, fake_monitor):
    """Before: a 5000x5000 PNG frame (the issue: 16 x 9000x9000 -> >60 s) was decoded in
    full; now it is refused from its header and counted, and the lock stays engaged."""
    bag = _compressed_bag(tmp_path / "big", _png(5000, 5000))
    t0 = time.perf_counter()
    with pytest.raises(BundleMismatch, match="frames decodes \\(too_large"):
        _replay(bag, fake_monitor(), write_bag=False)  # a whole camera of them: one line
    s = _replay(bag, fake_monitor(), write_bag=False, check_fit=False).summary
    assert time.perf_counter() - t0 < 10
    assert s["messages"]["rejected_before_session"]["image"] == {"too_large": 4}
    assert s["lock"]["first_open"] is None and s["lock"]["final"] is True
    assert s["messages"]["accounted"]


def _big_episode(length: int = 24, size: int = 256) -> Episode:
    """Frames large enough that the MCAP writer closes several chunks (it closes at 1 MiB)."""
    frames = np.full((length, size, size, 3), 25, np.uint8)
    actions = np.zeros((length, 4), np.float32)
    stamps = 100.0 + np.arange(length, dtype=np.float64) / FPS
    meta = EpisodeMeta(scenario="synthetic", seed=0, fps=FPS, success=True)
    return Episode(frames=frames, actions=actions, stamps=stamps, meta=meta)


def test_corrupt_chunk_is_counted_and_closes_the_lock(make_bag, fake_monitor):
    """Before: a flipped bit in a chunk was replayed as valid data."""
    bag = make_bag(_big_episode())
    mcap = next(bag.glob("*.mcap"))
    with mcap.open("rb") as f:
        chunks = sorted(
            make_reader(f).get_summary().chunk_indexes, key=lambda c: c.chunk_start_offset
        )
    assert len(chunks) >= 3
    mid = chunks[1]
    data = bytearray(mcap.read_bytes())
    data[mid.chunk_start_offset + mid.chunk_length - mid.compressed_size // 2] ^= 0x04
    mcap.write_bytes(bytes(data))
    mon = fake_monitor(image_size=(256, 256))
    s = _replay(bag, mon, write_bag=False).summary
    m = s["messages"]
    rej = m["rejected_before_session"]
    assert rej["image"].get("corrupt_chunk", 0) > 0, rej
    assert m["accounted"], m["problems"]
    assert m["read"] == 24 * 2 + 1
    assert s["integrity"]["corrupt_chunks"] == 1
    # the lock engaged at the corrupt chunk (by the next heartbeat) though it had opened before
    assert s["lock"]["first_open"] is not None
    engaged = s["lock"]["first_engaged_after_open"]
    assert engaged is not None and engaged <= mid.message_start_time * 1e-9 + 1 / FPS + 1e-6
