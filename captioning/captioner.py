"""The captioning API: a trained model + its vocabulary + the encoder it was trained on, loaded once,
then captions for image paths, PIL images, image tensors or precomputed features."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence, Union

import numpy as np
import torch
from PIL import Image

from captioning.data.images import load_rgb, to_rgb
from captioning.evaluation.attention_maps import caption_attention, has_attention
from captioning.features.encoder import Encoder, build_encoder
from captioning.features.identity import FeatureMismatch
from captioning.models.base import CaptionModel
from captioning.models.checkpoint import CheckpointError, load_checkpoint, model_from_checkpoint
from captioning.models.card import training_record
from captioning.models.export import load_export, write_export
from captioning.nn.decoding import decode_batched
from captioning.text.vocab import UNK, Vocabulary

# One image: a file path, a PIL image (any mode), or a tensor [3, H, W] (float in [0, 1], or uint8)
ImageInput = Union[str, os.PathLike, Image.Image, torch.Tensor]
# "user/name" (the Hub's repo id: letters, digits, "-", "_", "."): tried on the Hub when no such folder exists
REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*$")
# the files of an export (captioning/models/export.py); a Hub repo's other files are not downloaded
EXPORT_PATTERNS = ["config.json", "*.safetensors", "vocab.json", "README.md"]


@dataclass
class Caption:
    """A generated caption with its log-probability; the top beams and attention weights when asked
    (``attention``: [words + 1, R], a row per word of ``text`` and one for <end>, each summing to 1)."""

    text: str
    score: float
    beams: list[tuple[str, float]] = field(default_factory=list)
    attention: np.ndarray | None = field(default=None, compare=False, repr=False)

    def __str__(self) -> str:
        return self.text


class Captioner:
    """Load a caption model once, then caption images.

    ``captioner(images, **decoding)`` takes one image or a list of them; an image is a file path (str or
    ``os.PathLike``), a PIL image (any mode: converted to RGB) or a tensor [3, H, W] of a raw RGB image
    (float in [0, 1] as ``torchvision.transforms.ToTensor`` gives, or uint8 in [0, 255]: not normalised;
    the encoder's own transform resizes and normalises it as it does a file). A tensor [N, 3, H, W] is a
    list of N images. One image gives one caption (``str``), a list or batch gives a ``list[str]``.

    ``return_beams=k`` gives ``Caption`` objects instead (text, log-probability, the top k beams as
    (text, log-probability)); ``return_attention=True`` gives ``Caption`` objects whose ``attention`` holds
    the attention weights [words + 1, R] (attention models only). Images are encoded and decoded
    ``batch_size`` at a time; the remaining keywords choose the decoding (``method`` beam | diverse_beam |
    greedy | sample, ``beam_size``, ``length_alpha``, ``temperature``, ``generator`` and the other options of
    ``captioning.nn.decoding.DecodingConfig``), by default beam search of width 3. ``num_captions=n`` (with
    ``Caption`` objects) puts the image's n captions in ``beams``; without, an image gives a list of n strings.

    ``Captioner.from_pretrained(folder or Hub repo id)`` loads an export, ``from_checkpoint(run dir or
    .pt)`` a training checkpoint; ``save_pretrained(folder)`` writes an export in the Hub's layout;
    ``device=`` (or ``.to(device)``) chooses where the encoder and the model run (default CPU)."""

    def __init__(self, model: CaptionModel, vocab: Vocabulary, encoder_cfg: dict, encoder_key: str,
                 max_len: int = 16, encoder_state: dict | None = None, training_info: dict | None = None,
                 encoder_provenance: dict | None = None) -> None:
        self.model, self.vocab, self.encoder_cfg, self.encoder_key = model.eval(), vocab, encoder_cfg, encoder_key
        self.max_len, self.encoder_state = max_len, encoder_state  # encoder_state: fine-tuned CNN weights
        # what the run recorded (data, schedule, metrics, command): the model card's source (models/card.py)
        self.training_info = dict(training_info or {})
        self.encoder_provenance = dict(encoder_provenance or {})  # precision and package versions of its features
        self.device = getattr(next(model.parameters(), None), "device", torch.device("cpu"))
        self._encoder = None

    # -- loading and saving ---------------------------------------------------------------------------

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike, device: str | torch.device | None = None) -> "Captioner":
        """Build from a checkpoint file or a run directory, on ``device`` (default CPU; "auto": a GPU if any)."""
        ckpt = load_checkpoint(path)
        model, vocab = model_from_checkpoint(ckpt)
        captioner = cls(model, vocab, ckpt["encoder_cfg"], ckpt.get("encoder_key", ""), ckpt.get("max_len", 16),
                        ckpt.get("encoder_state"), training_record(ckpt), ckpt.get("encoder_provenance"))
        return captioner.to(device)

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike, device: str | torch.device | None = None,
                        revision: str | None = None) -> "Captioner":
        """Build from an export folder (``run_dir/export``, ``save_pretrained``'s, ``captioning-export``'s),
        read offline, or else from a Hugging Face Hub repo id (a str "user/name" that names no folder here,
        at ``revision``), downloaded once into the Hub's cache (and read from it offline). Safetensors and JSON only: no pickle is read (captioning/models/export.py)."""
        path = resolve_pretrained(name_or_path, revision)
        ckpt = load_export(path)
        model, vocab = model_from_checkpoint(ckpt)
        captioner = cls(model, vocab, ckpt["encoder_cfg"], ckpt["encoder_key"], ckpt["max_len"],
                        ckpt.get("encoder_state"), ckpt.get("training"), ckpt.get("encoder_provenance"))
        return captioner.to(device)

    def save_pretrained(self, save_directory: str | os.PathLike) -> Path:
        """Write this captioner as an export in the Hub's layout (config.json, model.safetensors,
        vocab.json, encoder.safetensors when fine-tuned, README.md model card); returns the folder."""
        ckpt = {"model": self.model.hyperparameters(), "feature_dim": self.model.feature_dim,
                "vocab_size": self.model.vocab_size, "max_len": self.max_len, "weights": self.model.state_dict(),
                "vocab": self.vocab.state_dict(), "encoder_cfg": self.encoder_cfg, "encoder_key": self.encoder_key,
                "encoder_provenance": self.encoder_provenance, "encoder_state": self.encoder_state}
        return write_export(ckpt, save_directory, self.training_info)

    def to(self, device: str | torch.device | None) -> "Captioner":
        """Move the model (and the encoder) to ``device`` (None: CPU; "auto": a GPU if any); returns self."""
        self.device = resolve_device(device)
        self.model.to(self.device)
        if self._encoder is not None:
            self._encoder.to(self.device)
        return self

    @property
    def encoder(self) -> Encoder:
        """The image encoder the model was trained on (built on first use)."""
        if self._encoder is None:
            try:
                encoder = build_encoder(self.encoder_cfg, state=self.encoder_state)
            except (ValueError, TypeError, KeyError) as exc:
                raise CheckpointError(f"the checkpoint's encoder config cannot build an encoder ({exc})") from exc
            try:  # refuses other features; only warns where precision or package versions differ
                encoder.identity.check(self.encoder_key, self.encoder_provenance, "the model")
            except FeatureMismatch as exc:
                raise CheckpointError(str(exc)) from None
            wanted = self.model.feature_dim
            if encoder.feature_dim != wanted:
                raise CheckpointError(f"the checkpoint's model reads {wanted}-d features but its encoder config "
                                      f"builds a {encoder.feature_dim}-d encoder; the file mixes two runs")
            self._encoder = encoder.eval()
        return self._encoder

    # -- captioning -----------------------------------------------------------------------------------

    def __call__(self, images: ImageInput | Iterable[ImageInput], *, batch_size: int = 32, return_beams: int = 0,
                 return_attention: bool = False,
                 **decoding: Any) -> str | list[str] | list[list[str]] | Caption | list[Caption]:
        """Caption one image (a str, or a Caption when beams or attention are asked) or a list of them
        (a list); see the class docstring for the inputs and options."""
        items, single = as_image_list(images)
        if return_beams:
            if decoding.get("method", "beam") not in ("beam", "diverse_beam"):
                raise ValueError(f"return_beams={return_beams} needs beam search, not method={decoding['method']!r}")
            decoding.update(keep_beams=return_beams, beam_size=max(return_beams, decoding.get("beam_size", 3)))
        rich = bool(return_beams or return_attention)
        if return_attention:
            captions = [c for chunk in batches(items, batch_size) for c in self.attended_captions(chunk, **decoding)]
        else:
            captions = self.caption(items, batch_size=batch_size, **decoding)
        if rich:
            out = captions
        elif decoding.get("num_captions", 1) > 1:  # each image's captions, a list of strings
            out = [[text for text, _ in c.beams] for c in captions]
        else:
            out = [c.text for c in captions]
        return out[0] if single else out

    @torch.no_grad()
    def features(self, images: ImageInput | Iterable[ImageInput]) -> torch.Tensor:
        """Encoder features [N, D] (or [N, R, D]) of one image or a list of them, on this captioner's device."""
        items, _ = as_image_list(images)
        if not items:
            return torch.zeros(0, *self.encoder.feature_shape, device=self.device)
        encoder = self.encoder.to(self.device)
        batch = torch.stack([encoder.transform(to_pil(im)) for im in items]).to(self.device)
        return encoder(batch)

    def caption_features(self, features, method: str = "beam", beam_size: int = 3, keep_beams: int = 0,
                         max_len: int = 0, **kwargs) -> list[Caption]:
        """Captions for precomputed features [N, D] (or [N, R, D]; a tensor or an array); at most ``max_len``
        words (0 = the checkpoint's training limit)."""
        if isinstance(features, torch.Tensor):  # decode_batched reads arrays; it moves them to the model
            features = features.detach().float().cpu()
        out = decode_batched(self.model, features, method=method, beam_size=beam_size,
                             keep_beams=keep_beams, max_len=max_len or self.max_len, vocab=self.vocab,
                             **kwargs)
        # num_captions > 1 (and no keep_beams): the image's captions, in ``beams``
        beams = out.beams or out.captions or [[] for _ in out.tokens]
        return [Caption(self.vocab.decode(t), s, [(self.vocab.decode(bt), bs) for bt, bs in bm])
                for t, s, bm in zip(out.tokens, out.scores, beams)]

    def caption(self, images: ImageInput | Iterable[ImageInput], batch_size: int = 32,
                **kwargs) -> Caption | list[Caption]:
        """``Caption`` objects: one for one image, a list for a list; keyword arguments go to decoding
        (method, beam_size, keep_beams...). Encoded and decoded ``batch_size`` images at a time."""
        items, single = as_image_list(images)
        captions = [c for chunk in batches(items, batch_size)
                    for c in self.caption_features(self.features(chunk), **kwargs)]
        return captions[0] if single else captions

    def attend(self, images: ImageInput | Iterable[ImageInput],
               **kwargs) -> list[tuple[Caption, list[str], np.ndarray]]:
        """(caption, its words + "<end>", attention weights [words + 1, R]) per image, for attention
        models (``has_attention``); keyword arguments go to decoding."""
        return [(c, c.text.split() + ["<end>"], c.attention) for c in self.attended_captions(images, **kwargs)]

    def attended_captions(self, images: ImageInput | Iterable[ImageInput], **kwargs) -> list[Caption]:
        """Captions of a list of images with their ``attention`` filled in (one batch)."""
        if not has_attention(self.model):
            raise CheckpointError(f"this checkpoint's model ({self.model.name or type(self.model).__name__}) has "
                                  "no attention maps: it reads the image once, through its initial state")
        features = self.features(images)
        captions = self.caption_features(features, **kwargs)
        ids = [[self.vocab.stoi.get(w, UNK) for w in c.text.split()] for c in captions]
        weights = caption_attention(self.model, features.to(self.device), ids)
        for caption, w in zip(captions, weights):
            caption.attention = w
        return captions

    def __repr__(self) -> str:
        return (f"Captioner(model={self.model.name or type(self.model).__name__}, vocab={len(self.vocab)} words, "
                f"encoder={self.encoder_cfg.get('name')}, device={self.device})")


# -- inputs ---------------------------------------------------------------------------------------------

def as_image_list(images: Any) -> tuple[list, bool]:
    """(the images as a list, whether one image was given): a tensor [N, 3, H, W] is N images."""
    if isinstance(images, (str, os.PathLike, Image.Image)):
        return [images], True
    if isinstance(images, torch.Tensor):
        if images.dim() == 3:
            return [images], True
        if images.dim() == 4:
            return list(images), False
        raise ValueError(f"an image tensor is [3, H, W] or a batch [N, 3, H, W], not {list(images.shape)}")
    if isinstance(images, (np.ndarray, bytes)):
        raise TypeError(f"cannot caption a {type(images).__name__}: pass a path, a PIL image (Image.fromarray for "
                        "an array), a tensor [3, H, W] in [0, 1], or a list of them")
    try:
        return list(images), False
    except TypeError:
        raise TypeError(f"cannot caption a {type(images).__name__}: pass a path, a PIL image, a tensor [3, H, W] "
                        "in [0, 1], or a list of them") from None


def to_pil(image: ImageInput) -> Image.Image:
    """An RGB PIL image of a path, a PIL image or a raw image tensor [3, H, W] (float in [0, 1], or uint8)."""
    if isinstance(image, Image.Image):
        return to_rgb(image)
    if isinstance(image, (str, os.PathLike)):
        return load_rgb(image)
    if isinstance(image, torch.Tensor):
        return tensor_to_pil(image)
    raise TypeError(f"cannot caption a {type(image).__name__}: each image is a path, a PIL image or a tensor "
                    "[3, H, W] in [0, 1]")


def tensor_to_pil(image: torch.Tensor) -> Image.Image:
    """The RGB PIL image of a raw image tensor [3, H, W]: floats in [0, 1] are rounded to 8 bits (so
    ``ToTensor()(pil)`` gives back ``pil`` exactly), uint8 is taken as it is."""
    if image.dim() != 3 or image.size(0) != 3:
        raise ValueError(f"an image tensor is [3, H, W] (RGB, channels first), not {list(image.shape)}")
    image = image.detach().cpu()
    if image.is_floating_point():
        low, high = float(image.min()), float(image.max())
        if low < 0 or high > 1:
            raise ValueError(f"an image tensor's values lie in [0, 1] (a raw image, as ToTensor gives), not "
                             f"[{low:.3g}, {high:.3g}]: pass the image before normalising it")
        image = image.mul(255).round_().to(torch.uint8)
    elif image.dtype != torch.uint8:
        raise ValueError(f"an image tensor is float in [0, 1] or uint8, not {image.dtype}")
    return Image.fromarray(image.permute(1, 2, 0).contiguous().numpy(), mode="RGB")


def batches(items: Sequence, size: int) -> Iterable[list]:
    """``items`` in consecutive lists of ``size``."""
    if size < 1:
        raise ValueError(f"batch_size must be >= 1, got {size}")
    for start in range(0, len(items), size):
        yield list(items[start : start + size])


# -- where models come from and run ----------------------------------------------------------------------

def resolve_device(device: str | torch.device | None) -> torch.device:
    """None -> CPU; "auto" -> the GPU when one is visible, else CPU; a CUDA device that is not there: an error."""
    if device is None:
        return torch.device("cpu")
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device} but no CUDA GPU is visible: use device='cpu' or device='auto'")
    return device


def resolve_pretrained(name_or_path: str | os.PathLike, revision: str | None = None) -> Path:
    """The local folder of an export: ``name_or_path`` itself when it exists (or is no repo id), else
    the Hub repo ``name_or_path`` downloaded (or found in the Hub's cache when offline)."""
    path = Path(name_or_path)
    if path.exists() or not isinstance(name_or_path, str) or not REPO_ID.match(name_or_path):
        return path  # load_export names what is wrong with a local path
    from huggingface_hub import snapshot_download
    from huggingface_hub.utils import LocalEntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError

    try:
        return Path(snapshot_download(name_or_path, revision=revision, allow_patterns=EXPORT_PATTERNS,
                                      library_name="captioning"))
    except RevisionNotFoundError as exc:
        raise CheckpointError(f"Hub repo {name_or_path} has no revision {revision!r}: pass an existing branch, "
                              "tag or commit") from exc
    except RepositoryNotFoundError as exc:
        raise CheckpointError(f"{name_or_path} is neither a folder here nor a Hub repo you can read: pass an "
                              "export folder (e.g. run_dir/export) or a repo id you can access") from exc
    except LocalEntryNotFoundError as exc:
        raise CheckpointError(f"{name_or_path} is no folder here and the Hub cannot be reached (offline, and "
                              "not in the Hub's cache): pass the local folder of the export, e.g. "
                              "Captioner.from_pretrained('runs/x/export')") from exc
    except Exception as exc:  # network and HTTP errors of every kind: the user cannot reach the repo
        first = (str(exc).strip().splitlines() or [""])[0]  # one line: HTTP errors span several
        raise CheckpointError(f"{name_or_path} is no folder here and the Hub repo could not be downloaded "
                              f"({type(exc).__name__}: {first}): check the repo id and the network, or pass "
                              "the local folder of the export") from exc
