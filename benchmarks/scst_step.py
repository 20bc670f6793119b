"""Milliseconds per self-critical step of a trained run, on its cached training features:
`python scripts/benchmark.py scst_step --checkpoint RUN [--threads 1] [--steps 7] [--images 50] [--samples 5]
[--package CHECKOUT]`.

One step as the self-critical stage takes it, without the reward and the optimizer: sample ``--samples``
captions of each of ``--images`` training images (each image encoded once) with gradients on (training mode,
the run's precision under autocast where the CPU multiplies bfloat16 natively), then backpropagate their summed
log-probability.
Each step takes other images (fixed by the step's index), and the first is a warm-up. To compare two versions
of the package, run it with each in turn (`--package <other checkout>`, then without), alternating, on an
otherwise idle machine; it prints one line and writes nothing.
"""

from __future__ import annotations

import argparse
import inspect
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from omegaconf import OmegaConf

from benchmarks import PROG  # not benchmarks.common: it imports this checkout's captioning package


def use_package(checkout: Path) -> None:
    """Import ``captioning`` from ``checkout`` rather than from this checkout (before anything imports it)."""
    if not (checkout / "captioning" / "__init__.py").exists():
        sys.exit(f"--package {checkout}: no captioning package there; give the root of a checkout of this project")
    if "captioning" in sys.modules:  # the driver imports no captioning module, so this is a mistake in it
        sys.exit("--package: the captioning package was imported before the benchmark could choose it")
    sys.path.insert(0, str(checkout.resolve()))


def main(argv: list[str]) -> None:
    """Time the self-critical steps of the package chosen (this checkout's, or --package's) and print them."""
    parser = argparse.ArgumentParser(prog=f"{PROG} scst_step", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True, help="a trained run directory (or its best.pt)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (make_results runs use 1)")
    parser.add_argument("--steps", type=int, default=7, help="steps timed, the first a warm-up")
    parser.add_argument("--images", type=int, default=50, help="images per step (the stage's batch_size)")
    parser.add_argument("--samples", type=int, default=5, help="captions sampled per image")
    parser.add_argument("--package", type=Path, default=None,
                        help="another checkout whose captioning package is timed instead of this one's")
    args = parser.parse_args(argv)
    if args.package is not None:
        use_package(args.package)
    # imported here, once the package to time is chosen
    from captioning.features.prepare import prepare
    try:
        from captioning.features.prepare import DataSource

        def data_source(cfg):
            return DataSource(cfg.data, cfg.encoder, cfg.cache_dir, str(cfg.device), cfg.on_bad_image, cfg.seed)
    except ImportError:  # a checkout from before DataSource, whose prepare read the run config itself
        def data_source(cfg):
            return cfg
    from captioning.models.checkpoint import load_checkpoint, model_from_checkpoint
    from captioning.nn.decoding import sample_tokens
    from captioning.utils.precision import training_precision

    try:
        from captioning.utils.memory import keep_freed_memory
    except ImportError:  # a checkout from before it, compared with this one: the allocator's defaults
        def keep_freed_memory() -> bool:
            return False
    torch.set_num_threads(args.threads)
    keep_freed_memory()
    ckpt = load_checkpoint(args.checkpoint)
    cfg = OmegaConf.create(ckpt["config"])
    model, vocab = model_from_checkpoint(ckpt)
    train = cfg.data.train_split
    features = prepare(data_source(cfg), vocab=vocab, splits_needed=[train]).features[train]
    bf16 = training_precision(cfg.precision, torch.device("cpu")) == "bf16"
    model.train()
    repeats = "repeats" in inspect.signature(sample_tokens).parameters
    times = []
    for step in range(args.steps):
        rows = np.sort(np.random.default_rng(step).choice(len(features), args.images, replace=False))
        feats = torch.from_numpy(np.array(features[rows], dtype=np.float32))
        torch.manual_seed(step)
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            if repeats:  # each image encoded once, as the self-critical stage samples
                _, log_prob = sample_tokens(model, feats, cfg.data.max_caption_len, 1.0, repeats=args.samples)
            else:  # a checkout from before ``repeats``: every sample's copy of the features encoded
                _, log_prob = sample_tokens(model, feats.repeat_interleave(args.samples, 0),
                                            cfg.data.max_caption_len, 1.0)
        model.zero_grad(set_to_none=True)
        log_prob.mean().backward()
        times.append((time.perf_counter() - start) * 1e3)
    print(f"{model.name}: {statistics.median(times[1:]):.0f} ms per step (median of {args.steps - 1} after a "
          f"warm-up; {', '.join(f'{t:.0f}' for t in times)}), {args.images} images x {args.samples} samples, "
          f"{'bf16' if bf16 else 'fp32'}, {args.threads} thread(s), load average {os.getloadavg()[0]:.2f}, "
          f"package {Path(sys.modules['captioning'].__file__).parent.parent}")
