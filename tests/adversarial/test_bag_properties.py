"""Property tests over the bag readers: hostile bytes are rejected by name, never read as data.

Why (issue 14, items 6 and 10): a hand-written pass found that 30 of 40 mid-file byte flips in an
MCAP bag were read back as valid (different) data, and that a small PNG claiming a huge canvas
was decoded in full. The fixes (chunk/summary CRCs, pixel budget from the header) are checked
here on generated inputs rather than on the handful of examples the fixes were written for:

* any flips (1-3 bits anywhere in the file) or a truncation of an exported MCAP bag: ``inspect``
  and ``import`` raise nothing but :class:`BagError`, and an import that succeeds returns exactly
  the episode that was exported (corruption is a counted rejection or an error, never silent);
* ``decode_compressed_image`` on random bytes, mutated PNG/JPEG and header-only PNGs of any
  claimed size raises nothing but :class:`Rejected` with a known reason, never decodes a frame
  over the budget, and refuses an oversized header as ``too_large`` without decoding it;
* ``decode_image`` on any header (height, width, step, encoding) and data length returns a frame
  only when the header and the data agree exactly and the frame is within the budget.

sqlite3 bags are left out on purpose: they carry no checksums, so a flipped bit inside a message
blob is undetectable (``inspect`` says so); only structural damage is caught there.

Bounded and deterministic (``derandomize=True``, no example database).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from hostile_images import png_header_only
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from world_monitor.data.bag import BagError, codec, export_episode_bag, import_episode_bag
from world_monitor.data.bag.codec import Rejected, encode_compressed
from world_monitor.data.episode import Episode, EpisodeMeta
from world_monitor.data.inspect import inspect_path

SETTINGS = settings(
    max_examples=100,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
COMPRESSED_REASONS = {"too_large", "bad_encoding", "undecodable"}


def _episode() -> Episode:
    rng = np.random.default_rng(3)
    actions = rng.uniform(-0.03, 0.03, (8, 4)).astype(np.float32)
    actions[:, 3] = -1.0
    return Episode(
        frames=rng.integers(0, 256, (8, 12, 12, 3), dtype=np.uint8),
        actions=actions,
        stamps=100.0 + np.arange(8) / 10.0,
        meta=EpisodeMeta(scenario="synthetic", seed=3, fps=10.0, success=True),
    )


@pytest.fixture(scope="module")
def bag(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, bytes, Episode]:
    """(a work copy of an exported bag, its clean MCAP bytes, the episode it imports to)."""
    clean = export_episode_bag(_episode(), tmp_path_factory.mktemp("clean") / "bag")
    episode = import_episode_bag(clean)
    work = tmp_path_factory.mktemp("work") / "bag"
    work.mkdir()
    for f in clean.iterdir():
        (work / f.name).write_bytes(f.read_bytes())
    return work, next(clean.glob("*.mcap")).read_bytes(), episode


def _same(a: Episode, b: Episode) -> bool:
    return (
        np.array_equal(a.frames, b.frames)
        and np.array_equal(a.actions, b.actions)
        and np.array_equal(a.stamps, b.stamps)
        and a.meta == b.meta
    )


@SETTINGS
@given(
    flips=st.lists(
        st.tuples(st.floats(0.0, 1.0, exclude_max=True), st.integers(0, 7)), min_size=1, max_size=3
    ),
    truncate=st.one_of(st.none(), st.floats(0.0, 1.0, exclude_max=True)),
)
def test_corrupt_mcap_is_an_error_or_a_rejection_never_other_data(bag, flips, truncate) -> None:
    work, clean, episode = bag
    data = bytearray(clean)
    for where, bit in flips:
        data[int(where * len(data))] ^= 1 << bit
    if truncate is not None:
        data = data[: int(truncate * len(data))]
    next(work.glob("*.mcap")).write_bytes(bytes(data))
    try:
        report = inspect_path(work)
    except BagError:
        report = None
    if report is not None:
        assert isinstance(report["accounted"], bool)
    try:
        got = import_episode_bag(work)
    except BagError as exc:
        event(f"import: BagError {exc.kind or 'other'}")
        return
    event("import: identical episode")
    assert _same(got, episode), (flips, truncate)


# ---------------------------------------------------------------------------- compressed images
class _Msg:
    def __init__(self, data: bytes, fmt: str = "png") -> None:
        self.data = np.frombuffer(data, np.uint8)
        self.format = fmt


def _valid(fmt: str) -> bytes:
    rng = np.random.default_rng(0)
    return encode_compressed(rng.integers(0, 256, (6, 5, 3), dtype=np.uint8), fmt)


@st.composite
def _mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(_valid(draw(st.sampled_from(["png", "jpeg"]))))
    for _ in range(draw(st.integers(1, 4))):
        i = draw(st.integers(0, len(data) - 1))
        data[i] = draw(st.integers(0, 255))
    return bytes(data[: draw(st.integers(0, len(data)))])


@SETTINGS
@given(
    data=st.one_of(
        st.binary(max_size=256),
        _mutated(),
        st.builds(
            png_header_only,
            st.integers(0, 200_000),
            st.integers(0, 200_000),
        ),
    ),
    fmt=st.sampled_from(["png", "jpeg", "", "bmp; rgb8"]),
)
def test_compressed_decoder_rejects_by_name_and_keeps_the_budget(data: bytes, fmt: str) -> None:
    t0 = time.perf_counter()
    try:
        rgb = codec.decode_compressed_image(_Msg(data, fmt), max_pixels=10_000)
    except Rejected as rej:
        assert rej.reason in COMPRESSED_REASONS, rej
        assert time.perf_counter() - t0 < 1.0
        return
    assert rgb.dtype == np.uint8 and rgb.ndim == 3 and rgb.shape[2] == 3
    assert rgb.shape[0] * rgb.shape[1] <= 10_000


@SETTINGS
@given(w=st.integers(1, 300_000), h=st.integers(1, 300_000))
def test_an_oversized_header_is_too_large_before_decoding(w: int, h: int) -> None:
    """Whatever the canvas a header claims: over the budget is ``too_large`` (not PIL's bomb
    error, not a decode attempt), within it the (empty) data is ``undecodable``."""
    t0 = time.perf_counter()
    with pytest.raises(Rejected) as info:
        codec.decode_compressed_image(_Msg(png_header_only(h, w)))
    assert time.perf_counter() - t0 < 1.0
    expected = "too_large" if w * h > codec.MAX_IMAGE_PIXELS else "undecodable"
    assert info.value.reason == expected, (w, h, info.value)


# ---------------------------------------------------------------------------- raw images
class _Raw:
    def __init__(self, h: int, w: int, step: int, data: np.ndarray, encoding: str) -> None:
        self.height, self.width, self.step, self.data, self.encoding = h, w, step, data, encoding


CHANNELS = {"rgb8": 3, "bgr8": 3, "rgba8": 4, "bgra8": 4, "mono8": 1}


@SETTINGS
@given(
    h=st.one_of(st.integers(-2, 12), st.integers(10**5, 10**9)),
    w=st.one_of(st.integers(-2, 12), st.integers(10**5, 10**9)),
    step=st.one_of(st.integers(-1, 60), st.integers(10**5, 10**9)),
    size=st.integers(0, 400),
    encoding=st.sampled_from([*CHANNELS, "16UC1", "bayer_rggb8", "", "RGB8"]),
)
def test_raw_decoder_returns_only_frames_whose_header_matches_the_data(
    h: int, w: int, step: int, size: int, encoding: str
) -> None:
    msg = _Raw(h, w, step, np.zeros(size, np.uint8), encoding)
    try:
        rgb = codec.decode_image(msg)
    except Rejected as rej:
        assert rej.reason in {"bad_encoding", "bad_size", "too_large"}, rej
        if h > 0 and w > 0 and h * w > codec.MAX_IMAGE_PIXELS and encoding in CHANNELS:
            assert rej.reason == "too_large"
        return
    assert encoding in CHANNELS and rgb.shape == (h, w, 3) and rgb.dtype == np.uint8
    assert size == step * h and step >= w * CHANNELS[encoding]
