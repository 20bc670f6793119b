"""A decoder-only Transformer character model (Vaswani et al. 2017, the decoder stack only, as GPT).

A stack of the shared pre-LN blocks (captioning/nn/transformer.py: causal multi-head self-attention,
its Q, K and V in one product, and a GELU feed-forward network of width 4 n_embd), without
cross-attention, on learned positional embeddings. It keeps the character RNN's
call convention: time-first ids [T, B] in, (logits [T, B, V], state) out, where the state is always
None: the model sees only the ``block_size`` characters it is given, so training reads random windows
of ``block_size`` (as nanoGPT) and sampling feeds back the last ``block_size`` characters.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from captioning.nn.transformer import Block, init_weights
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


def transformer_problems(options: dict, prefix: str = "cell") -> list[str]:
    """Options that cannot work together (the ranges are ``problems``')."""
    n_head, n_embd = options.get("n_head", 4), options.get("n_embd", 128)
    if all(isinstance(v, int) and v >= 1 for v in (n_head, n_embd)) and n_embd % n_head:
        return [f"{prefix}.n_embd ({n_embd}) must be a multiple of {prefix}.n_head ({n_head})"]
    return []


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
        self.blocks = nn.ModuleList(Block(cfg.n_embd, cfg.n_head, 4 * cfg.n_embd, cfg.dropout, fused=True)
                                    for _ in range(cfg.n_layer))
        self.ln_f = nn.LayerNorm(cfg.n_embd)
        self.head = nn.Linear(cfg.n_embd, vocab_size, bias=False)
        if cfg.tie_weights:
            self.head.weight = self.tok.weight
        self.apply(init_weights)
        self.register_load_state_dict_pre_hook(rename_old_keys)  # checkpoints saved before the block was shared
        for block in self.blocks:  # GPT-2's scaling: each residual branch adds to a sum of 2 * n_layer terms
            for proj in (block.self_attn.w_o, block.mlp[2]):
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


# the block's parameter names before it was shared with the caption decoder (checkpoints up to 2026-12-06)
OLD_NAMES = {"ln1": "ln_self", "attn.qkv": "self_attn.qkv", "attn.out": "self_attn.w_o", "ln2": "ln_mlp",
             "ffn.0": "mlp.0", "ffn.2": "mlp.2"}
OLD_KEY = re.compile(r"^(blocks\.\d+\.)(" + "|".join(re.escape(k) for k in OLD_NAMES) + r")\.(weight|bias)$")


def new_name(key: str) -> str:
    """A CharTransformer parameter's name in the shared block (``blocks.0.attn.qkv.weight`` ->
    ``blocks.0.self_attn.qkv.weight``); other names unchanged."""
    m = OLD_KEY.match(key)
    return f"{m[1]}{OLD_NAMES[m[2]]}.{m[3]}" if m else key


def rename_old_keys(module: nn.Module, state_dict: dict, prefix: str, *args) -> None:
    """``load_state_dict`` pre-hook: the old block names of ``state_dict`` renamed in place, so a checkpoint
    saved before the block was shared loads as it did."""
    for key in [k for k in state_dict if k.startswith(prefix)]:
        renamed = prefix + new_name(key[len(prefix):])
        if renamed != key:
            state_dict[renamed] = state_dict.pop(key)
