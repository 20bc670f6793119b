"""Where a training step of the main job goes: the default model's cross-entropy and self-critical steps,
timed by phase and profiled by kind of operation.

The decoder is the default config's (configs/train.yaml: show_tell, LSTM, its sizes and dropout), trained
on the real shapes captions (their lengths decide the padding) with random features in place of the
cached ones (values do not change the time). For each step kind: milliseconds per step (median of
``--repeats``), the phases (loss, backward, clipping + optimizer), the profiler's self time by kind of
operation (the recurrent kernels, other matrix products, random numbers for dropout and sampling, the
optimizer's element-wise updates, everything else) and the padding: the share of the recurrent steps a
batch trimmed to its longest caption spends past a caption's end. The cross-entropy step is measured on
random batches (the default) and on length-bucketed ones (``bucket_by_length: true``).
"""

from __future__ import annotations

import statistics
import time
from collections import defaultdict

import numpy as np
import torch

from benchmarks.common import Options, autocast, compose, shapes_overrides, shapes_records, sync
from captioning.data.coco import encode_captions
from captioning.models.base import build_model
from captioning.text.tokenizer import tokenize
from captioning.text.vocab import Vocabulary
from captioning.training.batching import epoch_order
from captioning.training.loop import StageConfig, caption_loss
from captioning.training.optim import make_optimizer
from captioning.training.self_critical import make_reward, self_critical_loss
from captioning.utils.schema import build

KINDS = {  # profiler op name -> kind; the first matching prefix wins
    "aten::mkldnn_rnn": "recurrent kernels", "aten::_thnn_fused": "recurrent kernels", "aten::lstm": "recurrent kernels",
    "aten::gru": "recurrent kernels", "aten::rnn_tanh": "recurrent kernels", "aten::_cudnn_rnn": "recurrent kernels",
    "aten::mm": "other matrix products", "aten::addmm": "other matrix products", "aten::bmm": "other matrix products",
    "aten::bernoulli": "random numbers", "aten::multinomial": "random numbers", "aten::exponential": "random numbers",
    "aten::uniform": "random numbers", "aten::native_dropout": "random numbers",
    "aten::_fused_adamw": "optimizer updates", "aten::_foreach": "optimizer updates", "aten::addcdiv": "optimizer updates",
    "aten::addcmul": "optimizer updates", "aten::lerp": "optimizer updates", "aten::sqrt": "optimizer updates",
}
ORDER = ["recurrent kernels", "other matrix products", "random numbers", "optimizer updates", "everything else"]


def kind_of(name: str) -> str:
    return next((k for prefix, k in KINDS.items() if name.startswith(prefix)), "everything else")


def step_report(opts: Options) -> str:
    """Markdown: per step kind, ms per step, phases, self time by kind of operation, padding."""
    device, n_images = torch.device(opts.device), opts.pick(2000, 200)
    records = shapes_records(opts.work_dir, n_images)
    cfg = compose(*shapes_overrides(opts.work_dir, n_images))
    max_len = cfg.data.max_caption_len
    vocab = Vocabulary.build((tokenize(c) for r in records for c in r.captions), min_count=1)
    tokens, image_of = encode_captions(records, vocab, max_len)
    feature_dim = 1280  # the default encoder's pooled feature
    features = torch.randn(len(records), feature_dim, generator=torch.Generator().manual_seed(0))
    stages = {name: build(StageConfig, node) for name, node in cfg.schedule.stages.items()}
    xe, sc = stages["cross_entropy"], stages["self_critical"]
    torch.manual_seed(0)
    model = build_model(cfg.model, feature_dim, len(vocab), max_len).to(device).train()
    lengths = (tokens != 0).sum(1)

    def optimise(opt, loss, timer):
        t = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        sync(device)
        timer["backward"] += time.perf_counter() - t
        t = time.perf_counter()
        torch.nn.utils.clip_grad_norm_(model.parameters(), xe.clip)
        opt.step()
        sync(device)
        timer["clip + optimizer"] += time.perf_counter() - t

    def xe_steps(bucket: bool):
        order = epoch_order(lengths, xe.batch_size, 0, bucket=bucket)
        batches = [b for b in order.split(xe.batch_size) if len(b) == xe.batch_size]
        opt, _ = make_optimizer([{"params": list(model.parameters())}], xe, len(batches))
        padded = [0, 0]

        def one(i: int, timer: dict) -> None:
            batch = batches[i % len(batches)]
            rows = tokens[batch]
            rows = rows[:, : int((rows != 0).sum(1).max())].to(device)
            padded[0] += int((rows[:, 1:] != 0).sum())
            padded[1] += rows[:, 1:].numel()
            t = time.perf_counter()
            with autocast(opts.device, opts.amp):
                loss = caption_loss(model(features[image_of[batch]].to(device), rows[:, :-1]).float(), rows[:, 1:])
            sync(device)
            timer["loss"] += time.perf_counter() - t
            optimise(opt, loss, timer)
        return one, padded

    def sc_steps():
        reward = make_reward([r.captions for r in records], sc.reward)
        order = torch.randperm(len(records), generator=torch.Generator().manual_seed(0))
        batches = [b.tolist() for b in order.split(sc.batch_size) if len(b) == sc.batch_size]
        opt, _ = make_optimizer([{"params": list(model.parameters())}], sc, len(batches))
        padded = [0, 0]

        def one(i: int, timer: dict) -> None:
            images = batches[i % len(batches)]
            t = time.perf_counter()
            with autocast(opts.device, opts.amp):
                loss, _ = self_critical_loss(model, features[images].to(device), images, reward, vocab.itos, sc)
            sync(device)
            timer["sample + reward + loss"] += time.perf_counter() - t
            optimise(opt, loss, timer)
        return one, padded

    rows, repeats = [], max(5, opts.repeats)
    for label, (one, padded), per_epoch in (
            ("cross-entropy, random batches (default)", xe_steps(False), 50_000 / xe.batch_size),
            ("cross-entropy, length-bucketed batches", xe_steps(True), 50_000 / xe.batch_size),
            (f"self-critical ({sc.samples} samples, {sc.reward} reward)", sc_steps(), 10_000 / sc.batch_size)):
        timer: dict = defaultdict(float)
        for i in range(2):  # warm-up
            one(i, timer)
        timer.clear()
        padded[:] = [0, 0]
        times = []
        for i in range(repeats):
            t = time.perf_counter()
            one(2 + i, timer)
            times.append(time.perf_counter() - t)
        fill = padded[0] / padded[1] if padded[1] else float("nan")
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            for i in range(repeats):
                one(2 + repeats + i, defaultdict(float))
        self_time: dict = defaultdict(float)
        for event in prof.key_averages():
            if event.key.startswith("aten::") or event.key.startswith("Optimizer"):
                self_time[kind_of(event.key)] += event.self_cpu_time_total
        total = sum(self_time.values()) or 1.0
        ms = statistics.median(times) * 1e3
        phases = ", ".join(f"{k} {v / repeats * 1e3:.0f}" for k, v in timer.items())
        kinds = ", ".join(f"{k} {100 * self_time[k] / total:.0f}%" for k in ORDER)
        rows.append(f"| {label} | {ms:.1f} | {ms * per_epoch / 1e3:.0f} | {phases} | {kinds} | "
                    + ("-" if fill != fill else f"{100 * (1 - fill):.0f}%") + " |")
    c = cfg.model
    return (f"Model: the default show_tell ({c.cell.name}, embed {c.embed_dim}, hidden {c.hidden_size}, dropout "
            f"{c.dropout}, vocabulary {len(vocab)} from {n_images} shapes images' captions), cross-entropy batch "
            f"{xe.batch_size} captions, self-critical batch {sc.batch_size} images; median of {repeats} steps, then "
            f"{repeats} profiled steps; device {opts.device}, autocast {opts.amp}. The self-critical row samples from the "
            "decoder as the cross-entropy rows left it (~90 steps in). Per epoch: ms per step x the steps of one epoch of the "
            "default 10k-image train split (50k captions; 10k images), extrapolated. Padding: the share of a batch's "
            "decoder positions past its captions' ends (cross-entropy only).\n\n"
            "| step | ms per step | s per epoch (extrapolated) | phases (ms) | self time by kind | padding |\n"
            "|---|---|---|---|---|---|\n" + "\n".join(rows))
