"""Beam search batched over images x beams vs one image at a time, at beam 5, with identical captions.

The decoder has random weights (an untrained model rarely says <end>, so every caption runs to
max_len: the cost of the longest captions). Target (issue 7): batched >= 5x faster.
"""

from __future__ import annotations

import torch

from benchmarks.common import Options, show_tell, stopwatch, sync
from captioning.nn.decoding import beam_search, decode_batched


def beam_report(opts: Options, beam_size: int = 5, max_len: int = 16) -> str:
    """Markdown: seconds for n images one at a time vs batched; raises if the captions differ on CPU."""
    n, vocab = opts.pick(200, 20), opts.pick(10000, 1000)
    torch.manual_seed(0)
    decoder = show_tell(1280, vocab).to(opts.device).eval()
    feats = torch.randn(n, 1280, device=opts.device)
    beam_search(decoder, feats[:2], beam_size=beam_size, max_len=max_len)  # warm-up
    sync(opts.device)
    with stopwatch() as t1:
        single = [beam_search(decoder, feats[i : i + 1], beam_size=beam_size, max_len=max_len).tokens[0]
                  for i in range(n)]
        sync(opts.device)
    with stopwatch() as tb:
        batched = decode_batched(decoder, feats, batch_size=500, method="beam", beam_size=beam_size,
                                 max_len=max_len).tokens
        sync(opts.device)
    same = sum(a == b for a, b in zip(single, batched))
    if opts.device == "cpu" and same != n:
        raise AssertionError(f"batched beam search changed {n - same} of {n} captions")
    return "\n".join([
        f"{n} images, beam {beam_size}, max {max_len} words, LSTM decoder (embed 256, hidden 512, vocabulary "
        f"{vocab}, random weights), device {opts.device}, fp32. Target: batched >= 5x faster, same captions.", "",
        "| decoding | seconds | images/s |", "|---|---|---|",
        f"| one image at a time | {t1[0]:.2f} | {n / t1[0]:.0f} |",
        f"| batched (500 images x {beam_size} beams per step) | {tb[0]:.2f} | {n / tb[0]:.0f} |",
        "", f"Batched / one at a time: **{t1[0] / tb[0]:.1f}x faster**; identical captions: {same} of {n}."])
