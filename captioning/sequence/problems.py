"""A task made trainable: its data, model, loss, metrics and trivial baseline, behind one interface.

``build_problem(name, cfg)`` returns a ``Problem``; ``train.train`` only ever calls its
``train_batch``, ``loss``, ``evaluate`` and ``build_model``.
"""

from __future__ import annotations

import random
from collections import Counter
from typing import Any, Callable, Mapping, Sequence

import torch
from torch import Tensor, nn

from captioning.nn import decoding
from captioning.utils.seeding import seed_everything
from captioning.sequence import tasks
from captioning.sequence.models import ManyToOne, Seq2Seq
from captioning.text.vocab import END, PAD, UNK, Vocabulary

Batch = tuple[Tensor, Tensor]
Sampler = Callable[[int, torch.Generator], Batch]
KINDS = ("regression", "classification", "seq2seq")


def pad_ids(rows: Sequence[Sequence[int]]) -> Tensor:
    """Right-pad id lists with PAD into a LongTensor [N, max length]."""
    out = torch.full((len(rows), max(len(r) for r in rows)), PAD, dtype=torch.long)
    for i, r in enumerate(rows):
        out[i, : len(r)] = torch.tensor(r, dtype=torch.long)
    return out


def fixed_sampler(inputs: Tensor, targets: Tensor) -> Sampler:
    """Batches drawn with replacement from a fixed training set."""
    def sample(n: int, generator: torch.Generator) -> Batch:
        idx = torch.randint(0, inputs.size(0), (n,), generator=generator)
        return inputs[idx], targets[idx]
    return sample


class Problem:
    """One task: how to sample training batches, the fixed test set, model sizes, loss and metrics."""

    def __init__(self, name: str, kind: str, sample: Sampler, test: Batch, baseline: dict[str, float],
                 sizes: Mapping[str, int], vocab: Vocabulary | None = None, tolerance: float = 0.04) -> None:
        if kind not in KINDS:
            raise ValueError(f"unknown problem kind {kind!r}; choose one of {KINDS}")
        self.name, self.kind, self.sample, self.test = name, kind, sample, test
        self.baseline, self.sizes, self.vocab, self.tolerance = baseline, dict(sizes), vocab, tolerance

    def train_batch(self, n: int, generator: torch.Generator) -> Batch:
        """``n`` training examples (inputs, targets)."""
        return self.sample(n, generator)

    def build_model(self, cell: str, model_cfg: Mapping[str, Any]) -> nn.Module:
        """A ManyToOne or Seq2Seq model sized for this task; ``model_cfg`` holds the free sizes.

        Chrono LSTM init uses ``model_cfg.t_max`` or, when unset, the task's longest sequence.
        """
        kw = dict(hidden_size=model_cfg["hidden_size"], num_layers=model_cfg.get("num_layers", 1),
                  backend=model_cfg.get("backend", "fused"), lstm_init=model_cfg.get("lstm_init", "torch"),
                  forget_bias=model_cfg.get("forget_bias", 1.0), t_max=model_cfg.get("t_max") or self.sizes["horizon"])
        if self.kind == "seq2seq":
            return Seq2Seq(cell, self.sizes["vocab_size"], model_cfg["embed_dim"], **kw)
        input_size = model_cfg["embed_dim"] if self.sizes.get("vocab_size") else self.sizes["input_size"]
        return ManyToOne(cell, input_size, self.sizes["output_size"], vocab_size=self.sizes.get("vocab_size", 0), **kw)

    def loss(self, model: nn.Module, batch: Batch) -> Tensor:
        """Mean squared error, cross-entropy, or teacher-forced token cross-entropy (PAD ignored)."""
        x, y = batch
        if self.kind == "regression":
            return nn.functional.mse_loss(model(x), y)
        if self.kind == "classification":
            return nn.functional.cross_entropy(model(x), y)
        logits = model(x, y[:, :-1])
        return nn.functional.cross_entropy(logits.reshape(-1, logits.size(-1)), y[:, 1:].reshape(-1), ignore_index=PAD)

    @torch.no_grad()
    def evaluate(self, model: nn.Module, batch: Batch | None = None, beam_size: int = 0) -> dict[str, float]:
        """Metrics on ``batch`` (default: the test set): mse + accuracy, accuracy, or exact match."""
        x, y = batch if batch is not None else self.test
        was_training = model.training
        model.eval()
        try:
            if self.kind == "regression":
                err = model(x) - y
                return {"mse": err.pow(2).mean().item(), "accuracy": (err.abs() < self.tolerance).float().mean().item()}
            if self.kind == "classification":
                return {"accuracy": (model(x).argmax(-1) == y).float().mean().item()}
            return seq2seq_metrics(model, x, y, beam_size)
        finally:
            model.train(was_training)

    @torch.no_grad()
    def examples(self, model: nn.Module, n: int) -> list[dict[str, str]]:
        """The first ``n`` test pairs of a seq2seq task as text: source, greedy output, reference."""
        src, tgt = self.test[0][:n], self.test[1][:n]
        model.eval()
        hyp = decoding.greedy(model, src, max_len=tgt.size(1)).tokens
        return [{"source": self.vocab.decode(s), "output": self.vocab.decode(h), "reference": self.vocab.decode(r)}
                for s, h, r in zip(src.tolist(), hyp, tgt.tolist())]


def _strip_target(row: Sequence[int]) -> list[int]:
    """A target row [START, ids..., END, PAD...] -> ids."""
    ids = list(row)[1:]
    cut = [i for i, t in enumerate(ids) if t in (END, PAD)]
    return ids[: cut[0]] if cut else ids


def seq2seq_metrics(model: Seq2Seq, src: Tensor, tgt: Tensor, beam_size: int = 0) -> dict[str, float]:
    """Exact-match and per-token accuracy of greedy (and beam, if ``beam_size`` > 1) decoding."""
    refs = [_strip_target(r) for r in tgt.tolist()]
    max_len = max(len(r) for r in refs) + 2
    out = {}
    runs = [("greedy", decoding.greedy(model, src, max_len))]
    if beam_size > 1:
        runs.append((f"beam{beam_size}", decoding.beam_search(model, src, beam_size, max_len)))
    for name, decoded in runs:
        exact = sum(h == r for h, r in zip(decoded.tokens, refs)) / len(refs)
        hits = sum(a == b for h, r in zip(decoded.tokens, refs) for a, b in zip(h, r))
        out[f"exact_{name}"] = exact
        out[f"token_accuracy_{name}"] = hits / sum(len(r) for r in refs)
    return out


# --- the four tasks ---------------------------------------------------------------------------------


def adding(cfg: Mapping[str, Any]) -> Problem:
    """Adding problem at length ``seq_len``: fresh training sequences every batch, a fixed test set."""
    T, placement, tol = int(cfg["seq_len"]), cfg.get("placement", "hochreiter"), float(cfg["tolerance"])
    test = tasks.adding_problem(cfg["n_test"], T, torch.Generator().manual_seed(cfg["seed"] + 1), placement)
    sample = lambda n, g: tasks.adding_problem(n, T, g, placement)  # noqa: E731
    baseline = tasks.adding_baseline(tol)
    # the same baseline measured on this test set (predict the mean, 1)
    baseline["mse_measured"] = (test[1] - 1.0).pow(2).mean().item()
    baseline["accuracy_measured"] = ((test[1] - 1.0).abs() < tol).float().mean().item()
    return Problem("adding", "regression", sample, test, baseline, {"input_size": 2, "output_size": 1, "horizon": T},
                   tolerance=tol)


def _disjoint(train: list, test: list, key: Callable = lambda p: tuple(p[0])) -> list:
    """Test items whose key never occurs in the training set (honest generalisation)."""
    seen = {key(p) for p in train}
    return [p for p in test if key(p) not in seen]


def caption_colour(cfg: Mapping[str, Any]) -> Problem:
    """Which colour a synthetic caption names first; baseline: the most frequent training label."""
    tr_tok, tr_lab = tasks.caption_colour(cfg["n_train"], cfg["seed"])
    te_tok, te_lab = tasks.caption_colour(cfg["n_test"], cfg["seed"] + 1)
    test = _disjoint(list(zip(tr_tok, tr_lab)), list(zip(te_tok, te_lab)))
    vocab = Vocabulary.build(tr_tok, min_count=1)
    encode = lambda toks: pad_ids([vocab.encode(t, cfg["max_len"]) for t in toks])  # noqa: E731
    x_tr, y_tr = encode(tr_tok), torch.tensor(tr_lab)
    x_te, y_te = encode([t for t, _ in test]), torch.tensor([lab for _, lab in test])
    majority = Counter(tr_lab).most_common(1)[0][0]
    baseline = {"accuracy": (y_te == majority).float().mean().item()}
    sizes = {"vocab_size": len(vocab), "output_size": len(tasks.SHAPES_DEFAULTS["colours"]), "horizon": x_tr.size(1)}
    return Problem("caption_colour", "classification", fixed_sampler(x_tr, y_tr), (x_te, y_te), baseline, sizes, vocab)


def _seq2seq(name: str, train: list, test: list, vocab: Vocabulary, max_len: int, sample: Sampler | None) -> Problem:
    """Encode (source, target) token pairs; baseline: copy the source (exact-match rate)."""
    src = lambda pairs: pad_ids([[vocab.stoi.get(t, UNK) for t in s] for s, _ in pairs])  # noqa: E731
    tgt = lambda pairs: pad_ids([vocab.encode(t, max_len) for _, t in pairs])  # noqa: E731
    test_batch = (src(test), tgt(test))
    baseline = {"exact_copy": sum(s == t for s, t in test) / len(test)}
    sample = sample or fixed_sampler(src(train), tgt(train))
    horizon = max(max(len(s), len(t)) for s, t in train + test) + 2
    return Problem(name, "seq2seq", sample, test_batch, baseline, {"vocab_size": len(vocab), "horizon": horizon}, vocab)


def reverse(cfg: Mapping[str, Any]) -> Problem:
    """Reverse a digit string: fresh strings every batch, a fixed test set."""
    vocab = Vocabulary(list(tasks.DIGITS))
    lo, hi = cfg["min_len"], cfg["max_len"]
    test = tasks.digit_reversal(cfg["n_test"], lo, hi, cfg["seed"] + 1)
    encode = lambda pairs: (pad_ids([[vocab.stoi[t] for t in s] for s, _ in pairs]),  # noqa: E731
                            pad_ids([vocab.encode(t, hi) for _, t in pairs]))
    sample = lambda n, g: encode(tasks.digit_reversal(n, lo, hi, int(torch.randint(2**31, (1,), generator=g))))  # noqa: E731
    return _seq2seq("reverse", [], test, vocab, hi, sample)


def paraphrase(cfg: Mapping[str, Any]) -> Problem:
    """Any phrasing of a synthetic scene -> its canonical phrasing; test phrasings unseen in training."""
    train = tasks.caption_paraphrase(cfg["n_train"], cfg["seed"])
    test = _disjoint(train, tasks.caption_paraphrase(cfg["n_test"], cfg["seed"] + 1))
    vocab = Vocabulary.build([s + t for s, t in train], min_count=1)
    return _seq2seq("paraphrase", train, test, vocab, cfg["max_len"], None)


PROBLEMS: dict[str, Callable[[Mapping[str, Any]], Problem]] = {
    "adding": adding, "reverse": reverse, "caption_colour": caption_colour, "paraphrase": paraphrase,
}


def build_problem(name: str, cfg: Mapping[str, Any]) -> Problem:
    """The task called ``name`` ('adding', 'reverse', 'caption_colour', 'paraphrase') built from ``cfg``."""
    if name not in PROBLEMS:
        raise ValueError(f"unknown sequence task {name!r}; choose one of {sorted(PROBLEMS)}")
    return PROBLEMS[name](cfg)


def seeded_generator(seed: int) -> torch.Generator:
    """Seed every global RNG (model init) and return a generator for the training batches."""
    seed_everything(seed)
    return torch.Generator().manual_seed(seed)
