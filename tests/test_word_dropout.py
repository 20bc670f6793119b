"""Word dropout (``schedule.stages.<stage>.word_dropout``): input words of a teacher-forced batch become <unk>
at the given rate, never <start>, <end> or <pad>; the targets are untouched; resume stays exact; a
self-critical stage refuses it."""

import pytest
import torch

from captioning.config import config_problems
from captioning.text.vocab import END, PAD, START, UNK
from captioning.training.loop import drop_words
from tests.conftest import straight_and_resumed, tiny_cfg


def test_words_become_unk_at_the_rate_and_specials_never_do():
    torch.manual_seed(0)
    words = torch.randint(4, 50, (4000, 12))
    inputs = torch.cat([torch.full((4000, 1), START), words, torch.full((4000, 1), END), torch.full((4000, 3), PAD)], 1)
    out = drop_words(inputs, 0.25)
    hit = out != inputs
    assert (out[hit] == UNK).all()
    assert not hit[:, 0].any() and not hit[:, 13:].any()  # <start>, <end>, <pad> kept
    rate = hit[:, 1:13].float().mean().item()
    assert abs(rate - 0.25) < 0.01  # 48,000 draws: sd of the rate 0.002
    assert drop_words(inputs, 0.0) is inputs
    torch.manual_seed(0)
    torch.randint(4, 50, (4000, 12))
    assert torch.equal(drop_words(inputs, 0.25), out)  # the global generator decides (saved in checkpoints)


def test_training_with_word_dropout_changes_the_weights_and_resumes_exactly(tiny_root):
    stage = "schedule.stages.cross_entropy"
    a, b = straight_and_resumed(tiny_root, "word_dropout", f"{stage}.word_dropout=0.3")
    assert all(torch.equal(a["weights"][k], b["weights"][k]) for k in a["weights"])
    plain, _ = straight_and_resumed(tiny_root, "no_word_dropout")
    assert any(not torch.equal(a["weights"][k], plain["weights"][k]) for k in a["weights"])


def test_a_self_critical_stage_refuses_word_dropout(tiny_root):
    stage = "schedule.stages.self_critical"
    problems = config_problems(tiny_cfg(tiny_root, f"{stage}.epochs=1", f"{stage}.word_dropout=0.2"))
    assert any(f"{stage}.word_dropout" in p for p in problems)
    assert not config_problems(tiny_cfg(tiny_root, "schedule.stages.cross_entropy.word_dropout=0.2"))


@pytest.mark.parametrize("value", [-0.1, 1.0])
def test_word_dropout_out_of_range_is_refused(tiny_root, value):
    problems = config_problems(tiny_cfg(tiny_root, f"schedule.stages.cross_entropy.word_dropout={value}"))
    assert any("word_dropout" in p for p in problems)
