import pytest
import torch

from captioning.lm.corpus import Corpus
from captioning.lm.model import CharCellConfig, CharModelConfig, CharRNN, build_char_rnn, load_lm
from captioning.lm.evaluate import carried_loss, windowed_loss


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_state_carries_across_chunks(cell):
    torch.manual_seed(0)
    model = CharRNN(11, CharCellConfig(cell, hidden_size=16, num_layers=2), CharModelConfig(embedding_dim=8)).eval()
    x = torch.randint(0, 11, (12, 3))
    whole, _ = model(x)
    first, state = model(x[:5])
    second, _ = model(x[5:], state)
    assert torch.allclose(torch.cat([first, second]), whole, atol=1e-6)
    fresh, _ = model(x[5:])  # without the carried state the second chunk differs
    assert not torch.allclose(fresh, second, atol=1e-3)


def test_scratch_backend_loads_fused_weights():
    torch.manual_seed(0)
    fused = CharRNN(7, CharCellConfig("lstm", hidden_size=8, num_layers=2), CharModelConfig(embedding_dim=0),
                    backend="fused").eval()
    scratch = build_char_rnn(fused.config, backend="scratch").eval()
    scratch.load_state_dict(fused.state_dict())
    x = torch.randint(0, 7, (6, 2))
    assert torch.allclose(fused(x)[0], scratch(x)[0], atol=1e-5)


def test_evaluate_carries_state_through_the_validation_text():
    torch.manual_seed(0)
    corpus = Corpus.from_text("the cat sat on the mat. " * 20, val_fraction=0.5)
    model = CharRNN(len(corpus.vocab), CharCellConfig("gru", hidden_size=16), CharModelConfig(embedding_dim=8))
    # one stream read in short or long chunks gives the same loss only if the state is carried
    assert carried_loss(model, corpus.val, 1, 7) == pytest.approx(carried_loss(model, corpus.val, 1, 500), abs=1e-5)
    assert windowed_loss(model, corpus.val, 7, 4) != pytest.approx(carried_loss(model, corpus.val, 1, 7))


def test_load_missing_checkpoint_is_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match="train first"):
        load_lm(tmp_path / "nope.pt")


class Payload:
    """Stands for code a crafted checkpoint may carry: unpickling it would import and build this class."""


def test_a_checkpoint_that_carries_code_is_refused(tmp_path):
    from captioning.lm.model import LMCheckpointError, load_checkpoint

    path = tmp_path / "crafted.pt"
    torch.save({"model": {}, "payload": Payload()}, path)
    with pytest.raises(LMCheckpointError, match="crafted.pt"):
        load_checkpoint(path)
