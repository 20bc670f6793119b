"""A decoder-only Transformer character model (Vaswani et al. 2017, the decoder stack only, as GPT).

Pre-LN blocks (layer norm before each sub-layer, on the residual branch: Xiong et al. 2020), causal
multi-head self-attention through ``torch.nn.functional.scaled_dot_product_attention``, learned
positional embeddings and a GELU position-wise feed-forward network. It keeps the character RNN's
call convention: time-first ids [T, B] in, (logits [T, B, V], state) out, where the state is always
None: the model sees only the ``block_size`` characters it is given, so training reads random windows
of ``block_size`` (as nanoGPT) and sampling feeds back the last ``block_size`` characters.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from captioning.utils.schema import option

NAME = "transformer"  # the `cell` choice that selects this model (configs/lm/cell/transformer.yaml)


@dataclass
class TransformerConfig:
    """The `cell` group's transformer choice (configs/lm/cell/transformer.yaml)."""

    name: str = option(NAME, "selects this model in the `cell` group", choices=(NAME,))
    n_layer: int = option(4, "decoder blocks", ge=1)
    n_head: int = option(4, "attention heads per block; divides n_embd", ge=1)
    n_embd: int = option(128, "model width d_model: embeddings, attention and residual stream", ge=1)
    block_size: int = option(64, "context: the most characters the model reads, and the training window", ge=1)
    dropout: float = option(0.0, "dropout on the embeddings, attention weights and each residual branch, in [0, 1)",
                            ge=0.0, lt=1.0)
    tie_weights: bool = option(True, "share the input embedding with the output projection (Press & Wolf 2017)")


def transformer_problems(cfg: dict, prefix: str = "cell") -> list[str]:
    """Options that cannot work together (the ranges are ``problems``')."""
    n_head, n_embd = cfg.get("n_head", 4), cfg.get("n_embd", 128)
    if all(isinstance(v, int) and v >= 1 for v in (n_head, n_embd)) and n_embd % n_head:
        return [f"{prefix}.n_embd ({n_embd}) must be a multiple of {prefix}.n_head ({n_head})"]
    return []


class CausalSelfAttention(nn.Module):
    """Multi-head self-attention where position t attends to positions <= t only."""

    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        self.n_head, self.dropout = cfg.n_head, cfg.dropout
        self.qkv = nn.Linear(cfg.n_embd, 3 * cfg.n_embd)  # W^Q, W^K, W^V of every head in one product
        self.out = nn.Linear(cfg.n_embd, cfg.n_embd)  # W^O
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: Tensor) -> Tensor:
        """[B, T, C] -> [B, T, C]."""
        b, t, c = x.shape
        q, k, v = self.qkv(x).split(c, dim=2)
        q, k, v = (z.view(b, t, self.n_head, c // self.n_head).transpose(1, 2) for z in (q, k, v))  # [B, h, T, d]
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0, is_causal=True)
        return self.drop(self.out(y.transpose(1, 2).reshape(b, t, c)))


class Block(nn.Module):
    """x + attention(LN(x)), then x + FFN(LN(x)): pre-LN keeps the residual stream un-normalised."""

    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(cfg.n_embd)
        self.attn = CausalSelfAttention(cfg)
        self.ln2 = nn.LayerNorm(cfg.n_embd)
        self.ffn = nn.Sequential(nn.Linear(cfg.n_embd, 4 * cfg.n_embd), nn.GELU(),
                                 nn.Linear(4 * cfg.n_embd, cfg.n_embd), nn.Dropout(cfg.dropout))

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.ln1(x))
        return x + self.ffn(self.ln2(x))


class CharTransformer(nn.Module):
    """p(x_{t+1} | x_{t-block_size+1..t}) from a stack of causal decoder blocks. Inputs are time-first [T, B]."""

    def __init__(self, vocab_size: int, cfg: TransformerConfig) -> None:
        super().__init__()
        found = transformer_problems(vars(cfg))
        if found:
            raise ValueError("; ".join(found))
        # the flat form checkpoints store (captioning.lm.model.build_lm reads it back)
        self.config = dict(vocab_size=vocab_size, cell=NAME, n_layer=cfg.n_layer, n_head=cfg.n_head,
                           n_embd=cfg.n_embd, block_size=cfg.block_size, dropout=cfg.dropout,
                           tie_weights=cfg.tie_weights)
        self.context = cfg.block_size  # callers read at most this many characters at once
        self.tok = nn.Embedding(vocab_size, cfg.n_embd)
        self.pos = nn.Embedding(cfg.block_size, cfg.n_embd)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.ln_f = nn.LayerNorm(cfg.n_embd)
        self.head = nn.Linear(cfg.n_embd, vocab_size, bias=False)
        if cfg.tie_weights:
            self.head.weight = self.tok.weight
        self.apply(_init)
        for block in self.blocks:  # GPT-2's scaling: each residual branch adds to a sum of 2 * n_layer terms
            for proj in (block.attn.out, block.ffn[2]):
                nn.init.normal_(proj.weight, std=0.02 / math.sqrt(2 * cfg.n_layer))

    def forward(self, x: Tensor, state: None = None) -> tuple[Tensor, None]:
        """Logits [T, B, V] for ids [T, B], T <= block_size; the state is always None (nothing is carried)."""
        if state is not None:
            raise ValueError("the transformer carries no state between calls: pass the whole context")
        t = x.shape[0]
        if t > self.context:
            raise ValueError(f"{t} characters exceed the transformer's block_size {self.context}: pass at most "
                             f"the last {self.context}")
        h = self.drop(self.tok(x.t()) + self.pos(torch.arange(t, device=x.device)))  # [B, T, C]
        for block in self.blocks:
            h = block(h)
        return self.head(self.ln_f(h)).transpose(0, 1), None


def _init(module: nn.Module) -> None:
    """Small normal weights and zero biases (GPT-2); torch's default LayerNorm (ones, zeros) is kept."""
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, std=0.02)
    if isinstance(module, nn.Linear) and module.bias is not None:
        nn.init.zeros_(module.bias)
