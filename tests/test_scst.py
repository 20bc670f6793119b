"""Self-critical sequence training (schedule=scst): the reward is the metric module's sentence BLEU, the
sampled captions' log-probabilities are the decoder's own, and a run on the tiny set starts from the
cross-entropy decoder, keeps it unless it does better, and resumes exactly."""

import json
import random

import numpy as np
import pytest
import torch

from captioning.models.show_tell import CaptionDecoder
from captioning.evaluation.metrics import per_image_scores
from captioning.models.checkpoint import load_checkpoint
from captioning.pipeline import run
from captioning.training.self_critical import SentenceBleu, sample_with_log_probs
from captioning.text.vocab import END, PAD, START
from tests.conftest import straight_and_resumed, tiny_cfg

SCST = ["schedule=scst", "schedule.epochs=1", "schedule.batch_size=16", "schedule.samples=3", "schedule.lr=1e-3",
        "schedule.val_max_images=16", "schedule.log_every=1"]


@pytest.mark.parametrize("metric", ["Bleu_4", "Bleu_2"])
def test_reward_is_the_metric_modules_sentence_bleu(metric):
    rng = random.Random(0)
    words = "a red blue small big circle square left of the on and".split()
    refs = {i: [" ".join(rng.choices(words, k=rng.randint(3, 9))) for _ in range(rng.randint(1, 5))] for i in range(40)}
    hyps = {i: " ".join(rng.sample(refs[i][0].split(), k=min(len(refs[i][0].split()), rng.randint(0, 9)))
                        + rng.choices(words, k=rng.randint(0, 4))) for i in refs}  # partly right, partly not
    hyps[0], hyps[1] = refs[0][0], ""  # an exact reference, an empty caption
    expected = per_image_scores(refs, hyps, cider=False)
    reward = SentenceBleu([refs[i] for i in range(40)], metric)
    got = [reward(i, hyps[i].split()) for i in range(40)]
    np.testing.assert_allclose(got, [expected[i][metric] for i in range(40)], rtol=1e-12, atol=1e-15)
    assert got[0] == pytest.approx(1.0)


def test_unknown_reward_is_refused():
    with pytest.raises(ValueError, match="Bleu_4"):
        SentenceBleu([["a cat"]], "CIDEr")


def test_sampled_log_probability_is_the_decoders_likelihood_of_the_caption():
    torch.manual_seed(0)
    decoder = CaptionDecoder(feature_dim=12, vocab_size=9, cell="lstm", embed_dim=8, hidden_size=16).eval()
    feats = torch.randn(32, 12)
    tokens, total = sample_with_log_probs(decoder, feats, max_len=6)
    assert total.requires_grad
    # every row ends at its first <end> or <pad> (or after max_len + 1 words), padding after
    for row in tokens.tolist():
        ends = [i for i, t in enumerate(row) if t in (END, PAD)]
        if ends:
            assert all(t == PAD for t in row[ends[0] + 1 :])
    # teacher forcing on the sampled words gives the same summed log-probability
    inputs = torch.cat([torch.full((32, 1), START), tokens[:, :-1]], 1)
    logp = torch.log_softmax(decoder(feats, inputs), -1).gather(2, tokens[:, :, None]).squeeze(2)
    keep = torch.cat([torch.ones(32, 1, dtype=torch.bool), (tokens[:, :-1] != END) & (tokens[:, :-1] != PAD)], 1)
    torch.testing.assert_close(total, (logp * keep).sum(1), rtol=1e-5, atol=1e-5)
    total.sum().backward()
    assert decoder.init_state_proj.weight.grad.abs().sum() > 0  # the image reaches the gradient


@pytest.fixture(scope="module")
def scst_run(tiny_root, tiny_run):
    xe_dir, _ = tiny_run
    run_dir = tiny_root / "scst"
    results = run(tiny_cfg(tiny_root, *SCST, f"schedule.init_from={xe_dir}"), run_dir)
    return xe_dir, run_dir, results


def test_scst_starts_from_the_cross_entropy_decoder_and_keeps_the_better(scst_run):
    xe_dir, run_dir, results = scst_run
    history = json.loads((run_dir / "history.json").read_text())
    xe_best = load_checkpoint(xe_dir / "checkpoints" / "best.pt")
    # the starting decoder is validated first and is the best until an epoch beats it
    assert history["initial_val_bleu4"] == pytest.approx(xe_best["history"]["best_bleu4"])
    assert len(history["train_reward"]) == 1 and 0.0 < history["train_reward"][0] <= 1.0
    best = load_checkpoint(run_dir / "checkpoints" / "best.pt")
    last = load_checkpoint(run_dir / "checkpoints" / "last.pt")
    assert history["best_bleu4"] == max(history["initial_val_bleu4"], history["epochs"][0]["val_bleu4"])
    assert best["epoch"] == history["best_epoch"]
    if best["epoch"] == 0:
        assert all(torch.equal(best["decoder"][k], xe_best["decoder"][k]) for k in best["decoder"])
    # the self-critical epoch changed the decoder
    assert any(not torch.equal(last["decoder"][k], xe_best["decoder"][k]) for k in last["decoder"])
    assert 0.0 <= results["test"]["Bleu_4"] <= 1.0


def test_scst_resumes_exactly(tiny_root, tiny_run):
    a, b = straight_and_resumed(tiny_root, "scst", *SCST, "schedule.baseline=greedy", f"schedule.init_from={tiny_run[0]}")
    assert all(torch.equal(a["decoder"][k], b["decoder"][k]) for k in a["decoder"])


def test_mean_baseline_needs_two_samples(tiny_root, tiny_run):
    with pytest.raises(ValueError, match="schedule.samples"):
        run(tiny_cfg(tiny_root, *SCST, "schedule.samples=1", f"schedule.init_from={tiny_run[0]}"), tiny_root / "never")


# the two-stage default, shrunk: the smoke schedule's cross-entropy epochs, then self-critical ones
TWO = ["schedule.self_critical.epochs=1", "schedule.self_critical.batch_size=16", "schedule.self_critical.samples=3",
       "schedule.self_critical.lr=1e-3", "schedule.self_critical.val_max_images=16"]


def test_two_stages_leave_the_final_model_in_the_run_directory(tiny_root):
    run_dir = tiny_root / "two"
    results = run(tiny_cfg(tiny_root, *TWO), run_dir)
    xe = json.loads((run_dir / "cross_entropy" / "history.json").read_text())
    final = json.loads((run_dir / "history.json").read_text())
    assert len(xe["epochs"]) == 2 and len(final["epochs"]) == 1 and "train_reward" in final
    # stage 2 started from stage 1's best decoder and validated it first
    assert final["initial_val_bleu4"] == pytest.approx(xe["best_bleu4"])
    best = load_checkpoint(run_dir)  # a run directory resolves to the final model
    assert best["path"] == str(run_dir / "checkpoints" / "best.pt") and best["config"]["schedule"]["scst"]
    assert results["_run"]["val_bleu4"] == final["best_bleu4"] >= xe["best_bleu4"]


def test_two_stages_resume_in_either_stage(tiny_root):
    straight = tiny_root / "two_straight"
    run(tiny_cfg(tiny_root, *TWO, "schedule.self_critical.epochs=2"), straight)
    # stopped after stage 1's first epoch, then after stage 2's first epoch
    part = tiny_root / "two_part"
    run(tiny_cfg(tiny_root, "schedule.epochs=1"), part / "cross_entropy")
    run(tiny_cfg(tiny_root, *TWO, f"resume={part}"), part)
    run(tiny_cfg(tiny_root, *TWO, "schedule.self_critical.epochs=2", f"resume={part}"), part)
    a, b = (load_checkpoint(d / "checkpoints" / "last.pt") for d in (straight, part))
    assert b["epoch"] == 2 and all(torch.equal(a["decoder"][k], b["decoder"][k]) for k in a["decoder"])
    xa, xb = (load_checkpoint(d / "cross_entropy" / "checkpoints" / "last.pt") for d in (straight, part))
    assert all(torch.equal(xa["decoder"][k], xb["decoder"][k]) for k in xa["decoder"])


def test_two_stages_do_not_resume_a_one_stage_run(tiny_root, tiny_run):
    from captioning.models.checkpoint import CheckpointError

    with pytest.raises(CheckpointError, match="self_critical.epochs=0"):
        run(tiny_cfg(tiny_root, *TWO, f"resume={tiny_run[0]}"), tiny_root / "never")


def test_config_check_names_bad_self_critical_values(tiny_root):
    from captioning.config_check import config_problems

    problems = config_problems(tiny_cfg(tiny_root, *TWO, "schedule.self_critical.baseline=best",
                                        "schedule.self_critical.reward=CIDEr", "schedule.self_critical.samples=1"))
    text = "\n".join(problems)
    assert "schedule.self_critical.baseline" in text and "schedule.self_critical.reward" in text
    problems = config_problems(tiny_cfg(tiny_root, *SCST, "schedule.samples=1"))
    assert any("schedule.samples" in p for p in problems)
    assert not config_problems(tiny_cfg(tiny_root, *TWO))
