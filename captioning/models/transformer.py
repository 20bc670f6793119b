"""A Transformer caption decoder: the words attend to each other (causally) and to the image's regions.

The decoder of Vaswani et al. 2017 ("Attention is all you need") with the layer normalisation moved in
front of each sub-layer (pre-LN, as in GPT-2; Xiong et al. 2020), reading the image as a set of regions
(Xu et al. 2015 attend over the same g x g grid of the CNN's last feature map):

    memory   M = LayerNorm(regions) W_M + b_M + row[i] + col[j]      region (i, j) of the g x g grid, [B, R, d]
    input    x_t = E[w_t] + P[t]                                      word t: embedding + learned position
    layer    x = x + Dropout(SelfAttention(LN(x)))                    causal: word t sees words <= t
             x = x + Dropout(CrossAttention(LN(x), M))                every word sees every region
             x = x + Dropout(W_2 GELU(W_1 LN(x) + b_1) + b_2)
    output   logits_t = LN_f(x_t) W_out + b_out                       W_out = E^T when tie_embeddings

The layers are the shared pre-LN ``Block`` (captioning/nn/transformer.py, with cross-attention), the
one the character model stacks too; this file holds what is the caption decoder's own: the regions
as memory, the word and position embeddings, the output layer and the decoding state.

Teacher forcing (``forward``) runs all positions in one pass under the causal mask. Decoding (``step``)
runs one position at a time on every layer's key/value cache (``Block.step``), so step t costs one
position's work, not t positions'.

Image features are [B, D] (a pooled vector: one region) or [B, R, D] (R = g*g regions, row-major).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from captioning.models.base import CaptionModel, State, register_model
from captioning.nn.transformer import Block, init_weights
from captioning.utils.schema import option


@dataclass
class TransformerConfig:
    """Options of ``model=transformer`` (configs/model/transformer.yaml)."""

    d_model: int = option(256, "width of the word, position and region vectors (the residual stream)", ge=1)
    n_layer: int = option(2, "decoder layers", ge=1)
    n_head: int = option(4, "attention heads per layer; d_model must be a multiple of it", ge=1)
    d_ff: int = option(512, "hidden width of each layer's GELU feed-forward network", ge=1)
    dropout: float = option(0.1, "dropout on the inputs, the attention weights and each residual branch", ge=0, lt=1)
    tie_embeddings: bool = option(True, "the output projection shares the word embedding matrix (Press & Wolf 2017)")
    max_grid: int = option(16, "largest g of a g x g region grid (sizes the row and column embeddings)", ge=1)

    def __post_init__(self) -> None:
        if self.d_model % self.n_head:
            raise ValueError(f"model.d_model={self.d_model} must be a multiple of model.n_head={self.n_head} "
                             f"(each head gets d_model / n_head dimensions)")


@register_model("transformer")
class Transformer(CaptionModel):
    """Region projection with 2-D positions, word + position embeddings, pre-LN decoder layers, final
    LayerNorm, output projection (tied to the word embedding by default).

    The decoding state (batch on dim 0 of every tensor): ``memory`` [B, R, d_model], ``position`` [B] (the
    index of the next word), ``image`` [B] (the image each row decodes), and per layer ``self_k``, ``self_v``
    [B, heads, t, d_k] (the t words so far) and ``cross_k``, ``cross_v`` [B, heads, R, d_k]. ``select_state``
    reorders it; a selection that keeps every row on its image (a beam search's reorder) leaves the memory and
    the cross-attention keys and values as they are: rows of one image hold the same ones."""

    Config = TransformerConfig

    def __init__(self, config: TransformerConfig, feature_dim: int, vocab_size: int, max_len: int) -> None:
        super().__init__(config, feature_dim, vocab_size, max_len)
        c = config
        self.region_norm = nn.LayerNorm(feature_dim)
        self.region_proj = nn.Linear(feature_dim, c.d_model)
        self.row_embed, self.col_embed = nn.Embedding(c.max_grid, c.d_model), nn.Embedding(c.max_grid, c.d_model)
        self.word_embed = nn.Embedding(vocab_size, c.d_model)
        self.pos_embed = nn.Embedding(max_len + 1, c.d_model)  # <start> and max_len words are read
        self.drop = nn.Dropout(c.dropout)
        self.layers = nn.ModuleList(Block(c.d_model, c.n_head, c.d_ff, c.dropout, cross=True) for _ in range(c.n_layer))
        self.ln_f = nn.LayerNorm(c.d_model)
        self.out = nn.Linear(c.d_model, vocab_size)
        self.apply(init_weights)
        if c.tie_embeddings:
            self.out.weight = self.word_embed.weight

    def regions(self, features: Tensor) -> Tensor:
        """[B, D] -> [B, 1, D]; [B, R, D] as it is, after checking that R is a square g x g grid."""
        if features.dim() == 2:
            features = features.unsqueeze(1)
        if features.dim() != 3 or features.size(-1) != self.feature_dim:
            raise ValueError(f"image features must be [B, {self.feature_dim}] or [B, R, {self.feature_dim}], "
                             f"got {tuple(features.shape)}")
        g = math.isqrt(features.size(1))
        if g * g != features.size(1):
            raise ValueError(f"the {features.size(1)} regions of each image are not a square g x g grid "
                             "(R must be a perfect square: 1, 4, 9, 16, ...)")
        if g > self.config.max_grid:
            raise ValueError(f"a {g} x {g} region grid is larger than model.max_grid={self.config.max_grid}")
        return features

    def encode(self, features: Tensor) -> Tensor:
        """The memory [B, R, d_model]: each region normalised and projected, plus its row and column embedding."""
        regions = self.regions(features)
        g = math.isqrt(regions.size(1))
        grid = torch.arange(g, device=regions.device)
        where = (self.row_embed(grid)[:, None, :] + self.col_embed(grid)[None, :, :]).reshape(g * g, -1)
        return self.drop(self.region_proj(self.region_norm(regions)) + where)

    def decode(self, memory: Tensor, tokens: Tensor) -> Tensor:
        """Logits [B, T, V] of the input words [B, T] over the memory, all positions in one pass."""
        if tokens.size(1) > self.max_len + 1:
            raise ValueError(f"{tokens.size(1)} input words, but positions are learned up to max_len + 1 = "
                             f"{self.max_len + 1}")
        x = self.drop(self.word_embed(tokens) + self.pos_embed(torch.arange(tokens.size(1), device=tokens.device)))
        for layer in self.layers:
            x = layer(x, memory)
        return self.out(self.ln_f(x))

    def attention(self, features: Tensor, tokens: Tensor) -> Tensor:
        """Where the last layer's words looked: its cross-attention weights [B, T, R], averaged over heads,
        while reading ``tokens`` (which start with <start>); row t precedes the prediction of word t+1."""
        memory = self.encode(features)
        x = self.drop(self.word_embed(tokens) + self.pos_embed(torch.arange(tokens.size(1), device=tokens.device)))
        for layer in self.layers[:-1]:
            x = layer(x, memory)
        last = self.layers[-1]
        x = x + last.drop(last.self_attn(last.ln_self(x), causal=True))
        return last.cross_attn.weights(last.ln_cross(x), memory).mean(1)

    def forward(self, features: Tensor, tokens: Tensor) -> Tensor:
        """Teacher forcing: logits [B, T, V] for the input tokens [B, T] (which start with <start>)."""
        return self.decode(self.encode(features), tokens)

    def init_state(self, features: Tensor) -> State:
        """The memory, its cross-attention keys and values in every layer, empty self-attention caches
        and position 0."""
        memory = self.encode(features)
        layers = [layer.init_cache(memory) for layer in self.layers]
        position = torch.zeros(memory.size(0), dtype=torch.long, device=memory.device)
        image = torch.arange(memory.size(0), device=memory.device)
        return {"memory": memory, "position": position, "image": image, "layers": layers}

    def select_state(self, state: State, index: Tensor) -> State:
        """The state of rows ``index``. The memory and the cross-attention keys and values depend on the
        image alone, so when every selected row decodes the image its row decoded before (beam search
        reordering the beams of each image), they are kept instead of copied: per step that saves copying
        2 x layers x R x d_model numbers per row, which grows with the regions, not the words."""
        image = state["image"].index_select(0, index)
        if image.shape != state["image"].shape or not torch.equal(image, state["image"]):
            return super().select_state(state, index)
        layers = [{"self_k": c["self_k"].index_select(0, index), "self_v": c["self_v"].index_select(0, index),
                   "cross_k": c["cross_k"], "cross_v": c["cross_v"]} for c in state["layers"]]
        return {"memory": state["memory"], "position": state["position"].index_select(0, index), "image": image,
                "layers": layers}

    @property
    def max_words(self) -> int:
        """The longest caption it can write: positions are learned up to ``max_len`` (decoding stops there)."""
        return self.max_len

    def step(self, tokens: Tensor, state: State) -> tuple[Tensor, State]:
        """One decoding step: previous words [B] -> log-probabilities [B, V] and the new state."""
        if state["layers"][0]["self_k"].size(2) > self.max_len:
            raise ValueError(f"step past position max_len = {self.max_len}: positions are learned up to there")
        position = state["position"]
        x = self.drop(self.word_embed(tokens) + self.pos_embed(position)).unsqueeze(1)
        layers = []
        for layer, cache in zip(self.layers, state["layers"]):
            x, cache = layer.step(x, cache)
            layers.append(cache)
        logp = torch.log_softmax(self.out(self.ln_f(x.squeeze(1))), dim=-1)
        return logp, {"memory": state["memory"], "position": position + 1, "image": state["image"], "layers": layers}

