"""Self-critical sequence training (``schedule=scst``): optimise the evaluation metric itself.

Cross-entropy teaches the decoder to imitate each reference word by word, given the true previous
words (teacher forcing); at test time it reads its own words and is judged by BLEU. Self-critical
training (Rennie et al. 2017) closes that gap with REINFORCE: for each image sample ``samples``
captions from the decoder, score each against the image's references (sentence BLEU, the metric
module's own), and raise the log-probability of the captions that beat a baseline:

    loss = - mean_i (r(w_i) - b_i) * sum_t log p(w_i,t | w_i,<t, image)

The baseline ``b_i`` is either the reward of the greedy caption of the same image (``baseline=greedy``,
Rennie et al.) or the mean reward of the image's other samples (``baseline=mean``, Luo 2020), which
needs no extra decoding pass. Start from a decoder trained with cross-entropy
(``schedule.init_from=<run dir>``): sampling from a random decoder rarely earns any reward. The initial
decoder is validated first and kept as ``best`` unless a self-critical epoch beats it.
"""

from __future__ import annotations

import copy
import json
import logging
from collections import Counter
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from omegaconf import OmegaConf, open_dict
from torch import Tensor

from captioning.nn.decoding import greedy
from captioning.evaluation.metrics import BLEU_N, _combine
from captioning.models.checkpoint import CheckpointError, load_checkpoint
from captioning.text.tokenizer import tokenize
from captioning.training.loop import _Loop
from captioning.text.vocab import END, PAD, START

log = logging.getLogger(__name__)

REWARDS = tuple(f"Bleu_{n}" for n in range(1, BLEU_N + 1))
BASELINES = ("mean", "greedy")


def _ngrams(words: Sequence[str], n: int) -> Counter:
    return Counter(tuple(words[i : i + n]) for i in range(len(words) - n + 1))


class SentenceBleu:
    """Per-image sentence BLEU against fixed references, as ``metrics.per_image_scores`` computes it
    (the COCO scorer's clipped counts, closest reference length and epsilons), with each image's
    reference n-gram counts prepared once, since a training epoch scores every sample of every image."""

    def __init__(self, references: Sequence[Sequence[str]], metric: str = "Bleu_4") -> None:
        if metric not in REWARDS:
            raise ValueError(f"Unknown reward {metric!r}: choose one of {', '.join(REWARDS)}")
        self.n = int(metric.split("_")[1])
        self.max_counts: list[list[Counter]] = []
        self.ref_lengths: list[list[int]] = []
        for refs in references:
            tokens = [tokenize(r) for r in refs]
            per_n = []
            for n in range(1, BLEU_N + 1):
                most: Counter = Counter()
                for t in tokens:
                    most |= _ngrams(t, n)  # max count over references (clipping)
                per_n.append(most)
            self.max_counts.append(per_n)
            self.ref_lengths.append([len(t) for t in tokens])

    def __call__(self, image: int, words: Sequence[str]) -> float:
        correct, guess = [], []
        for n in range(1, BLEU_N + 1):
            counts, most = _ngrams(words, n), self.max_counts[image][n - 1]
            correct.append(sum(min(c, most[g]) for g, c in counts.items()))
            guess.append(max(0, len(words) - n + 1))
        reflen = min(self.ref_lengths[image], key=lambda r: (abs(r - len(words)), r))
        return _combine(correct, guess, len(words), reflen)[self.n - 1]


def sample_with_log_probs(decoder, features: Tensor, max_len: int, temperature: float = 1.0) -> tuple[Tensor, Tensor]:
    """Sample one caption per row of ``features`` [N, D] with gradients: word ids [N, T] (``PAD`` after
    the first ``<end>`` or ``<pad>``, which is included) and the summed log-probability of each caption [N] (at temperature 1
    the decoder's own distribution, which REINFORCE needs)."""
    state = decoder.init_state(features)
    n = features.size(0)
    word = torch.full((n,), START, dtype=torch.long, device=features.device)
    done = torch.zeros(n, dtype=torch.bool, device=features.device)
    total = features.new_zeros(n)
    words = []
    for _ in range(max_len + 1):  # +1: room for <end> after max_len words
        logp, state = decoder.step(word, state)
        with torch.no_grad():
            word = torch.multinomial(torch.softmax(logp / temperature, dim=-1), 1).squeeze(1)
        total = total + torch.where(done, 0.0, logp.gather(1, word[:, None]).squeeze(1))
        word = torch.where(done, torch.full_like(word, PAD), word)
        words.append(word)
        done = done | (word == END) | (word == PAD)  # a sampled <pad> ends the caption too, as in decoding
        if bool(done.all()):
            break
    return torch.stack(words, 1), total


class ScstLoop(_Loop):
    """The training loop with the self-critical loss: an epoch visits every training image once."""

    def __init__(self, cfg: Any, prepared, run_dir, logger, stop) -> None:
        from captioning.utils import distributed

        if distributed.current().world_size > 1:
            raise ValueError("schedule.scst runs in one process: drop trainer=ddp (or torchrun)")
        super().__init__(cfg, prepared, run_dir, logger, stop)
        self.rewards: list[float] = []
        if not cfg.get("resume") and cfg.schedule.get("init_from"):
            # the starting decoder is the one to beat: a self-critical epoch replaces it only if better
            self.history["best_bleu4"], self.history["best_epoch"] = self.validate(), 0
            self.history["initial_val_bleu4"] = self.history["best_bleu4"]
            self.save("best", 0)

    # -- hooks ------------------------------------------------------------------------------------

    def num_items(self) -> int:
        return len(self.prepared.splits[self.cfg.data.train_split])

    def build_modules(self) -> None:
        records = self.prepared.splits[self.cfg.data.train_split]
        self.reward = SentenceBleu([r.captions for r in records], self.sched.get("reward", "Bleu_4"))
        self.words = list(self.prepared.vocab.itos)

    def epoch_order(self, epoch: int) -> torch.Tensor:
        """A permutation of the training images, a function of the seed and the epoch."""
        g = torch.Generator().manual_seed(self.cfg.seed * 100_003 + epoch)
        return torch.randperm(self.num_items(), generator=g)

    def _rewards(self, images: list[int], rows: list[list[int]]) -> np.ndarray:
        """The reward of each caption (word ids, cut at its first <end> or <pad>) of each image."""
        out = np.empty(len(images))
        for k, (image, ids) in enumerate(zip(images, rows)):
            words = []
            for i in ids:
                if i in (END, PAD):
                    break
                words.append(self.words[i])
            out[k] = self.reward(image, words[: self.max_len])
        return out

    def loss(self, order: torch.Tensor, step: int) -> torch.Tensor:
        sched, k = self.sched, int(self.sched.get("samples", 5))
        images = order[step * sched.batch_size : (step + 1) * sched.batch_size].tolist()
        feats = torch.from_numpy(np.ascontiguousarray(self.train_feats[images])).float().to(self.device)
        tokens, log_prob = sample_with_log_probs(self.decoder, feats.repeat_interleave(k, 0), self.max_len,
                                                 float(sched.get("temperature", 1.0)))
        reward = self._rewards([i for i in images for _ in range(k)], tokens.tolist()).reshape(len(images), k)
        if sched.get("baseline", "mean") == "greedy":  # the test-time caption, dropout off
            self.decoder.eval()
            base = self._rewards(images, greedy(self.decoder, feats, self.max_len).tokens)
            self.decoder.train()
            baseline = np.repeat(base[:, None], k, 1)
        else:  # the mean of the image's other samples
            baseline = (reward.sum(1, keepdims=True) - reward) / (k - 1)
        self.rewards.append(float(reward.mean()))
        advantage = torch.from_numpy((reward - baseline).reshape(-1)).float().to(self.device)
        return -(advantage * log_prob).mean()

    def end_epoch(self, epoch: int, losses: list[float], seconds: float) -> bool:
        if self.rewards:
            mean = float(np.mean(self.rewards))
            self.history.setdefault("train_reward", []).append(mean)
            if self.logger:
                self.logger.log({"train/reward": mean}, step=self.step_offset + (epoch + 1) * self.steps_per_epoch)
            self.rewards = []
            log.info("epoch %d: mean reward (sentence %s) of the sampled captions %.4f", epoch + 1,
                     self.sched.get("reward", "Bleu_4"), mean)
        return super().end_epoch(epoch, losses, seconds)


XE_DIR = "cross_entropy"  # a two-stage run's first stage, inside its run directory


def train_two_stages(cfg: Any, prepared, run_dir: Path, logger=None) -> dict:
    """Cross-entropy training, then ``schedule.self_critical.epochs`` of self-critical training from its
    best decoder. Stage 1 is a complete run in ``run_dir/cross_entropy``; stage 2 writes the run
    directory's own checkpoints, so ``run_dir/checkpoints/best.pt`` is the final model (the stage-1
    decoder itself if no self-critical epoch beats it on val). ``resume=<run dir>`` continues whichever
    stage was interrupted. Returns stage 2's history, with stage 1's under ``"cross_entropy"``."""
    from captioning.utils import distributed
    from captioning.training.loop import train

    if distributed.current().world_size > 1:
        raise ValueError("the self-critical stage runs in one process: with trainer=ddp set "
                         "schedule.self_critical.epochs=0, then run stage 2 alone: python scripts/train.py "
                         "schedule=scst schedule.init_from=<run dir>")
    xe_dir = run_dir / XE_DIR
    resume1 = resume2 = None
    if cfg.get("resume"):
        old = Path(cfg.resume)
        if (old / "checkpoints" / "last.pt").is_file():  # stage 2 had begun, so stage 1 was complete
            if not (load_checkpoint(old / "checkpoints" / "last.pt").get("config") or {}).get("schedule", {}).get("scst"):
                raise CheckpointError(f"resume={old} is a run without a self-critical stage: resume it with "
                                      "schedule.self_critical.epochs=0, or start stage 2 from it with "
                                      f"schedule=scst schedule.init_from={old}")
            resume2 = old
        elif (old / XE_DIR / "checkpoints" / "last.pt").is_file():
            resume1 = old / XE_DIR
        else:
            raise CheckpointError(f"resume={old}: a two-stage run (schedule.self_critical) resumes from its run "
                                  f"directory, which holds {XE_DIR}/checkpoints/last.pt once training has begun")
    first = _with(cfg, resume=None)
    first.schedule.self_critical.epochs = 0
    if resume2 is None:
        if resume1 is None or not _finished(resume1 / "checkpoints" / "last.pt", first.schedule):
            first.resume = str(resume1) if resume1 else None
            train(first, prepared, xe_dir, logger)
        elif resume1.resolve() != xe_dir.resolve():  # stage 1 done elsewhere: stage 2 starts from its best
            xe_dir = resume1
    xe_history = json.loads((xe_dir / "history.json").read_text()) if (xe_dir / "history.json").is_file() else {}
    second = _with(cfg, resume=str(resume2) if resume2 else None)
    second.schedule = OmegaConf.merge(cfg.schedule.self_critical,
                                      {"scst": True, "init_from": str(xe_dir / "checkpoints" / "best.pt")})
    offset = 0
    if (xe_dir / "checkpoints" / "last.pt").is_file():  # the logger's steps go on from stage 1's
        last = load_checkpoint(xe_dir / "checkpoints" / "last.pt")
        offset = int(last["epoch"]) * int(last["steps_per_epoch"])
    log.info("stage 2: %d epoch(s) of self-critical training from %s", second.schedule.epochs, xe_dir)
    history = train(second, prepared, run_dir, logger, step_offset=offset)
    return {**history, XE_DIR: xe_history}


def _with(cfg: Any, **values):
    """A copy of the config with top-level ``values`` set."""
    out = copy.deepcopy(cfg)
    with open_dict(out):
        for key, value in values.items():
            out[key] = value
    return out


def _finished(last: Path, sched: Any) -> bool:
    """Whether the run whose last checkpoint this is had ended: all epochs done, or early stopping."""
    ckpt = load_checkpoint(last)
    epoch, best = int(ckpt["epoch"]), int(ckpt["history"]["best_epoch"])
    if int(ckpt.get("step", 0)):
        return False
    return epoch >= sched.epochs or bool(sched.early_stopping and epoch - best >= sched.early_stopping)
