"""On-disk episode dataset: one directory per episode of plain ``.npy`` files plus a JSON index.

Why this layout: training samples short windows from many episodes at random, so every array is
a plain ``.npy`` file that can be memory-mapped (``np.load(path, mmap_mode="r")``) -- a window
touches only the pages it needs and nothing is unpickled (always ``allow_pickle=False``). One
directory per episode means parallel generators never write the same file, and an episode becomes
visible by a single atomic ``rename`` of its finished temporary directory, so an interrupted run
leaves nothing half-written behind and a re-run simply skips what exists.

Format (version 1), readable without this code::

    ROOT/
      dataset.json             {"format": "world_monitor.dataset", "version": 1, ...free info}
      index.json               {"format": ..., "version": 1, "episodes": [record, ...]}
      episodes/<id>/
        frames.npy             uint8   [T, H, W, 3]   RGB
        actions.npy            float32 [T, A]         actions[t] executed between frame t and t+1
        stamps.npy             float64 [T]            seconds, strictly increasing
        shift_mask.npy         uint8   [T, H, ceil(W/8)]  optional; np.packbits(mask, axis=-1)
                                                      (big bit order), unpack with
                                                      np.unpackbits(..., axis=-1, count=W)
        meta.json              {"version": 1, "id", "split", "meta": EpisodeMeta fields,
                                "length", "height", "width", "action_dim", "has_shift_mask"}
      episodes/.tmp-*          unfinished writes; ignored and removable

An index ``record`` has: id, scenario, shift (null = in-distribution), severity, onset
(= meta.shift_onset), seed, success, failure_step, length, height, width, action_dim,
has_shift_mask, split (train/val/calib/test) and path (the episode directory relative to ROOT).
``meta.json`` is written last inside the temporary directory, and the directory is renamed into
place only when complete, so "``episodes/<id>/meta.json`` exists" means "episode complete".
The index is derived data: :func:`build_index` rebuilds it from the episode directories (the
parent process does this after a multi-process generation run).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
from collections import Counter, OrderedDict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from world_monitor.data.episode import Episode, EpisodeError, EpisodeMeta

__all__ = [
    "DATASET_FORMAT",
    "DATASET_VERSION",
    "DEFAULT_FRACTIONS",
    "SPLITS",
    "split_counts",
    "DatasetError",
    "DatasetWriter",
    "EpisodeDataset",
    "EpisodeRecord",
    "WindowDataset",
    "WindowIndex",
    "assign_splits",
    "build_index",
    "episode_id_for",
    "split_for",
]

log = logging.getLogger(__name__)

DATASET_FORMAT = "world_monitor.dataset"
DATASET_VERSION = 1
SPLITS = ("train", "val", "calib", "test")
DEFAULT_FRACTIONS: dict[str, float] = {
    "train": 0.7,
    "val": 0.1,
    "calib": 0.1,
    "test": 0.1,
}
_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
_ARRAYS = ("frames", "actions", "stamps")


class DatasetError(RuntimeError):
    """A dataset file is missing, corrupt, of another version, or disagrees with the index."""


# --------------------------------------------------------------------------------------------
# ids and split assignment
# --------------------------------------------------------------------------------------------


def episode_id_for(meta: EpisodeMeta) -> str:
    """A readable, filesystem-safe, unique-per-(scenario, shift, severity, seed) episode id."""
    shift = meta.shift or "id"
    sev = "" if meta.severity is None else f"-s{meta.severity:g}"
    raw = f"{meta.scenario}-{shift}{sev}-{meta.seed:08d}"
    return re.sub(r"[^A-Za-z0-9_.\-]", "_", raw)


def _check_fractions(fractions: Mapping[str, float]) -> dict[str, float]:
    bad = set(fractions) - set(SPLITS)
    if bad:
        raise ValueError(f"fractions: unknown splits {sorted(bad)}; expected a subset of {SPLITS}")
    if any(v < 0 for v in fractions.values()) or sum(fractions.values()) <= 0:
        raise ValueError(
            f"fractions: need non-negative values with a positive sum, got {fractions}"
        )
    total = float(sum(fractions.values()))
    return {k: float(v) / total for k, v in fractions.items() if v > 0}


def split_for(
    episode_id: str,
    *,
    shift: str | None = None,
    fractions: Mapping[str, float] = DEFAULT_FRACTIONS,
    seed: int = 0,
) -> str:
    """Split of one episode from a hash of (seed, id): needs no global view of the dataset.

    Use this inside parallel generator workers: each decides its episode's split alone and the
    answer never changes when episodes are added or generation resumes. Shifted episodes
    (``shift`` not None) always go to ``test``: shifts are held out, never trained on.
    Proportions are only approximate for small datasets; use :func:`assign_splits` for exact ones.
    """
    if shift is not None:
        return "test"
    fr = _check_fractions(fractions)
    digest = hashlib.blake2b(f"{seed}:{episode_id}".encode(), digest_size=8).digest()
    u = int.from_bytes(digest, "big") / 2**64
    acc = 0.0
    for name in SPLITS:
        if name in fr:
            acc += fr[name]
            if u < acc:
                return name
    return next(name for name in reversed(SPLITS) if name in fr)


def assign_splits(
    episode_ids: Sequence[str],
    *,
    shifts: Sequence[str | None] | None = None,
    fractions: Mapping[str, float] = DEFAULT_FRACTIONS,
    seed: int = 0,
    min_calib: int = 0,
) -> dict[str, str]:
    """Exact-proportion split assignment: a seeded permutation of the sorted in-distribution ids.

    Deterministic for a given set of ids (input order does not matter). Counts come from
    :func:`split_counts` (``floor(fraction * n)``, the remainder to splits in SPLITS order,
    calib raised to ``min_calib`` when the data allow it). Shifted episodes go to ``test``.
    """
    shifts = list(shifts) if shifts is not None else [None] * len(episode_ids)
    if len(shifts) != len(episode_ids):
        raise ValueError("assign_splits: shifts and episode_ids differ in length")
    out = {eid: "test" for eid, sh in zip(episode_ids, shifts, strict=True) if sh is not None}
    ind = sorted(eid for eid, sh in zip(episode_ids, shifts, strict=True) if sh is None)
    order = np.random.default_rng(seed).permutation(len(ind))
    counts = split_counts(len(ind), fractions=fractions, min_calib=min_calib)
    names = [s for s in SPLITS if counts.get(s)]
    pos = 0
    for s in names:
        for j in order[pos : pos + counts[s]]:
            out[ind[j]] = s
        pos += counts[s]
    return out


def split_counts(
    n: int, *, fractions: Mapping[str, float] = DEFAULT_FRACTIONS, min_calib: int = 0
) -> dict[str, int]:
    """Episodes per split for ``n`` in-distribution episodes.

    ``floor(fraction * n)`` each, the remainder one by one to the splits in SPLITS order. With
    ``min_calib`` (the calibration episodes a false-stop rate needs,
    :func:`world_monitor.runtime.calibrate.episodes_needed` x 2) calib is raised to it *when the
    data allow it*: at most half of the episodes go to calib, the rest keep their proportions.
    """
    fr = _check_fractions(fractions)
    names = [s for s in SPLITS if s in fr]

    def proportional(total: int, among: list[str]) -> dict[str, int]:
        weight = sum(fr[s] for s in among)
        c = {s: int(np.floor(fr[s] / weight * total + 1e-9)) for s in among}
        rest = total - sum(c.values())
        for s in among[: max(rest, 0)]:
            c[s] += 1
        return c

    counts = proportional(n, names)
    if "calib" in counts and counts["calib"] < min_calib:
        calib = min(min_calib, n // 2)
        if calib > counts["calib"]:
            others = [s for s in names if s != "calib"]
            counts = {**proportional(n - calib, others), "calib": calib} if others else counts
    return {s: counts.get(s, 0) for s in names}


# --------------------------------------------------------------------------------------------
# records and index
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EpisodeRecord:
    """One index entry: everything needed to select an episode without opening its arrays."""

    id: str
    scenario: str
    shift: str | None
    severity: float | None
    onset: int | None
    seed: int
    success: bool
    failure_step: int | None
    length: int
    height: int
    width: int
    action_dim: int
    has_shift_mask: bool
    split: str
    path: str

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    # read-only mapping access too (``rec["scenario"]``, ``rec.get("onset")``), so code written
    # against the JSON index works on records unchanged
    def __getitem__(self, key: str) -> Any:
        if key not in self.__dataclass_fields__:
            raise KeyError(key)
        return getattr(self, key)

    def get(self, key: str, default: Any = None) -> Any:
        return getattr(self, key) if key in self.__dataclass_fields__ else default

    def keys(self) -> list[str]:
        return list(self.__dataclass_fields__)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "index.json") -> EpisodeRecord:
        names = list(cls.__dataclass_fields__)
        missing = [n for n in names if n not in data]
        if missing:
            raise DatasetError(f"{where}: episode record {data.get('id')!r} lacks fields {missing}")
        return cls(**{n: data[n] for n in names})


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DatasetError(f"{path}: missing") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DatasetError(f"{path}: unreadable or not valid JSON ({exc})") from None


def json_default(obj: Any) -> Any:
    """Let numpy scalars/arrays in metadata (e.g. a seed drawn as np.int64) serialise as JSON."""
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def _write_json_atomic(path: Path, data: Any) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=1)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _check_header(root: Path) -> dict[str, Any]:
    header = _read_json(root / "dataset.json")
    if not isinstance(header, dict) or header.get("format") != DATASET_FORMAT:
        raise DatasetError(f"{root / 'dataset.json'}: not a world_monitor dataset (field 'format')")
    if header.get("version") != DATASET_VERSION:
        raise DatasetError(
            f"{root / 'dataset.json'}: field 'version' is {header.get('version')!r}, this code "
            f"reads version {DATASET_VERSION}"
        )
    return header


def _record_from_episode_json(root: Path, ep_dir: Path) -> EpisodeRecord:
    path = ep_dir / "meta.json"
    data = _read_json(path)
    if not isinstance(data, dict) or data.get("version") != DATASET_VERSION:
        got = data.get("version") if isinstance(data, dict) else None
        raise DatasetError(f"{path}: field 'version' is {got!r}, expected {DATASET_VERSION}")
    try:
        meta = EpisodeMeta.from_dict(data["meta"])
        return EpisodeRecord(
            id=data["id"],
            scenario=meta.scenario,
            shift=meta.shift,
            severity=meta.severity,
            onset=meta.shift_onset,
            seed=meta.seed,
            success=meta.success,
            failure_step=meta.failure_step,
            length=int(data["length"]),
            height=int(data["height"]),
            width=int(data["width"]),
            action_dim=int(data["action_dim"]),
            has_shift_mask=bool(data["has_shift_mask"]),
            split=data["split"],
            path=ep_dir.relative_to(root).as_posix(),
        )
    except KeyError as exc:
        raise DatasetError(f"{path}: missing field {exc}") from None
    except (EpisodeError, TypeError, ValueError) as exc:
        raise DatasetError(f"{path}: invalid ({exc})") from None


def build_index(root: str | Path, *, progress: bool = False) -> list[EpisodeRecord]:
    """Rebuild ``index.json`` from the complete episode directories under ``root/episodes``.

    Called by :meth:`DatasetWriter.finalize` (typically in the parent process after workers
    finished). Temporary directories of interrupted writes are ignored. Records are sorted by id
    so the index is identical however many workers produced the episodes and in what order.
    """
    root = Path(root)
    _check_header(root)
    ep_root = root / "episodes"
    dirs = sorted(p for p in ep_root.iterdir() if p.is_dir() and not p.name.startswith("."))
    records = []
    for d in tqdm(dirs, desc="index", disable=not progress, unit="ep"):
        if not (d / "meta.json").exists():
            log.warning("%s: no meta.json, not indexed (incomplete episode?)", d)
            continue
        records.append(_record_from_episode_json(root, d))
    ids = Counter(r.id for r in records)
    dup = [i for i, c in ids.items() if c > 1]
    if dup:
        raise DatasetError(f"{root}: duplicate episode ids {dup[:5]}")
    _write_json_atomic(
        root / "index.json",
        {
            "format": DATASET_FORMAT,
            "version": DATASET_VERSION,
            "episodes": [r.to_dict() for r in records],
        },
    )
    log.info("indexed %d episodes in %s", len(records), root)
    return records


# --------------------------------------------------------------------------------------------
# writer
# --------------------------------------------------------------------------------------------


def _save_npy(path: Path, array: np.ndarray) -> None:
    with open(path, "wb") as fh:
        np.save(fh, np.ascontiguousarray(array), allow_pickle=False)


class DatasetWriter:
    """Writes episodes into a dataset directory atomically; safe to use from several processes.

    Every process may construct its own ``DatasetWriter(root)`` and call :meth:`write` for
    *different* episode ids: files go to a private temporary directory that is renamed into
    ``episodes/<id>`` only once complete. :meth:`exists` lets a resumed run skip finished
    episodes. One process (the parent) calls :meth:`finalize` at the end to build the index.
    """

    def __init__(self, root: str | Path, *, info: Mapping[str, Any] | None = None) -> None:
        self.root = Path(root)
        (self.root / "episodes").mkdir(parents=True, exist_ok=True)
        header_path = self.root / "dataset.json"
        if header_path.exists():
            _check_header(self.root)
        else:
            header = {
                "format": DATASET_FORMAT,
                "version": DATASET_VERSION,
                "info": dict(info or {}),
            }
            fd, tmp = tempfile.mkstemp(prefix=".dataset.json.", dir=self.root)
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(header, fh, indent=1, default=json_default)
            try:
                # link = atomic create-if-absent of a complete file: with several concurrent
                # writers the first wins and nobody ever reads a half-written header
                os.link(tmp, header_path)
            except FileExistsError:
                _check_header(self.root)
            except OSError:  # filesystem without hard links: last writer wins, content is equal
                os.replace(tmp, header_path)
            finally:
                Path(tmp).unlink(missing_ok=True)

    def episode_dir(self, episode_id: str) -> Path:
        if not _ID_RE.match(episode_id):
            raise ValueError(
                f"episode id {episode_id!r}: use letters, digits, '_', '.', '-' (no leading dot)"
            )
        return self.root / "episodes" / episode_id

    def exists(self, episode_id: str) -> bool:
        """True when the episode is completely written (so a resumed run can skip it)."""
        return (self.episode_dir(episode_id) / "meta.json").is_file()

    def write(
        self, episode: Episode, *, episode_id: str, split: str, overwrite: bool = False
    ) -> Path:
        """Write one episode atomically; returns its directory.

        An episode that is already complete is left untouched (resume semantics) unless
        ``overwrite``; an incomplete directory of the same id is replaced.
        """
        if split not in SPLITS:
            raise ValueError(f"split {split!r}: expected one of {SPLITS}")
        final = self.episode_dir(episode_id)
        if final.exists():
            if not overwrite and self.exists(episode_id):
                log.debug("%s exists, skipping", final)
                return final
            shutil.rmtree(final)
        episode.validate()
        tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{episode_id}-", dir=self.root / "episodes"))
        try:
            _save_npy(tmp / "frames.npy", episode.frames)
            _save_npy(tmp / "actions.npy", episode.actions)
            _save_npy(tmp / "stamps.npy", episode.stamps)
            if episode.shift_mask is not None:
                _save_npy(tmp / "shift_mask.npy", np.packbits(episode.shift_mask, axis=-1))
            h, w = episode.image_size
            doc = {
                "version": DATASET_VERSION,
                "id": episode_id,
                "split": split,
                "meta": episode.meta.to_dict(),
                "length": episode.length,
                "height": h,
                "width": w,
                "action_dim": episode.action_dim,
                "has_shift_mask": episode.shift_mask is not None,
            }
            try:
                text = json.dumps(doc, indent=1, default=json_default, allow_nan=False)
            except (TypeError, ValueError) as exc:
                raise DatasetError(f"{final}: episode meta not JSON serialisable ({exc})") from None
            (tmp / "meta.json").write_text(text, encoding="utf-8")
            os.rename(tmp, final)
        except OSError as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            if final.exists() and self.exists(episode_id):
                return final  # another process finished the same episode first
            raise DatasetError(f"{final}: could not write episode ({exc})") from exc
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return final

    def read_meta(self, episode_id: str) -> dict[str, Any]:
        """The episode's ``meta.json`` document (``id``, ``split``, ``meta`` ...)."""
        path = self.episode_dir(episode_id) / "meta.json"
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise DatasetError(f"{path}: cannot read episode meta ({exc})") from None

    def set_split(self, episode_id: str, split: str) -> None:
        """File a complete episode under another split (``meta.json`` replaced atomically;
        rebuild the index afterwards with :meth:`finalize`)."""
        if split not in SPLITS:
            raise ValueError(f"split {split!r}: expected one of {SPLITS}")
        doc = self.read_meta(episode_id)
        if doc.get("split") == split:
            return
        doc["split"] = split
        path = self.episode_dir(episode_id) / "meta.json"
        tmp = path.with_name(".meta.json.tmp")
        tmp.write_text(json.dumps(doc, indent=1, default=json_default, allow_nan=False))
        os.replace(tmp, path)

    def clean_temporaries(self) -> int:
        """Remove leftovers of interrupted writes; call only when no writer is running."""
        n = 0
        for p in (self.root / "episodes").glob(".tmp-*"):
            shutil.rmtree(p, ignore_errors=True)
            n += 1
        return n

    def finalize(
        self, *, expected: Iterable[str] | None = None, progress: bool = False
    ) -> list[EpisodeRecord]:
        """Remove temporaries and (re)build ``index.json``; returns the records.

        With ``expected`` (the planned episode ids) a :class:`DatasetError` lists the planned
        episodes that are not on disk -- after the index of what *is* there has been written, so
        nothing is lost and a re-run resumes.
        """
        removed = self.clean_temporaries()
        if removed:
            log.info("removed %d unfinished episode writes", removed)
        records = build_index(self.root, progress=progress)
        if expected is not None:
            have = {r.id for r in records}
            missing = sorted(set(expected) - have)
            if missing:
                more = f" ... (+{len(missing) - 10})" if len(missing) > 10 else ""
                raise DatasetError(
                    f"{self.root}: {len(missing)} planned episode(s) missing: {missing[:10]}{more};"
                    " re-run the generation to resume"
                )
        return records


# --------------------------------------------------------------------------------------------
# reader
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WindowIndex:
    """Flat list of windows: ``episode[i]`` (position in the dataset) and ``start[i]`` frame."""

    episode: np.ndarray
    start: np.ndarray
    length: int

    def __len__(self) -> int:
        return int(self.episode.shape[0])


class EpisodeDataset:
    """Read-only view of a dataset directory; arrays are memory-mapped lazily.

    ``dataset[i]`` returns a validated :class:`Episode` whose arrays are read-only memmaps
    (copy them before modifying). ``select`` returns a sub-view sharing the same cache.
    """

    #: memory maps kept open at once (3 per episode); bounded because the kernel limits the
    #: number of mappings per process (vm.max_map_count, 65530 by default)
    max_open_episodes: int = 4096

    def __init__(self, root: str | Path, *, check_files: bool = True) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise DatasetError(f"{self.root}: dataset directory does not exist")
        self.header = _check_header(self.root)
        index_path = self.root / "index.json"
        doc = _read_json(index_path)
        if not isinstance(doc, dict) or doc.get("format") != DATASET_FORMAT:
            raise DatasetError(f"{index_path}: field 'format' is not {DATASET_FORMAT!r}")
        if doc.get("version") != DATASET_VERSION:
            raise DatasetError(
                f"{index_path}: field 'version' is {doc.get('version')!r}, this code reads "
                f"version {DATASET_VERSION}"
            )
        if not isinstance(doc.get("episodes"), list):
            raise DatasetError(f"{index_path}: field 'episodes' missing or not a list")
        self._records = [EpisodeRecord.from_dict(r, str(index_path)) for r in doc["episodes"]]
        self._cache: OrderedDict[str, dict[str, np.ndarray]] = OrderedDict()
        self._positions: dict[str, int] | None = None
        if check_files:
            for r in self._records:
                if not (self.root / r.path / "meta.json").is_file():
                    raise DatasetError(
                        f"{self.root / r.path}: listed in index.json (episode {r.id!r}) but "
                        "missing or incomplete on disk; rebuild the index with build_index()"
                    )

    @classmethod
    def _view(cls, parent: EpisodeDataset, records: list[EpisodeRecord]) -> EpisodeDataset:
        view = cls.__new__(cls)
        view.root, view.header, view._records, view._cache = (
            parent.root,
            parent.header,
            records,
            parent._cache,
        )
        view.max_open_episodes = parent.max_open_episodes
        view._positions = None
        return view

    # --- index ---------------------------------------------------------------------------------
    @property
    def index(self) -> list[EpisodeRecord]:
        return list(self._records)

    def __len__(self) -> int:
        return len(self._records)

    def select(
        self,
        *,
        split: str | Iterable[str] | None = None,
        shift: str | None | Iterable[str | None] = ...,  # type: ignore[assignment]
        scenario: str | Iterable[str] | None = None,
        success: bool | None = None,
        ids: Iterable[str] | None = None,
    ) -> EpisodeDataset:
        """Sub-dataset by split / shift / scenario / success / episode id.

        ``shift=None`` selects in-distribution episodes; ``shift="any"`` any shifted episode;
        omit it to not filter on shift. Strings or iterables of strings are accepted.
        """

        def as_set(v: Any) -> set[Any]:
            return {v} if v is None or isinstance(v, str) else set(v)

        recs = self._records
        if split is not None:
            splits = as_set(split)
            unknown = splits - set(SPLITS)
            if unknown:
                raise ValueError(f"select: unknown split(s) {sorted(unknown)}; expected {SPLITS}")
            recs = [r for r in recs if r.split in splits]
        if shift is not ...:
            if shift == "any":
                recs = [r for r in recs if r.shift is not None]
            else:
                shifts = as_set(shift)
                recs = [r for r in recs if r.shift in shifts]
        if scenario is not None:
            scen = as_set(scenario)
            recs = [r for r in recs if r.scenario in scen]
        if success is not None:
            recs = [r for r in recs if r.success == success]
        if ids is not None:
            wanted = as_set(ids)
            recs = [r for r in recs if r.id in wanted]
        return EpisodeDataset._view(self, list(recs))

    def summary(self) -> dict[str, Any]:
        """Counts per split / scenario / shift, success rate and total frames."""
        recs = self._records
        n = len(recs)
        by_split_shift: dict[str, dict[str, int]] = {}
        for r in recs:
            d = by_split_shift.setdefault(r.split, {})
            key = r.shift or "in-distribution"
            d[key] = d.get(key, 0) + 1
        by_scenario: dict[str, dict[str, Any]] = {}
        for r in recs:
            row = by_scenario.setdefault(
                r.scenario,
                {"episodes": 0, "successes": 0, "failures": 0, "frames": 0, "splits": {}},
            )
            row["episodes"] += 1
            row["successes"] += int(r.success)
            row["failures"] += int(not r.success)
            row["frames"] += r.length
            row["splits"][r.split] = row["splits"].get(r.split, 0) + 1
        for row in by_scenario.values():
            row["success_rate"] = row["successes"] / row["episodes"]
        return {
            "root": str(self.root),
            "episodes": n,
            "frames": int(sum(r.length for r in recs)),
            "success_rate": (sum(r.success for r in recs) / n) if n else None,
            "per_split": dict(Counter(r.split for r in recs)),
            "per_scenario": dict(Counter(r.scenario for r in recs)),
            "per_shift": dict(Counter(r.shift or "in-distribution" for r in recs)),
            "per_split_shift": by_split_shift,
            "by_scenario": by_scenario,
            "image_sizes": sorted({(r.height, r.width) for r in recs}),
            "action_dims": sorted({r.action_dim for r in recs}),
            "with_shift_mask": int(sum(r.has_shift_mask for r in recs)),
        }

    # --- arrays --------------------------------------------------------------------------------
    def _load_array(self, rec: EpisodeRecord, name: str) -> np.ndarray:
        path = self.root / rec.path / f"{name}.npy"
        try:
            arr = np.load(path, mmap_mode="r", allow_pickle=False)
        except FileNotFoundError:
            raise DatasetError(f"{path}: missing (episode {rec.id!r})") from None
        except (OSError, ValueError, EOFError) as exc:
            raise DatasetError(f"{path}: corrupt .npy file (episode {rec.id!r}): {exc}") from None
        expected = {
            "frames": (np.uint8, (rec.length, rec.height, rec.width, 3)),
            "actions": (np.float32, (rec.length, rec.action_dim)),
            "stamps": (np.float64, (rec.length,)),
            "shift_mask": (np.uint8, (rec.length, rec.height, (rec.width + 7) // 8)),
        }[name]
        if arr.dtype != expected[0] or arr.shape != expected[1]:
            raise DatasetError(
                f"{path}: {name} is {arr.dtype}{list(arr.shape)}, index.json says "
                f"{np.dtype(expected[0])}{list(expected[1])} (episode {rec.id!r})"
            )
        return arr

    def _arrays(self, rec: EpisodeRecord) -> dict[str, np.ndarray]:
        cached = self._cache.get(rec.id)
        if cached is None:
            cached = {name: self._load_array(rec, name) for name in _ARRAYS}
            self._cache[rec.id] = cached
            while len(self._cache) > self.max_open_episodes:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(rec.id)
        return cached

    def record(self, i: int) -> EpisodeRecord:
        return self._records[i]

    def position(self, episode_id: str) -> int:
        """Position of an episode id in this (sub)dataset."""
        if self._positions is None or len(self._positions) != len(self._records):
            self._positions = {r.id: i for i, r in enumerate(self._records)}
        try:
            return self._positions[episode_id]
        except KeyError:
            raise DatasetError(f"{self.root}: no episode {episode_id!r} in this dataset") from None

    def load(self, episode_id: str) -> Episode:
        """The episode with this id (lazy memmaps like ``dataset[i]``)."""
        return self[self.position(episode_id)]

    def __getitem__(self, i: int) -> Episode:
        if not -len(self) <= i < len(self):
            raise IndexError(f"episode index {i} out of range for {len(self)} episodes")
        rec = self._records[i]
        arrs = self._arrays(rec)
        meta_doc = _read_json(self.root / rec.path / "meta.json")
        try:
            meta = EpisodeMeta.from_dict(meta_doc["meta"])
        except (KeyError, TypeError, EpisodeError) as exc:
            raise DatasetError(
                f"{self.root / rec.path / 'meta.json'}: field 'meta': {exc}"
            ) from None
        mask = None
        if rec.has_shift_mask:
            packed = self._load_array(rec, "shift_mask")
            mask = np.unpackbits(packed, axis=-1, count=rec.width).astype(bool)
        try:
            return Episode(arrs["frames"], arrs["actions"], arrs["stamps"], meta, mask)
        except EpisodeError as exc:
            raise DatasetError(
                f"{self.root / rec.path}: episode {rec.id!r} invalid: {exc}"
            ) from None

    def __iter__(self) -> Iterator[Episode]:
        for i in range(len(self)):
            yield self[i]

    # --- windows -------------------------------------------------------------------------------
    def window_index(self, length: int, stride: int = 1) -> WindowIndex:
        """All windows of ``length`` frames (start every ``stride`` frames) in this (sub)dataset."""
        if length < 1 or stride < 1:
            raise ValueError(f"window length ({length}) and stride ({stride}) must be >= 1")
        eps, starts = [], []
        for i, r in enumerate(self._records):
            s = np.arange(0, r.length - length + 1, stride, dtype=np.int64)
            eps.append(np.full(s.shape, i, dtype=np.int64))
            starts.append(s)
        if not eps:
            return WindowIndex(np.zeros(0, np.int64), np.zeros(0, np.int64), length)
        return WindowIndex(np.concatenate(eps), np.concatenate(starts), length)

    def window(self, episode: int, start: int, length: int) -> tuple[np.ndarray, np.ndarray]:
        """``(frames[length], actions[length])`` copied out of the memmaps (writable, contiguous)."""
        arrs = self._arrays(self._records[episode])
        sl = slice(start, start + length)
        return np.array(arrs["frames"][sl]), np.array(arrs["actions"][sl])

    def windows(
        self,
        split: str | None = None,
        *,
        length: int,
        stride: int = 1,
        shift: str | None | Iterable[str | None] = ...,  # type: ignore[assignment]
        shuffle: bool = False,
        seed: int | None = None,
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield ``(frames uint8[length,H,W,3], actions float32[length,A])`` training windows.

        For world-model training use ``length = context + horizon``. Only the touched pages of
        the memory-mapped files are read, so RAM stays bounded by the page cache. For a
        ``torch.utils.data.Dataset`` use :meth:`window_index` + :meth:`window` instead.
        """
        ds = self.select(split=split, shift=shift) if (split or shift is not ...) else self
        idx = ds.window_index(length, stride)
        order = np.arange(len(idx))
        if shuffle:
            order = np.random.default_rng(seed).permutation(len(idx))
        for j in order:
            yield ds.window(int(idx.episode[j]), int(idx.start[j]), length)


class WindowDataset:
    """Map-style window dataset (``len`` / ``[i]``) for ``torch.utils.data.DataLoader``.

    ``[i]`` returns ``(frames uint8[length,H,W,3], actions float32[length,A])`` numpy arrays
    (the default collate turns them into tensors). Worker processes share the parent's memory
    maps after fork; nothing is loaded eagerly.
    """

    def __init__(
        self,
        dataset: EpisodeDataset,
        *,
        length: int,
        stride: int = 1,
        split: str | Iterable[str] | None = None,
        shift: str | None | Iterable[str | None] = ...,  # type: ignore[assignment]
    ) -> None:
        self.dataset = dataset.select(split=split, shift=shift)
        self.index = self.dataset.window_index(length, stride)

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        if not 0 <= i < len(self.index):
            raise IndexError(f"window {i} out of range for {len(self.index)} windows")
        ix = self.index
        return self.dataset.window(int(ix.episode[i]), int(ix.start[i]), ix.length)
