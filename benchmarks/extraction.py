"""Feature extraction end to end (decode, resize, normalise, forward, write the cache) vs the bare forward.

The bare forward runs the same encoder on the same images already decoded, resized and normalised in
memory, in the encoder's memory layout: the ratio says how much of the machine the data path loses.
Target: >= 0.9 (issue 19; 0.8 in issue 7).
"""

from __future__ import annotations

import shutil
import statistics
import tempfile

import torch

from benchmarks.common import Options, build_bench_encoder, shapes_records, stopwatch, sync
from captioning.features.cache import extract_features
from captioning.data.images import load_rgb


def bare_forward_seconds(encoder: torch.nn.Module, images: torch.Tensor, batch_size: int, device: str) -> float:
    """Seconds to run ``encoder`` over normalised in-memory ``images`` [N, 3, S, S] in batches."""
    with torch.inference_mode():
        encoder(images[:batch_size].to(device))  # warm-up: kernel selection, allocations
        sync(device)
        with stopwatch() as t:
            for start in range(0, len(images), batch_size):
                encoder(images[start : start + batch_size].to(device, non_blocking=True))
            sync(device)
    return t[0]


def _end_to_end_seconds(encoder: torch.nn.Module, paths: list[str], work_dir, batch: int, workers: int) -> float:
    """Seconds of extract_features over ``paths`` into a fresh cache (removed afterwards)."""
    work_dir.mkdir(parents=True, exist_ok=True)
    cache = tempfile.mkdtemp(prefix="extract-", dir=work_dir)
    try:
        with stopwatch() as t:
            extract_features(encoder, paths, cache, "bench/extraction", batch_size=batch, num_workers=workers)
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    return t[0]


def extraction_report(opts: Options) -> str:
    """Markdown: images/s of extract_features into a fresh cache vs the bare encoder forward.

    The two are measured in alternating rounds and compared by their medians, so that a machine whose
    speed drifts (a shared host) moves both alike.
    """
    n, rounds = opts.pick(1024, 128), opts.pick(3, 1)
    records = shapes_records(opts.work_dir, n)
    paths = [r.path for r in records]
    encoder, cfg = build_bench_encoder(opts)
    batch = int(cfg["batch_size"])
    transform = encoder.transform
    # in the layout the encoder reads (channels-last for the default), so that the bare forward holds no
    # layout conversion that the end-to-end path does not need either
    layout = getattr(encoder, "channels_last", False)
    images = transform.normalize(torch.stack([transform.to_uint8(load_rgb(p)) for p in paths]), layout)
    bare, e2e = [], []
    for _ in range(rounds):
        bare.append(bare_forward_seconds(encoder, images, batch, opts.device))
        e2e.append(_end_to_end_seconds(encoder, paths, opts.work_dir, batch, opts.workers))
    bare_s, e2e_s = statistics.median(bare), statistics.median(e2e)
    ratios = ", ".join(f"{b / e:.2f}" for b, e in zip(bare, e2e))
    return "\n".join([
        f"{n} synthetic PNG images ({cfg['image_size']} px), encoder {cfg['name']} ({cfg.get('precision', 'fp32')}, "
        f"channels_last {cfg.get('channels_last', False)}), batch {batch}, {opts.workers} loader worker(s), "
        f"device {opts.device}; median of {rounds} alternating rounds. Target: end to end >= 0.9x the bare forward.",
        "", "| path | seconds | images/s |", "|---|---|---|",
        f"| bare forward on normalised in-memory tensors | {bare_s:.2f} | {n / bare_s:.0f} |",
        f"| end to end: decode, resize, normalise, forward, write the cache | {e2e_s:.2f} | {n / e2e_s:.0f} |",
        "", f"End to end / bare: **{bare_s / e2e_s:.2f}x** (per round: {ratios})."])
