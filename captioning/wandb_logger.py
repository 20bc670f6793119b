"""Weights & Biases logging for `logger=wandb`: offline by default, so no account is needed.

The run lives in ``<run dir>/wandb/offline-run-*``; upload it later with ``wandb sync <that folder>``
(or set ``logger.mode=online``). Logged: the resolved config, the training loss and learning rate,
validation BLEU-4, a table of sample val captions with their images each epoch, the failure cases of
every evaluation split (table + contact sheet), the training curve, the final metrics as the run
summary (``val/Bleu_4`` there is the best epoch's, not the last's) and, when
``logger.log_checkpoint=true``, the best checkpoint as a model artifact.

wandb is optional (the ``wandb`` extra: ``pip install "captioning[wandb]"``); without it ``logger=wandb``
stops with one line that says how to install it, and ``logger=none`` (the default) never needs it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from captioning.evaluation.scoring import EvaluateConfig, MetricsConfig, generate
from captioning.utils.schema import build, option, problems

MODES = ("offline", "online", "disabled")
INSTALL = 'pip install "captioning[wandb]"'


class WandbUnavailable(ImportError):
    """``logger=wandb`` was chosen, but the optional wandb package is not installed."""


def import_wandb() -> Any:
    """The wandb module, or WandbUnavailable saying in one line how to install it."""
    try:
        import wandb
    except ImportError:
        raise WandbUnavailable(f"logger=wandb needs the optional wandb package: install it with {INSTALL} "
                               f"(or pip install wandb), or choose logger=none") from None
    return wandb


@dataclass
class WandbConfig:
    """``logger=wandb`` (captioning/configs/logger/wandb.yaml): a Weights & Biases run per training run."""

    name: str = option("wandb", "none | wandb: the experiment logger", choices=("none", "wandb"))
    mode: str = option("${oc.env:WANDB_MODE,offline}", "offline (no account, nothing sent; `wandb sync` uploads "
                       "later) | online | disabled; default: env WANDB_MODE, else offline", choices=MODES)
    project: str = option("captioning", "the W&B project")
    entity: str | None = option(None, "your W&B user or team (online only); null = your default")
    group: str | None = option(None, "groups runs together, e.g. a sweep's name")
    run_name: str | None = option(None, "null = the run directory's last two parts (date/time or sweep job)")
    tags: list[str] = option([], "tags of the run")
    samples_per_epoch: int = option(8, "val images whose greedy captions are logged as a table (with images) "
                                    "each epoch; 0 = none", ge=0)
    log_failures: bool = option(True, "worst and random cases of every evaluation split as a table with images")
    log_checkpoint: bool = option(False, "checkpoints/best.pt as a model artifact (large)")
    settings: dict[str, Any] = option({"console": "off", "silent": True},
                                      "passed to wandb.Settings (console off: train.log has stdout/stderr)")


def _run_name(run_dir: Path) -> str:
    """A readable default name: the run directory's last two parts (date/time, or sweep time/job)."""
    return "/".join(run_dir.resolve().parts[-2:])


class WandbLogger:
    """One W&B run per training run; ``log``/``summary``/``finish`` plus tables of captions and failures."""

    def __init__(self, options: Any, run_dir: str | Path, config: dict, evaluate: EvaluateConfig,
                 metrics: MetricsConfig) -> None:
        wandb = import_wandb()
        found = problems(WandbConfig, options, "logger")
        if found:
            raise ValueError("; ".join(found) + " (mode=offline needs no account)")
        lc = build(WandbConfig, options)
        self.cfg, self.run_dir, self.evaluate, self.metrics = lc, Path(run_dir), evaluate, metrics
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.run = wandb.init(
            project=lc.project, entity=lc.entity, group=lc.group, tags=list(lc.tags),
            name=lc.run_name or _run_name(self.run_dir), config=config, dir=str(self.run_dir),
            mode=lc.mode, job_type="train", settings=wandb.Settings(**lc.settings),
        )
        # the run summary keeps the best val BLEU-4 (the epoch best.pt holds), not the last epoch's
        self.run.define_metric("val/Bleu_4", summary="max")
        self._finished = False

    def log(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        """Scalars (or W&B media) at a global training step."""
        self.run.log(dict(metrics), step=step)

    def log_samples(self, epoch: int, step: int, decoder, prepared, split: str | None, max_len: int) -> None:
        """A table of the first ``samples_per_epoch`` images of ``split`` with their greedy captions."""
        import wandb

        n = self.cfg.samples_per_epoch
        if not n or not split or split not in prepared.splits:
            return
        records = prepared.splits[split][:n]
        hyps = generate(decoder, prepared.vocab, records, prepared.features[split][:n], {"method": "greedy"}, max_len)
        table = wandb.Table(columns=["epoch", "image", "image_id", "caption", "references"])
        for r in records:
            table.add_data(epoch, wandb.Image(r.path), r.image_id, hyps[r.image_id], " | ".join(r.captions))
        self.run.log({f"samples/{split}": table}, step=step)

    def log_failures(self, records_by_split: Mapping[str, Sequence], eval_dir: str | Path) -> None:
        """The worst and random cases of each split (read from per_image_<split>.json) as tables with images."""
        import wandb

        from captioning.evaluation.failures import report_rows

        if not self.cfg.log_failures:
            return
        for split, records in records_by_split.items():
            report = _failure_report(self.evaluate, self.metrics, split, records, Path(eval_dir))
            if report is None:
                continue
            rows = report_rows(report)
            columns = ["image"] + [k for k in rows[0] if k != "path"] if rows else ["image"]
            table = wandb.Table(columns=columns)
            for row in rows:
                table.add_data(wandb.Image(row["path"]), *[row.get(k) for k in columns[1:]])
            media = {f"failures/{split}": table}
            sheet = Path(eval_dir) / f"failures_{split}.png"
            if sheet.is_file():
                media[f"failures/{split}_sheet"] = wandb.Image(str(sheet))
            if report.error_counts:
                media.update({f"errors/{split}/{k}": v / report.n_images for k, v in report.error_counts.items()})
            self.run.log(media)

    def summary(self, results: Mapping[str, Mapping[str, Any]]) -> None:
        """Final metrics as the run summary ("test/Bleu_4", "run/seconds_total"...); curve and checkpoint."""
        import wandb

        for group, metrics in results.items():
            prefix = "run" if group == "_run" else group
            for key, value in metrics.items():
                self.run.summary[f"{prefix}/{key}"] = value
        curve = self.run_dir / "training_curve.png"
        if curve.is_file():
            self.run.log({"training_curve": wandb.Image(str(curve))})
        best = self.run_dir / "checkpoints" / "best.pt"
        if self.cfg.log_checkpoint and best.is_file():
            artifact = wandb.Artifact(f"model-{self.run.id}", type="model",
                                      metadata={k: dict(v) for k, v in results.items()})
            artifact.add_file(str(best), name="best.pt", policy="immutable")  # no copy of a large file
            self.run.log_artifact(artifact, aliases=["best"])

    def finish(self) -> None:
        """Close the run and wait until it is all on disk; safe to call twice."""
        import wandb

        if not self._finished:
            self._finished = True
            self.run.finish()
            # finish() returns before W&B's service has written the run file's tail (measured: a
            # file read right after it lacked the summary, or everything); teardown waits for it
            wandb.teardown()


def _failure_report(ev: EvaluateConfig, metrics: MetricsConfig, split: str, records: Sequence, eval_dir: Path):
    """Rebuild the split's failure report from the per-image scores evaluation wrote (None if absent)."""
    from captioning.evaluation.failures import collect_failures

    per_image_file = eval_dir / f"per_image_{split}.json"
    if not per_image_file.is_file():
        return None
    rows = json.loads(per_image_file.read_text(encoding="utf-8"))
    hyps = {r["image_id"]: r["caption"] for r in rows}
    per_image = {r["image_id"]: {k: v for k, v in r.items() if k not in ("image_id", "caption")} for r in rows}
    scene_fn = None
    if records and getattr(records[0], "scene", None) is not None:
        from captioning.data.scenes import error_kinds as scene_fn
    # each caption's hallucinated objects, where evaluation measured them (CHAIR)
    named = {r["image_id"]: r["hallucinated"] for r in rows if "hallucinated" in r} or None
    return collect_failures([r for r in records if r.image_id in hyps], hyps, per_image, split=split,
                            rank_by=metrics.rank_by, worst_k=ev.worst_k, random_k=ev.random_k,
                            seed=metrics.report.seed, scene_fn=scene_fn, hallucinated=named)
