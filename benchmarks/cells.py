"""Decoder training speed: GFLOP/s of a training step per cell and backend, next to the machine's GEMM rate.

The matrix products are the work (forward 2*B*T*gates*H*(I+H) FLOPs for the recurrence, 2*B*T*H*V for
the output layer; backward twice the forward), so GFLOP/s against a plain GEMM of the same machine says
how close a step runs to what the hardware can do. Targets (issue 7): fused >= 70% of the GEMM rate,
scratch within 1.5x of fused.
"""

from __future__ import annotations

import torch

from benchmarks.common import Options, autocast, time_it, show_tell
from captioning.nn.cells import build_rnn
from captioning.training.loop import caption_loss

GATES = {"rnn": 1, "lstm": 4, "gru": 3}
BACKENDS = ("fused", "scratch")


def step_flops(cell: str, batch: int, steps: int, input_size: int, hidden: int) -> float:
    """FLOPs of forward + backward of the recurrent matrix products (3x forward), the dominant cost."""
    forward = 2 * batch * steps * GATES[cell] * hidden * (input_size + hidden)
    return 3 * forward


def decoder_flops(cell: str, batch: int, steps: int, embed: int, hidden: int, vocab: int) -> float:
    """FLOPs of a caption-decoder training step: the recurrence plus the output layer (forward + backward)."""
    return step_flops(cell, batch, steps, embed, hidden) + 3 * 2 * batch * steps * hidden * vocab


def gemm_rate(n: int = 1024, repeats: int = 10, device: str = "cpu", dtype: torch.dtype = torch.float32) -> float:
    """Measured GEMM GFLOP/s of this machine (n x n times n x n)."""
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    return 2 * n**3 / time_it(lambda: a @ b, repeats, device=device) / 1e9


def _train_step(model: torch.nn.Module, loss_fn, device: str, amp: str):
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)

    def step():
        with autocast(device, amp):
            loss = loss_fn()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def training_step_time(cell: str, backend: str, batch: int = 128, steps: int = 17, input_size: int = 256,
                       hidden: int = 512, repeats: int = 10, device: str = "cpu", amp: str = "none") -> float:
    """Median seconds of one forward + backward + Adam step of the recurrent module on a random batch."""
    torch.manual_seed(0)
    model = build_rnn(cell, input_size, hidden, backend=backend).to(device)
    x = torch.randn(steps, batch, input_size, device=device)
    step = _train_step(model, lambda: model(x)[0].float().pow(2).mean(), device, amp)
    return time_it(step, repeats, device=device)


def decoder_step_time(cell: str, backend: str, batch: int = 128, steps: int = 17, embed: int = 256,
                      hidden: int = 512, vocab: int = 10000, feature_dim: int = 1280, repeats: int = 10,
                      device: str = "cpu", amp: str = "none") -> float:
    """Median seconds of one show_tell training step (teacher forcing, masked cross-entropy, Adam)."""
    torch.manual_seed(0)
    model = show_tell(feature_dim, vocab, cell=cell, embed_dim=embed, hidden_size=hidden, backend=backend)
    model = model.to(device)
    feats = torch.randn(batch, feature_dim, device=device)
    tokens = torch.randint(4, vocab, (batch, steps + 1), device=device)
    step = _train_step(model, lambda: caption_loss(model(feats, tokens[:, :-1]).float(), tokens[:, 1:]), device, amp)
    return time_it(step, repeats, device=device)


def cells_report(opts: Options) -> str:
    """Markdown: ms per training step and GFLOP/s per cell and backend, and the same for the whole decoder."""
    sizes = opts.pick({"batch": 128, "steps": 17, "input_size": 256, "hidden": 512},
                      {"batch": 32, "steps": 8, "input_size": 64, "hidden": 128})
    vocab = opts.pick(10000, 1000)
    repeats = opts.pick(opts.repeats, min(opts.repeats, 3))
    dtype = torch.bfloat16 if opts.amp == "bf16" else torch.float32
    rate = gemm_rate(opts.pick(1024, 512) if opts.device == "cpu" else 4096, repeats, opts.device, dtype)
    caption = " (16 words + <start>)" if sizes["steps"] == 17 else ""
    lines = [f"Sizes: batch {sizes['batch']}, {sizes['steps']} steps{caption}, "
             f"input {sizes['input_size']}, hidden {sizes['hidden']}; one step = forward + backward + Adam"
             f"{', autocast bf16' if opts.amp == 'bf16' else ''}. Measured GEMM rate ({str(dtype)[6:]}): "
             f"{rate:.0f} GFLOP/s. Targets: fused >= 70% of the GEMM rate, scratch within 1.5x of fused.", "",
             "| module | cell | fused ms | scratch ms | scratch / fused | fused GFLOP/s | fused / GEMM | "
             "scratch GFLOP/s | scratch / GEMM |", "|---|---|---|---|---|---|---|---|---|"]
    dec = {"batch": sizes["batch"], "steps": sizes["steps"], "embed": sizes["input_size"], "hidden": sizes["hidden"]}
    for module, timer, flops in (
            ("recurrence", lambda c, b: training_step_time(c, b, repeats=repeats, device=opts.device, amp=opts.amp,
                                                           **sizes), lambda c: step_flops(c, **sizes)),
            (f"decoder (V={vocab})", lambda c, b: decoder_step_time(c, b, vocab=vocab, repeats=repeats,
                                                                     device=opts.device, amp=opts.amp, **dec),
             lambda c: decoder_flops(c, vocab=vocab, **dec))):
        for cell in GATES:
            t = {b: timer(cell, b) for b in BACKENDS}
            gf = {b: flops(cell) / t[b] / 1e9 for b in BACKENDS}
            lines.append(f"| {module} | {cell} | {t['fused'] * 1e3:.1f} | {t['scratch'] * 1e3:.1f} "
                         f"| {t['scratch'] / t['fused']:.2f} | {gf['fused']:.0f} | {gf['fused'] / rate:.0%} "
                         f"| {gf['scratch']:.0f} | {gf['scratch'] / rate:.0%} |")
    return "\n".join(lines)
