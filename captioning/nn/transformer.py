"""Multi-head attention and the pre-LN Transformer block, shared by the caption decoder and the char-LM.

Vaswani et al. 2017 ("Attention is all you need") with the layer normalisation moved in front of each
sub-layer (pre-LN, as in GPT-2; Xiong et al. 2020):

    block    x = x + Dropout(SelfAttention(LN(x)))          causal: position t sees positions <= t
             x = x + Dropout(CrossAttention(LN(x), M))      optional: every position sees the whole memory M
             x = x + Dropout(W_2 GELU(W_1 LN(x) + b_1) + b_2)

    Attention(Q, K, V) = softmax(Q K^T / sqrt(d_k)) V, per head, with Q = x W^Q, K = y W^K, V = y W^V
    (y = x for self-attention, y = M for cross-attention); the heads are concatenated and mapped by W^O.

Teacher forcing (``Block.forward``) runs all positions in one pass under the causal mask. Decoding
(``Block.step``) runs one position at a time with a key/value cache: the self-attention keys and values
of the positions so far (one row appended per step) and, with cross-attention, the memory's keys and
values (computed once), so step t costs one position's work, not t positions'.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class MultiHeadAttention(nn.Module):
    """softmax(Q K^T / sqrt(d_k)) V for ``n_head`` heads of d_k = d_model / n_head dimensions, then W^O.

    ``fused``: W^Q, W^K and W^V are one (3 d_model x d_model) matrix ``qkv``, applied in one product (as
    nanoGPT); self-attention only. Otherwise ``w_q``, ``w_k``, ``w_v`` are apart, so the keys and values
    may come from another sequence (cross-attention). Both layouts compute the same function; each app
    keeps the one its checkpoints hold."""

    def __init__(self, d_model: int, n_head: int, dropout: float, fused: bool = False) -> None:
        super().__init__()
        if d_model % n_head:
            raise ValueError(f"d_model={d_model} must be a multiple of n_head={n_head} "
                             "(each head gets d_model / n_head dimensions)")
        self.n_head, self.dropout, self.fused = n_head, dropout, fused
        if fused:
            self.qkv = nn.Linear(d_model, 3 * d_model)
        else:
            self.w_q, self.w_k, self.w_v = (nn.Linear(d_model, d_model) for _ in range(3))
        self.w_o = nn.Linear(d_model, d_model)

    def split_heads(self, x: Tensor) -> Tensor:
        """[B, L, d_model] -> [B, heads, L, d_k]."""
        return x.view(x.size(0), x.size(1), self.n_head, x.size(2) // self.n_head).transpose(1, 2)

    def keys_values(self, y: Tensor) -> tuple[Tensor, Tensor]:
        """K = y W^K and V = y W^V of the attended sequence y [B, L, d_model], split into heads."""
        if self.fused:
            _, k, v = self.qkv(y).split(y.size(-1), dim=-1)
            return self.split_heads(k), self.split_heads(v)
        return self.split_heads(self.w_k(y)), self.split_heads(self.w_v(y))

    def queries(self, x: Tensor) -> Tensor:
        """Q = x W^Q, split into heads."""
        q = self.qkv(x)[..., : x.size(-1)] if self.fused else self.w_q(x)
        return self.split_heads(q)

    def attend(self, x: Tensor, keys: Tensor, values: Tensor, causal: bool = False) -> Tensor:
        """The queries x [B, L, d_model] attend to ``keys``/``values`` [B, heads, S, d_k]; ``causal``
        (L == S) lets position t see positions <= t only."""
        return self.combine(self.queries(x), keys, values, causal)

    def combine(self, q: Tensor, keys: Tensor, values: Tensor, causal: bool = False) -> Tensor:
        """softmax(Q K^T / sqrt(d_k)) V of the query heads ``q`` [B, heads, L, d_k], concatenated and mapped by W^O."""
        if q.size(2) == 1 and not causal:  # one new position (a decoding step): two batched vector products
            # Written out because torch's fallback for this case (gradients or dropout on, on a CPU) copies and
            # rescales every cached key at every step; the same softmax(q K^T / sqrt(d_k)) V.
            weights = torch.softmax((q * q.size(-1) ** -0.5) @ keys.transpose(-2, -1), dim=-1)
            heads = F.dropout(weights, self.dropout, self.training).to(values.dtype) @ values
        else:
            heads = F.scaled_dot_product_attention(q, keys, values, dropout_p=self.dropout if self.training else 0.0,
                                                   is_causal=causal)  # [B, heads, L, d_k], scaled by 1/sqrt(d_k)
        b, _, length, _ = q.shape
        return self.w_o(heads.transpose(1, 2).reshape(b, length, -1))

    def weights(self, x: Tensor, y: Tensor) -> Tensor:
        """The attention weights softmax(Q K^T / sqrt(d_k)) [B, heads, L, S] of queries x over y (no mask)."""
        q, k = self.queries(x), self.keys_values(y)[0]
        return torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(q.size(-1)), dim=-1)

    def forward(self, x: Tensor, y: Tensor | None = None, causal: bool = False) -> Tensor:
        """Self-attention (y None) or attention from x to y."""
        if self.fused:
            if y is not None:
                raise ValueError("fused attention projects Q, K and V of one sequence: it cannot attend to another")
            q, k, v = (self.split_heads(z) for z in self.qkv(x).split(x.size(-1), dim=-1))
            return self.combine(q, k, v, causal)
        return self.attend(x, *self.keys_values(x if y is None else y), causal=causal)


class Block(nn.Module):
    """Pre-LN: causal self-attention, (with ``cross``) cross-attention to a memory, GELU MLP, each a residual
    branch with dropout. ``fused`` chooses the self-attention's projection layout (``MultiHeadAttention``)."""

    def __init__(self, d_model: int, n_head: int, d_ff: int, dropout: float, cross: bool = False,
                 fused: bool = False) -> None:
        super().__init__()
        # (the layer norms first: the parameters' order, which checkpointed optimizer states follow)
        self.ln_self = nn.LayerNorm(d_model)
        self.ln_cross = nn.LayerNorm(d_model) if cross else None
        self.ln_mlp = nn.LayerNorm(d_model)
        self.self_attn = MultiHeadAttention(d_model, n_head, dropout, fused=fused)
        self.cross_attn = MultiHeadAttention(d_model, n_head, dropout) if cross else None
        self.mlp = nn.Sequential(nn.Linear(d_model, d_ff), nn.GELU(), nn.Linear(d_ff, d_model))
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor, memory: Tensor | None = None) -> Tensor:
        """All positions of x [B, T, d_model] at once, under the causal mask (and over ``memory`` [B, R, d_model]
        with cross-attention)."""
        x = x + self.drop(self.self_attn(self.ln_self(x), causal=True))
        if self.cross_attn is not None:
            x = x + self.drop(self.cross_attn(self.ln_cross(x), memory))
        return x + self.drop(self.mlp(self.ln_mlp(x)))

    def init_cache(self, memory: Tensor) -> dict:
        """An empty self-attention cache (zero positions, in the dtype the projections give, autocast included)
        and, with cross-attention, the keys and values of ``memory`` [B, R, d_model] (without, any [B, L, d_model]
        tensor of the batch: only its size and dtype are read)."""
        self_k, self_v = self.self_attn.keys_values(memory[:, :0])
        cache = {"self_k": self_k, "self_v": self_v}
        if self.cross_attn is not None:
            # contiguous once here, not gathered from the strided head view at every step
            cache["cross_k"], cache["cross_v"] = (t.contiguous() for t in self.cross_attn.keys_values(memory))
        return cache

    def step(self, x: Tensor, cache: dict) -> tuple[Tensor, dict]:
        """One new position x [B, 1, d_model]: its key and value join the cache, its query attends to all
        the cached positions (itself included, so no mask) and to the cached memory keys and values."""
        h = self.ln_self(x)
        k, v = self.self_attn.keys_values(h)
        k, v = torch.cat([cache["self_k"], k], dim=2), torch.cat([cache["self_v"], v], dim=2)
        x = x + self.drop(self.self_attn.attend(h, k, v))
        new = {**cache, "self_k": k, "self_v": v}
        if self.cross_attn is not None:
            x = x + self.drop(self.cross_attn.attend(self.ln_cross(x), cache["cross_k"], cache["cross_v"]))
        return x + self.drop(self.mlp(self.ln_mlp(x))), new


def init_weights(module: nn.Module) -> None:
    """Small normal weights (std 0.02, as in GPT-2) and zero biases; torch's default LayerNorm (ones, zeros)
    is kept. With a tied output layer, unit-variance embeddings would start with logits of standard
    deviation sqrt(d_model)."""
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, std=0.02)
    if isinstance(module, nn.Linear) and module.bias is not None:
        nn.init.zeros_(module.bias)
