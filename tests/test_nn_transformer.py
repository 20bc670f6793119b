"""The shared attention and Transformer block (captioning/nn/transformer.py): both projection layouts compute
the same function, and a block decoded step by step through its cache equals teacher forcing."""

import pytest
import torch

from captioning.nn.transformer import Block, MultiHeadAttention


def test_fused_and_separate_projections_compute_the_same_attention():
    torch.manual_seed(0)
    separate, fused = MultiHeadAttention(16, 4, dropout=0.0), MultiHeadAttention(16, 4, dropout=0.0, fused=True)
    with torch.no_grad():
        fused.qkv.weight.copy_(torch.cat([separate.w_q.weight, separate.w_k.weight, separate.w_v.weight]))
        fused.qkv.bias.copy_(torch.cat([separate.w_q.bias, separate.w_k.bias, separate.w_v.bias]))
        fused.w_o.load_state_dict(separate.w_o.state_dict())
    x = torch.randn(3, 7, 16)
    assert torch.allclose(fused(x, causal=True), separate(x, causal=True), atol=1e-6)
    assert torch.allclose(fused.weights(x, x), separate.weights(x, x), atol=1e-6)
    with pytest.raises(ValueError, match="cannot attend to another"):
        fused(x, torch.randn(3, 4, 16))
    with pytest.raises(ValueError, match="d_model=30 must be a multiple of n_head=4"):
        MultiHeadAttention(30, 4, dropout=0.0)


@pytest.mark.parametrize("cross,fused", [(False, True), (True, False)])  # the char-LM's block, the caption decoder's
def test_cached_steps_equal_the_causal_pass(cross, fused):
    torch.manual_seed(0)
    block = Block(16, 4, 32, dropout=0.1, cross=cross, fused=fused).eval()
    x, memory = torch.randn(2, 6, 16), torch.randn(2, 5, 16)
    whole = block(x, memory if cross else None)
    cache, steps = block.init_cache(memory if cross else x), []
    for t in range(x.size(1)):
        out, cache = block.step(x[:, t : t + 1], cache)
        steps.append(out)
    assert torch.allclose(torch.cat(steps, 1), whole, atol=1e-5)
    assert cache["self_k"].shape == (2, 4, 6, 4) and ("cross_k" in cache) == cross
