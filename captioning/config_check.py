"""Every value of a training config checked before any work starts (Hydra already refuses unknown keys
and group choices): impossible sizes, unknown names, out-of-range rates. All problems are reported at once,
each naming its key, what it accepts and what it got."""

from __future__ import annotations

import math
from typing import Any

LR_SCHEDULES = ("cosine", "constant", "step")        # captioning.training.loop.make_optimizer
DECODING_METHODS = ("greedy", "sample", "beam")       # captioning.nn.decoding.decode
BASELINES = ("nearest_neighbour", "most_frequent")   # captioning.pipeline.evaluate_all
BAD_IMAGE_POLICIES = ("fail", "skip")


class ConfigError(ValueError):
    """A config value that cannot work."""


def check_config(cfg: Any) -> None:
    """Raise ConfigError listing every impossible value of a train config (see configs/train.yaml)."""
    problems = config_problems(cfg)
    if problems:
        raise ConfigError("invalid config:\n  " + "\n  ".join(problems))


def config_problems(cfg: Any) -> list[str]:
    """One line per impossible value: schedule, decoder and cell, decoding, evaluation, data, encoder."""
    from captioning.data.datasets import validate_data_config
    from captioning.features.encoder import _validated as validate_encoder_config

    problems = (_schedule(cfg.schedule) + _model(cfg.decoder, cfg.cell) + _decoding(cfg.decoding)
                + _evaluate(cfg.get("evaluate") or {}) + _run(cfg))
    for check, node in ((validate_data_config, cfg.data), (validate_encoder_config, cfg.encoder)):
        try:
            check(node)
        except ValueError as e:  # each validator names its own keys
            problems.append(str(e))
    return problems


def _integer(node: Any, prefix: str, key: str, low: int, default: int | None = None) -> list[str]:
    value = node.get(key, default)
    ok = isinstance(value, int) and not isinstance(value, bool) and value >= low
    return [] if ok else [f"{prefix}.{key} must be an integer >= {low}, got {value!r}"]


def _number(node: Any, prefix: str, key: str, ok, what: str, default: float | None = None) -> list[str]:
    value = node.get(key, default)
    good = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and ok(value)
    return [] if good else [f"{prefix}.{key} must be {what}, got {value!r}"]


def _choice(node: Any, prefix: str, key: str, choices, default: str | None = None) -> list[str]:
    value = node.get(key, default)
    return [] if value in choices else [f"{prefix}.{key} must be one of {tuple(choices)}, got {value!r}"]


def _schedule(s: Any, prefix: str = "schedule") -> list[str]:
    out = []
    for key, low in (("epochs", 1), ("batch_size", 1), ("log_every", 1), ("lr_step_epochs", 1),
                     ("warmup_steps", 0), ("early_stopping", 0), ("val_max_images", 0)):
        out += _integer(s, prefix, key, low)
    out += _integer(s, prefix, "checkpoint_every_steps", 0, default=0)
    out += _number(s, prefix, "lr", lambda v: v > 0, "a number > 0")
    out += _number(s, prefix, "lr_gamma", lambda v: v > 0, "a number > 0")
    out += _number(s, prefix, "weight_decay", lambda v: v >= 0, "a number >= 0")
    out += _number(s, prefix, "clip", lambda v: v >= 0, "a number >= 0 (0 = off)")
    if s.get("finetune_encoder"):
        out += _number(s, prefix, "encoder_lr", lambda v: v > 0, "a number > 0 (the CNN's learning rate)")
    if s.get("scst"):
        out += _self_critical(s, prefix)
    stage2 = s.get("self_critical")
    if stage2 is not None and stage2.get("epochs") != 0:  # a self-critical stage after this schedule
        if s.get("scst") or s.get("finetune_encoder"):
            out.append(f"{prefix}.self_critical follows cross-entropy training on cached features: set "
                       f"{prefix}.self_critical.epochs=0 with this schedule")
        out += _schedule(stage2, f"{prefix}.self_critical")
        out += [] if stage2.get("scst") else [f"{prefix}.self_critical.scst must be true"]
    return out + _choice(s, prefix, "lr_schedule", LR_SCHEDULES)


def _self_critical(s: Any, prefix: str) -> list[str]:
    from captioning.training.self_critical import BASELINES, REWARDS

    out = _choice(s, prefix, "baseline", BASELINES, default="mean") + _choice(s, prefix, "reward", REWARDS, "Bleu_4")
    out += _integer(s, prefix, "samples", 2 if s.get("baseline", "mean") == "mean" else 1, default=5)
    out += _number(s, prefix, "temperature", lambda v: v > 0, "a number > 0", default=1.0)
    return out


def _model(d: Any, c: Any) -> list[str]:
    from captioning.nn.cells import BACKENDS, CELLS, LSTM_INITS
    from captioning.models.show_tell import ACTIVATIONS

    out = _integer(d, "decoder", "embed_dim", 1) + _integer(d, "decoder", "hidden_size", 1)
    out += _number(d, "decoder", "dropout", lambda v: 0 <= v < 1, "in [0, 1)")
    out += _choice(d, "decoder", "init_activation", ACTIVATIONS)
    if d.get("feature_dropout") is not None:
        out += _number(d, "decoder", "feature_dropout", lambda v: 0 <= v < 1, "in [0, 1)")
    out += _choice(d, "decoder", "lstm_init", LSTM_INITS) if d.get("lstm_init") is not None else []
    out += _number(d, "decoder", "forget_bias", lambda v: True, "a number", default=1.0)
    if d.get("init_hidden") is not None:
        out += _integer(d, "decoder", "init_hidden", 0)
    out += _choice(c, "cell", "name", CELLS) + _choice(c, "cell", "backend", BACKENDS)
    return out + _integer(c, "cell", "num_layers", 1)


def _decoding(g: Any) -> list[str]:
    out = _choice(g, "decoding", "method", DECODING_METHODS)
    out += _integer(g, "decoding", "beam_size", 1) + _integer(g, "decoding", "batch_size", 1)
    out += _number(g, "decoding", "temperature", lambda v: v >= 0, "a number >= 0 (0 = greedy)")
    return out + _number(g, "decoding", "length_alpha", lambda v: True, "a number")


def _evaluate(e: Any) -> list[str]:
    unknown = [b for b in e.get("baselines", []) if b not in BASELINES]
    out = [f"evaluate.baselines: unknown {unknown}; choose from {BASELINES}"] if unknown else []
    out += _integer(e, "evaluate", "nn_k", 1, default=1)
    return out + _integer(e, "evaluate", "worst_k", 0, default=0) + _integer(e, "evaluate", "random_k", 0, default=0)


def _run(cfg: Any) -> list[str]:
    out = _choice(cfg, "", "on_bad_image", BAD_IMAGE_POLICIES)
    out += _integer(cfg, "", "seed", 0)
    out += _choice(cfg, "", "precision", ("auto", "fp32", "bf16"), default="fp32")
    if cfg.get("num_threads") is not None:
        out += _integer(cfg, "", "num_threads", 1)
    return [p.lstrip(".") for p in out]
