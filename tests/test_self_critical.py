"""Self-critical sequence training (a ``loss: self_critical`` stage): the reward is the metric module's
sentence BLEU, the sampled captions' log-probabilities are the model's own, and a stage on the tiny set
starts from the best cross-entropy weights, keeps them unless it does better, and resumes exactly."""

import json
import random

import numpy as np
import pytest
import torch

from captioning.config import config_problems
from captioning.evaluation.metrics import per_image_scores
from captioning.models.checkpoint import load_checkpoint
from captioning.nn.decoding import sample_tokens
from captioning.pipeline import run, run_options
from captioning.text.vocab import END, PAD, START
from captioning.training.self_critical import SentenceBleu
from tests.conftest import show_tell, straight_and_resumed, tiny_cfg

STAGE = "schedule.stages.self_critical"
SCST = ["schedule=scst", f"{STAGE}.epochs=1", f"{STAGE}.batch_size=16", f"{STAGE}.samples=3", f"{STAGE}.lr=0.001",
        f"{STAGE}.val_max_images=16", f"{STAGE}.log_every=1"]


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


def test_reward_scores_each_distinct_caption_of_an_image_once(monkeypatch):
    refs = [["a red circle", "a big red circle"], ["a blue square", "one blue square"]]
    reward, fresh = SentenceBleu(refs), SentenceBleu(refs)
    calls = []
    compute = reward.compute
    monkeypatch.setattr(reward, "compute", lambda image, words: calls.append((image, words)) or compute(image, words))
    red, blue = "a big red circle".split(), "a big blue circle".split()
    asked = [(0, red), (0, red), (1, red), (0, blue), (1, red)]
    got = [reward(i, w) for i, w in asked]
    assert got == [fresh(i, w) for i, w in asked]  # the same values as a reward that remembers nothing
    assert got[0] == pytest.approx(1.0) and got[2] < 1.0  # the same caption, another image, another reward
    assert calls == [(0, tuple(red)), (1, tuple(red)), (0, tuple(blue))]
    monkeypatch.setattr(reward, "MEMO_LIMIT", 2)  # a full memory is emptied, not grown
    reward(1, ["one", "blue", "square"])
    assert len(reward.memo) == 1 and reward(1, ["one", "blue", "square"]) == fresh(1, ["one", "blue", "square"])


def test_unknown_reward_is_refused():
    with pytest.raises(ValueError, match="Bleu_4"):
        SentenceBleu([["a cat"]], "CIDEr")


def test_sampled_log_probability_is_the_decoders_likelihood_of_the_caption():
    torch.manual_seed(0)
    decoder = show_tell(12, 9, cell="lstm", embed_dim=8, hidden_size=16).eval()
    feats = torch.randn(32, 12)
    tokens, total = sample_tokens(decoder, feats, max_len=6)
    assert total.requires_grad
    # every row ends at its first <end> (or after max_len + 1 words), padding after, never before
    lengths = []
    for row in tokens.tolist():
        ends = [i for i, t in enumerate(row) if t == END]
        words = row[: ends[0]] if ends else row
        assert PAD not in words and all(t == PAD for t in row[len(words) + 1 :])
        lengths.append(len(words))
    assert len(set(lengths)) > 2  # rows finish at different steps: finished rows leave the batch on the way
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
    results = run(run_options(tiny_cfg(tiny_root, *SCST, f"schedule.init_from={xe_dir}")), run_dir)
    return xe_dir, run_dir, results


def test_scst_starts_from_the_cross_entropy_decoder_and_keeps_the_better(scst_run):
    xe_dir, run_dir, results = scst_run
    history = json.loads((run_dir / "history.json").read_text())
    xe_history = json.loads((xe_dir / "history.json").read_text())
    xe_best = load_checkpoint(xe_dir / "checkpoints" / "best.pt")
    # the starting weights are validated first and are the best until an epoch beats them
    assert history["initial_val_bleu4"] == pytest.approx(xe_history["best_bleu4"])
    rewards = [e["train_reward"] for e in history["epochs"]]
    assert len(rewards) == 1 and 0.0 < rewards[0] <= 1.0
    best = load_checkpoint(run_dir / "checkpoints" / "best.pt")
    last = load_checkpoint(run_dir / "checkpoints" / "last.pt")
    assert history["best_bleu4"] == max(history["initial_val_bleu4"], history["epochs"][0]["val_bleu4"])
    assert best["epoch"] == history["best_epoch"]
    if best["epoch"] == 0:
        assert all(torch.equal(best["weights"][k], xe_best["weights"][k]) for k in best["weights"])
    # the self-critical epoch changed the model
    assert any(not torch.equal(last["weights"][k], xe_best["weights"][k]) for k in last["weights"])
    assert 0.0 <= results["test"]["Bleu_4"] <= 1.0


def test_scst_resumes_exactly(tiny_root, tiny_run):
    a, b = straight_and_resumed(tiny_root, "scst", *SCST, f"{STAGE}.baseline=greedy",
                                f"schedule.init_from={tiny_run[0]}", stage="self_critical")
    assert all(torch.equal(a["weights"][k], b["weights"][k]) for k in a["weights"])


def test_mean_baseline_needs_two_samples(tiny_root, tiny_run):
    with pytest.raises(ValueError, match=f"{STAGE}.samples"):
        run(run_options(tiny_cfg(tiny_root, *SCST, f"{STAGE}.samples=1", f"schedule.init_from={tiny_run[0]}")), tiny_root / "never")


# the two-stage default, shrunk: the smoke schedule's cross-entropy epochs, then self-critical ones
TWO = [f"{STAGE}.epochs=1", f"{STAGE}.samples=3", f"{STAGE}.lr=0.001"]


def test_two_stages_leave_the_final_model_in_the_run_directory(tiny_root):
    run_dir = tiny_root / "two"
    results = run(run_options(tiny_cfg(tiny_root, *TWO)), run_dir)
    history = json.loads((run_dir / "history.json").read_text())
    xe = [e for e in history["epochs"] if e["stage"] == "cross_entropy"]
    sc = [e for e in history["epochs"] if e["stage"] == "self_critical"]
    assert len(xe) == 2 and len(sc) == 1 and "train_reward" in sc[0]
    best = load_checkpoint(run_dir)  # a run directory resolves to the best model of any stage
    assert best["path"] == str(run_dir / "checkpoints" / "best.pt") and best["stage_name"] == history["best_stage"]
    assert results["_run"]["val_bleu4"] == history["best_bleu4"] == max(e["val_bleu4"] for e in xe + sc)
    assert best["config"]["schedule"]["stages"]["self_critical"]["epochs"] == 1  # the config the user gave


def test_two_stages_resume_in_either_stage(tiny_root):
    straight = tiny_root / "two_straight"
    run(run_options(tiny_cfg(tiny_root, *TWO, f"{STAGE}.epochs=2")), straight)
    # stopped after stage 1's first epoch, then after stage 2's first epoch
    part = tiny_root / "two_part"
    run(run_options(tiny_cfg(tiny_root, "schedule.stages.cross_entropy.epochs=1")), part)
    run(run_options(tiny_cfg(tiny_root, *TWO, f"resume={part}")), part)
    run(run_options(tiny_cfg(tiny_root, *TWO, f"{STAGE}.epochs=2", f"resume={part}")), part)
    a, b = (load_checkpoint(d / "checkpoints" / "last.pt") for d in (straight, part))
    assert b["stage_name"] == "self_critical" and b["epoch"] == 2
    assert all(torch.equal(a["weights"][k], b["weights"][k]) for k in a["weights"])
    curves = [[(e["stage"], e["train_loss"], e["val_bleu4"]) for e in json.loads((d / "history.json").read_text())["epochs"]]
              for d in (straight, part)]
    assert curves[0] == curves[1] and len(curves[0]) == 4


def test_config_check_names_bad_self_critical_values(tiny_root):
    problems = config_problems(tiny_cfg(tiny_root, *TWO, f"{STAGE}.baseline=best", f"{STAGE}.reward=METEOR",
                                        f"{STAGE}.samples=1"))
    text = "\n".join(problems)
    assert f"{STAGE}.baseline" in text and f"{STAGE}.reward" in text
    problems = config_problems(tiny_cfg(tiny_root, *SCST, f"{STAGE}.samples=1"))
    assert any(f"{STAGE}.samples" in p for p in problems)
    assert not config_problems(tiny_cfg(tiny_root, *TWO))


def test_sampling_never_chooses_pad_and_greedy_matches_each_image_alone():
    """<pad> is no word: even a decoder that puts most of its mass on it writes words (beam search never
    continues with it either), and greedy captions of a batch, whose finished rows leave the state on the
    way, are those of each image decoded alone."""
    from captioning.nn.decoding import greedy

    torch.manual_seed(0)
    decoder = show_tell(12, 9, cell="gru", embed_dim=8, hidden_size=16).eval()
    feats = torch.randn(16, 12)
    batch = greedy(decoder, feats, max_len=8)
    for i in range(16):
        alone = greedy(decoder, feats[i : i + 1], max_len=8)
        assert alone.tokens[0] == batch.tokens[i] and alone.scores[0] == pytest.approx(batch.scores[i], abs=1e-5)
    with torch.no_grad():
        decoder.out.bias[PAD] = 20.0
    tokens, _ = sample_tokens(decoder, feats, max_len=8, temperature=1.0)
    assert not (tokens[:, 0] == PAD).any() and greedy(decoder, feats, max_len=8).tokens[0]


@pytest.mark.parametrize("name", ["show_tell", "show_attend_tell", "transformer"])
def test_sampling_repeats_of_an_image_equals_sampling_its_repeated_features(name):
    """``repeats=k`` encodes each image once and repeats its state k times (the self-critical stage's k
    samples per image): the same captions and log-probabilities as sampling k copies of its features."""
    from captioning.models.base import build_model

    options = {"show_tell": {"cell": {"name": "lstm", "num_layers": 1, "backend": "fused"}},
               "show_attend_tell": {"cell": {"name": "gru", "num_layers": 1, "backend": "fused"}},
               "transformer": {"d_model": 16, "n_head": 2, "n_layer": 2, "d_ff": 32}}[name]
    torch.manual_seed(0)
    model = build_model({"name": name, **options}, 12, 9, 8).double().eval()
    feats = torch.randn(6, 4, 12, dtype=torch.float64) if name != "show_tell" else torch.randn(6, 12, dtype=torch.float64)
    repeated = sample_tokens(model, feats.repeat_interleave(3, 0), 8, 1.0, torch.Generator().manual_seed(1))
    once = sample_tokens(model, feats, 8, 1.0, torch.Generator().manual_seed(1), repeats=3)
    assert torch.equal(repeated[0], once[0]) and len(set(map(tuple, once[0].tolist()))) > 6  # samples differ
    torch.testing.assert_close(repeated[1], once[1])
