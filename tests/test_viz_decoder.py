"""Recording the caption decoder (batch-first RNN) gives its own per-word states."""

import numpy as np
import pytest
import torch

from tests.conftest import show_tell
from captioning.nn.viz import record_decoder


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_record_decoder_matches_the_decoders_outputs(cell):
    torch.manual_seed(0)
    d = show_tell(6, 9, cell=cell, embed_dim=4, hidden_size=5).eval()
    state = d.init_state(torch.randn(1, 6))
    words = [1, 5, 6, 2]
    rec = record_decoder(d.rnn, d.embed, words, state)
    with torch.no_grad():
        out, _ = d.rnn(d.embed(torch.tensor([words])), state)  # batch-first, fused backend
    assert rec.h.shape == (1, 4, 5)
    np.testing.assert_allclose(rec.h[-1], out[0].numpy(), atol=1e-5)
    assert d.rnn.backend == "fused"  # recording switched to scratch only temporarily
