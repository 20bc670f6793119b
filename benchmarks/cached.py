"""Training on cached features vs recomputing the CNN for every batch (what simpler codebases do).

Both loops run the same decoder training step on the same (image, caption) batches; the recomputing
one first decodes, resizes and encodes every caption's image (a frozen encoder, so no gradient), as a
per-caption image DataLoader does. Measured on a few hundred images, then extrapolated per epoch.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from benchmarks.common import Options, autocast, build_bench_encoder, shapes_records, stopwatch, sync, show_tell
from captioning.data.coco import encode_captions
from captioning.features.cache import extract_features
from captioning.data.images import ImageTransform, load_rgb
from captioning.training.loop import caption_loss
from captioning.text.tokenizer import tokenize
from captioning.text.vocab import Vocabulary

# Extrapolate only to data like the measured one: COCO's larger JPEGs and 10k-word vocabulary change both sides.
EPOCHS = {"the default shapes train split (10k images, 50k captions)": 50_000}


class _CaptionImages(Dataset):
    """(uint8 image, caption row) for each caption: the image is decoded and resized every time."""

    def __init__(self, paths: list[str], image_rows: torch.Tensor, transform: ImageTransform):
        self.paths, self.image_rows, self.transform = paths, image_rows, transform

    def __len__(self) -> int:
        return len(self.image_rows)

    def __getitem__(self, k: int) -> tuple[torch.Tensor, int]:
        return self.transform.to_uint8(load_rgb(self.paths[int(self.image_rows[k])])), k


def _decoder_step(decoder, opt, feats, batch, device, amp):
    batch = batch[:, : int((batch != 0).sum(1).max())]
    with autocast(device, amp):
        loss = caption_loss(decoder(feats, batch[:, :-1]).float(), batch[:, 1:])
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def cached_report(opts: Options) -> str:
    """Markdown: seconds per training step with cached features vs recomputing them, and per epoch."""
    n, batch = opts.pick(256, 32), opts.pick(128, 32)
    records = shapes_records(opts.work_dir, n)
    paths = [r.path for r in records]
    vocab = Vocabulary.build((tokenize(c) for r in records for c in r.captions), min_count=1)
    tokens, image_rows = encode_captions(records, vocab, 16)
    encoder, cfg = build_bench_encoder(opts)
    feats = extract_features(encoder, paths, opts.work_dir / "cache", f"bench/cached{n}",
                             batch_size=int(cfg["batch_size"]), num_workers=opts.workers).features
    torch.manual_seed(0)
    decoder = show_tell(encoder.feature_dim, len(vocab)).to(opts.device)
    opt = torch.optim.AdamW(decoder.parameters(), lr=1e-3)
    order = torch.randperm(len(tokens))
    steps = len(tokens) // batch

    def cached_epoch():
        for s in range(steps):
            idx = order[s * batch : (s + 1) * batch]
            f = torch.from_numpy(np.ascontiguousarray(feats[image_rows[idx].numpy()])).to(opts.device)
            _decoder_step(decoder, opt, f, tokens[idx].to(opts.device), opts.device, opts.amp)
        sync(opts.device)

    loader = DataLoader(_CaptionImages(paths, image_rows[order], encoder.transform), batch_size=batch,
                        num_workers=opts.workers, drop_last=True, pin_memory=opts.device != "cpu")

    def recompute_epoch():
        for images, k in loader:
            with torch.no_grad():  # a frozen encoder: forward only, as the simpler codebases do
                f = encoder(encoder.transform.normalize(images.to(opts.device, non_blocking=True)))
            _decoder_step(decoder, opt, f.float(), tokens[order[k]].to(opts.device), opts.device, opts.amp)
        sync(opts.device)

    cached_epoch()  # warm-up
    with stopwatch() as tc:
        cached_epoch()
    with stopwatch() as tr:
        recompute_epoch()
    per_c, per_r = tc[0] / steps, tr[0] / steps
    lines = [f"{n} synthetic images, {len(tokens)} captions, batch {batch}, {steps} steps per pass; LSTM decoder "
             f"(embed 256, hidden 512, vocabulary {len(vocab)}), encoder {cfg['name']} at {cfg['image_size']} px, "
             f"{opts.workers} loader worker(s), device {opts.device}. Measured on these {steps} steps, "
             f"**extrapolated** per epoch (steps x the measured time per step).", "",
             "| training loop | ms per step | " + " | ".join(f"epoch of {k} (s, extrapolated)" for k in EPOCHS) + " |",
             "|---|---|" + "---|" * len(EPOCHS)]
    for name, per in (("cached features (memory-mapped rows)", per_c), ("recompute the CNN every batch", per_r)):
        epochs = " | ".join(f"{caps / batch * per:.0f}" for caps in EPOCHS.values())
        lines.append(f"| {name} | {per * 1e3:.1f} | {epochs} |")
    lines += ["", f"Recompute / cached per epoch: **{per_r / per_c:.1f}x**."]
    return "\n".join(lines)
