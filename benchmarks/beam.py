"""Beam search at beam 5: batched over images x beams vs one image at a time (identical captions), the
search of captioning.nn.decoding vs the dense reference it replaced (tests/beam_oracle.py, identical
captions and scores), and a torch.profiler breakdown of where batched decoding spends its time.

The decoder has random weights (an untrained model rarely says <end>, so every caption runs to
max_len: the cost of the longest captions). Targets (issue 7 and "Decoding at the machine's limit"):
batched >= 5x one image at a time; batched >= 2.5x the dense reference's images/s; the model's matrix
products (addmm + the LSTM kernel) >= 70% of batched decoding time.
"""

from __future__ import annotations

import os
import statistics
import time

import torch
from torch.profiler import ProfilerActivity, profile

from benchmarks.common import Options, show_tell, stopwatch, sync
from captioning.nn.decoding import beam_search, decode_batched

# self time of these ops is "the model's matrix products": the output layer (addmm) and the fused LSTM
MATMUL_OPS = ("aten::addmm", "aten::mm", "aten::bmm", "aten::mkldnn_rnn_layer", "aten::_cudnn_rnn")


def profile_shares(fn, device: str) -> tuple[float, list[tuple[str, float]]]:
    """The matrix products' share of self time in ``fn()`` and the five largest ops with their shares."""
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device == "cuda" else [])
    with profile(activities=activities) as prof:
        fn()
        sync(device)
    events = prof.key_averages()
    attr = "self_device_time_total" if device == "cuda" else "self_cpu_time_total"
    times = {e.key: getattr(e, attr) for e in events}
    total = sum(times.values()) or 1.0
    top = sorted(times.items(), key=lambda kv: -kv[1])[:5]
    return sum(t for k, t in times.items() if k in MATMUL_OPS) / total, [(k, t / total) for k, t in top]


def beam_report(opts: Options, beam_size: int = 5, max_len: int = 16) -> str:
    """Markdown: seconds for n images one at a time vs batched, and batched vs the dense reference
    (interleaved, same process); raises if captions differ on CPU."""
    from tests.beam_oracle import dense_beam_search  # the algorithm before the rewrite

    n, vocab = opts.pick(200, 20), opts.pick(10000, 1000)
    repeats = max(1, min(opts.repeats, 5))
    torch.manual_seed(0)
    decoder = show_tell(1280, vocab).to(opts.device).eval()
    feats = torch.randn(n, 1280, device=opts.device)
    searches = {"dense reference (before)": dense_beam_search, "top-K per beam (now)": beam_search}
    for search in searches.values():
        search(decoder, feats[:2], beam_size=beam_size, max_len=max_len)  # warm-up
    sync(opts.device)
    load_start = os.getloadavg()[0]
    times: dict[str, list[float]] = {name: [] for name in searches}
    cpu: dict[str, list[float]] = {name: [] for name in searches}  # process CPU seconds: less load-bound
    outputs, pair_loads = {}, []
    for _ in range(repeats):  # interleaved, so that load changes hit both alike
        for name, search in searches.items():
            c0 = time.process_time()
            with stopwatch() as t:
                outputs[name] = search(decoder, feats, beam_size=beam_size, max_len=max_len)
                sync(opts.device)
            cpu[name].append(time.process_time() - c0)
            times[name].append(t[0])
        pair_loads.append(os.getloadavg()[0])
    before, now = (outputs[name] for name in searches)
    agree = sum(a == b for a, b in zip(before.tokens, now.tokens))
    worst = max(abs(a - b) for a, b in zip(before.scores, now.scores))
    with stopwatch() as t1:
        single = [beam_search(decoder, feats[i : i + 1], beam_size=beam_size, max_len=max_len).tokens[0]
                  for i in range(n)]
        sync(opts.device)
    with stopwatch() as tb:
        batched = decode_batched(decoder, feats, batch_size=500, method="beam", beam_size=beam_size,
                                 max_len=max_len).tokens
        sync(opts.device)
    same = sum(a == b for a, b in zip(single, batched))
    if opts.device == "cpu" and (same != n or agree != n):
        raise AssertionError(f"batched beam search changed {n - same} of {n} captions; "
                             f"the dense reference disagrees on {n - agree}")
    shares = {name: profile_shares(lambda s=search: s(decoder, feats, beam_size=beam_size, max_len=max_len),
                                   opts.device) for name, search in searches.items()}
    load_end = os.getloadavg()[0]
    med = {name: statistics.median(ts) for name, ts in times.items()}
    cpu_med = {name: statistics.median(ts) for name, ts in cpu.items()}
    (b_name, b_med), (n_name, n_med) = med.items()
    b_cpu, n_cpu = cpu_med.values()

    def ops(top):
        return ", ".join(f"{k.removeprefix('aten::')} {s:.0%}" for k, s in top)

    return "\n".join([
        f"{n} images, beam {beam_size}, max {max_len} words, LSTM decoder (embed 256, hidden 512, vocabulary "
        f"{vocab}, random weights), device {opts.device}, fp32. Targets: batched >= 5x one image at a time "
        f"(same captions); >= 2.5x the dense reference's images/s; matrix products (addmm + LSTM kernel) >= 70% "
        f"of batched decoding time. Load average {load_start:.2f} before the timed runs, {load_end:.2f} after "
        "(1-minute; other jobs shared the 2 cores).", "",
        f"Batched, the search before and after the rewrite, interleaved in one process, {repeats} runs each "
        "(median; all runs in seconds):", "",
        "| beam search | median seconds | images/s | runs | median CPU seconds | matrix products | "
        "largest ops (self time) |",
        "|---|---|---|---|---|---|---|",
        *(f"| {name} | {med[name]:.2f} | {n / med[name]:.0f} | {' '.join(f'{t:.2f}' for t in times[name])} | "
          f"{cpu_med[name]:.2f} | "
          f"{shares[name][0]:.0%} | {ops(shares[name][1])} |" for name in searches),
        "", f"Now / before: **{b_med / n_med:.2f}x the images/s** (wall clock; {b_cpu / n_cpu:.2f}x in process CPU "
        f"seconds); identical captions {agree} of {n}, largest "
        f"score difference {worst:.1e}. Each interleaved pair, before / now wall clock (1-minute load after the "
        "pair): " + ", ".join(f"{b / a:.2f}x ({load:.1f})" for b, a, load in
                               zip(times[b_name], times[n_name], pair_loads)) + ".", "",
        "| decoding (now) | seconds | images/s |", "|---|---|---|",
        f"| one image at a time | {t1[0]:.2f} | {n / t1[0]:.0f} |",
        f"| batched (500 images x {beam_size} beams per step) | {tb[0]:.2f} | {n / tb[0]:.0f} |",
        "", f"Batched / one at a time: **{t1[0] / tb[0]:.1f}x faster**; identical captions: {same} of {n}."])
