"""Fine-tuning the encoder with the caption model, end to end from pixels (a stage with ``encoder_lr``).

The usual recipe (Vinyals et al. 2015; Xu et al. 2015): train the model on cached features of the frozen
CNN first, then a stage that updates both, the CNN with a much smaller learning rate (``encoder_lr``).
A step takes ``batch_size`` images, runs the CNN once per image and the model on every caption of those
images. BatchNorm keeps its ImageNet statistics (see ``Encoder.train``). Validation encodes the val
images with the current CNN. The checkpoint holds the CNN's weights (``encoder_state``) and a cache key
naming their digest, so evaluation, the caption command and the Python API rebuild the fine-tuned
encoder, and its features are cached apart from the pretrained ones. One process only.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from captioning.data.images import load_rgb
from captioning.features.encoder import Encoder, EncoderConfig, build_encoder


def trainable_encoder(encoder_cfg: EncoderConfig, state: dict | None, feature_dim: int, device: torch.device,
                      trainable: bool) -> Encoder:
    """The run's encoder built to compute features from pixels (``state``: fine-tuned weights to start from)."""
    encoder = build_encoder(dataclasses.replace(encoder_cfg, trainable=trainable), state=state).to(device)
    if encoder.feature_dim != feature_dim:
        raise ValueError(f"the trainable encoder gives {encoder.feature_dim}-d features, the cached ones are "
                         f"{feature_dim}-d: the encoder config changed")
    return encoder


def encoder_state(encoder: Encoder) -> dict:
    """The CNN's weights as a checkpoint stores them (a copy on the CPU)."""
    return {k: v.detach().cpu().clone() for k, v in encoder.backbone.state_dict().items()}


def pixels(encoder: Encoder, paths: list[str]) -> torch.Tensor:
    """The normalised image batch the encoder reads, on its device."""
    t, device = encoder.transform, next(encoder.parameters()).device
    batch = torch.stack([t.to_uint8(load_rgb(p)) for p in paths]).to(device)
    return t.normalize(batch, encoder.channels_last)


@torch.no_grad()
def encode(encoder: Encoder, paths: list[str], batch_size: int = 64) -> np.ndarray:
    """Features [N, D] (or [N, R, D]) of images with the encoder as it is now (eval mode, not cached); restores its mode."""
    was_training, out = encoder.training, []
    encoder.eval()
    try:
        for start in range(0, len(paths), batch_size):
            out.append(encoder(pixels(encoder, paths[start : start + batch_size])).float().cpu().numpy())
    finally:
        encoder.train(was_training)
    return np.concatenate(out) if out else np.zeros((0, *encoder.feature_shape), np.float32)
