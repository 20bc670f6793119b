"""Encoder features of a list of images, computed once and kept on disk as a memory-mapped .npy.

A cache directory is named by a hash of (dataset key, encoder.cache_key, the list of paths), so a
change of any of them gets its own directory. Inside it:

- ``features.npy`` [N, D] float32 (or [N, R, D] float16 for region features), one row per path (zeros
  for bad images), and ``meta.json``, which
  is written after it and is what makes the pair valid. ``meta.json`` also records the bad images
  and a fingerprint (size, mtime) of the files, so replaced images are noticed and recomputed.
- ``features.partial.npy`` + ``progress.json`` while extracting: rows are written into the
  memory-mapped partial file and the progress record (rows done, bad images so far) is saved after
  them every few seconds. A killed extraction resumes from the recorded row; on completion the
  partial file is renamed into place.

``extract_features`` holds the directory's lock file ``features.lock`` from its first look to the opened
memory map: a second process asking for the same features waits while the first extracts (and logs which
lock it waits on), then finds the finished cache and extracts nothing. The operating system releases the
lock of a killed process. Readers without the lock (a shard's check) see meta.json only after its features.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from captioning.data.images import BadImageError, ImageTransform, load_rgb
from captioning.utils.io import save_json
from captioning.utils.locks import exclusive
from captioning.utils.progress import progress

log = logging.getLogger(__name__)

CACHE_FORMAT = 1
FLUSH_SECONDS = 5.0   # how much work a kill may cost; each flush is an msync + a small json write
BAD_SHOWN = 20        # bad files listed in full in an error message
_MISSING = (-1, -1)


@dataclass(frozen=True)
class FeatureSet:
    """Features of the usable images: ``features[j]`` belongs to ``paths[kept[j]]``."""

    features: np.ndarray   # [len(kept), D] float32 or [len(kept), R, D] float16, read-only memory map
    kept: np.ndarray       # int64 indices into the paths given, ascending
    bad: dict[str, str]    # path -> why it was dropped (only with on_bad_image="skip")
    cache_dir: Path


class BadImagesError(ValueError):
    """Some images could not be read; ``bad`` maps each such path to the reason."""

    def __init__(self, bad: dict[str, str], dataset_key: str):
        self.bad = bad
        lines = [f"  {p}: {r}" for p, r in list(bad.items())[:BAD_SHOWN]]
        more = [f"  ... and {len(bad) - BAD_SHOWN} more"] if len(bad) > BAD_SHOWN else []
        super().__init__(
            f"{len(bad)} bad image(s) in {dataset_key}:\n" + "\n".join(lines + more) + "\n"
            "Replace or re-download them (features of the other images are cached, so the rerun only "
            "computes the replaced ones), or set on_bad_image=skip to drop them from the run.")


def extract_features(encoder: torch.nn.Module, paths: Sequence[str | os.PathLike], cache_root: str | os.PathLike,
                     dataset_key: str, batch_size: int = 64, num_workers: int = 0,
                     on_bad_image: str = "fail") -> FeatureSet:
    """Encoder features for ``paths``: taken from the cache when valid, else extracted (resuming) into it."""
    if on_bad_image not in ("fail", "skip"):
        raise ValueError(f"on_bad_image must be 'fail' or 'skip', got {on_bad_image!r}")
    if batch_size < 1 or num_workers < 0:
        raise ValueError(f"batch_size must be >= 1 and num_workers >= 0, got {batch_size}, {num_workers}")
    paths = [str(p) for p in paths]
    if not paths:
        raise ValueError(f"no images given to extract features for ({dataset_key})")
    cache = FeatureCache(Path(cache_root), dataset_key, encoder.cache_key, paths, *cache_layout(encoder))
    with cache.locked():
        signatures = [file_signature(p) for p in paths]
        bad = cache.reuse(signatures)
        if bad is None:
            rows, bad, resume = cache.plan(signatures)
            bad = _extract(encoder, paths, rows, bad, cache, signatures, resume, batch_size, num_workers)
        named = {paths[i]: reason for i, reason in sorted(bad.items())}
        if named and on_bad_image == "fail":
            raise BadImagesError(named, dataset_key)
        if named:
            log.warning("skipping %d bad image(s) of %s, e.g. %s", len(named), dataset_key, next(iter(named.items())))
        kept = np.array([i for i in range(len(paths)) if i not in bad], dtype=np.int64)
        # opened under the lock: another process's finish() deletes out-of-date kept-*.npy copies
        return FeatureSet(cache.open_kept(kept), kept, named, cache.dir)


def cache_layout(encoder: torch.nn.Module) -> tuple[tuple[int, ...], str]:
    """(shape of one image's features, numpy dtype name) that ``encoder``'s features are cached with."""
    return tuple(getattr(encoder, "feature_shape", (encoder.feature_dim,))), getattr(encoder, "cache_dtype", "float32")


def file_signature(path: str) -> tuple[int, int]:
    """(size, mtime_ns) of a file, or _MISSING: cheap evidence that an image was replaced."""
    try:
        st = os.stat(path)
    except OSError:
        return _MISSING
    return st.st_size, st.st_mtime_ns


def _fingerprint(signatures: Sequence[tuple[int, int]], rows: Sequence[int]) -> str:
    digest = hashlib.sha1()
    for i in rows:
        digest.update(f"{i}:{signatures[i][0]}:{signatures[i][1]};".encode())
    return digest.hexdigest()


class FeatureCache:
    """One cache directory: the finished features + meta, or a partial file + progress record."""

    def __init__(self, root: Path, dataset_key: str, encoder_key: str, paths: list[str],
                 feature_shape: int | tuple[int, ...], dtype: str = "float32"):
        paths_sha1 = hashlib.sha1("\n".join(paths).encode()).hexdigest()
        feature_shape = (int(feature_shape),) if isinstance(feature_shape, int) else tuple(map(int, feature_shape))
        self.ident = {"format": CACHE_FORMAT, "dataset_key": dataset_key, "encoder": encoder_key,
                      "paths_sha1": paths_sha1, "n": len(paths), "dim": feature_shape[-1]}
        if feature_shape != (feature_shape[-1],) or dtype != "float32":  # pooled float32 caches keep their names
            self.ident.update(shape=list(feature_shape), dtype=dtype)
        digest = hashlib.sha1(json.dumps(self.ident, sort_keys=True).encode()).hexdigest()[:16]
        self.dir = root / re.sub(r"[^A-Za-z0-9._-]+", "_", dataset_key) / digest
        self.final, self.meta = self.dir / "features.npy", self.dir / "meta.json"
        self.partial, self.progress = self.dir / "features.partial.npy", self.dir / "progress.json"
        self.shape, self.dtype = (len(paths), *feature_shape), np.dtype(dtype)

    def locked(self) -> contextlib.AbstractContextManager[None]:
        """Serialise processes that extract into or read the same cache (runs, ranks or sweep jobs)."""
        return exclusive(self.dir / "features.lock", f"the features of {self.ident['dataset_key']}")

    def _read(self, path: Path) -> dict | None:
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        return record if all(record.get(k) == v for k, v in self.ident.items()) else None

    def _npy_ok(self, path: Path) -> bool:
        try:
            array = np.load(path, mmap_mode="r")
        except (OSError, ValueError):
            return False
        return array.shape == self.shape and array.dtype == self.dtype

    def reuse(self, signatures: list[tuple[int, int]]) -> dict[int, str] | None:
        """The bad rows {index: reason} when the finished cache is valid and current, else None."""
        meta = self._read(self.meta)
        if meta is None or not self._npy_ok(self.final):
            return None
        bad = {int(i): b for i, b in meta["bad"].items()}
        good = [i for i in range(self.shape[0]) if i not in bad]
        if _fingerprint(signatures, good) != meta["fingerprint"]:
            return None
        if any(tuple(b["signature"]) != signatures[i] for i, b in bad.items()):
            return None
        return {i: b["reason"] for i, b in bad.items()}

    def plan(self, signatures: list[tuple[int, int]]) -> tuple[list[int], dict[int, str], int]:
        """(rows still to compute, bad rows so far, first row) for a resumed, updated or fresh extraction."""
        meta = self._read(self.meta)
        if meta is not None and self._npy_ok(self.final):
            bad = {int(i): b for i, b in meta["bad"].items()}
            good = [i for i in range(self.shape[0]) if i not in bad]
            if _fingerprint(signatures, good) == meta["fingerprint"]:
                # Only bad images were replaced: recompute just them, on a copy of the finished file.
                shutil.copyfile(self.final, self.partial)
                changed = sorted(i for i, b in bad.items() if tuple(b["signature"]) != signatures[i])
                keep = {i: b["reason"] for i, b in bad.items() if i not in changed}
                return changed, keep, 0
            log.warning("images of %s changed since their features were cached; recomputing", self.dir)
        progress = self._read(self.progress)
        if (progress is not None and progress["fingerprint"] == _fingerprint(signatures, range(self.shape[0]))
                and self._npy_ok(self.partial)):
            start = int(progress["rows_done"])
            log.info("resuming an interrupted feature extraction at row %d of %d", start, self.shape[0])
            return list(range(start, self.shape[0])), {int(i): r for i, r in progress["bad"].items()}, start
        np.lib.format.open_memmap(self.partial, mode="w+", dtype=self.dtype, shape=self.shape).flush()
        return list(range(self.shape[0])), {}, 0

    def save_progress(self, rows_done: int, bad: dict[int, str], signatures: list) -> None:
        save_json({**self.ident, "rows_done": rows_done, "bad": bad,
                   "fingerprint": _fingerprint(signatures, range(self.shape[0]))}, self.progress)

    def finish(self, bad: dict[int, str], signatures: list, seconds: float) -> None:
        """Rename the partial file into place, then write meta.json, which validates it."""
        os.replace(self.partial, self.final)
        good = [i for i in range(self.shape[0]) if i not in bad]
        save_json({**self.ident, "fingerprint": _fingerprint(signatures, good), "seconds": round(seconds, 3),
                   "bad": {i: {"reason": r, "signature": signatures[i]} for i, r in sorted(bad.items())}},
                  self.meta)
        self.progress.unlink(missing_ok=True)
        for stale in self.dir.glob("kept-*.npy"):
            stale.unlink()

    def open_kept(self, kept: np.ndarray) -> np.ndarray:
        """Read-only memmap of the kept rows; a compacted copy is written once when some rows are dropped."""
        if len(kept) == self.shape[0]:
            return np.load(self.final, mmap_mode="r")
        path = self.dir / f"kept-{hashlib.sha1(kept.tobytes()).hexdigest()[:16]}.npy"
        if not path.exists():
            source = np.load(self.final, mmap_mode="r")
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            out = np.lib.format.open_memmap(tmp, mode="w+", dtype=self.dtype, shape=(len(kept), *self.shape[1:]))
            for start in range(0, len(kept), 4096):
                out[start:start + 4096] = source[kept[start:start + 4096]]
            out.flush()
            del out
            os.replace(tmp, path)
        return np.load(path, mmap_mode="r")


class _ImageRows(Dataset):
    """(row, uint8 image, "" or the reason it is bad) for the given rows; runs in loader workers."""

    def __init__(self, paths: list[str], rows: list[int], transform: ImageTransform):
        self.paths, self.rows, self.transform = paths, rows, transform

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, k: int) -> tuple[int, torch.Tensor, str]:
        row = self.rows[k]
        try:
            return row, self.transform.to_uint8(load_rgb(self.paths[row])), ""
        except BadImageError as e:
            size = self.transform.size
            return row, torch.zeros(3, size, size, dtype=torch.uint8), e.reason


def collate_rows(items: list[tuple[int, torch.Tensor, str]]) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """(rows [B], uint8 images [B, 3, S, S] in channels-last memory, reasons) of ``_ImageRows`` items. The
    images are stacked as HWC, the layout they are decoded and resized in, so no pixel is transposed here
    (``default_collate`` would copy them into NCHW, and the normalisation back into NHWC)."""
    rows, images, reasons = zip(*items)
    hwc = torch.stack([image.permute(1, 2, 0) for image in images])
    return torch.tensor(rows), hwc.permute(0, 3, 1, 2), list(reasons)


def threaded_batches(dataset: Dataset, batch_size: int, threads: int | None = None):
    """The batches a DataLoader without workers would give, each decoded and resized by a pool of ``threads``
    (default torch's thread count) in this process, between the forward passes: PIL releases the GIL while
    it decodes and resizes, and nothing competes with the forward for the cores (a worker process does)."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=threads or torch.get_num_threads()) as pool:
        for start in range(0, len(dataset), batch_size):
            yield collate_rows(list(pool.map(dataset.__getitem__, range(start, min(start + batch_size, len(dataset))))))


def _extract(encoder: torch.nn.Module, paths: list[str], rows: list[int], bad: dict[int, str], cache: FeatureCache,
             signatures: list, resume: int, batch_size: int, num_workers: int) -> dict[int, str]:
    """Compute ``rows`` into the partial file, saving progress as it goes, then finish the cache."""
    started, was_training = time.perf_counter(), encoder.training
    device = next(iter(encoder.parameters()), torch.empty(0)).device
    dataset = _ImageRows(paths, rows, encoder.transform)
    loader = (DataLoader(dataset, batch_size=batch_size, num_workers=num_workers, collate_fn=collate_rows,
                         pin_memory=device.type == "cuda")
              if num_workers else threaded_batches(dataset, batch_size))
    features = np.lib.format.open_memmap(cache.partial, mode="r+")
    rows_done, last_flush = resume, time.monotonic()
    encoder.eval()
    try:
        with torch.inference_mode():
            for index, images, reasons in progress(loader, desc=f"features {cache.dir.parent.name}", unit="batch",
                                                       total=-(-len(rows) // batch_size)):
                images = images.to(device, non_blocking=True)
                out = encoder(encoder.transform.normalize(images, getattr(encoder, "channels_last", False)))
                out = out.float().cpu().numpy().astype(features.dtype, copy=False)
                for k, (row, reason) in enumerate(zip(index.tolist(), reasons)):
                    if reason:
                        bad[row], out[k] = reason, 0.0
                    else:
                        bad.pop(row, None)
                features[index.numpy()] = out
                rows_done = max(rows_done, int(index[-1]) + 1)
                if time.monotonic() - last_flush > FLUSH_SECONDS:
                    features.flush()  # rows reach the file before the record that says they are there
                    cache.save_progress(rows_done, bad, signatures)
                    last_flush = time.monotonic()
        features.flush()
        del features
        cache.finish(bad, signatures, time.perf_counter() - started)
        log.info("extracted the features of %d images of %s into %s in %.1f s", len(rows),
                 cache.ident["dataset_key"], cache.dir, time.perf_counter() - started)
    finally:
        encoder.train(was_training)
    return bad
