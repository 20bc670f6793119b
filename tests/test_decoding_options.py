"""The decoding options (diverse beam search, n-gram blocking, bad endings, top-k / top-p sampling,
several captions per image) against small per-image references written plainly below: one hypothesis at
a time, one word at a time, through the decoding contract, for every registered model (tiny random
models in float64, their distributions sharpened so that captions end at different lengths).

Beam searches and greedy decoding must give the reference's captions and scores. Sampling draws from the
generator in batch order, so a one-image batch must draw the reference's captions, and in a larger batch
every drawn word must be one the reference allows, with the reference's score."""

import copy
import math
from collections import Counter

import pytest
import torch
from omegaconf import OmegaConf

import captioning.models  # noqa: F401 (registers the shipped models)
from captioning.commands.cli import check_run_config
from captioning.config import CaptionRunConfig, ConfigError, config_problems
from captioning.models.base import MODELS, build_model
from captioning.nn.decoding import (DecodingConfig, beam_search, decode, decode_batched, sample, sample_tokens,
                                    strip)
from captioning.text.vocab import END, PAD, START, Vocabulary
from captioning.utils.schema import problems
from tests.beam_oracle import dense_beam_search
from tests.conftest import tiny_cfg

V, MAX_LEN, FEATURE_DIM = 12, 8, 12
BAD = True  # in a case: bad endings on (the fixture's, words this model's beams end on)
OPTIONS = {"show_tell": {"cell": {"name": "lstm", "num_layers": 1, "backend": "fused"}},
           "show_attend_tell": {"cell": {"name": "gru", "num_layers": 1, "backend": "fused"}},
           "transformer": {"d_model": 16, "n_head": 2, "n_layer": 2, "d_ff": 32}}
# per model, the <end> bias under which its beams have lengths from 0 to MAX_LEN words
END_BIAS = {"show_tell": 0.25, "show_attend_tell": 0.75, "transformer": 0.5}


class Sharp(torch.nn.Module):
    """A model's distributions sharpened (log p * factor, renormalised) and <end> made likelier, so that
    captions end at different lengths and repeat words. Through the decoding contract only."""

    def __init__(self, model, factor: float = 3.0, end_bias: float = 1.0) -> None:
        super().__init__()
        self.model, self.factor, self.end_bias = model, factor, end_bias

    def init_state(self, features):
        return self.model.init_state(features)

    def select_state(self, state, index):
        return self.model.select_state(state, index)

    def step(self, tokens, state):
        logp, state = self.model.step(tokens, state)
        bias = torch.zeros(logp.size(-1), dtype=logp.dtype)
        bias[END] = self.end_bias
        return torch.log_softmax(logp * self.factor + bias, -1), state


@pytest.fixture(scope="module", params=sorted(MODELS))
def model(request):
    """(a tiny random model of each registered kind, 10 images' features, the two words its beams end on
    most often: the bad endings of the tests, so that forbidding them changes captions)."""
    torch.manual_seed(0)
    name = request.param
    net = build_model({"name": name, **OPTIONS.get(name, {})}, FEATURE_DIM, V, MAX_LEN).double().eval()
    if name == "transformer":  # its initialisation gives every image nearly the same caption
        with torch.no_grad():
            for p in net.parameters():
                p.normal_(0, 0.6)
    shape = (10, FEATURE_DIM) if name == "show_tell" else (10, 4, FEATURE_DIM)
    decoder = Sharp(net, end_bias=END_BIAS.get(name, 0.5)).eval()
    feats = torch.randn(*shape, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    beams = beam_search(decoder, feats, beam_size=4, max_len=MAX_LEN, keep_beams=4).beams
    last = Counter(w[-1] for b in beams for w, _ in b if w and len(w) < MAX_LEN)
    return decoder, feats, tuple(sorted(w for w, _ in last.most_common(2)))


def test_every_shipped_model_is_decoded_here():
    assert {"show_tell", "show_attend_tell", "transformer"} <= set(MODELS)


# ---- the per-image references ----------------------------------------------------------------------------

def banned_words(words: list[int], prev: int, block_ngram: int, bad: tuple[int, ...]) -> set[int]:
    """The words a hypothesis with ``words`` so far (``prev`` the last one fed) may not take next."""
    banned = {END} if prev in bad else set()
    n = block_ngram
    if n and len(words) >= n:
        tail = words[len(words) - n + 1 :]
        for i in range(len(words) - n + 1):
            if words[i : i + n - 1] == tail:
                banned.add(words[i + n - 1])
    if all(v in banned for v in range(V) if v != PAD):  # nothing left: the caption may still end
        banned.discard(END)
    return banned


def one_state(decoder, feature):
    """The state of one image (a batch of one)."""
    return decoder.init_state(feature[None])


def copy_state(decoder, state):
    """A hypothesis's own copy of a state (a step may write into its state)."""
    return decoder.select_state(state, torch.tensor([0]))


def reference_beam(decoder, feature, beam_size, groups=1, diversity=0.0, block_ngram=0, bad=(),
                   length_alpha=0.0):
    """Diverse beam search for one image, each hypothesis stepped alone: group g's candidate scores are its
    beam's score + log p(word) - diversity x (times groups < g chose the word at this step); a finished
    hypothesis continues once, unchanged. Returns all beams as (words, log-probability), best first."""
    width = beam_size // groups
    start = dict(words=[], score=0.0, logprob=0.0, length=0, state=one_state(decoder, feature), done=False)
    table = [[start] for _ in range(groups)]
    for _ in range(MAX_LEN + 1):
        if all(h["done"] for group in table for h in group):
            break
        stepped = {}
        for group in table:
            for h in group:
                if not h["done"]:
                    prev = h["words"][-1] if h["words"] else START
                    logp, state = decoder.step(torch.tensor([prev]), copy_state(decoder, h["state"]))
                    stepped[id(h)] = (logp[0].tolist(), state, prev)
        counts = [0] * V
        for g, group in enumerate(table):
            candidates = []
            for h in group:
                if h["done"]:
                    candidates.append((h["score"], h, PAD, 0.0))
                    continue
                logp, _, prev = stepped[id(h)]
                banned = banned_words(h["words"], prev, block_ngram, bad)
                for v in range(V):
                    if v == PAD:
                        continue
                    lp = -math.inf if v in banned else logp[v]
                    step = lp - diversity * counts[v] if g and diversity else lp
                    candidates.append((h["score"] + step, h, v, lp))
            candidates.sort(key=lambda c: -c[0])
            kept = []
            for score, h, v, lp in candidates[:width]:
                if h["done"]:
                    kept.append(h)
                    continue
                counts[v] += 1
                kept.append(dict(words=h["words"] + [v], score=score, logprob=h["logprob"] + lp,
                                 length=h["length"] + 1, state=stepped[id(h)][1], done=v == END))
            table[g] = kept
    beams = [h for group in table for h in group]
    rank = (lambda h: h["logprob"] / max(h["length"], 1) ** length_alpha) if length_alpha else (lambda h: h["logprob"])
    return [(strip(h["words"])[:MAX_LEN], h["logprob"]) for h in sorted(beams, key=rank, reverse=True)]


def allowed_scores(logp, words, prev, temperature, top_k, top_p, block_ngram, bad):
    """The temperature-scaled log-probabilities [V] of one caption's next word, -inf where it may not go:
    <pad>, the banned words, outside the top k, outside the nucleus of mass top_p."""
    banned = banned_words(words, prev, block_ngram, bad) | {PAD}
    scaled = logp if temperature in (0, 1) else logp / temperature
    scaled = scaled.clone()
    scaled[sorted(banned)] = -math.inf
    if temperature == 0:
        return scaled
    if top_k:
        kth = sorted(scaled.tolist(), reverse=True)[top_k - 1]
        scaled[[v for v in range(V) if scaled[v] < kth]] = -math.inf
    if top_p < 1:
        probs = torch.softmax(scaled.double(), -1).tolist()
        mass, drop = 0.0, []
        for v in sorted(range(V), key=lambda v: -probs[v]):
            if mass >= top_p:
                drop.append(v)
            mass += probs[v]
        scaled[drop] = -math.inf
    return scaled


def reference_sample(decoder, feature, temperature=1.0, generator=None, top_k=0, top_p=1.0, block_ngram=0,
                     bad=()):
    """One caption of one image, a word at a time: (its words, its log-probability under the model)."""
    state, words, total = one_state(decoder, feature), [], 0.0
    for _ in range(MAX_LEN + 1):
        prev = words[-1] if words else START
        logp, state = decoder.step(torch.tensor([prev]), state)
        scaled = allowed_scores(logp[0], words, prev, temperature, top_k, top_p, block_ngram, bad)
        if temperature == 0:
            word = int(scaled.argmax())
        else:
            word = int(torch.multinomial(torch.softmax(scaled, -1)[None], 1, generator=generator))
        total += logp[0, word].item()
        words.append(word)
        if word == END:
            break
    return strip(words)[:MAX_LEN], total


def replay(decoder, feature, row, temperature, top_k, top_p, block_ngram, bad):
    """The log-probability of a drawn caption (word ids, <end> and <pad> after it), asserting that the
    reference allows each of its words."""
    state, words, total = one_state(decoder, feature), [], 0.0
    for word in row:
        if word == PAD:
            break
        prev = words[-1] if words else START
        logp, state = decoder.step(torch.tensor([prev]), state)
        scaled = allowed_scores(logp[0], words, prev, temperature, top_k, top_p, block_ngram, bad)
        assert scaled[word] > -math.inf, f"word {word} after {words} is not allowed"
        total += logp[0, word].item()
        words.append(word)
    return total


def assert_same(batched, reference):
    """Same captions, same scores (float64; batch sizes differ, so up to rounding)."""
    assert [w for w, _ in batched] == [w for w, _ in reference]
    assert [s for _, s in batched] == pytest.approx([s for _, s in reference], abs=1e-9)


# ---- beam search, diverse beam search -------------------------------------------------------------------

BEAM_CASES = [  # beam_size, groups, diversity, block_ngram, bad endings, length_alpha
    (3, 1, 0.0, 0, False, 0.0), (4, 2, 0.5, 0, False, 0.0), (4, 4, 1.0, 0, False, 0.0), (6, 3, 2.0, 0, False, 1.0),
    (3, 1, 0.0, 2, False, 0.0), (3, 1, 0.0, 3, BAD, 0.0), (3, 1, 0.0, 0, BAD, 1.0), (4, 2, 0.7, 2, BAD, 0.0),
    (2, 2, 0.5, 1, False, 0.0),
]


@pytest.mark.parametrize("beam_size,groups,diversity,block_ngram,bad,length_alpha", BEAM_CASES)
def test_beam_searches_equal_the_per_image_reference(model, beam_size, groups, diversity, block_ngram, bad,
                                                     length_alpha):
    decoder, feats, ends = model
    bad = ends if bad else ()
    method = "diverse_beam" if groups > 1 else "beam"
    out = decode(decoder, feats, method=method, beam_size=beam_size, groups=groups if groups > 1 else 0,
                 diversity=diversity,
                 block_ngram=block_ngram, bad_endings=bad, length_alpha=length_alpha, max_len=MAX_LEN,
                 keep_beams=beam_size, num_captions=beam_size)
    for i in range(len(feats)):
        ref = reference_beam(decoder, feats[i], beam_size, groups, diversity, block_ngram, bad, length_alpha)
        assert_same(out.beams[i], ref)
        assert out.captions[i] == out.beams[i] and (out.tokens[i], out.scores[i]) == out.beams[i][0]


def test_the_options_change_the_captions(model):
    """The references agree with something that moves: blocking, bad endings and diversity change captions."""
    decoder, feats, ends = model
    plain = beam_search(decoder, feats, beam_size=4, max_len=MAX_LEN, keep_beams=4)
    assert any(len(set(w)) < len(w) for b in plain.beams for w, _ in b)  # repeats to block
    assert any(w and w[-1] in ends and len(w) < MAX_LEN for b in plain.beams for w, _ in b)  # bad endings
    blocked = decode(decoder, feats, method="beam", beam_size=4, block_ngram=1, max_len=MAX_LEN, keep_beams=4)
    assert all(len(set(w)) == len(w) for b in blocked.beams for w, _ in b)
    bad = decode(decoder, feats, method="beam", beam_size=4, bad_endings=ends, max_len=MAX_LEN, keep_beams=4)
    assert not any(w and w[-1] in ends and len(w) < MAX_LEN for b in bad.beams for w, _ in b)
    diverse = decode(decoder, feats, method="diverse_beam", beam_size=4, groups=4, diversity=5.0, max_len=MAX_LEN,
                     keep_beams=4)
    assert first_words(diverse.beams) > first_words(plain.beams)  # the groups start differently


def first_words(beams) -> int:
    """How many different first words the beams of each image start with, summed over images."""
    return sum(len({w[0] if w else None for w, _ in b}) for b in beams)


def test_groups_without_diversity_are_independent_beam_searches(model):
    """Diversity 0: each group of W beams is a beam search of width W, so all groups hold its beams."""
    decoder, feats, ends = model
    out = decode(decoder, feats, method="diverse_beam", beam_size=6, groups=3, diversity=0.0, max_len=MAX_LEN,
                 keep_beams=6)
    narrow = beam_search(decoder, feats, beam_size=2, max_len=MAX_LEN, keep_beams=2)
    for i in range(len(feats)):
        assert [w for w, _ in out.beams[i]] == [w for w, _ in narrow.beams[i] for _ in range(3)]


def test_default_options_decode_as_before(model):
    """DecodingConfig's defaults are today's beam search (the dense oracle); one group is plain beam search."""
    decoder, feats, ends = model
    # batch_size and max_len (0 = the caller's limit) are resolved by the callers (generate, the Captioner)
    defaults = {k: v for k, v in vars(DecodingConfig()).items() if k not in ("batch_size", "max_len")}
    out = decode(decoder, feats, max_len=MAX_LEN, keep_beams=3, **defaults)
    ref = dense_beam_search(decoder, feats, beam_size=3, max_len=MAX_LEN, keep_beams=3)
    assert out.tokens == ref.tokens and out.scores == ref.scores and out.beams == ref.beams and out.captions is None
    one = decode(decoder, feats, max_len=MAX_LEN, keep_beams=3, **{**defaults, "method": "diverse_beam", "groups": 1})
    assert one.tokens == ref.tokens and one.scores == ref.scores and one.beams == ref.beams


# ---- greedy and sampling --------------------------------------------------------------------------------

@pytest.mark.parametrize("block_ngram,bad", [(0, False), (2, False), (1, False), (3, BAD), (0, BAD)])
def test_greedy_equals_the_per_image_reference(model, block_ngram, bad):
    decoder, feats, ends = model
    bad = ends if bad else ()
    out = decode(decoder, feats, method="greedy", block_ngram=block_ngram, bad_endings=bad, max_len=MAX_LEN)
    for i in range(len(feats)):
        ref = reference_sample(decoder, feats[i], temperature=0, block_ngram=block_ngram, bad=bad)
        assert_same([(out.tokens[i], out.scores[i])], [ref])


SAMPLE_CASES = [  # temperature, top_k, top_p, block_ngram, bad endings
    (1.0, 0, 1.0, 0, False), (1.0, 3, 1.0, 0, False), (0.7, 0, 0.8, 0, False), (1.5, 4, 0.5, 2, BAD),
    (1.0, 0, 0.9, 1, False), (1.0, 1, 1.0, 0, BAD),
]


@pytest.mark.parametrize("temperature,top_k,top_p,block_ngram,bad", SAMPLE_CASES)
def test_sampling_one_image_draws_the_reference_captions(model, temperature, top_k, top_p, block_ngram, bad):
    decoder, feats, ends = model
    bad = ends if bad else ()
    for i in range(4):
        out = decode(decoder, feats[i : i + 1], method="sample", temperature=temperature, top_k=top_k, top_p=top_p,
                     block_ngram=block_ngram, bad_endings=bad, max_len=MAX_LEN,
                     generator=torch.Generator().manual_seed(i))
        ref = reference_sample(decoder, feats[i], temperature, torch.Generator().manual_seed(i), top_k, top_p,
                               block_ngram, bad)
        assert_same([(out.tokens[0], out.scores[0])], [ref])


@pytest.mark.parametrize("temperature,top_k,top_p,block_ngram,bad", SAMPLE_CASES)
def test_sampling_a_batch_draws_only_allowed_words(model, temperature, top_k, top_p, block_ngram, bad):
    """In a batch (several captions per image), every word drawn is one the reference allows, and each
    caption's score is the reference's log-probability of it."""
    decoder, feats, ends = model
    bad = ends if bad else ()
    ids = torch.tensor(bad, dtype=torch.long) if bad else None
    with torch.no_grad():  # scores in float64, as evaluation reports them
        words, total = sample_tokens(decoder, feats, MAX_LEN, temperature, torch.Generator().manual_seed(0),
                                     repeats=3, top_k=top_k, top_p=top_p, block_ngram=block_ngram, bad_endings=ids)
    for row, (caption, score) in enumerate(zip(words.tolist(), total.tolist())):
        expected = replay(decoder, feats[row // 3], caption, temperature, top_k, top_p, block_ngram, bad)
        assert score == pytest.approx(expected, abs=1e-9)
    if top_k == 1:  # one word to draw from: greedy (under the same constraints)
        greedy = decode(decoder, feats, method="greedy", block_ngram=block_ngram, bad_endings=bad, max_len=MAX_LEN)
        assert [strip(r)[:MAX_LEN] for r in words.tolist()[::3]] == greedy.tokens


def test_num_captions_are_independent_samples(model):
    decoder, feats, ends = model
    out = sample(decoder, feats, MAX_LEN, 1.0, torch.Generator().manual_seed(5), num_captions=4, top_p=0.9)
    with torch.no_grad():
        words, total = sample_tokens(decoder, feats, MAX_LEN, 1.0, torch.Generator().manual_seed(5), repeats=4,
                                     top_p=0.9)
    drawn = [(strip(r)[:MAX_LEN], s) for r, s in zip(words.tolist(), total.tolist())]
    assert out.captions == [drawn[i : i + 4] for i in range(0, len(drawn), 4)]
    assert [c[0] for c in out.captions] == list(zip(out.tokens, out.scores))
    assert len({tuple(w) for c in out.captions for w, _ in c}) > len(feats)  # the samples differ


def test_defaults_sample_as_before(model):
    """Top-k 0 and top-p 1 change nothing: a seeded sample is the reference's (and sample_tokens' own)."""
    decoder, feats, ends = model
    a = decode(decoder, feats, method="sample", max_len=MAX_LEN, generator=torch.Generator().manual_seed(2))
    b = sample(decoder, feats, MAX_LEN, 1.0, torch.Generator().manual_seed(2))
    assert a.tokens == b.tokens and a.scores == b.scores and a.captions is None


# ---- words, batches and the config check ---------------------------------------------------------------

def test_bad_endings_are_words_looked_up_in_the_vocabulary(model):
    decoder, feats, ends = model
    vocab = Vocabulary([f"w{i}" for i in range(4, V)])
    decoder, feats = copy.deepcopy(decoder).float(), feats.float()  # decode_batched reads float32 arrays
    by_word = decode_batched(decoder, feats.numpy(), batch_size=4, method="beam", max_len=MAX_LEN,
                             bad_endings=[f"w{i}" for i in ends] + ["not-a-word"], vocab=vocab)
    by_id = decode(decoder, feats, method="beam", max_len=MAX_LEN, bad_endings=ends)
    assert by_word.tokens == by_id.tokens
    with pytest.raises(ValueError, match="vocab"):
        decode(decoder, feats, method="beam", bad_endings=["w4"])


def test_num_captions_come_through_batches(model):
    decoder, feats, ends = model
    decoder, feats = copy.deepcopy(decoder).float(), feats.float()  # decode_batched reads float32 arrays
    chunked = decode_batched(decoder, feats.numpy(), batch_size=3, method="diverse_beam", beam_size=4, groups=2,
                             num_captions=3, max_len=MAX_LEN)
    whole = decode(decoder, feats, method="diverse_beam", beam_size=4, groups=2, num_captions=3, max_len=MAX_LEN)
    assert [[w for w, _ in c] for c in chunked.captions] == [[w for w, _ in c] for c in whole.captions]
    assert all(len(c) == 3 for c in chunked.captions) and chunked.beams is None


@pytest.mark.parametrize("values,key", [
    ({"method": "diverse_beam", "beam_size": 3, "groups": 2}, "decoding.groups"),
    ({"method": "sample", "top_p": 0.0}, "decoding.top_p"),
    ({"method": "sample", "top_p": 1.5}, "decoding.top_p"),
    ({"method": "beam", "top_p": 0.9}, "decoding.top_p"),
    ({"method": "beam", "top_k": 5}, "decoding.top_k"),
    ({"method": "beam", "groups": 3}, "decoding.groups"),
    ({"method": "beam", "beam_size": 3, "num_captions": 4}, "decoding.num_captions"),
    ({"method": "greedy", "num_captions": 2}, "decoding.num_captions"),
    ({"block_ngram": -1}, "decoding.block_ngram"),
])
def test_bad_combinations_are_named_in_one_line(values, key):
    found = problems(DecodingConfig, values, "decoding")
    assert len(found) == 1 and found[0].startswith(key) and "\n" not in found[0]
    with pytest.raises(ValueError):
        decode(None, torch.zeros(1, 2), **{"method": "greedy", **values})


def test_good_combinations_pass():
    for values in ({"method": "diverse_beam", "beam_size": 6, "groups": 3, "num_captions": 6},
                   {"method": "diverse_beam"}, {"method": "sample", "top_k": 5, "top_p": 0.9, "num_captions": 5},
                   {"block_ngram": 3, "bad_endings": ["a", "the"]}, {}):
        assert problems(DecodingConfig, values, "decoding") == []


def test_the_commands_configs_check_the_combinations(tmp_path):
    found = config_problems(tiny_cfg(tmp_path, "decoding.method=diverse_beam", "decoding.groups=2"))
    assert found == ["decoding.groups=2 must divide decoding.beam_size=3 (each group keeps beam_size / groups beams)"]
    assert config_problems(tiny_cfg(tmp_path, "decoding.method=diverse_beam", "decoding.block_ngram=3",
                                    "decoding.bad_endings=[a,the]", "decoding.num_captions=3")) == []
    with pytest.raises(ConfigError, match="decoding.top_p=0.5 applies to method=sample only"):
        check_run_config(CaptionRunConfig, OmegaConf.create({"checkpoint": "x", "decoding": {"top_p": 0.5}}))


# ---- the Captioner and the caption command -----------------------------------------------------------------

def test_the_captioner_and_the_caption_command_take_the_options(tiny_checkpoint, tmp_path, capsys):
    from PIL import Image

    from captioning.captioner import Captioner
    from captioning.commands.caption import main as caption_main

    path = tmp_path / "img.png"
    Image.new("RGB", (40, 40), (200, 30, 30)).save(path)
    captioner = Captioner.from_checkpoint(tiny_checkpoint)
    three = captioner(str(path), num_captions=3)
    assert isinstance(three, list) and len(three) == 3 and three[0] == captioner(str(path))  # the first is the best
    drawn = captioner([str(path)] * 2, method="sample", top_p=0.9, top_k=4, num_captions=2,
                      generator=torch.Generator().manual_seed(0))
    assert [len(c) for c in drawn] == [2, 2]
    rich = captioner.caption(str(path), method="diverse_beam", groups=3, block_ngram=2, bad_endings=["a", "on"],
                             num_captions=3)
    assert len(rich.beams) == 3 and rich.text == rich.beams[0][0]
    assert all(not t.split() or t.split()[-1] not in ("a", "on") or len(t.split()) == 8 for t, _ in rich.beams)
    with pytest.raises(ValueError, match="num_captions=4 must be <= beam_size=3"):
        captioner(str(path), num_captions=4)
    assert caption_main([str(path), f"checkpoint={tiny_checkpoint}", "decoding.method=diverse_beam",
                         "decoding.num_captions=3", "decoding.bad_endings=[a,on]"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(f"{path}\t") and len(lines) == 4 and lines[1].startswith("    ")
    assert caption_main([str(path), f"checkpoint={tiny_checkpoint}", "decoding.top_k=3"]) == 2  # one line, no run
    assert "decoding.top_k=3 applies to method=sample only" in capsys.readouterr().err


def test_evaluation_decodes_with_the_options(model):
    """``generate`` (train's final evaluation, captioning-evaluate) reads every option of a DecodingConfig,
    bad endings as words of the run's vocabulary; with several captions the first is scored."""
    from types import SimpleNamespace

    from captioning.evaluation.scoring import generate

    decoder, feats, ends = model
    decoder, feats = copy.deepcopy(decoder).float(), feats.float().numpy()
    vocab = Vocabulary([f"w{i}" for i in range(4, V)])
    records = [SimpleNamespace(image_id=100 + i) for i in range(len(feats))]
    options = {"method": "diverse_beam", "beam_size": 4, "groups": 2, "diversity": 0.7, "block_ngram": 2,
               "bad_endings": [f"w{i}" for i in ends], "num_captions": 2, "batch_size": 4}
    hyps = generate(decoder, vocab, records, feats, options, MAX_LEN)
    out = decode(decoder, torch.as_tensor(feats), method="diverse_beam", beam_size=4, groups=2, diversity=0.7,
                 block_ngram=2, bad_endings=ends, max_len=MAX_LEN)
    assert hyps == {r.image_id: vocab.decode(t) for r, t in zip(records, out.tokens)}


def test_decoding_max_len_lets_captions_run_past_the_training_limit(model):
    """decoding.max_len (0 = the training captions' limit the caller passes) reaches every decoding path:
    evaluation's captions and beams, and the Captioner."""
    from types import SimpleNamespace

    from captioning.captioner import Captioner
    from captioning.evaluation.scoring import generate, generate_beams

    class NeverEnds(Sharp):  # every step a word: <end>, <start> and <pad> ruled out
        def step(self, tokens, state):
            logp, state = super().step(tokens, state)
            return logp.index_fill(-1, torch.tensor([PAD, START, END]), -1e4), state

    decoder, feats, _ = model
    never_ends = NeverEnds(copy.deepcopy(decoder.model).float()).eval()
    vocab = Vocabulary([f"w{i}" for i in range(4, V)])
    records = [SimpleNamespace(image_id=i) for i in range(len(feats))]
    feats = feats.float()
    lengths = lambda captions: {len(c.split()) for c in captions}  # noqa: E731
    assert lengths(generate(never_ends, vocab, records, feats.numpy(), {"method": "greedy"}, 4).values()) == {4}
    longer = generate(never_ends, vocab, records, feats.numpy(), {"method": "greedy", "max_len": 6}, 4)
    assert lengths(longer.values()) == {6}
    beams = generate_beams(never_ends, vocab, records, feats.numpy(), {"max_len": 6}, 4, k=2)
    assert lengths(c for b in beams.values() for c in b) == {6}
    captioner = Captioner(never_ends, vocab, {}, "", max_len=4)
    assert lengths(c.text for c in captioner.caption_features(feats)) == {4}
    assert lengths(c.text for c in captioner.caption_features(feats, max_len=6)) == {6}
