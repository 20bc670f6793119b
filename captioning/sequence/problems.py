"""A task made trainable: its data, model, loss, metrics and trivial baseline, behind one interface.

Each task declares its options once (``AddingTask``, ``ReverseTask``, ``CaptionColourTask``,
``ParaphraseTask``: configs/sequence/task/*.yaml); ``task_config`` makes the typed one of a config node
and ``build_problem(task)`` returns a ``Problem``. ``train.train_sequence_model`` only ever calls its
``train_batch``, ``loss``, ``evaluate`` and ``build_model``.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence, Union

import torch
from torch import Tensor, nn

from captioning.nn import decoding
from captioning.utils.seeding import seed_everything
from captioning.sequence import tasks
from captioning.sequence.models import ManyToOne, Seq2Seq, SequenceCellConfig, SequenceModelConfig
from captioning.text.vocab import END, PAD, UNK, Vocabulary
from captioning.utils.schema import build, option, plain

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

    def build_model(self, cell: SequenceCellConfig, model: SequenceModelConfig) -> nn.Module:
        """A ManyToOne or Seq2Seq model sized for this task: ``cell`` says which cell and its init, ``model``
        the free sizes. Chrono LSTM init uses ``cell.t_max`` or, when unset, the task's longest sequence.
        """
        kw = dict(hidden_size=model.hidden_size, num_layers=model.num_layers, backend=cell.backend,
                  lstm_init=cell.lstm_init, forget_bias=cell.forget_bias, t_max=cell.t_max or self.sizes["horizon"])
        if self.kind == "seq2seq":
            return Seq2Seq(cell.name, self.sizes["vocab_size"], model.embed_dim, **kw)
        vocab_size = self.sizes["vocab_size"] if "vocab_size" in self.sizes else 0  # 0: float inputs
        input_size = model.embed_dim if vocab_size else self.sizes["input_size"]
        return ManyToOne(cell.name, input_size, self.sizes["output_size"], vocab_size=vocab_size, **kw)

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


# --- the four tasks' options (configs/sequence/task/*.yaml) ------------------------------------------


@dataclass
class AddingOptions:
    """The adding problem at any length (the long-term-dependency sweep's `task`)."""

    placement: str = option("hochreiter", "hochreiter: both markers in the first half, so values are held >= T/2 "
                            "steps | halves: one marker in each half", choices=tasks.PLACEMENTS)
    tolerance: float = option(0.04, "a prediction counts as correct when |error| < tolerance (H&S 1997 use 0.04)",
                              gt=0.0, lt=1.0)
    n_test: int = option(1000, "test sequences (training sequences are fresh every batch)", ge=1)


@dataclass
class AddingTask(AddingOptions):
    """task=adding: many-to-one regression over (value, marker) pairs."""

    name: str = option("adding", "the task", choices=("adding",))
    seq_len: int = option(100, "length T of every sequence", ge=4)
    seed: int = option(0, "seeds the test set", ge=0)


@dataclass
class ReverseTask:
    """task=reverse: reverse a digit string (sequence-to-sequence)."""

    name: str = option("reverse", "the task", choices=("reverse",))
    min_len: int = option(3, "shortest digit string", ge=1)
    max_len: int = option(10, "longest digit string (>= min_len)", ge=1)
    n_test: int = option(500, "test strings (training strings are fresh every batch)", ge=1)
    seed: int = option(0, "seeds the test set", ge=0)


@dataclass
class CaptionColourTask:
    """task=caption_colour: which colour a synthetic caption names first (many-to-one classification)."""

    name: str = option("caption_colour", "the task", choices=("caption_colour",))
    n_train: int = option(5000, "training captions", ge=1)
    n_test: int = option(1000, "test captions drawn; those also in the training set are dropped", ge=1)
    max_len: int = option(16, "caption words kept", ge=1)
    seed: int = option(0, "seeds the captions (the test set uses seed + 1)", ge=0)


@dataclass
class ParaphraseTask:
    """task=paraphrase: any phrasing of a synthetic scene -> its canonical phrasing (sequence-to-sequence)."""

    name: str = option("paraphrase", "the task", choices=("paraphrase",))
    n_train: int = option(8000, "training pairs", ge=1)
    n_test: int = option(500, "test pairs drawn; phrasings also in the training set are dropped", ge=1)
    max_len: int = option(16, "target words kept", ge=1)
    seed: int = option(0, "seeds the pairs (the test set uses seed + 1)", ge=0)


TaskConfig = Union[AddingTask, ReverseTask, CaptionColourTask, ParaphraseTask]
TASKS: dict[str, type] = {"adding": AddingTask, "reverse": ReverseTask, "caption_colour": CaptionColourTask,
                          "paraphrase": ParaphraseTask}


def task_schema(node: Any) -> type:
    """The options class of the task a config node names (``name``); ValueError for an unknown one."""
    values = plain(node)
    name = values["name"] if "name" in values else None
    if name not in TASKS:
        raise ValueError(f"unknown sequence task {name!r}; choose one of {sorted(TASKS)}")
    return TASKS[name]


def task_config(node: Any) -> TaskConfig:
    """The typed options of the task ``node`` names (a mapping, an OmegaConf node or a task instance)."""
    return node if isinstance(node, tuple(TASKS.values())) else build(task_schema(node), node)


# --- the four tasks ---------------------------------------------------------------------------------


def adding(cfg: AddingTask) -> Problem:
    """Adding problem at length ``seq_len``: fresh training sequences every batch, a fixed test set."""
    T, placement, tol = cfg.seq_len, cfg.placement, cfg.tolerance
    test = tasks.adding_problem(cfg.n_test, T, torch.Generator().manual_seed(cfg.seed + 1), placement)
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


def caption_colour(cfg: CaptionColourTask) -> Problem:
    """Which colour a synthetic caption names first; baseline: the most frequent training label."""
    tr_tok, tr_lab = tasks.caption_colour(cfg.n_train, cfg.seed)
    te_tok, te_lab = tasks.caption_colour(cfg.n_test, cfg.seed + 1)
    test = _disjoint(list(zip(tr_tok, tr_lab)), list(zip(te_tok, te_lab)))
    vocab = Vocabulary.build(tr_tok, min_count=1)
    encode = lambda toks: pad_ids([vocab.encode(t, cfg.max_len) for t in toks])  # noqa: E731
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


def reverse(cfg: ReverseTask) -> Problem:
    """Reverse a digit string: fresh strings every batch, a fixed test set."""
    vocab = Vocabulary(list(tasks.DIGITS))
    lo, hi = cfg.min_len, cfg.max_len
    test = tasks.digit_reversal(cfg.n_test, lo, hi, cfg.seed + 1)
    encode = lambda pairs: (pad_ids([[vocab.stoi[t] for t in s] for s, _ in pairs]),  # noqa: E731
                            pad_ids([vocab.encode(t, hi) for _, t in pairs]))
    sample = lambda n, g: encode(tasks.digit_reversal(n, lo, hi, int(torch.randint(2**31, (1,), generator=g))))  # noqa: E731
    return _seq2seq("reverse", [], test, vocab, hi, sample)


def paraphrase(cfg: ParaphraseTask) -> Problem:
    """Any phrasing of a synthetic scene -> its canonical phrasing; test phrasings unseen in training."""
    train = tasks.caption_paraphrase(cfg.n_train, cfg.seed)
    test = _disjoint(train, tasks.caption_paraphrase(cfg.n_test, cfg.seed + 1))
    vocab = Vocabulary.build([s + t for s, t in train], min_count=1)
    return _seq2seq("paraphrase", train, test, vocab, cfg.max_len, None)


PROBLEMS: dict[str, Callable[[Any], Problem]] = {
    "adding": adding, "reverse": reverse, "caption_colour": caption_colour, "paraphrase": paraphrase,
}


def build_problem(task: Any) -> Problem:
    """The task ``task`` names ('adding', 'reverse', 'caption_colour', 'paraphrase'), built from its options
    (a task instance such as ``AddingTask(seq_len=10)``, or a mapping with its ``name``)."""
    cfg = task_config(task)
    return PROBLEMS[cfg.name](cfg)


def seeded_generator(seed: int) -> torch.Generator:
    """Seed every global RNG (model init) and return a generator for the training batches."""
    seed_everything(seed)
    return torch.Generator().manual_seed(seed)
