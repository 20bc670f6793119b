"""Fine-tuning the encoder together with the decoder, end to end from pixels (``schedule=finetune``).

The usual recipe (Vinyals et al. 2015; Xu et al. 2015): train the decoder on cached features of the
frozen CNN first, then start from that decoder (``schedule.init_from=<run dir>``) and update both, the
CNN with a much smaller learning rate (``schedule.encoder_lr``). A step takes ``batch_size`` images,
runs the CNN once per image and the decoder on every caption of those images. BatchNorm keeps its
ImageNet statistics (see ``Encoder.train``). Validation encodes the val images with the current CNN.

The checkpoint holds the CNN's weights (``encoder_state``) and a cache key naming their digest, so
evaluation, ``scripts/caption.py`` and the Python API rebuild the fine-tuned encoder, and its features
are cached apart from the pretrained ones. One process only (no ``trainer=ddp``).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import torch

from captioning.data.images import load_rgb
from captioning.models.show_tell import caption_loss
from captioning.features.encoder import Encoder, build_encoder
from captioning.training.loop import _Loop, validate


class FinetuneLoop(_Loop):
    """The training loop with a trainable encoder: an epoch visits every training image once."""

    def __init__(self, cfg: Any, prepared, run_dir, logger, stop) -> None:
        from captioning.utils import distributed

        if distributed.current().world_size > 1:
            raise ValueError("schedule.finetune_encoder runs in one process: drop trainer=ddp (or torchrun)")
        super().__init__(cfg, prepared, run_dir, logger, stop)

    # -- hooks ------------------------------------------------------------------------------------

    def num_items(self) -> int:
        return len(self.prepared.splits[self.cfg.data.train_split])

    def build_modules(self) -> None:
        records = self.prepared.splits[self.cfg.data.train_split]
        self.paths = [r.path for r in records]
        # caption rows of each image, in order: image i owns rows captions_of[i]
        owners = self.image_rows.numpy()
        by_image = np.argsort(owners, kind="stable")
        self.captions_of = np.split(by_image, np.cumsum(np.bincount(owners, minlength=len(records)))[:-1])
        self.encoder: Encoder = build_encoder({**self.prepared.encoder_cfg, "trainable": True}).to(self.device)
        if self.encoder.feature_dim != self.prepared.feature_dim:
            raise ValueError(f"the trainable encoder gives {self.encoder.feature_dim}-d features, the cached ones are "
                             f"{self.prepared.feature_dim}-d: the encoder config changed")

    def param_groups(self) -> list:
        encoder_lr = self.sched.get("encoder_lr")
        if encoder_lr is None:
            raise ValueError("schedule.finetune_encoder needs schedule.encoder_lr (e.g. 1e-5): the CNN's learning rate")
        return [{"params": list(self.decoder.parameters())},
                {"params": list(self.encoder.parameters()), "lr": float(encoder_lr)}]

    def trained_modules(self) -> list[torch.nn.Module]:
        return [self.decoder, self.encoder]

    def epoch_order(self, epoch: int) -> torch.Tensor:
        """A permutation of the training images, a function of the seed and the epoch."""
        g = torch.Generator().manual_seed(self.cfg.seed * 100_003 + epoch)
        return torch.randperm(self.num_items(), generator=g)

    def loss(self, order: torch.Tensor, step: int) -> torch.Tensor:
        bs = self.sched.batch_size
        images = order[step * bs : (step + 1) * bs].tolist()
        rows = [self.captions_of[i] for i in images]
        owner = torch.repeat_interleave(torch.arange(len(images)), torch.tensor([len(r) for r in rows]))
        tokens = self.tokens[torch.from_numpy(np.concatenate(rows))]
        tokens = tokens[:, : int((tokens != 0).sum(1).max())].to(self.device)
        feats = self.encoder(pixels(self.encoder, [self.paths[i] for i in images]))  # one CNN pass per image
        logits = self.decoder(feats[owner.to(self.device)], tokens[:, :-1])  # ... the decoder on all its captions
        return caption_loss(logits, tokens[:, 1:])

    def validate(self) -> float:
        """Val BLEU-4 as on cached features, the val images encoded by the CNN as it is now."""
        split = self.cfg.data.val_split
        if not split or split not in self.prepared.splits:
            return 0.0
        records = self.prepared.splits[split][: self.sched.val_max_images or None]
        feats = encode(self.encoder, [r.path for r in records], self.prepared.encoder_cfg.get("batch_size", 64))
        return validate(self.decoder, dataclasses.replace(self.prepared, features={split: feats}), split, self.sched,
                        self.max_len)

    def checkpoint_contents(self) -> dict:
        state = {k: v.detach().cpu().clone() for k, v in self.encoder.backbone.state_dict().items()}
        return {"encoder_cfg": self.prepared.encoder_cfg,
                "encoder_key": self.encoder.key_for(self.encoder.finetuned_weights_id()),
                "encoder_state": state}

    def restore(self, ckpt: dict) -> None:
        if "encoder_state" not in ckpt:
            raise ValueError(f"{ckpt['path']} holds no encoder weights: it is not from a fine-tuning run, so it "
                             "cannot be resumed with schedule.finetune_encoder (start from it with schedule.init_from)")
        self.encoder.backbone.load_state_dict(ckpt["encoder_state"])



def pixels(encoder: Encoder, paths: list[str]) -> torch.Tensor:
    """The normalised image batch the encoder reads, on its device."""
    t, device = encoder.transform, next(encoder.parameters()).device
    batch = torch.stack([t.to_uint8(load_rgb(p)) for p in paths]).to(device)
    return t.normalize(batch, encoder.channels_last)


@torch.no_grad()
def encode(encoder: Encoder, paths: list[str], batch_size: int = 64) -> np.ndarray:
    """Features [N, D] of images with the encoder as it is now (eval mode, not cached); restores its mode."""
    was_training, out = encoder.training, []
    encoder.eval()
    try:
        for start in range(0, len(paths), batch_size):
            out.append(encoder(pixels(encoder, paths[start : start + batch_size])).float().cpu().numpy())
    finally:
        encoder.train(was_training)
    return np.concatenate(out) if out else np.zeros((0, encoder.feature_dim), np.float32)
