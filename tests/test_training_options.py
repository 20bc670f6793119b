"""Training options of a stage (captioning/training/loop.py, self_critical.py): ``label_smoothing``,
``scheduled_sampling`` (start, end, ramp) for every registered model, and a self-critical ``reward`` mixing
metrics with weights; each against a hand-computed reference, with resume exact and defaults unchanged."""

import copy
import math
import os
import signal
import time

import numpy as np
import pytest
import torch

import captioning.models  # noqa: F401 (registers the shipped models)
from captioning.config import config_problems
from captioning.models.base import MODELS, build_model
import captioning.training.loop as loop
from captioning.pipeline import run, run_options
from captioning.text.vocab import END, PAD, START
from captioning.training.loop import (Sampling, ScheduledSampling, TrainData, caption_loss, cross_entropy_loss,
                                      sample_word, sampling_probability, sampling_seed, scheduled_inputs, train)
from captioning.training.self_critical import (MixedReward, SentenceBleu, SentenceCider, make_reward,
                                               reward_problems, score, self_critical_loss)
from captioning.utils import distributed
from captioning.utils.interrupts import Interrupted
from tests.conftest import straight_and_resumed, tiny_cfg
from tests.test_cider_reward import training_set

V, MAX_LEN, FEATURE_DIM = 11, 6, 8
OPTIONS = {"show_tell": {"cell": {"name": "lstm", "num_layers": 1, "backend": "fused"}},
           "show_attend_tell": {"cell": {"name": "gru", "num_layers": 1, "backend": "fused"}},
           "transformer": {"d_model": 16, "n_head": 2, "n_layer": 2, "d_ff": 32}}
XE = "schedule.stages.cross_entropy"


# -- label smoothing ------------------------------------------------------------------------------------

def test_label_smoothing_matches_a_hand_computed_loss_and_padding_stays_masked():
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 5, dtype=torch.float64)
    targets = torch.tensor([[2, 4, PAD], [1, PAD, PAD]])
    e, terms = 0.2, []
    for b in range(2):
        for t in range(3):
            if targets[b, t] == PAD:
                continue
            logp = [logits[b, t, v] - torch.logsumexp(logits[b, t], 0) for v in range(5)]
            terms.append((1 - e) * -logp[targets[b, t]] + e * sum(-x for x in logp) / 5)
    expected = sum(terms) / len(terms)
    torch.testing.assert_close(caption_loss(logits, targets, label_smoothing=e), expected)
    plain = torch.nn.functional.cross_entropy(logits.reshape(-1, 5), targets.reshape(-1), ignore_index=PAD)
    assert torch.equal(caption_loss(logits, targets), plain)  # 0 = today's loss, bitwise


def test_label_smoothing_is_refused_out_of_range_and_in_a_self_critical_stage(tiny_root):
    for value in (-0.1, 1.0):
        problems = config_problems(tiny_cfg(tiny_root, f"{XE}.label_smoothing={value}"))
        assert any("label_smoothing" in p for p in problems)
    sc = "schedule.stages.self_critical"
    assert any(f"{sc}.label_smoothing" in p
               for p in config_problems(tiny_cfg(tiny_root, f"{sc}.epochs=1", f"{sc}.label_smoothing=0.1")))
    assert not config_problems(tiny_cfg(tiny_root, f"{XE}.label_smoothing=0.1"))


# -- scheduled sampling -----------------------------------------------------------------------------------

def test_the_probability_ramps_linearly_from_start_to_end():
    ramp = ScheduledSampling(start=0.1, end=0.5, ramp=2.0)
    assert [sampling_probability(ramp, k, 10) for k in (0, 10, 20, 35)] == pytest.approx([0.1, 0.3, 0.5, 0.5])
    assert sampling_probability(ScheduledSampling(start=0.1, end=0.4, ramp=0), 0, 10) == 0.4
    assert sampling_probability(ScheduledSampling(), 7, 10) == 0.0  # the default: off
    seeds = {sampling_seed(0, s, e, k, r) for s in range(2) for e in range(3) for k in range(50) for r in range(2)}
    assert len(seeds) == 2 * 3 * 50 * 2  # each position its own draws
    for seed in (1, 2, 12345, 2**31 - 1):  # any run seed gives a generator seed torch takes (seed 1 overflowed once)
        torch.Generator().manual_seed(sampling_seed(seed, 1, 20, 5000, 7))
    assert len({sampling_seed(s, 0, 0, 0) for s in range(100)}) == 100


def test_sample_word_draws_from_the_distribution():
    probs = torch.tensor([0.0, 0.1, 0.6, 0.0, 0.3], dtype=torch.float64)
    uniform = 1 - torch.rand(40_000, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    words = sample_word(probs.log().expand(40_000, 5), uniform)
    freq = torch.bincount(words, minlength=5).double() / 40_000
    assert freq[0] == 0 and freq[3] == 0  # impossible words never drawn
    torch.testing.assert_close(freq, probs, atol=0.01, rtol=0)


@pytest.fixture(scope="module", params=sorted(MODELS))
def tiny_model(request):
    """(a tiny random model of each registered kind in double precision, features of 6 images, 6 captions)."""
    torch.manual_seed(0)
    name = request.param
    model = build_model({"name": name, **OPTIONS.get(name, {})}, FEATURE_DIM, V, MAX_LEN).double()
    shape = (6, FEATURE_DIM) if name == "show_tell" else (6, 4, FEATURE_DIM)
    feats = torch.randn(*shape, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    gen = torch.Generator().manual_seed(2)
    tokens = torch.full((6, MAX_LEN + 2), PAD)
    for i, n in enumerate([1, 3, 6, 2, 5, 4]):  # caption lengths in words
        tokens[i, 0], tokens[i, n + 1] = START, END
        tokens[i, 1 : n + 1] = torch.randint(END + 2, V, (n,), generator=gen)
    return model, feats, tokens


def test_every_shipped_model_is_tested_here():
    assert {"show_tell", "show_attend_tell", "transformer"} <= set(MODELS)


def reference_inputs(model, feats, inputs, p, seed):
    """Scheduled sampling by hand: one caption at a time, one word at a time, the same draws."""
    gen = torch.Generator().manual_seed(seed)
    replace = torch.rand(inputs.shape, generator=gen) < p
    uniform = 1 - torch.rand(inputs.shape, generator=gen, dtype=torch.float64)
    out = inputs.clone()
    with torch.no_grad():
        for b in range(inputs.size(0)):
            state = model.init_state(feats[b : b + 1])
            for t in range(1, inputs.size(1)):
                if inputs[b, t] == PAD:
                    break
                logp, state = model.step(out[b, t - 1 : t], state)
                if replace[b, t]:
                    probs = logp[0].exp().tolist()
                    target, total = float(uniform[b, t]) * sum(probs), 0.0
                    for v, q in enumerate(probs):
                        total += q
                        if total >= target:
                            break
                    out[b, t] = v
    return out


def train_data(tokens, feats):
    """A TrainData of one caption per image."""
    n = len(tokens)
    return TrainData(tokens, torch.arange(n), [np.array([i]) for i in range(n)], feats.numpy(),
                     [str(i) for i in range(n)])


def test_p_0_gives_exactly_todays_loss(tiny_model):
    model, feats, tokens = tiny_model
    model = copy.deepcopy(model).float().train()  # the loop's features are float32
    data, dp, batch = train_data(tokens, feats), distributed.current(), torch.arange(len(tokens))
    torch.manual_seed(5)
    today = cross_entropy_loss(model, batch, False, data, None, dp, torch.device("cpu"))
    after = torch.get_rng_state()
    torch.manual_seed(5)
    off = cross_entropy_loss(model, batch, False, data, None, dp, torch.device("cpu"), 0.0, 0.0, Sampling(0.0, 9))
    assert torch.equal(today, off) and torch.equal(after, torch.get_rng_state())  # no extra RNG draw either


def test_p_1_feeds_only_the_models_own_words(tiny_model):
    model, feats, tokens = tiny_model
    model.eval()
    inputs = tokens[:, :-1]
    mixed = scheduled_inputs(model, feats, inputs, 1.0, seed=3)
    assert torch.equal(mixed, reference_inputs(model, feats, inputs, 1.0, seed=3))
    assert torch.equal(mixed[:, 0], inputs[:, 0]) and torch.equal(mixed == PAD, inputs == PAD)
    other = inputs.masked_fill((inputs > END) & (torch.arange(inputs.size(1)) > 0), END + 1)  # other true words
    assert torch.equal(scheduled_inputs(model, feats, other, 1.0, seed=3), mixed)  # they are never read
    # the loss: today's teacher-forced loss, on the model's own words (float32, as the loop's features)
    model = copy.deepcopy(model).float()
    mixed = scheduled_inputs(model, feats.float(), inputs, 1.0, seed=3)
    data, dp, batch = train_data(tokens, feats), distributed.current(), torch.arange(len(tokens))
    sampling = Sampling(1.0, 3)
    loss = cross_entropy_loss(model, batch, False, data, None, dp, torch.device("cpu"), 0.0, 0.0, sampling)
    torch.testing.assert_close(loss, caption_loss(model(feats.float(), mixed), tokens[:, 1:]))


def test_p_between_mixes_true_and_own_words_as_the_reference_does(tiny_model):
    model, feats, tokens = tiny_model
    model.eval()
    inputs = tokens[:, :-1]
    mixed = scheduled_inputs(model, feats, inputs, 0.5, seed=11)
    assert torch.equal(mixed, reference_inputs(model, feats, inputs, 0.5, seed=11))
    assert not torch.equal(mixed, inputs)
    assert torch.equal(scheduled_inputs(model, feats, inputs, 0.5, seed=11), mixed)  # the seed decides


def test_scheduled_sampling_is_refused_in_a_self_critical_stage(tiny_root):
    sc = "schedule.stages.self_critical"
    problems = config_problems(tiny_cfg(tiny_root, f"{sc}.epochs=1", f"{sc}.scheduled_sampling.end=0.2"))
    assert any(f"{sc}.scheduled_sampling" in p for p in problems)
    assert any("scheduled_sampling.end" in p
               for p in config_problems(tiny_cfg(tiny_root, f"{XE}.scheduled_sampling.end=1.5")))


def test_training_with_both_options_changes_the_weights_and_resumes_exactly(tiny_root, tiny_prepared, monkeypatch):
    options = [f"{XE}.label_smoothing=0.1", f"{XE}.scheduled_sampling.start=0.2", f"{XE}.scheduled_sampling.end=0.6",
               f"{XE}.scheduled_sampling.ramp=1.5"]
    a, b = straight_and_resumed(tiny_root, "train_options", *options)
    assert all(torch.equal(a["weights"][k], b["weights"][k]) for k in a["weights"])
    # stopped mid-way through epoch 2, while p is still rising (Ctrl-C during step steps + 3), and resumed
    cfg = tiny_cfg(tiny_root, *options, f"{XE}.epochs=2")
    n_captions = sum(len(r.captions) for r in tiny_prepared.splits["train"])
    steps = math.ceil(n_captions / cfg.schedule.stages.cross_entropy.batch_size)
    mid_dir = tiny_root / "train_options_mid"
    real, calls = loop.caption_loss, [0]

    def loss(*args, **kwargs):
        calls[0] += 1
        if calls[0] == steps + 3:
            os.kill(os.getpid(), signal.SIGINT)
            stop = signal.getsignal(signal.SIGINT).__self__  # the run's GracefulStop
            deadline = time.monotonic() + 10
            while not stop.requested and time.monotonic() < deadline:
                time.sleep(0.001)
        return real(*args, **kwargs)

    monkeypatch.setattr(loop, "caption_loss", loss)
    with pytest.raises(Interrupted):
        train(run_options(cfg).training, tiny_prepared, mid_dir)
    monkeypatch.undo()
    assert (torch.load(mid_dir / "checkpoints" / "last.pt", weights_only=False)["step"]) == 3
    resumed = tiny_cfg(tiny_root, *options, f"{XE}.epochs=2", f"resume={mid_dir}")
    train(run_options(resumed).training, tiny_prepared, mid_dir)
    mid = torch.load(mid_dir / "checkpoints" / "last.pt", weights_only=False)
    assert all(torch.equal(a["weights"][k], mid["weights"][k]) for k in a["weights"])
    plain_dir = tiny_root / "train_options_plain"
    run(run_options(tiny_cfg(tiny_root, f"{XE}.epochs=2")), plain_dir)
    plain = torch.load(plain_dir / "checkpoints" / "last.pt", weights_only=False)
    assert any(not torch.equal(a["weights"][k], plain["weights"][k]) for k in a["weights"])


# -- the self-critical reward as a weighted mixture ------------------------------------------------------

def test_a_mixture_is_the_weighted_sum_of_the_single_rewards():
    refs, hyps = training_set(images=20)
    mixed = make_reward(refs, {"CIDEr": 1.0, "Bleu_4": 0.5, "Bleu_1": 0.0})
    cider, bleu4 = SentenceCider(refs), SentenceBleu(refs, "Bleu_4")
    assert isinstance(mixed, MixedReward) and len(mixed.parts) == 2  # a zero weight costs nothing
    for image, words in hyps:
        assert mixed(image, words) == pytest.approx(cider(image, words) + 0.5 * bleu4(image, words), abs=1e-12)
    both = make_reward(refs, ["Bleu_2", "Bleu_3"])  # a list: weight 1 each
    bleu2, bleu3 = SentenceBleu(refs, "Bleu_2"), SentenceBleu(refs, "Bleu_3")
    assert all(both(i, w) == pytest.approx(bleu2(i, w) + bleu3(i, w)) for i, w in hyps)
    assert isinstance(make_reward(refs, "CIDEr"), SentenceCider)  # a name: the single reward, as before


@pytest.mark.parametrize("reward, message", [({"CIDEr": -1.0}, ">= 0"), ({"CIDEr": 0.0, "Bleu_4": 0}, "> 0"),
                                             ({"METEOR": 1.0}, "Unknown reward 'METEOR'"), ({}, "metric name"),
                                             ({"CIDEr": math.inf}, "finite")])
def test_a_bad_mixture_is_refused_with_its_reason(reward, message):
    assert message in reward_problems(reward)[0]
    with pytest.raises(ValueError, match=message.replace("'", ".")):
        make_reward([["a b"]], reward)
    assert not reward_problems({"CIDEr": 1, "Bleu_4": 0.5}) and not reward_problems("Bleu_4")


def test_the_config_takes_a_mixture_and_refuses_a_bad_one(tiny_root):
    sc = "schedule.stages.self_critical"
    assert not config_problems(tiny_cfg(tiny_root, f"{sc}.epochs=1", f"{sc}.reward={{CIDEr:1.0,Bleu_4:0.5}}"))
    problems = config_problems(tiny_cfg(tiny_root, f"{sc}.epochs=1", f"{sc}.reward={{CIDEr:-1.0}}"))
    assert any(p.startswith(f"{sc}.reward: weights must be") for p in problems)


def test_the_self_critical_loss_and_its_baseline_use_the_mixture(tiny_model):
    model, feats, _ = tiny_model
    model.train()
    refs = [["a b c", "b c d"]] * len(feats)
    words = ["<pad>", "<start>", "<end>", "<unk>", "a", "b", "c", "d", "e", "f", "g"]
    mixed = make_reward(refs, {"Bleu_1": 1.0, "Bleu_2": 2.0})
    b1, b2 = SentenceBleu(refs, "Bleu_1"), SentenceBleu(refs, "Bleu_2")
    by_hand = lambda image, w: b1(image, w) + 2.0 * b2(image, w)  # noqa: E731
    rows = torch.randint(0, V, (12, MAX_LEN), generator=torch.Generator().manual_seed(4)).tolist()
    images = [i % len(feats) for i in range(12)]
    np.testing.assert_allclose(score(images, rows, mixed, words, MAX_LEN), score(images, rows, by_hand, words, MAX_LEN))

    class Stage:
        samples, temperature = 3, 1.0

    for baseline in ("mean", "greedy"):
        Stage.baseline = baseline
        torch.manual_seed(6)
        loss, reward = self_critical_loss(model, feats, list(range(len(feats))), mixed, words, Stage)
        torch.manual_seed(6)
        loss_hand, reward_hand = self_critical_loss(model, feats, list(range(len(feats))), by_hand, words, Stage)
        torch.testing.assert_close(loss, loss_hand)
        assert reward == pytest.approx(reward_hand)
