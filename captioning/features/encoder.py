"""Pretrained CNN image encoders: an image becomes the feature vector its ImageNet classifier reads.

``build_encoder(cfg)`` takes a config from ``configs/encoder/`` (its schema: EncoderConfig) and returns an
``Encoder`` whose ``forward`` maps a normalised batch [B, 3, S, S] to features [B, feature_dim]. With ``pool: grid``
the pooled vector is followed by a ``grid_size`` x ``grid_size`` average pooling of the last feature map, which
keeps *where* things are (global pooling discards it, and with it which colour went with which shape); with
``pool: regions`` the cells are separate region vectors, optionally with inner layers' cells appended
(hypercolumns, tapped by forward hooks). The networks and their weights' sources (the offline EfficientNet-Lite0
package, torchvision, timm) are in backbones.py; the batch-norm folding of a frozen network in folding.py.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.transforms import InterpolationMode

from captioning.data.images import ImageTransform
from captioning.features.backbones import LITE0_ARCH, LITE0_PACKAGE, SOURCES, build_backbone
from captioning.features.folding import folded_if_equal
from captioning.features.identity import FeatureIdentity, package_versions, state_digest
from captioning.utils.precision import PRECISIONS, native_bf16, resolve_precision
from captioning.utils.schema import build, option, problems

log = logging.getLogger(__name__)

POOLS = ("avg", "grid", "regions")
RESIZE_MODES = ("squash", "center_crop")
# Bump when the meaning of a feature changes without any config value changing.
FEATURE_FORMAT = 2  # 2: images are turned upright by their EXIF orientation before the transform


@dataclass
class EncoderConfig:
    """Options of the `encoder` config group (configs/encoder/*.yaml); the defaults are the main job's
    offline encoder, EfficientNet-Lite0 from its PyPI package."""

    name: str = option("efficientnet_lite0", "the network: efficientnet_lite0 (source=package), a torchvision "
                       "model name, or a timm model name (optionally with a pretrained tag)")
    source: str = option("package", "package (the offline EfficientNet-Lite0 weights) | torchvision | timm",
                         choices=SOURCES)
    arch: str = option(LITE0_ARCH, "source=package: the timm architecture the weights are mapped onto "
                       "(TF 'same' padding and BN eps 1e-3, which the TF-trained weights need)")
    weights: str | None = option(LITE0_PACKAGE, "package: any value = its pretrained weights | torchvision: a "
                                 "weights enum member (DEFAULT, IMAGENET1K_V1, ...) | timm: pretrained; "
                                 "null = random init (tests only)")
    image_size: int = option(256, "input side in pixels (images are resized to it)", ge=16)
    resize: str = option("squash", "squash (whole image to image_size^2) | center_crop", choices=RESIZE_MODES)
    interpolation: str | None = option(None, "resize filter (bilinear, bicubic, ...); null = what the weights "
                                       "were trained with")
    mean: list[float] | None = option(None, "per-channel normalisation mean; null = the weights' own")
    std: list[float] | None = option(None, "per-channel normalisation std (> 0); null = the weights' own")
    pool: str = option("avg", "avg: the pooled vector the classifier reads | grid: + a grid_size^2 grid of "
                       "average-pooled cells of the last feature map (keeps a coarse layout) | regions: the "
                       "grid_size^2 cells as separate region vectors [R, D] (for attention models; their mean "
                       "is the pooled vector where grid_size divides the map), cached in float16",
                       choices=POOLS)
    grid_size: int = option(2, "pool=grid|regions: cells per side", ge=1)
    hypercolumn: list[str] = option([], "pool=regions: names of inner layers of the network (as its "
                                    "named_modules() gives them, e.g. blocks.2 for EfficientNet's stride-8 "
                                    "stage) whose outputs are average-pooled to the same grid and appended to "
                                    "each region vector, rescaled per region to the last map's root mean square "
                                    "(hypercolumns, Hariharan et al. 2015): early layers hold local colour and "
                                    "edges that the last map mixes with what the object is")
    last_map: bool = option(True, "pool=regions with a hypercolumn: false leaves the last map's own channels out: "
                            "each region vector is the hypercolumn layers' cells alone, each rescaled per region "
                            "to unit root mean square, and the network runs only as far as those layers")
    trainable: bool = option(False, "false: frozen (eval mode, no gradients); a stage with encoder_lr fine-tunes it")
    channels_last: bool = option(True, "NHWC memory layout (faster convolutions on CPU)")
    precision: str = option("fp32", "fp32 | bf16 (autocast; fast where the CPU/GPU multiplies bfloat16 "
                            "natively, features differ slightly) | auto (bf16 where native, else fp32)",
                            choices=PRECISIONS)
    batch_size: int = option(64, "images per forward pass when extracting features", ge=1)
    num_workers: int = option(0, "data-loader processes decoding and resizing images beside the forward; 0 = in "
                              "this process, a pool of torch's threads between forward passes (no process "
                              "competes with the forward for the cores; a GPU waits meanwhile)", ge=0)


class LayersTaken(Exception):
    """Raised inside the network's forward once every layer the features need has run (last_map=false)."""


class Encoder(nn.Module):
    """Frozen (by default) CNN: images [B, 3, S, S] -> features [B, feature_dim], or with ``pool="regions"``
    region features [B, grid_size^2, feature_dim] (row-major cells of the last feature map, with the cells of the
    ``hypercolumn`` layers appended, or with ``last_map=False`` those alone)."""

    def __init__(self, backbone: nn.Module, transform: ImageTransform, *, name: str, source: str,
                 weights_id: str, pool: str = "avg", grid_size: int = 2, hypercolumn: Sequence[str] = (),
                 last_map: bool = True, trainable: bool = False, channels_last: bool = False, precision: str = "fp32",
                 arch: str = "", weights_digest: str = ""):
        super().__init__()
        self.backbone, self.transform = backbone, transform
        self.name, self.source, self.weights_id = name, source, weights_id
        # the weights' tensors, hashed before BatchNorm folding ("<base>+finetuned:<tuned>" once fine-tuned)
        self.arch, self.weights_digest = arch, weights_digest or state_digest(backbone)
        self.pool, self.grid_size, self.hypercolumn = pool, grid_size, tuple(hypercolumn)
        self.last_map = last_map
        self.trainable, self.channels_last, self.precision = trainable, channels_last, precision
        if self.hypercolumn and pool != "regions":
            raise ValueError(f"encoder.hypercolumn={list(self.hypercolumn)} needs pool=regions (it appends inner "
                             f"layers to each region vector), not pool={pool}; use encoder=efficientnet_lite0_regions")
        if not last_map and not self.hypercolumn:
            raise ValueError("encoder.last_map=false leaves only the hypercolumn layers in each region, but "
                             "encoder.hypercolumn is empty; name inner layers there (e.g. [blocks.3]) or set "
                             "encoder.last_map=true")
        if not trainable:
            self.backbone = folded_if_equal(backbone.eval(), transform.size)
        if channels_last:
            self.backbone.to(memory_format=torch.channels_last)
        self.backbone.requires_grad_(trainable)
        self._taps: dict[str, torch.Tensor] = {}  # the hypercolumn layers' outputs of the current forward
        for layer in self.hypercolumn:
            self._inner(layer).register_forward_hook(self._tap(layer))
        self.train(False)
        self.feature_shape = self._probe_feature_shape()  # of one image: (D,) or (R, D)
        self.feature_dim = self.feature_shape[-1]
        # region maps are cached in 16 bits (R times the size of a pooled vector); pooled ones in 32
        self.cache_dtype = "float16" if pool == "regions" else "float32"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Features [B, feature_dim] (or [B, R, feature_dim]) of a normalised image batch [B, 3, S, S]."""
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16"):
            return self._features(x).float()

    def _inner(self, layer: str) -> nn.Module:
        """The network's inner layer named ``layer`` (a hypercolumn source)."""
        network = self.backbone.network
        try:
            return network.get_submodule(layer)
        except AttributeError:
            names = [n for n, _ in network.named_children()]
            raise ValueError(f"encoder {self.name!r} has no inner layer {layer!r} for encoder.hypercolumn; its "
                             f"top-level layers are {names} (deeper ones are dotted paths, as named_modules() "
                             f"gives them)") from None

    def _tap(self, layer: str) -> Callable:
        def hook(module: nn.Module, inputs: Any, output: torch.Tensor) -> None:
            self._taps[layer] = output
            if not self.last_map and len(self._taps) == len(self.hypercolumn):
                raise LayersTaken  # every layer the regions need has run: skip the rest of the network
        return hook

    def _feature_map(self, x: torch.Tensor) -> torch.Tensor | None:
        """The last feature map, or None where the network stopped early (last_map=false)."""
        try:
            return self.backbone.feature_map(x)
        except LayersTaken:
            return None

    def _features(self, x: torch.Tensor) -> torch.Tensor:
        self._taps.clear()
        try:
            return self._from_map(self._feature_map(x))
        finally:
            self._taps.clear()  # don't hold the batch's inner activations until the next one

    def _cells(self, fmap: torch.Tensor) -> torch.Tensor:
        """[B, C, H, W] -> the grid_size^2 cells' mean vectors [B, R, C], row-major."""
        return F.adaptive_avg_pool2d(fmap, self.grid_size).flatten(2).transpose(1, 2)

    def _from_map(self, fmap: torch.Tensor | None) -> torch.Tensor:
        if self.pool == "regions":
            if not self.hypercolumn:
                return self._cells(fmap)
            # Each inner layer's cells are rescaled, per region, to the last map's root mean square (to 1 without
            # the last map): the layers' activations differ in scale by orders of magnitude (ParseNet, Liu et
            # al. 2015, normalises each layer before concatenating), and a decoder's LayerNorm over the whole
            # vector would otherwise hear only the loudest one.
            parts, rms = [], 1.0
            if self.last_map:
                regions = self._cells(fmap)
                parts, rms = [regions], regions.float().pow(2).mean(-1, keepdim=True).sqrt()
            for layer in self.hypercolumn:
                cells = self._cells(self._taps[layer])
                parts.append(cells * (rms / cells.float().pow(2).mean(-1, keepdim=True).sqrt().clamp_min(1e-6)))
            return torch.cat(parts, dim=2)
        pooled = self.backbone.pool(fmap)
        if self.pool == "avg":
            return pooled
        grid = F.adaptive_avg_pool2d(fmap, self.grid_size).flatten(1)
        return torch.cat([pooled, grid], dim=1)

    def train(self, mode: bool = True) -> "Encoder":
        """A frozen encoder stays in eval mode (BatchNorm statistics, no dropout) whatever its parent does.
        A trainable one trains its weights but keeps BatchNorm on its ImageNet statistics: the batch
        statistics of small fine-tuning batches are noisy (the usual practice when fine-tuning a backbone)."""
        super().train(mode and self.trainable)
        for module in self.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.train(False)
        return self

    @property
    def cache_key(self) -> str:
        """Everything that decides the features: model, weights, pooling and image transform."""
        return self.key_for(self.weights_id)

    def finetuned_weights_id(self) -> str:
        """The weights id of this encoder's current (fine-tuned) weights: the base id + a digest of them."""
        return _finetuned_id(self.weights_id, self.backbone)

    def key_for(self, weights_id: str) -> str:
        """The cache key this encoder would have with weights ``weights_id``."""
        return (f"{self.source}:{self.name}|weights={weights_id}|{self._layout_key()}"
                + f"|precision={self.precision}|{self.transform.key}|format={FEATURE_FORMAT}")

    def _layout_key(self) -> str:
        """Pooling, grid, hypercolumn layers and last map, as keys spell them."""
        return (f"pool={self.pool}"
                + (f"{self.grid_size}x{self.grid_size}" if self.pool in ("grid", "regions") else "")
                + (f"|hypercolumn={','.join(self.hypercolumn)}" if self.hypercolumn else "")
                + ("" if self.last_map else "|last_map=false"))

    @property
    def identity(self) -> FeatureIdentity:
        """What decides these features (portable across precisions and package versions) and what computed
        them (captioning/features/identity.py); checkpoints and exports record it."""
        return self._identity(self.weights_digest, self.weights_id)

    def finetuned_identity(self) -> FeatureIdentity:
        """The identity of this encoder's current (fine-tuned) weights."""
        base = self.weights_digest.split("+finetuned:")[0]
        return self._identity(f"{base}+finetuned:{state_digest(self.backbone)}", self.finetuned_weights_id())

    def _identity(self, digest: str, weights_id: str) -> FeatureIdentity:
        arch = f"|arch={self.arch}" if self.arch and self.arch != self.name else ""
        key = (f"{self.source}:{self.name}{arch}|weights=sha1:{digest}|{self._layout_key()}|{self.transform.key}"
               f"|format={FEATURE_FORMAT}")
        provenance = {"precision": self.precision, "weights": weights_id, "packages": package_versions()}
        return FeatureIdentity(key, provenance, legacy_key=self.key_for(weights_id))

    def _probe_feature_shape(self) -> tuple[int, ...]:
        """Run one blank image through the network; also checks that ``pool: grid|regions`` is possible."""
        size = self.transform.size
        with torch.inference_mode():
            self._taps.clear()
            try:
                fmap = self._feature_map(torch.zeros(1, 3, size, size))
                if self.pool != "avg" and fmap is not None and fmap.dim() != 4:
                    raise ValueError(f"encoder {self.name!r}: pool={self.pool} needs a convolutional feature map "
                                     f"[B, C, H, W], but it gives shape {tuple(fmap.shape)}; use pool=avg")
                bad = {k: tuple(v.shape) for k, v in self._taps.items() if v.dim() != 4}
                if bad:
                    raise ValueError(f"encoder.hypercolumn layers must give feature maps [B, C, H, W]; the "
                                     f"outputs of {bad} are not; name convolutional stages")
                return tuple(int(n) for n in self._from_map(fmap).shape[1:])
            finally:
                self._taps.clear()


def build_encoder(enc: Any, state: Mapping[str, torch.Tensor] | None = None) -> Encoder:
    """Build the encoder a ``configs/encoder/*.yaml`` config describes (an EncoderConfig, a dict or a
    DictConfig; enc not given take their declared defaults).

    ``state``: the backbone's weights after fine-tuning (a checkpoint's ``encoder_state``), loaded over
    the pretrained ones; the weights id (so the cache key) then names their digest."""
    enc = validate_encoder_config(enc)
    backbone, weights_id, defaults = build_backbone(enc.source, enc.name, enc.weights, enc.arch)
    mean, std, interpolation = default_normalisation(defaults, enc)
    transform = ImageTransform(size=enc.image_size, resize=enc.resize, interpolation=interpolation, mean=mean, std=std)
    precision = resolve_precision(enc.precision)  # features are computed on the CPU first
    if precision == "bf16" and not native_bf16():
        log.warning("encoder precision=bf16 but this CPU has no native bf16 (avx512_bf16/AMX): it will be "
                    "emulated and slower than fp32 on CPU; set encoder.precision=fp32 unless running on a GPU")
    digest = state_digest(backbone)  # the pretrained (or random) tensors, before any fine-tuned state
    if weights_id is None:
        # Random weights differ per process, so only their bytes identify the features they give.
        weights_id = "random-init:" + digest
    if state is not None:
        try:
            backbone.load_state_dict(state)
        except RuntimeError as exc:
            raise ValueError(f"the fine-tuned encoder weights don't fit encoder {enc.name!r} ({exc}); "
                             "use the encoder config the checkpoint was trained with") from exc
        weights_id = _finetuned_id(weights_id, backbone)
        digest = f"{digest}+finetuned:{state_digest(backbone)}"
    return Encoder(backbone, transform, name=enc.name, source=enc.source, weights_id=weights_id, pool=enc.pool,
                   grid_size=enc.grid_size, hypercolumn=enc.hypercolumn, last_map=enc.last_map, trainable=enc.trainable,
                   channels_last=enc.channels_last, precision=precision,
                   arch=enc.arch if enc.source == "package" else "", weights_digest=digest)


def _finetuned_id(weights_id: str, backbone: nn.Module) -> str:
    """Weights id of fine-tuned weights: where they started (without a random init's digest) + their digest."""
    base = weights_id.split("+finetuned:")[0]
    base = "random-init" if base.startswith("random-init:") else base
    return f"{base}+finetuned:{state_digest(backbone)}"


def encoder_problems(node: Any) -> list[str]:
    """One line per unknown key or bad value of an encoder config (its schema, EncoderConfig)."""
    return problems(EncoderConfig, node, "encoder")


def validate_encoder_config(node: Any) -> EncoderConfig:
    """The typed EncoderConfig of ``node`` (defaults filled in); raises ValueError naming every bad value."""
    found = encoder_problems(node)
    if found:
        raise ValueError("bad encoder config: " + "; ".join(found))
    return build(EncoderConfig, node)


def default_normalisation(defaults: dict, cfg: EncoderConfig) -> tuple[tuple, tuple, str]:
    """mean, std and interpolation: the config's where given, else what the weights were trained with."""
    mean = tuple(float(v) for v in (cfg.mean if cfg.mean is not None else defaults["mean"]))
    std = tuple(float(v) for v in (cfg.std if cfg.std is not None else defaults["std"]))
    if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
        raise ValueError(f"encoder {cfg.name!r}: mean and std need 3 values each (std > 0), got {mean}, {std}")
    interpolation = str(cfg.interpolation if cfg.interpolation is not None else defaults["interpolation"])
    modes = [m.value for m in InterpolationMode]
    if interpolation not in modes:
        raise ValueError(f"encoder {cfg.name!r}: interpolation must be one of {modes}, got {interpolation!r}")
    return mean, std, interpolation

