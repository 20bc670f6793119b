"""The caption-model contract and the registry that finds models by name.

Everything around a caption model (greedy, sampling and beam decoding, teacher-forced and self-critical
training, checkpoints, evaluation, the caption API, the visualisations) talks to it only through
``CaptionModel``: build the initial state from image features, take one decoding step, run teacher
forcing, and select rows of a state (beam search reorders and repeats them). A state is whatever the
model needs between steps (a tensor, a tuple of tensors, attention memory, a key/value cache), so the
model, not the search, knows which dimension of each tensor is the batch.

A model is one file: a ``CaptionModel`` subclass with a ``Config`` dataclass (its options, declared
with ``captioning.utils.schema.option``), registered with ``@register_model("name")``, and one yaml in
configs/model/. A model outside the package is selected by its import path instead of a registered
name: ``model.name=my_package.my_module.MyModel``.
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import Any, Callable, ClassVar

from torch import Tensor, nn

from captioning.nn.decoding import map_tensors

from captioning.utils.schema import build, plain

State = Any  # a tensor, or tuples / lists / dicts of tensors


class CaptionModel(nn.Module):
    """Image features [B, D] (pooled) or [B, R, D] (regions) -> caption word ids; subclasses implement
    init_state, step and forward (select_state and auxiliary_loss have defaults)."""

    Config: ClassVar[type]  # the dataclass of the model's options
    name: ClassVar[str] = ""  # the registry name (set by register_model)

    def __init__(self, config: Any, feature_dim: int, vocab_size: int, max_len: int) -> None:
        """``max_len``: the longest caption in words (for position embeddings, gate initialisation)."""
        super().__init__()
        self.config, self.feature_dim, self.vocab_size, self.max_len = config, feature_dim, vocab_size, max_len

    def init_state(self, features: Tensor) -> State:
        """The decoding state before the first word, from image features [B, D]."""
        raise NotImplementedError

    def step(self, tokens: Tensor, state: State) -> tuple[Tensor, State]:
        """One decoding step: previous words [B] -> log-probabilities [B, V] and the next state."""
        raise NotImplementedError

    def forward(self, features: Tensor, tokens: Tensor) -> Tensor:
        """Teacher forcing: logits [B, T, V] for input tokens [B, T] that start with <start>."""
        raise NotImplementedError

    def auxiliary_loss(self) -> Tensor | None:
        """A term added to the training loss of the last teacher-forced forward() (e.g. an attention
        penalty); None (the default) adds nothing."""
        return None

    def select_state(self, state: State, index: Tensor) -> State:
        """The state of batch rows ``index`` (a LongTensor; rows may repeat): every tensor of the state is
        indexed along ``state_batch_dim`` (0 unless a model says otherwise; override for other layouts)."""
        dim = getattr(self, "state_batch_dim", 0)
        return map_tensors(state, lambda t: t.index_select(dim, index))

    def hyperparameters(self) -> dict:
        """What rebuilds this model: its registry name (or import path) and options."""
        return {"name": self.name or import_path(type(self)), **dataclasses.asdict(self.config)}


MODELS: dict[str, type[CaptionModel]] = {}


def register_model(name: str) -> Callable[[type[CaptionModel]], type[CaptionModel]]:
    """Class decorator: make a CaptionModel selectable as ``model=<name>``."""

    def add(cls: type[CaptionModel]) -> type[CaptionModel]:
        if name in MODELS and MODELS[name] is not cls:
            raise ValueError(f"a caption model named {name!r} is already registered ({MODELS[name].__module__})")
        cls.name = name
        MODELS[name] = cls
        return cls

    return add


def import_path(cls: type) -> str:
    """``module.Class`` of a class."""
    return f"{cls.__module__}.{cls.__qualname__}"


def model_class(name: str) -> type[CaptionModel]:
    """The registered model ``name``, or the class at an import path (``package.module.Class``)."""
    if name in MODELS:
        return MODELS[name]
    if "." in name:
        module, _, attr = name.rpartition(".")
        try:
            cls = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as exc:
            raise ValueError(f"model.name={name!r}: cannot import it ({exc}); give a registered model "
                             f"({', '.join(sorted(MODELS))}) or an importable module.Class") from exc
        if not (isinstance(cls, type) and issubclass(cls, CaptionModel)):
            raise ValueError(f"model.name={name!r} is not a CaptionModel subclass")
        return cls
    raise ValueError(f"unknown model {name!r}: choose one of {', '.join(sorted(MODELS))} or give an import "
                     "path (package.module.Class) to a CaptionModel of your own")


def build_model(options: Any, feature_dim: int, vocab_size: int, max_len: int) -> CaptionModel:
    """The model that ``options`` (a ``model`` config node or a checkpoint's hyperparameters, with its
    ``name``) describes, for features of ``feature_dim``, ``vocab_size`` words and ``max_len``-word captions."""
    options = plain(options)
    cls = model_class(options.pop("name"))
    return cls(build(cls.Config, options), feature_dim=feature_dim, vocab_size=vocab_size, max_len=max_len)
