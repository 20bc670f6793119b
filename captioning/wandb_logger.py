"""Weights & Biases logging for `logger=wandb`: offline by default, so no account is needed.

The run lives in ``<run dir>/wandb/offline-run-*``; upload it later with ``wandb sync <that folder>``
(or set ``logger.mode=online``). Logged: the resolved config, the training loss and learning rate,
validation BLEU-4, a table of sample val captions with their images each epoch, the failure cases of
every evaluation split (table + contact sheet), the training curve, the final metrics as the run
summary (``val/Bleu_4`` there is the best epoch's, not the last's) and, when
``logger.log_checkpoint=true``, the best checkpoint as a model artifact.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping, Sequence

from captioning.evaluation.scoring import generate
from captioning.utils.schema import plain

MODES = ("offline", "online", "disabled")


def _run_name(run_dir: Path) -> str:
    """A readable default name: the run directory's last two parts (date/time, or sweep time/job)."""
    return "/".join(run_dir.resolve().parts[-2:])


class WandbLogger:
    """One W&B run per training run; ``log``/``summary``/``finish`` plus tables of captions and failures."""

    def __init__(self, cfg: Any, run_dir: str | Path) -> None:
        import wandb

        lc = plain(cfg.logger)
        if lc.get("mode") not in MODES:
            raise ValueError(f"logger.mode must be one of {MODES}, got {lc.get('mode')!r} (offline needs no account)")
        self.cfg, self.full_cfg, self.run_dir = lc, cfg, Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.run = wandb.init(
            project=lc["project"], entity=lc.get("entity"), group=lc.get("group"), tags=list(lc.get("tags") or []),
            name=lc.get("run_name") or _run_name(self.run_dir), config=plain(cfg), dir=str(self.run_dir),
            mode=lc["mode"], job_type="train", settings=wandb.Settings(**(lc.get("settings") or {})),
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

        n = self.cfg.get("samples_per_epoch", 0)
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

        if not self.cfg.get("log_failures", True):
            return
        for split, records in records_by_split.items():
            report = _failure_report(self.full_cfg, split, records, Path(eval_dir))
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
        if self.cfg.get("log_checkpoint") and best.is_file():
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


def _failure_report(cfg: Any, split: str, records: Sequence, eval_dir: Path):
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
    ev, metrics = cfg.evaluate, cfg.metrics
    return collect_failures([r for r in records if r.image_id in hyps], hyps, per_image, split=split,
                            rank_by=metrics.get("rank_by", "CIDEr"), worst_k=ev.get("worst_k", 24),
                            random_k=ev.get("random_k", 12), seed=metrics.get("report", {}).get("seed", 0),
                            scene_fn=scene_fn)
