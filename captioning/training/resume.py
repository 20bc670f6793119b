"""Where a training stage starts: the best weights so far, ``schedule.init_from``, or the exact position
(stage, epoch, step, optimizer, RNGs) of an interrupted run's ``checkpoints/last.pt``.

The loop (captioning/training/loop.py) writes last.pt with its position; the functions here read it back,
refuse checkpoints that cannot continue this run exactly, and copy checkpoints atomically.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from captioning.features.prepare import Prepared
from captioning.models.base import CaptionModel
from captioning.models.checkpoint import CheckpointError, load_checkpoint
from captioning.utils.distributed import DataParallel
from captioning.utils.io import atomic_write
from captioning.utils.seeding import set_rng_state


def load_resume_point(resume: str | None, ckpt_dir: Path, stages: list[str]) -> dict | None:
    """``resume=<run dir or last.pt>`` (or ``auto``: this run's own, if any): the last checkpoint, with its
    position (``stage`` as an index of ``stages``, epoch, step); None for a fresh start."""
    if not resume:
        return None
    p = Path(resume)
    if resume == "auto":  # this run directory's own last.pt (e.g. a requeued SLURM job), else a fresh start
        if not (ckpt_dir / "last.pt").is_file():
            return None
        p = ckpt_dir / "last.pt"
    ckpt = load_checkpoint(p / "checkpoints" / "last.pt" if (p / "checkpoints" / "last.pt").is_file() else p)
    if "optimizer" not in ckpt or "stage_name" not in ckpt:
        raise CheckpointError(f"{ckpt['path']} holds no training state (optimizer, position): resume from a "
                              "run directory or its checkpoints/last.pt")
    if ckpt["stage_name"] not in stages:
        raise CheckpointError(f"{ckpt['path']} stopped in stage {ckpt['stage_name']!r}, which this schedule does not "
                              f"train (its stages: {stages}); resume with the run's own schedule")
    return {**ckpt, "stage": stages.index(ckpt["stage_name"])}


def starting_point(init_from: str | None, index: int, ckpt_dir: Path) -> dict | None:
    """The checkpoint stage ``index`` starts from: the best so far, or for the first stage ``init_from``."""
    if index > 0 and (ckpt_dir / "best.pt").is_file():
        return load_checkpoint(ckpt_dir / "best.pt")
    if init_from:
        return load_checkpoint(init_from)
    return None


def check_same_model(ckpt: dict, model: CaptionModel, prepared: Prepared, action: str) -> None:
    """Refuse weights of another model, vocabulary or encoder than this config builds (``action``: what
    the run was asked to do with them: 'resume' or 'start from')."""
    if ckpt["model"] != model.hyperparameters() or ckpt["vocab"] != prepared.vocab.state_dict():
        raise CheckpointError(f"cannot {action} {ckpt['path']}: it holds model {ckpt['model']} but this config "
                              f"builds {model.hyperparameters()} (or the vocabularies differ); {action} it with the "
                              "run's own model, cell and data settings")
    if "encoder_state" not in ckpt and not prepared.encoder_identity.matches(ckpt.get("encoder_key", "")):
        raise CheckpointError(f"{ckpt['path']} was trained on {ckpt['encoder_key']!r} features, this run reads "
                              f"{prepared.encoder_key!r}: use the same encoder")


def check_same_position(ckpt: dict, seed: int, stage: str, batch_size: int, steps_per_epoch: int) -> None:
    """A run stopped mid-epoch continues exactly only with the same seed, batch size and data."""
    old = ckpt.get("config") or {}
    old_stage = ((old.get("schedule") or {}).get("stages") or {}).get(stage) or {}
    was = (old.get("seed"), old_stage.get("batch_size"), ckpt.get("steps_per_epoch"))
    now = (seed, batch_size, steps_per_epoch)
    if ckpt["step"] and was != now:
        raise CheckpointError(f"{ckpt['path']} stopped mid-epoch (step {ckpt['step']}); continuing it exactly needs "
                              f"the same seed, batch size and training data: (seed, batch_size, steps per epoch) "
                              f"was {was}, this config gives {now}")


def restore_rng(ckpt: dict, dp: DataParallel) -> bool:
    """Restore this rank's own RNG states from a last.pt saved by as many ranks (True), else rank 0's (False:
    the ranks' streams are then told apart again by ``DataParallel.wrap``)."""
    ranks = ckpt.get("rank_rng") or []
    own = len(ranks) == dp.world_size > 1 and (dp.device.type != "cuda" or "cuda" in ranks[dp.rank])
    set_rng_state(ranks[dp.rank] if own else ckpt["rng"])
    return own


def carry_best(source: Path, target: Path) -> None:
    """A run resumed into a new directory starts with the old run's best checkpoint."""
    if source.is_file() and not target.exists() and source.resolve() != target.resolve():
        copy_file(source, target)


def copy_file(source: Path, target: Path) -> None:
    """Copy ``source`` to ``target`` atomically (a reader never sees half a checkpoint)."""
    if source.is_file():
        with open(source, "rb") as src, atomic_write(target, "wb") as dst:
            shutil.copyfileobj(src, dst)
