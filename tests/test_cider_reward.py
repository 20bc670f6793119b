"""The self-critical ``CIDEr`` reward (captioning/training/self_critical.py): per-image CIDEr-D with the
training references' document frequencies, which is pycocoevalcap's CIDEr-D of the training set, and a
self-critical stage that trains with it."""

import json
import random

import pytest
import torch
from pycocoevalcap.cider.cider import Cider

from captioning.models.checkpoint import load_checkpoint
from captioning.pipeline import run, run_options
from captioning.text.tokenizer import tokenize
from captioning.training.self_critical import SentenceBleu, SentenceCider, make_reward
from tests.conftest import tiny_cfg

STAGE = "schedule.stages.self_critical"
WORDS = "a red blue green small big circle square star left right of the on and two".split()


def training_set(images=60, seed=0):
    """References (one to five per image) and captions a model might sample: a reference of the image,
    one of another image, a shuffled or cut one, random words, an empty caption."""
    rng = random.Random(seed)
    refs = [[" ".join(rng.choices(WORDS, k=rng.randint(3, 10))) for _ in range(rng.randint(1, 5))]
            for _ in range(images)]
    hyps = []
    for i, rs in enumerate(refs):
        own, other = rng.choice(rs).split(), rng.choice(refs[rng.randrange(images)]).split()
        hyps += [(i, own), (i, other), (i, rng.sample(own, len(own))), (i, own[: rng.randint(1, len(own))]),
                 (i, rng.choices(WORDS, k=rng.randint(1, 12)))]
    hyps += [(0, []), (1, refs[1][0].split())]
    return refs, hyps


def test_reward_is_pycocoevalcaps_cider_d_over_the_training_set():
    refs, hyps = training_set()
    reward = SentenceCider(refs)
    assert reward.cider.num_documents == len(refs)
    # pycocoevalcap takes df from the references it scores: all training images at once gives it the
    # training df and N: one call per round of captions, each round one caption of every image
    gts = {i: [" ".join(tokenize(r)) for r in rs] for i, rs in enumerate(refs)}
    for k in range(5):
        batch = hyps[k : 5 * len(refs) : 5]  # the k-th caption of every image
        _, official = Cider().compute_score(gts, {image: [" ".join(words)] for image, words in batch})
        for image, words in batch:
            assert reward(image, words) == pytest.approx(official[image], abs=1e-9), (image, words)
    assert reward(0, []) == 0.0
    assert reward(1, refs[1][0].split()) > 0


def test_reward_vectors_are_cached_and_unchanged_by_scoring():
    refs, hyps = training_set(images=20, seed=1)
    reward = SentenceCider(refs)
    sizes = [[sum(map(len, v.vec)) for v in vs] for vs in reward.ref_vectors]
    first = [reward(i, w) for i, w in hyps]
    assert [reward(i, w) for i, w in hyps] == first
    assert [[sum(map(len, v.vec)) for v in vs] for vs in reward.ref_vectors] == sizes


def test_make_reward_builds_the_stages_reward():
    refs, _ = training_set(images=5)
    assert isinstance(make_reward(refs, "CIDEr"), SentenceCider)
    assert isinstance(make_reward(refs, "Bleu_4"), SentenceBleu)
    with pytest.raises(ValueError, match="Unknown reward 'METEOR'.*CIDEr"):
        make_reward(refs, "METEOR")


def test_self_critical_stage_trains_with_the_cider_reward(tiny_root, tiny_run):
    xe_dir, _ = tiny_run
    run_dir = tiny_root / "scst_cider"
    run(run_options(tiny_cfg(tiny_root, "schedule=scst", f"{STAGE}.epochs=1", f"{STAGE}.batch_size=16", f"{STAGE}.samples=3",
                 f"{STAGE}.lr=0.001", f"{STAGE}.val_max_images=16", f"{STAGE}.reward=CIDEr",
                 f"schedule.init_from={xe_dir}")), run_dir)
    history = json.loads((run_dir / "history.json").read_text())
    assert [e["stage"] for e in history["epochs"]] == ["self_critical"]
    assert history["epochs"][0]["train_reward"] > 0.0  # CIDEr-D is not bounded by 1
    last = load_checkpoint(run_dir / "checkpoints" / "last.pt")
    assert last["config"]["schedule"]["stages"]["self_critical"]["reward"] == "CIDEr"
    start = load_checkpoint(xe_dir / "checkpoints" / "best.pt")
    assert any(not torch.equal(last["weights"][k], start["weights"][k]) for k in last["weights"])
