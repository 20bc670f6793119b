"""Evaluate one split's captions: metrics, COCO results json, per-image scores and the failure report.

``score_files`` scores any COCO results file against any COCO caption annotation file, the way the
official COCO caption evaluation does (only the images present in the results), so captions produced
by other codebases are compared on the same footing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from captioning.data.coco import ImageRecord
from captioning.data.scene_metrics import group_breakdown, object_breakdown
from captioning.data.scenes import attribute_accuracy, error_kinds, scene_judgements
from captioning.evaluation.chair import load_instances
from captioning.evaluation.failures import SceneFn, collect_failures, render_contact_sheet, render_html
from captioning.evaluation.measures import (TrainingReference, caption_set_diversity, chair, diversity,
                                            hallucinations, has_unseen_pairs, pair_recall)
from captioning.evaluation.metrics import bleu_statistics, per_image_scores, score
from captioning.nn.decoding import Decoder, DecodingConfig, decode_batched
from captioning.text.vocab import Vocabulary
from captioning.utils.files import FileFormatError, read_json  # a ValueError: the user's file is named
from captioning.utils.io import save_json
from captioning.utils.schema import build, option, plain, problems

log = logging.getLogger(__name__)
BASELINES = ("nearest_neighbour", "most_frequent")  # captioning/evaluation/baselines.py
ON_MISSING = ("warn", "raise")
RANK_BY = ("CIDEr", "Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4")  # per-image scores (metrics.per_image_scores)


@dataclass
class EvaluateConfig:
    """What the end of training evaluates besides the model (the ``evaluate`` options of configs/train.yaml);
    the splits come from the data config (``data.eval_splits``)."""

    baselines: list[str] = option(list(BASELINES), "baselines scored beside the model: nearest_neighbour "
                                  "(Devlin et al. 2015) | most_frequent (the commonest training caption)",
                                  choices=BASELINES)
    nn_k: int = option(25, "neighbours pooled by the nearest-neighbour baseline", ge=1)
    worst_k: int = option(24, "worst-scored images shown in each failure report", ge=0)
    random_k: int = option(12, "random images shown beside them", ge=0)



@dataclass
class ReportConfig:
    """The failure-case report of each split (failures_<split>.html/.png); how many cases: ``evaluate``."""

    thumb_size: int = option(128, "thumbnail side in pixels", ge=16)
    columns: int = option(6, "contact-sheet columns", ge=1)
    seed: int = option(0, "seeds the random sample of images shown beside the worst ones", ge=0)
    top_wrong_words: int = option(20, "the most frequent wrong words listed", ge=0)


@dataclass
class MetricsConfig:
    """The metrics every evaluation reports (the `metrics` config group, configs/metrics/*.yaml). BLEU-1..4
    are always computed (pure Python); the defaults add what runs in every install, without Java."""

    cider: bool = option(True, "CIDEr-D (pycocoevalcap; pure Python)")
    rouge: bool = option(True, "ROUGE-L (pycocoevalcap; pure Python)")
    meteor: bool = option(False, "METEOR: needs Java; the first call starts a JVM, later calls reuse it")
    spice: bool = option(False, "SPICE: needs Java and downloads Stanford CoreNLP models (~1 GB) on first use")
    on_missing: str = option("warn", "warn: skip a metric that cannot run here and log why | raise: stop with "
                             "the reason", choices=ON_MISSING)
    per_image_cider: bool = option(True, "add CIDEr-D per image to per_image_<split>.json")
    instances: list[str] = option([], "COCO instances_*.json files (merged by image id) for CHAIR_i/CHAIR_s on "
                                  "data without scenes (captioning/evaluation/chair.py); [] = no CHAIR there")
    pair_recall_k: int = option(5, "held-out-pair recall@k on splits whose scenes hold colour-shape pairs no "
                                "training scene has (beam search of max(k, decoding.beam_size)); 0 = off", ge=0)
    rank_by: str = option("CIDEr", "the per-image score that picks the worst-k failure cases (Bleu_4 where it "
                          "is missing)", choices=RANK_BY)
    report: ReportConfig = option(ReportConfig(), "the failure-case report")


_EXTRA_FLAGS = {"cider": "CIDEr", "rouge": "ROUGE_L", "meteor": "METEOR", "spice": "SPICE"}


def metrics_problems(metrics_cfg: Any) -> list[str]:
    """One line per bad value of a metrics config, and per ``instances`` file that is not there (checked
    before training, not when the run evaluates)."""
    found = problems(MetricsConfig, metrics_cfg, "metrics")
    listed = plain(metrics_cfg).get("instances")
    if not found and listed:
        found += [f"metrics.instances: {p} is not a file; give the paths of COCO instances_*.json files, or [] "
                  "for no CHAIR on COCO" for p in listed if not Path(p).is_file()]
    return found


def extra_metrics(metrics_cfg: Any) -> list[str]:
    """The pycocoevalcap metric names a metrics config (MetricsConfig, or a mapping of its options) switches on."""
    cfg = build(MetricsConfig, metrics_cfg)
    return [name for flag, name in _EXTRA_FLAGS.items() if getattr(cfg, flag)]


def _hypothesis(hypotheses: Mapping[Any, str], image_id: int) -> str | None:
    """Look an id up as given or as a string (ids read back from json are strings)."""
    return hypotheses.get(image_id, hypotheses.get(str(image_id)))


def generate_sets(model: Decoder, vocab: Vocabulary, records: Sequence[ImageRecord], features: np.ndarray,
                  decoding: Any, max_len: int) -> dict[int, list[str]]:
    """Decode every image of a split ({image_id: its decoding.num_captions captions, the first the one
    scored}); ``decoding``: a DecodingConfig (or a mapping of its options, the rest at their defaults);
    ``max_len`` is the limit where ``decoding.max_len`` is 0."""
    opts = plain(build(DecodingConfig, decoding))
    max_len = opts.pop("max_len") or max_len
    out = decode_batched(model, features, batch_size=opts.pop("batch_size"), max_len=max_len, vocab=vocab, **opts)
    if out.captions:  # num_captions > 1
        return {r.image_id: [vocab.decode(t) for t, _ in c] for r, c in zip(records, out.captions)}
    return {r.image_id: [vocab.decode(t)] for r, t in zip(records, out.tokens)}


def generate(model: Decoder, vocab: Vocabulary, records: Sequence[ImageRecord], features: np.ndarray,
             decoding: Any, max_len: int) -> dict[int, str]:
    """Each image's first caption of ``generate_sets`` ({image_id: caption}): the one scored."""
    return {i: c[0] for i, c in generate_sets(model, vocab, records, features, decoding, max_len).items()}


def generate_beams(model: Decoder, vocab: Vocabulary, records: Sequence[ImageRecord], features: np.ndarray,
                   decoding: Any, max_len: int, k: int) -> dict[int, list[str]]:
    """The top ``k`` beam-search captions of every image, best first ({image_id: captions}): a beam of
    max(k, ``decoding.beam_size``) with the decoding's length exponent and batch size."""
    opts = build(DecodingConfig, decoding)
    out = decode_batched(model, features, batch_size=opts.batch_size, max_len=opts.max_len or max_len, method="beam",
                         beam_size=max(k, opts.beam_size), length_alpha=opts.length_alpha, keep_beams=k)
    return {r.image_id: [vocab.decode(t) for t, _ in beams] for r, beams in zip(records, out.beams)}


def pair_recall_beams(model: Decoder, vocab: Vocabulary, records: Sequence[ImageRecord], features: np.ndarray,
                      decoding: Any, max_len: int, metrics_cfg: Any, train: TrainingReference) -> dict | None:
    """``generate_beams`` of ``metrics.pair_recall_k`` captions where the split's scenes hold colour-shape
    pairs the training scenes lack (``val_novel``/``test_novel``), for ``evaluate_split``; else None."""
    k = build(MetricsConfig, metrics_cfg).pair_recall_k
    if not k or not has_unseen_pairs(records, train):
        return None
    return generate_beams(model, vocab, records, features, decoding, max_len, k)


def evaluate_split(
    records: Sequence[Any],
    hypotheses: Mapping[int, str],
    out_dir: str | Path,
    split: str,
    metrics_cfg: Any = None,
    scene_fn: SceneFn | None = None,
    worst_k: int = 24,
    random_k: int = 12,
    cider_df: Any = None,
    train: TrainingReference | None = None,
    beams: Mapping[int, Sequence[str]] | None = None,
    caption_sets: Mapping[int, Sequence[str]] | None = None,
) -> dict[str, float]:
    """Score ``hypotheses`` against the records' captions and write, in ``out_dir``:
    results_<split>.json (COCO results format), per_image_<split>.json, failures_<split>.html/.png.
    Synthetic scenes (records with a ``scene``) also get the scene-attribute accuracies (``acc_*``), and
    their failure report names each caption's kinds of error. ``metrics_cfg``: a MetricsConfig, or a mapping
    of its options (the rest at their declared defaults).

    ``cider_df`` (``metrics.cider_document_frequencies`` of the training references): ``CIDEr`` uses its
    document frequencies, the same for every split; ``CIDEr_official`` is pycocoevalcap's per-split one.
    Each per-image entry holds the caption, sentence BLEU, CIDEr, ``bleu_stats`` (the counts corpus BLEU
    sums, ``metrics.bleu_statistics``) and, for scenes, the applicable ``acc_*`` judgements (0/1, the
    bound fraction for ``acc_binding``): the metric of the split is their mean (BLEU: of the counts).

    Every split also gets the measures of captioning/evaluation/measures.py: ``distinct_1``, ``distinct_2``,
    ``vocab_used``, and with ``train`` (``measures.training_reference`` of the training split)
    ``copied_from_train``; ``CHAIR_i``/``CHAIR_s`` on scenes, or with ``metrics_cfg.instances``; with
    ``beams`` (``generate_beams``) and ``train``, ``pair_recall@k`` where scenes hold unseen pairs. Where
    CHAIR applies, each per-image entry adds ``objects_mentioned``, ``hallucinated`` (the names) and
    ``CHAIR_s`` (0/1), and the failure report ranks the hallucinated objects. With ``caption_sets``
    (``generate_sets``) of more than one caption per image: ``div_1``, ``div_2``, ``captions_unique``."""
    cfg = build(MetricsConfig, metrics_cfg)
    hyps = {r.image_id: _hypothesis(hypotheses, r.image_id) for r in records}
    missing = [i for i, h in hyps.items() if h is None]
    if missing:
        raise ValueError(f"split {split!r}: no caption for {len(missing)} of {len(records)} images, e.g. {missing[:5]}")
    refs = {r.image_id: list(r.captions) for r in records}
    metrics = score(refs, hyps, extra=extra_metrics(cfg), on_missing=cfg.on_missing, cider_df=cider_df)
    synthetic = bool(records) and getattr(records[0], "scene", None) is not None
    judged: dict = {}
    if synthetic:
        scene_fn = scene_fn or error_kinds
        metrics.update({f"acc_{k}": v for k, v in attribute_accuracy(records, hyps).items()})
        judged = scene_judgements(records, hyps)
    metrics.update(diversity(list(hyps.values()), train))
    found = hallucinations(records, hyps, load_instances(tuple(cfg.instances)) if cfg.instances else None)
    if found is not None:
        metrics.update(chair(found))
    if caption_sets is not None:
        metrics.update(caption_set_diversity([caption_sets[r.image_id] for r in records]))
    if beams is not None and train is not None and cfg.pair_recall_k:
        metrics.update(pair_recall(records, beams, train.pairs, cfg.pair_recall_k))
    per_image = per_image_scores(refs, hyps, cider=cfg.per_image_cider, cider_df=cider_df)
    stats = bleu_statistics(refs, hyps)
    saved = {i: {**per_image[i], "bleu_stats": stats[i], **{f"acc_{k}": v for k, v in judged.get(i, {}).items()},
                 **_hallucination_entry((found or {}).get(i))} for i in hyps}

    named = None if found is None else {i: names for i, (_, names) in found.items()}
    out_dir = Path(out_dir)
    save_json([{"image_id": i, "caption": h} for i, h in hyps.items()], out_dir / f"results_{split}.json")
    save_json([{"image_id": i, "caption": hyps[i], **saved[i]} for i in hyps], out_dir / f"per_image_{split}.json")
    report = collect_failures(records, hyps, per_image, split=split, rank_by=cfg.rank_by, worst_k=worst_k,
                              random_k=random_k, seed=cfg.report.seed, scene_fn=scene_fn,
                              top_words=cfg.report.top_wrong_words, hallucinated=named)  # fmt: skip
    report.metrics = metrics
    if synthetic:  # where the scene accuracy breaks: by object count, style, twins; per object by place
        seen = train.pairs if train is not None and train.pairs else None
        report.scene_groups = group_breakdown(records, hyps, seen)
        report.object_groups = object_breakdown(records, hyps, seen)
    thumb = cfg.report.thumb_size
    render_html(report, out_dir / f"failures_{split}.html", thumb_size=thumb)
    render_contact_sheet(report, out_dir / f"failures_{split}.png", thumb_size=thumb,
                         columns=cfg.report.columns)  # fmt: skip
    return metrics


def _hallucination_entry(found: tuple[int, Sequence[str]] | None) -> dict[str, Any]:
    """The per-image CHAIR fields of one caption (none where CHAIR does not apply)."""
    if found is None:
        return {}
    mentioned, names = found
    return {"objects_mentioned": mentioned, "hallucinated": list(names), "CHAIR_s": float(bool(names))}


def load_results(results_json: str | Path) -> dict[int, str]:
    """A COCO results file (``[{"image_id": ..., "caption": ...}]``) as {image_id: caption}; one per image."""
    data = read_json(results_json, "results file")
    if not isinstance(data, list) or not all(isinstance(d, dict) and {"image_id", "caption"} <= d.keys() for d in data):
        raise FileFormatError(f"{results_json}: expected a COCO results list of "
                              "{'image_id': ..., 'caption': ...} objects")
    results: dict[int, str] = {}
    for d in data:
        if d["image_id"] in results:
            raise FileFormatError(f"{results_json}: image {d['image_id']} has more than one caption; "
                                  "keep one per image")
        results[d["image_id"]] = str(d["caption"])
    return results


def load_references(annotation_json: str | Path) -> dict[int, list[str]]:
    """Reference captions per image id from a COCO caption annotation file."""
    data = read_json(annotation_json, "annotation file")
    anns = data.get("annotations") if isinstance(data, dict) else None
    if not isinstance(anns, list) or not all(isinstance(a, dict) and {"image_id", "caption"} <= a.keys() for a in anns):
        raise FileFormatError(f"{annotation_json}: expected a COCO caption file with "
                              "'annotations' [{image_id, caption}]")
    refs: dict[int, list[str]] = {}
    for a in anns:
        refs.setdefault(a["image_id"], []).append(str(a["caption"]))
    return refs


def load_scenes(annotation_json: str | Path) -> dict[int, dict]:
    """The ``scenes`` of a synthetic-shapes annotation file by image id ({} for other COCO files)."""
    data = read_json(annotation_json, "annotation file")
    scenes = data.get("scenes") if isinstance(data, dict) else None
    return {int(i): s for i, s in scenes.items()} if isinstance(scenes, dict) else {}


def score_files(
    results_json: str | Path, annotation_json: str | Path, extra: Sequence[str] = (), on_missing: str = "raise",
    instances: Sequence[str] = (),
) -> dict[str, float]:
    """Score a COCO results file against a COCO annotation file, over the images in the results; with the
    diversity measures, and CHAIR from the file's scenes (shapes data) or from COCO ``instances`` files."""
    results, refs = load_results(results_json), load_references(annotation_json)
    unknown = [i for i in results if i not in refs]
    if unknown:
        raise ValueError(f"{len(unknown)} image ids of {results_json} have no captions in {annotation_json}, "
                         f"e.g. {unknown[:5]}")  # fmt: skip
    if len(results) < len(refs):
        log.warning("%s covers %d of the %d annotated images; scoring those only",
                    results_json, len(results), len(refs))  # fmt: skip
    metrics = score({i: refs[i] for i in results}, results, extra=extra, on_missing=on_missing)
    metrics.update(diversity(list(results.values())))
    scenes = load_scenes(annotation_json)
    records = [ImageRecord(i, "", refs[i], scenes.get(i)) for i in results]
    found = hallucinations(records, results, load_instances(tuple(instances)) if instances else None)
    if found is not None:
        metrics.update(chair(found))
    return metrics
