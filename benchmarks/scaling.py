"""Time and peak memory of extraction, one training epoch and evaluation at growing synthetic data sizes.

Each stage runs in a fresh process (``python -m benchmarks.scaling STAGE N WORK_DIR ...``) that
reports its wall time and its own peak resident memory (VmHWM), so one stage's memory never hides
another's. Expectations (issue 7): time grows linearly with the images; the feature cache is
memory-mapped, so a 50k-image training run stays under 3 GB. Cost: all four stages at 10k images took 30 minutes on 2 shared cores (load
average 8-10; 9 of them extraction, 17 the epoch); 50k is five times that work, so choose sizes with
--scaling-sizes and run the large ones on a quiet machine.
"""

from __future__ import annotations

import json
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.common import Options, compose, shapes_overrides, shapes_records

STAGES = ("generate", "extract", "train", "evaluate")
RSS_LIMIT_GB = 3.0


def stage_config(n: int, work: Path, device: str, workers: int, amp: str = "none"):
    """The main job's config for ``n`` synthetic train images: default decoder and batch, one epoch."""
    # --amp bf16 forces the encoder's and the training steps' autocast; otherwise the config's own precision
    precision = ["encoder.precision=bf16", "precision=bf16"] if amp == "bf16" else []
    return compose(*shapes_overrides(work, n), f"cache_dir={work / 'scale_cache'}", f"device={device}",
                   f"encoder.num_workers={workers}", *precision, "schedule.stages.cross_entropy.epochs=1",
                   "schedule.stages.self_critical.epochs=0", "schedule.stages.cross_entropy.val_max_images=100",
                   "metrics=bleu",
                   "evaluate.baselines=[]")


def run_stage(stage: str, n: int, work: Path, device: str, workers: int, amp: str = "none") -> dict:
    """Do one stage in this process; returns its own seconds (start-up excluded) and what it checked."""
    import numpy as np

    from captioning.features.prepare import prepare
    from captioning.pipeline import run_options

    cfg = stage_config(n, work, device, workers, amp)
    run_dir = work / f"scale_run_{n}"
    t0 = time.perf_counter()
    if stage == "generate":  # the synthetic data itself, from scratch (not a stage of the main job)
        shutil.rmtree(work / f"shapes_{n}", ignore_errors=True)
        t0 = time.perf_counter()
        shapes_records(work, n)
        return {"stage_seconds": time.perf_counter() - t0}
    if stage == "extract":
        for old in Path(cfg.cache_dir).glob(f"bench{n}-*"):  # always a fresh extraction
            shutil.rmtree(old)
        t0 = time.perf_counter()
        _extract(cfg)
        return {"stage_seconds": time.perf_counter() - t0}
    opts = run_options(cfg)
    prepared = prepare(opts.source, splits_needed=["train"])
    feats = prepared.features["train"]
    info = {"memmap": isinstance(feats, np.memmap), "features_mb": feats.nbytes / 2**20}
    t0 = time.perf_counter()  # the epoch or the evaluation alone, without opening the data and cache
    if stage == "train":
        from captioning.training.loop import train

        train(opts.training, prepared, run_dir)
    else:
        from captioning.models.checkpoint import load_checkpoint, model_from_checkpoint
        from captioning.pipeline import evaluate_all

        decoder, _ = model_from_checkpoint(load_checkpoint(run_dir / "checkpoints" / "last.pt"))
        t = opts.training  # as the main job evaluates (it decodes on the CPU)
        evaluate_all(prepared, decoder, run_dir, opts.eval_splits, t.train_split, t.max_len, opts.decoding,
                     opts.evaluate, opts.metrics)
    return {**info, "stage_seconds": time.perf_counter() - t0}


def _extract(cfg) -> None:
    """What ``prepare`` extracts (same cache key), with the encoder on the benchmark device."""
    from captioning.data.datasets import dataset_key, load_dataset
    from captioning.features.cache import extract_features
    from captioning.features.encoder import build_encoder
    from captioning.utils.schema import plain

    records = load_dataset(cfg.data, ["train"])["train"]
    enc_cfg = plain(cfg.encoder)
    encoder = build_encoder(enc_cfg).to(cfg.device)
    extract_features(encoder, [r.path for r in records], cfg.cache_dir, dataset_key(cfg.data, "train"),
                     batch_size=enc_cfg["batch_size"], num_workers=enc_cfg["num_workers"])


def measure(stage: str, n: int, opts: Options, threads: int | None = None) -> dict:
    """Run one stage in a child process: its seconds, its own seconds and peak RSS (MB)."""
    cmd = [sys.executable, "-m", "benchmarks.scaling", stage, str(n), str(opts.work_dir), opts.device,
           str(opts.workers), opts.amp, str(threads or 0)]
    t0 = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if out.returncode != 0:
        raise RuntimeError(f"scaling stage {stage} at {n} images failed:\n{out.stderr[-3000:]}")
    return {**json.loads(out.stdout.strip().splitlines()[-1]), "seconds": seconds}


NOTE = ("Synthetic shapes, 5 captions per image; the main job's config (encoder, decoder, batch) for one epoch; "
        "evaluation = beam-3 captions, BLEU, per-image scores and the failure report. Each stage runs in its own "
        "process: 'process s' includes start-up (imports alone take seconds); 'stage s' is the work itself "
        "(generating the synthetic images from scratch, which is not a stage of the main job; extraction including "
        "loading the records; the epoch or the evaluation after opening the data and the cache). Peak RSS is the "
        "process's own (VmHWM), loader workers not included; importing torch alone peaks at ~0.5 GB.")


def scaling_report(opts: Options, threads: int | None = None) -> str:
    """Markdown: per size and stage, seconds, seconds per 1k images and peak RSS; linearity and the 3 GB check."""
    sizes = opts.pick(sorted(opts.scaling_sizes), [256, 1024])
    rows, checks, per_k = [], [], {}
    for n in sizes:
        for stage in STAGES:
            m = measure(stage, n, opts, threads)
            per_k.setdefault(stage, []).append(m["stage_seconds"] / n * 1000)
            rows.append(f"| {n} | {stage} | {m['seconds']:.1f} | {m['stage_seconds']:.1f} | {per_k[stage][-1]:.2f} "
                        f"| {m['rss_mb']:.0f} | {m.get('memmap', '')} |")
            if stage == "train":
                rss = m["rss_mb"] / 1024
                checks.append(f"{n} images: training peak RSS {rss:.2f} GB "
                              f"({'under' if rss < RSS_LIMIT_GB else 'OVER'} {RSS_LIMIT_GB:.0f} GB), "
                              f"feature cache {m['features_mb']:.0f} MB, memory-mapped: {m['memmap']}")
    if len(sizes) > 1:  # linear growth: the time per image stays flat (it falls while fixed costs dominate)
        checks.append(f"stage s per 1k images at {sizes[-1]} / at {sizes[0]} images: "
                      + ", ".join(f"{stage} {v[-1] / v[0]:.2f}" for stage, v in per_k.items()))
    cfg = stage_config(sizes[0], opts.work_dir, opts.device, opts.workers, opts.amp)
    enc, dec = cfg.encoder, cfg.model
    setup = (f"Device {opts.device}, {opts.workers} loader worker(s); encoder {enc.name} at {enc.image_size} px "
             f"({enc.precision}, pool {enc.pool}), {cfg.cell.name.upper()} decoder with hidden size {dec.hidden_size}, "
             f"batch {cfg.schedule.stages.cross_entropy.batch_size}, training steps in {cfg.get('precision', 'fp32')} (decoding in fp32).")
    return "\n".join([f"{NOTE} {setup}", "",
                      "| images | stage | process s | stage s | stage s per 1k images | peak RSS MB "
                      "| features memory-mapped |", "|---|---|---|---|---|---|---|", *rows, "",
                      *[f"- {c}" for c in checks]])


def _main(argv: list[str]) -> None:
    stage, n, work, device, workers, amp, threads = argv
    if int(threads):
        import torch

        torch.set_num_threads(int(threads))
    import logging

    logging.basicConfig(level=logging.WARNING)
    info = run_stage(stage, int(n), Path(work), device, int(workers), amp)
    print(json.dumps({**info, "rss_mb": peak_rss_mb()}))


def peak_rss_mb() -> float:
    """This process's peak resident memory in MB.

    /proc's VmHWM belongs to the process's own address space. getrusage's ru_maxrss would do on a
    fresh process, but Linux carries it over an exec from the forking parent, so a child of a big
    benchmark process would report the parent's size. Children (loader workers) are not included.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KB (macOS: bytes)


if __name__ == "__main__":
    _main(sys.argv[1:])
