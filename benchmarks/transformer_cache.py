"""Beam search with model=transformer's key/value cache vs re-running the prefix at every step:
`python scripts/benchmark.py transformer_cache [--images 200] [--beam 5] [--repeats 1]`.

One random transformer (the declared defaults: d_model 256, 3 layers, 4 heads, d_ff 1024) over R = 16
regions (a 4x4 grid) of D = 1280 features, a 10,000-word vocabulary, captions of up to 16 words; an
untrained model rarely says <end>, so every caption runs all 17 steps (the cost of the longest). Three
decoders go through the same batched beam search (captioning.nn.decoding.beam_search):

  cache       the model itself: step t reads one new position; cross-attention keys/values of the
              regions are computed once (init_state) and kept through the beams' reorders
  cache-copy  the same, but each reorder copies every tensor of the state, the regions' keys/values
              included (CaptionModel's default select_state: how the model decoded before commit 7faf0e3)
  prefix      no cache, the decoder layers: step t re-runs every layer over the t words so far
              (the regions projected once, their keys/values every step, the output layer at the last
              position only), the least a cache-free step has to do
  forward     no cache, the model's teacher-forcing forward over the prefix at every step (regions
              projected and logits of every position every step)

The three are timed interleaved (so load from other processes hits them alike), must give identical
captions, and the figures are printed with the machine and its load average at start and end.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import torch
from torch import Tensor

from benchmarks import PROG
from captioning.models.base import CaptionModel, build_model
from captioning.models.transformer import Transformer
from captioning.nn.decoding import beam_search, map_tensors
from captioning.utils.report import machine_line


class PrefixRecompute:
    """A cache-free decoder around a Transformer: the state is the memory and the words so far; each
    step runs the decoder layers over all of them and the output layer on the last position."""

    def __init__(self, model: Transformer) -> None:
        self.model = model

    def init_state(self, features: Tensor) -> dict:
        memory = self.model.encode(features)
        return {"memory": memory, "prefix": memory.new_zeros(memory.size(0), 0, dtype=torch.long)}

    def step(self, tokens: Tensor, state: dict) -> tuple[Tensor, dict]:
        m, prefix = self.model, torch.cat([state["prefix"], tokens[:, None]], 1)
        x = m.word_embed(prefix) + m.pos_embed(torch.arange(prefix.size(1), device=prefix.device))
        for layer in m.layers:
            x = layer(x, state["memory"])
        logp = torch.log_softmax(m.out(m.ln_f(x[:, -1])), dim=-1)
        return logp, {"memory": state["memory"], "prefix": prefix}

    def select_state(self, state: dict, index: Tensor) -> dict:
        return map_tensors(state, lambda t: t.index_select(0, index))

    def eval(self) -> "PrefixRecompute":
        self.model.eval()
        return self


class CopyingCache:
    """The model with the default select_state: every tensor of its state indexed at every reorder."""

    def __init__(self, model: Transformer) -> None:
        self.model = model
        self.init_state, self.step = model.init_state, model.step

    def select_state(self, state: dict, index: Tensor) -> dict:
        return CaptionModel.select_state(self.model, state, index)


class ForwardRecompute(PrefixRecompute):
    """A cache-free decoder that calls the model's teacher-forcing forward on the features and the
    whole prefix at every step."""

    def init_state(self, features: Tensor) -> dict:
        return {"features": features, "prefix": features.new_zeros(features.size(0), 0, dtype=torch.long)}

    def step(self, tokens: Tensor, state: dict) -> tuple[Tensor, dict]:
        prefix = torch.cat([state["prefix"], tokens[:, None]], 1)
        logp = torch.log_softmax(self.model(state["features"], prefix)[:, -1], dim=-1)
        return logp, {"features": state["features"], "prefix": prefix}


def main(argv: list[str]) -> None:
    """Time the decoders interleaved and print the table; exits non-zero where their captions differ."""
    parser = argparse.ArgumentParser(prog=f"{PROG} transformer_cache", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--beam", type=int, default=5)
    parser.add_argument("--regions", type=int, default=16)
    parser.add_argument("--feature-dim", type=int, default=1280)
    parser.add_argument("--vocab", type=int, default=10000)
    parser.add_argument("--max-len", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=1, help="interleaved rounds; the median is reported")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = build_model({"name": "transformer"}, args.feature_dim, args.vocab, args.max_len).eval()
    feats = torch.randn(args.images, args.regions, args.feature_dim)
    decoders = {"cache": model, "cache-copy": CopyingCache(model), "prefix": PrefixRecompute(model),
                "forward": ForwardRecompute(model)}
    search = dict(beam_size=args.beam, max_len=args.max_len)
    for decoder in decoders.values():
        beam_search(decoder, feats[:2], **search)  # warm-up
    print(machine_line())
    load_start = os.getloadavg()[0]
    times: dict[str, list[float]] = {name: [] for name in decoders}
    captions = {}
    for _ in range(args.repeats):
        for name, decoder in decoders.items():
            t0 = time.perf_counter()
            captions[name] = beam_search(decoder, feats, **search).tokens
            times[name].append(time.perf_counter() - t0)
    load_end = os.getloadavg()[0]
    print(f"beam {args.beam}, {args.images} images, R={args.regions}, D={args.feature_dim}, vocab {args.vocab}, "
          f"max_len {args.max_len} (longest caption {max(len(c) for c in captions['cache'])} words), "
          f"{args.repeats} round(s), load average {load_start:.2f} at start, {load_end:.2f} at end")
    cached = statistics.median(times["cache"])
    print("| decoder | seconds | images/s | vs cache | captions identical to cache |")
    print("|---|---:|---:|---:|---:|")
    for name in decoders:
        t = statistics.median(times[name])
        same = sum(a == b for a, b in zip(captions[name], captions["cache"]))
        print(f"| {name} | {t:.2f} | {args.images / t:.1f} | {t / cached:.2f}x | {same}/{args.images} |")
    if any(captions[name] != captions["cache"] for name in decoders):
        sys.exit("the decoders' captions differ")
