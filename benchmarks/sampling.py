"""Sampling and beam search (greedy and beam captions, self-critical steps), this checkout against an earlier
commit, on a trained run:
`python scripts/benchmark.py sampling --before REV --checkpoint RUN [--rounds 4] [--steps 10]`.

The earlier commit's captioning/nn/decoding.py is loaded beside today's, in one process. On the run's
cached features it compares (1) the greedy and the beam captions of an evaluation split (how many are
identical, and the time of each version, alternating in ``--rounds`` rounds; beam size and batch from the run's
`decoding` options) and (2) self-critical training steps (the run's self-critical stage options:
images per step, samples, reward), the two versions alternating in rounds of ``--steps`` steps from the
run's best weights, so load from other processes hits both alike. Writes the `sampling` section of
docs/benchmarks.md with the machine, its load average at start and end, and the command.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from omegaconf import OmegaConf

from benchmarks import DRIVER, PROG
from benchmarks.common import BENCHMARKS_MD, ROOT, short_rev, write_report
from captioning.features.prepare import DataSource, prepare
from captioning.models.checkpoint import load_checkpoint, model_from_checkpoint
from captioning.nn import decoding
from captioning.training import self_critical
from captioning.training.loop import StageConfig, TrainData, features_of
from captioning.training.optim import make_optimizer
from captioning.utils.report import machine_line
from captioning.utils.schema import build


def module_at(rev: str, path: str, name: str):
    """The file ``path`` as it was at commit ``rev``, imported as module ``name``."""
    text = subprocess.run(["git", "-C", str(ROOT), "show", f"{rev}:{path}"], capture_output=True, text=True,
                          check=True).stdout
    file = Path(tempfile.mkdtemp(prefix="before_")) / f"{name}.py"
    file.write_text(text)
    spec = importlib.util.spec_from_file_location(name, file)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the file runs
    spec.loader.exec_module(module)
    return module


def main(argv: list[str]) -> None:
    """Compare both versions' captions and self-critical steps; write the `sampling` section of --report."""
    parser = argparse.ArgumentParser(prog=f"{PROG} sampling", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", required=True, help="the earlier commit (e.g. a hash or main~3)")
    parser.add_argument("--checkpoint", required=True, help="a trained run directory (or its best.pt)")
    parser.add_argument("--split", default="test", help="the split whose greedy and beam captions are compared")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--steps", type=int, default=10, help="self-critical steps per version and round")
    parser.add_argument("--num_threads", type=int, default=1)
    parser.add_argument("--report", default=str(BENCHMARKS_MD))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.num_threads)
    start_line = machine_line()
    before = module_at(args.before, "captioning/nn/decoding.py", "decoding_before")
    ckpt = load_checkpoint(args.checkpoint)
    cfg = OmegaConf.create(ckpt["config"])
    model, vocab = model_from_checkpoint(ckpt)
    data_cfg = cfg.data
    source = DataSource(data_cfg, cfg.encoder, cfg.cache_dir, str(cfg.device), cfg.on_bad_image, cfg.seed)
    prepared = prepare(source, vocab=vocab, splits_needed=[data_cfg.train_split, args.split])
    max_len = data_cfg.max_caption_len

    # (1) greedy and beam captions of the split, both versions alternating, in evaluation's batches
    feats = torch.from_numpy(np.array(prepared.features[args.split], dtype=np.float32))
    model.eval()
    beam_size, chunk = cfg.decoding.beam_size, cfg.decoding.batch_size

    def captions(module, method):
        tokens, scores = [], []
        with torch.no_grad():
            for i in range(0, len(feats), chunk):
                rows = feats[i : i + chunk]
                out = (module.greedy(model, rows, max_len) if method == "greedy"
                       else module.beam_search(model, rows, beam_size, max_len))
                tokens += out.tokens
                scores += out.scores
        return tokens, scores

    decoded: dict[str, dict] = {}  # method -> {"same", "gap", "before": [s], "now": [s]}
    for method in ("greedy", "beam"):
        runs = {"before": [], "now": []}
        for _ in range(args.rounds):
            out = {}
            for label, module in (("before", before), ("now", decoding)):
                t = time.perf_counter()
                out[label] = captions(module, method)
                runs[label].append(time.perf_counter() - t)
        same = sum(a == b for a, b in zip(out["before"][0], out["now"][0]))
        gap = max(abs(a - b) for a, b in zip(out["before"][1], out["now"][1]))
        decoded[method] = {"same": same, "gap": gap, **runs}

    # (2) self-critical steps from the best weights, the versions alternating
    data = TrainData.of(prepared, data_cfg.train_split, max_len)
    stage = build(StageConfig, cfg.schedule.stages.self_critical)
    reward = self_critical.make_reward([r.captions for r in prepared.splits[data_cfg.train_split]], stage.reward)
    order = torch.randperm(len(data.paths), generator=torch.Generator().manual_seed(0))
    times: dict[str, list[float]] = {"before": [], "now": []}
    model.train()
    opt, _ = make_optimizer([{"params": list(model.parameters())}], stage, 1000)
    step = 0
    for _ in range(args.rounds):
        for label, module in (("before", before), ("now", decoding)):
            self_critical.sample_tokens = module.sample_tokens  # what self_critical_loss samples with
            t = time.perf_counter()
            for _ in range(args.steps):
                images = order[step * stage.batch_size : (step + 1) * stage.batch_size].tolist()
                step += 1
                loss, _ = self_critical.self_critical_loss(model, features_of(images, data, None, torch.device("cpu")),
                                                           images, reward, vocab.itos, stage)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            times[label].append((time.perf_counter() - t) / args.steps * 1e3)
    self_critical.sample_tokens = decoding.sample_tokens
    b, n = statistics.median(times["before"]), statistics.median(times["now"])
    rev = short_rev(args.before)
    command = (f"{DRIVER} sampling --before {args.before} --checkpoint {args.checkpoint} "
               f"--split {args.split} --rounds {args.rounds} --steps {args.steps} --num_threads {args.num_threads}")
    body = (f"decoding.py of {rev} (before) and of this checkout (now), in one process, on the run's cached features "
            f"({args.num_threads} thread(s)).\n\n"
            + "".join(
                f"{'Greedy' if m == 'greedy' else f'Beam ({beam_size})'} captions of `{args.split}` ({len(feats)} images, "
                f"batches of {chunk}): identical {d['same']} of {len(feats)}; largest difference of a caption's "
                f"log-probability {d['gap']:.1e}; seconds, median of {args.rounds} alternating rounds: before "
                f"{statistics.median(d['before']):.2f} ({', '.join(f'{x:.2f}' for x in d['before'])}), now "
                f"{statistics.median(d['now']):.2f} ({', '.join(f'{x:.2f}' for x in d['now'])}): "
                f"**{statistics.median(d['before']) / statistics.median(d['now']):.2f}x**.\n\n"
                for m, d in decoded.items()) +
            f"Self-critical steps ({stage.batch_size} images x {stage.samples} samples, {stage.reward} reward, forward + "
            f"backward + AdamW), ms per step, median of {args.rounds} alternating rounds of {args.steps} steps: "
            f"before {b:.0f} ({', '.join(f'{x:.0f}' for x in times['before'])}), now {n:.0f} "
            f"({', '.join(f'{x:.0f}' for x in times['now'])}): **{b / n:.2f}x**.")
    write_report(args.report, "sampling", "Sampling: greedy and beam captions and self-critical steps before and after",
                 command, body, start_line)
