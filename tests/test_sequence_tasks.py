"""Sequence-task generators: deterministic, and their targets right on hand-made cases."""

import pytest
import torch

from captioning.data.scenes import attribute_report
from captioning.sequence import tasks

COLOURS = ["red", "green", "blue"]


def obj(size, colour, shape):
    return {"size": size, "colour": colour, "shape": shape}


def test_adding_target_on_a_hand_made_sequence():
    x = torch.tensor([[[0.2, 0.0], [0.5, 1.0], [0.9, 0.0], [0.125, 1.0]]])
    assert tasks.adding_target(x).tolist() == [0.625]


@pytest.mark.parametrize("placement", tasks.PLACEMENTS)
def test_adding_problem_is_deterministic_with_two_markers_placed_as_documented(placement):
    T = 40
    x, y = tasks.adding_problem(500, T, torch.Generator().manual_seed(3), placement)
    x2, y2 = tasks.adding_problem(500, T, torch.Generator().manual_seed(3), placement)
    assert torch.equal(x, x2) and torch.equal(y, y2)
    assert x.shape == (500, T, 2) and y.shape == (500,)
    assert torch.all(x[..., 1].sum(1) == 2)
    assert torch.allclose(y, (x[..., 0] * x[..., 1]).sum(1))
    pos = x[..., 1].nonzero()[:, 1].view(500, 2)  # sorted positions of the two markers per row
    if placement == "hochreiter":
        assert torch.all(pos[:, 0] < 10) and torch.all(pos[:, 1] < T // 2)
        assert pos[:, 1].max() == T // 2 - 1  # the whole first half is used
    else:
        assert torch.all(pos[:, 0] < T // 2) and torch.all(pos[:, 1] >= T // 2)


def test_adding_problem_rejects_bad_arguments():
    with pytest.raises(ValueError, match="placement"):
        tasks.adding_problem(2, 10, torch.Generator(), "middle")
    with pytest.raises(ValueError, match="seq_len"):
        tasks.adding_problem(2, 3, torch.Generator())


def test_adding_baseline_is_the_variance_of_two_uniforms_and_matches_sampling():
    base = tasks.adding_baseline(0.04)
    assert base["mse"] == pytest.approx(1 / 6) and base["accuracy"] == pytest.approx(0.0784)
    _, y = tasks.adding_problem(100_000, 20, torch.Generator().manual_seed(0))
    assert (y - 1).pow(2).mean().item() == pytest.approx(1 / 6, abs=0.003)
    assert ((y - 1).abs() < 0.04).float().mean().item() == pytest.approx(0.0784, abs=0.004)


def test_digit_reversal_is_deterministic_reversed_and_in_range():
    pairs = tasks.digit_reversal(50, 2, 6, seed=1)
    assert pairs == tasks.digit_reversal(50, 2, 6, seed=1)
    assert pairs != tasks.digit_reversal(50, 2, 6, seed=2)
    for src, tgt in pairs:
        assert 2 <= len(src) <= 6 and tgt == src[::-1] and set(src) <= set(tasks.DIGITS)
    with pytest.raises(ValueError, match="min_len"):
        tasks.digit_reversal(1, 5, 2, seed=0)


def test_first_colour_on_hand_made_captions():
    assert tasks.first_colour("a big green circle left of a red square".split(), COLOURS) == 1
    assert tasks.first_colour("a blue square and a red circle left of it".split(), COLOURS) == 2
    with pytest.raises(ValueError, match="none of the colours"):
        tasks.first_colour("a big circle".split(), COLOURS)


def test_canonical_caption_on_hand_made_scenes():
    one = {"objects": [obj("large", "red", "circle")], "position": "top", "relation": None}
    assert tasks.canonical_caption(one) == "a large red circle at the top"
    two = {"objects": [obj("small", "blue", "star"), obj("large", "red", "circle")], "position": None,
           "relation": {"axis": "vertical", "order": [1, 0]}}
    assert tasks.canonical_caption(two) == "a large red circle above a small blue star"
    three = {"objects": [obj("small", "red", "cross"), obj("large", "green", "square"), obj("small", "blue", "star")],
             "position": None, "relation": {"axis": "horizontal", "order": [0, 1, 2]}}
    assert tasks.canonical_caption(three) == (
        "from left to right , small red cross , large green square and small blue star")


def test_caption_tasks_are_deterministic_and_consistent_with_the_scene_grammar():
    tokens, labels = tasks.caption_colour(40, seed=5)
    assert (tokens, labels) == tasks.caption_colour(40, seed=5)
    colours = tasks.SHAPES_DEFAULTS["colours"]
    for t, lab in zip(tokens, labels):
        assert colours[lab] == next(w for w in t if w in colours)
    assert len(set(labels)) > 1
    for scene, _ in tasks.scene_captions(40, seed=5):
        report = attribute_report(scene, tasks.canonical_caption(scene))  # the shapes judge agrees
        assert all(v in (True, None) for v in report.values()), report
    pairs = tasks.caption_paraphrase(40, seed=5)
    assert pairs == tasks.caption_paraphrase(40, seed=5)
    assert sum(s != t for s, t in pairs) > 30  # mostly a real rewrite, not a copy
