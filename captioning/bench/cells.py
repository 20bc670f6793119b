"""Training-step time of scratch vs fused recurrent modules, and the machine's GEMM rate for reference."""

from __future__ import annotations

import time

import torch

from captioning.cells import build_rnn

GATES = {"rnn": 1, "lstm": 4, "gru": 3}


def time_it(fn, repeats: int, warmup: int = 2) -> float:
    """Median seconds of ``fn()`` over ``repeats`` runs after ``warmup`` runs."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]


def step_flops(cell: str, batch: int, steps: int, input_size: int, hidden: int) -> float:
    """FLOPs of forward + backward of the matrix products (3x forward), the dominant cost."""
    g = GATES[cell]
    forward = 2 * batch * steps * g * hidden * (input_size + hidden)
    return 3 * forward


def gemm_rate(n: int = 1024, repeats: int = 10) -> float:
    """Measured fp32 GEMM GFLOP/s of this machine (n x n times n x n)."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    return 2 * n**3 / time_it(lambda: a @ b, repeats) / 1e9


def training_step_time(cell: str, backend: str, batch: int = 128, steps: int = 20, input_size: int = 256,
                       hidden: int = 512, repeats: int = 10, device: str = "cpu") -> float:
    """Median seconds of one forward + backward + Adam step on a random sequence batch."""
    torch.manual_seed(0)
    model = build_rnn(cell, input_size, hidden, backend=backend).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = torch.randn(steps, batch, input_size, device=device)

    def step():
        out, _ = model(x)
        loss = out.pow(2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if device != "cpu":
            torch.cuda.synchronize()

    return time_it(step, repeats)


def cells_report(repeats: int = 10, device: str = "cpu", **sizes) -> str:
    """Markdown table: ms per training step, GFLOP/s, scratch/fused ratio, for each cell."""
    sizes = {"batch": 128, "steps": 20, "input_size": 256, "hidden": 512, **sizes}
    rate = gemm_rate() if device == "cpu" else float("nan")
    lines = [f"Sizes: batch {sizes['batch']}, {sizes['steps']} steps, input {sizes['input_size']}, "
             f"hidden {sizes['hidden']}; one step = forward + backward + Adam. Measured GEMM rate: {rate:.0f} GFLOP/s.",
             "", "| cell | fused ms | scratch ms | scratch / fused | fused GFLOP/s | fused / GEMM rate |",
             "|---|---|---|---|---|---|"]
    for cell in ("rnn", "lstm", "gru"):
        t = {b: training_step_time(cell, b, repeats=repeats, device=device, **sizes) for b in ("fused", "scratch")}
        gf = step_flops(cell, **sizes) / t["fused"] / 1e9
        lines.append(f"| {cell} | {t['fused'] * 1e3:.1f} | {t['scratch'] * 1e3:.1f} | {t['scratch'] / t['fused']:.2f} "
                     f"| {gf:.0f} | {gf / rate:.0%} |")
    return "\n".join(lines)
