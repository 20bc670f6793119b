"""Caption metrics with the official COCO scorer's numbers: BLEU in pure Python, the rest via pycocoevalcap.

BLEU follows pycocoevalcap's ``BleuScorer`` (``option='closest'``) exactly:
- per image, the clipped n-gram matches ("correct") come from nltk's ``modified_precision`` and the
  effective reference length from nltk's ``closest_ref_length`` (shortest of the closest lengths):
  both agree with the scorer's ``cook_test``;
- the scorer's "guess" is the true number of hypothesis n-grams (nltk clamps it to at least 1), and it
  combines the counts as ``(correct + 1e-15) / (guess + 1e-9)`` with a brevity penalty on
  ``(testlen + 1e-15) / (reflen + 1e-9)``. nltk's ``corpus_bleu``/``sentence_bleu`` drop or smooth zero
  precisions differently, so that last step is ours (``combine``) to reproduce the official numbers,
  including the per-image "smoothing" the scorer reports.
Text goes through ``captioning.text.tokenizer.tokenize`` (the scorer's PTB tokenisation, no Java needed).

CIDEr: given ``cider_df`` (a ``captioning.evaluation.cider.CiderD`` built from the training references,
as the main job does), ``CIDEr`` is CIDEr-D with the training split's document frequencies, one scale
for every split, and ``CIDEr_official`` is pycocoevalcap's ``Cider`` (document frequencies from the
scored split's own references, the number papers report). Without it both are the official number.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import logging
import math
import shutil
from typing import Hashable, Mapping, Sequence

from nltk.translate.bleu_score import closest_ref_length, modified_precision

from captioning.evaluation.cider import CiderD
from captioning.text.tokenizer import tokenize

log = logging.getLogger(__name__)

BLEU_N = 4
TINY, SMALL = 1e-15, 1e-9  # pycocoevalcap bleu_scorer.compute_score
# extra metric name -> (pycocoevalcap module, class, needs java)
EXTRA_METRICS = {
    "CIDEr": ("pycocoevalcap.cider.cider", "Cider", False),
    "ROUGE_L": ("pycocoevalcap.rouge.rouge", "Rouge", False),
    "METEOR": ("pycocoevalcap.meteor.meteor", "Meteor", True),
    "SPICE": ("pycocoevalcap.spice.spice", "Spice", True),
}


class MetricUnavailable(RuntimeError):
    """An optional metric cannot run here (missing package or Java)."""


def missing_requirement(metric: str) -> str | None:
    """Why ``metric`` cannot run on this machine, or None when it can."""
    if metric not in EXTRA_METRICS:
        raise ValueError(f"unknown metric {metric!r}; choose from {sorted(EXTRA_METRICS)}")
    module, _, needs_java = EXTRA_METRICS[metric]
    if importlib.util.find_spec("pycocoevalcap") is None:
        # a core dependency, so only a broken or partial install gets here
        return f"{metric} needs pycocoevalcap, a dependency of this package: reinstall it (pip install -e .)"
    if needs_java and shutil.which("java") is None:
        return f"{metric} needs Java (a `java` executable on PATH), e.g. apt-get install default-jre"
    return None


def _check_inputs(references: Mapping, hypotheses: Mapping) -> None:
    """Same image ids on both sides, non-empty reference lists, string captions."""
    missing = [i for i in references if i not in hypotheses]
    extra = [i for i in hypotheses if i not in references]
    if missing or extra:
        raise ValueError(
            f"references and hypotheses must cover the same image ids: {len(missing)} without a hypothesis "
            f"(e.g. {missing[:3]}), {len(extra)} without references (e.g. {extra[:3]})"
        )
    for image_id, refs in references.items():
        if isinstance(refs, str) or not refs:
            raise ValueError(f"image {image_id!r}: references must be a non-empty list of strings")
        if not isinstance(hypotheses[image_id], str):
            raise ValueError(f"image {image_id!r}: the hypothesis must be one string, got {hypotheses[image_id]!r}")


def _bleu_stats(refs: list[list[str]], hyp: list[str]) -> tuple[list[int], list[int], int, int]:
    """(correct[n], guess[n], testlen, reflen) of one image, as the scorer's ``cook_test``."""
    correct = [modified_precision(refs, hyp, n).numerator for n in range(1, BLEU_N + 1)]
    guess = [max(0, len(hyp) - n + 1) for n in range(1, BLEU_N + 1)]
    return correct, guess, len(hyp), closest_ref_length(refs, len(hyp))


def combine(correct: Sequence[int], guess: Sequence[int], testlen: int, reflen: int) -> list[float]:
    """Bleu_1..Bleu_N from counts, with the official scorer's epsilons and brevity penalty."""
    bleus, product = [], 1.0
    for k in range(BLEU_N):
        product *= (correct[k] + TINY) / (guess[k] + SMALL)
        bleus.append(product ** (1.0 / (k + 1)))
    ratio = (testlen + TINY) / (reflen + SMALL)
    if ratio < 1:
        bleus = [b * math.exp(1 - 1 / ratio) for b in bleus]
    return bleus


def _tokenized(references: Mapping, hypotheses: Mapping) -> tuple[dict, dict]:
    _check_inputs(references, hypotheses)
    refs = {i: [tokenize(r) for r in rs] for i, rs in references.items()}
    hyps = {i: tokenize(hypotheses[i]) for i in references}
    return refs, hyps


def _bleu(refs: dict, hyps: dict) -> tuple[dict[str, float], dict[Hashable, list[float]]]:
    """Corpus BLEU and per-image BLEU (the scorer's ``scores`` list) from tokenised text."""
    total_correct, total_guess, total_test, total_ref = [0] * BLEU_N, [0] * BLEU_N, 0, 0
    per_image = {}
    for image_id, hyp in hyps.items():
        correct, guess, testlen, reflen = _bleu_stats(refs[image_id], hyp)
        per_image[image_id] = combine(correct, guess, testlen, reflen)
        total_correct = [a + b for a, b in zip(total_correct, correct)]
        total_guess = [a + b for a, b in zip(total_guess, guess)]
        total_test, total_ref = total_test + testlen, total_ref + reflen
    corpus = combine(total_correct, total_guess, total_test, total_ref)
    return {f"Bleu_{n + 1}": corpus[n] for n in range(BLEU_N)}, per_image


def _scorer(metric: str):
    """A pycocoevalcap scorer; METEOR's is kept, as each one starts a JVM that loads its tables."""
    module, cls, _ = EXTRA_METRICS[metric]
    if metric == "METEOR":
        return _meteor()
    return getattr(importlib.import_module(module), cls)()


@functools.lru_cache(maxsize=1)
def _meteor():
    from pycocoevalcap.meteor.meteor import Meteor

    return Meteor()


def _run_extra(metric: str, refs: dict, hyps: dict) -> tuple[float, list]:
    """Run one pycocoevalcap scorer on our tokenised text (space-joined, as its PTB step would give)."""
    reason = missing_requirement(metric)
    if reason:
        raise MetricUnavailable(reason)
    gts = {i: [" ".join(r) for r in rs] for i, rs in refs.items()}
    res = {i: [" ".join(hyps[i])] for i in refs}
    try:
        return _scorer(metric).compute_score(gts, res)
    except Exception as err:  # Java crashes, SPICE's Stanford models cannot be downloaded offline, ...
        _meteor.cache_clear()  # never reuse a JVM that may have died
        raise MetricUnavailable(f"{metric} failed to run: {err}") from err


def score(
    references: Mapping[Hashable, Sequence[str]],
    hypotheses: Mapping[Hashable, str],
    extra: Sequence[str] = (),
    on_missing: str = "raise",
    cider_df: CiderD | None = None,
) -> dict[str, float]:
    """Corpus metrics: Bleu_1..Bleu_4 always, plus any of CIDEr, ROUGE_L, METEOR, SPICE in ``extra``.

    ``on_missing="warn"`` logs and skips an extra metric that cannot run; ``"raise"`` raises
    ``MetricUnavailable`` naming what is missing. CIDEr adds ``CIDEr`` and ``CIDEr_official`` (module doc:
    ``cider_df`` fixes the document frequencies of ``CIDEr``).
    """
    if on_missing not in ("raise", "warn"):
        raise ValueError(f"on_missing must be 'raise' or 'warn', got {on_missing!r}")
    refs, hyps = _tokenized(references, hypotheses)
    if not refs:
        raise ValueError("no images to score")
    results, _ = _bleu(refs, hyps)
    for metric in extra:
        try:
            value, _ = _run_extra(metric, refs, hyps)
        except MetricUnavailable as err:
            if on_missing == "raise":
                raise
            log.warning("skipping %s", err)
            continue
        results[metric] = float(value)
        if metric == "CIDEr":
            results["CIDEr_official"] = float(value)
            if cider_df is not None:
                results["CIDEr"] = cider_df.score(refs, hyps)[0]
    return results


def cider_document_frequencies(references: Sequence[Sequence[str]] | Mapping[Hashable, Sequence[str]]) -> CiderD:
    """CIDEr-D whose document frequencies (and N) come from these references, e.g. the training split's
    (a list of reference lists, one per image, or {image_id: references}); tokenised as every metric."""
    groups = references.values() if isinstance(references, Mapping) else references
    return CiderD.from_references([[tokenize(r) for r in refs] for refs in groups])


def bleu_statistics(
    references: Mapping[Hashable, Sequence[str]], hypotheses: Mapping[Hashable, str]
) -> dict[Hashable, list[int]]:
    """Per image, the counts corpus BLEU sums: correct n-grams (n = 1..4), hypothesis n-grams (1..4),
    hypothesis length and effective reference length (``bleu_from_statistics`` turns sums into BLEU)."""
    refs, hyps = _tokenized(references, hypotheses)
    out = {}
    for image_id, hyp in hyps.items():
        correct, guess, testlen, reflen = _bleu_stats(refs[image_id], hyp)
        out[image_id] = [*correct, *guess, testlen, reflen]
    return out


def bleu_from_statistics(totals: Sequence[float]) -> dict[str, float]:
    """Corpus Bleu_1..Bleu_4 from summed ``bleu_statistics`` (equals ``score`` on those images)."""
    totals = list(totals)
    bleus = combine(totals[:BLEU_N], totals[BLEU_N : 2 * BLEU_N], totals[2 * BLEU_N], totals[2 * BLEU_N + 1])
    return {f"Bleu_{n + 1}": bleus[n] for n in range(BLEU_N)}


def per_image_scores(
    references: Mapping[Hashable, Sequence[str]],
    hypotheses: Mapping[Hashable, str],
    cider: bool = True,
    cider_df: CiderD | None = None,
) -> dict[Hashable, dict[str, float]]:
    """Per image: the scorer's sentence Bleu_1..Bleu_4, and unless ``cider=False`` CIDEr and
    CIDEr_official (CIDEr-D; ``cider_df`` fixes the document frequencies of ``CIDEr``, see the module doc).
    The mean of the per-image CIDEr is the corpus CIDEr."""
    refs, hyps = _tokenized(references, hypotheses)
    _, bleu = _bleu(refs, hyps)
    scores = {i: {f"Bleu_{n + 1}": b[n] for n in range(BLEU_N)} for i, b in bleu.items()}
    if cider and refs and missing_requirement("CIDEr") is None:
        _, cider_scores = _run_extra("CIDEr", refs, hyps)
        ours = cider_df.score(refs, hyps)[1] if cider_df is not None else None
        for image_id, value in zip(refs, cider_scores):
            scores[image_id]["CIDEr"] = float(value) if ours is None else ours[image_id]
            scores[image_id]["CIDEr_official"] = float(value)
    return scores


def human_agreement(references: Mapping[Hashable, Sequence[str]]) -> dict[str, float]:
    """Leave-one-out BLEU of the references themselves: each reference in turn scored against the others.

    The usual "human" row of captioning papers: how much the annotators (here, the phrasings) agree.
    A model is scored against all n references and this against n - 1, so it is a guide, not a bound.
    Returns Bleu_1..Bleu_4 averaged over which reference is held out (images with fewer than two
    references are left out).
    """
    usable = {i: list(caps) for i, caps in references.items() if len(caps) >= 2}
    if not usable:
        raise ValueError("human agreement needs images with at least two references")
    rounds = min(len(caps) for caps in usable.values())
    totals = dict.fromkeys((f"Bleu_{n + 1}" for n in range(BLEU_N)), 0.0)
    for k in range(rounds):
        held = {i: caps[k] for i, caps in usable.items()}
        rest = {i: caps[:k] + caps[k + 1 :] for i, caps in usable.items()}
        for name, value in score(rest, held).items():
            totals[name] += value / rounds
    return totals
