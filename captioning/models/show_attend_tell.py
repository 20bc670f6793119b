"""Show, Attend and Tell: a recurrent decoder that looks at image regions again at every word.

Soft (deterministic) attention of Xu et al. 2015 over the R region vectors a_1..a_R of the CNN's last
feature map (``encoder.pool=regions``):

    e_ti = w_a^T tanh(W_a a_i + U_a h_{t-1} + b_a)        alpha_t = softmax_i(e_t)
    z_t = beta_t * sum_i alpha_ti a_i,  beta_t = sigmoid(f_beta(h_{t-1}))   (the gating scalar; 1 without it)
    h_t = cell([E y_{t-1}; z_t], h_{t-1})                   (rnn, lstm or gru, one layer)
    p(y_t) = softmax(L_o(E y_{t-1} + L_h h_t + L_z z_t))    (the deep output layer; or L_o h_t)

With ``region_dim`` > 0 each region is first projected, a_i = ReLU(W_r LayerNorm(a_i) + b_r), to that width
(the CNN's 1280 channels would otherwise make every step's input projection the cost of training).
The initial state is h_0 = tanh(f_init,h(mean_i a_i)) (and c_0 alike for an LSTM), so the pooled
vector still starts the caption as in Show and Tell; attention then re-reads the regions word by word.
The doubly stochastic regularisation lambda * sum_i (1 - sum_t alpha_ti)^2 pushes every region to be
attended over the caption as a whole (``alpha_c`` = lambda; 0 turns it off). Pooled features [B, D]
are read as a single region (attention then has nothing to choose).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from captioning.models.base import CaptionModel, State, register_model
from captioning.nn.cells import CellConfig, build_cell, init_lstm_gates, LSTM_INITS
from captioning.utils.schema import build, option


@dataclass
class ShowAttendTellConfig:
    """Options of ``model=show_attend_tell`` (configs/model/show_attend_tell.yaml)."""

    cell: Any = option({"name": "lstm", "num_layers": 1, "backend": "fused"},
                       "the recurrent cell: the `cell` config group (rnn | lstm | gru; one layer)")
    embed_dim: int = option(128, "word embedding width (also the deep output layer's width)", ge=1)
    hidden_size: int = option(256, "recurrent state width", ge=1)
    attention_dim: int = option(256, "width of the additive attention's hidden layer (W_a, U_a)", ge=1)
    region_dim: int = option(256, "regions projected to this width before attention (ReLU(W_r a + b_r)); 0 = "
                             "the CNN's own width", ge=0)
    dropout: float = option(0.2, "dropout on embeddings and before the output layer", ge=0, lt=1)
    feature_norm: bool = option(True, "LayerNorm on each region vector before attention and the initial state")
    gate: bool = option(True, "the gating scalar beta_t = sigmoid(f_beta(h_{t-1})) on the context (Xu et al. 4.2.1)")
    deep_output: bool = option(True, "p(y_t) from E y_{t-1} + L_h h_t + L_z z_t (Xu et al. eq. 7); false: from h_t")
    alpha_c: float = option(1.0, "weight of the doubly stochastic attention penalty (0 = off)", ge=0)
    lstm_init: str = option("forget_bias", "LSTM gate biases: torch | forget_bias | chrono (see show_tell)",
                            choices=LSTM_INITS)
    forget_bias: float = option(1.0, "the forget-gate bias for lstm_init=forget_bias")


@register_model("show_attend_tell")
class ShowAttendTell(CaptionModel):
    """Additive attention over regions, a recurrent cell fed the word and the context, a deep output layer."""

    Config = ShowAttendTellConfig  # state: dict of tensors with the batch on dim 0 (the default select_state)

    def __init__(self, config: ShowAttendTellConfig, feature_dim: int, vocab_size: int, max_len: int) -> None:
        super().__init__(config, feature_dim, vocab_size, max_len)
        c, cell = config, build(CellConfig, config.cell)
        if cell.num_layers != 1:
            raise ValueError(f"model=show_attend_tell has one recurrent layer (Xu et al.), got "
                             f"cell.num_layers={cell.num_layers}: set cell.num_layers=1")
        self.cell_name, H = cell.name, c.hidden_size
        self.feature_norm = nn.LayerNorm(feature_dim) if c.feature_norm else nn.Identity()
        self.region_proj = (nn.Sequential(nn.Linear(feature_dim, c.region_dim), nn.ReLU())
                            if c.region_dim else nn.Identity())
        D = c.region_dim or feature_dim
        self.init_h = nn.Linear(D, H)
        self.init_c = nn.Linear(D, H) if cell.name == "lstm" else None
        self.att_regions = nn.Linear(D, c.attention_dim)               # W_a (+ b_a)
        self.att_hidden = nn.Linear(H, c.attention_dim, bias=False)    # U_a
        self.att_score = nn.Linear(c.attention_dim, 1)                 # w_a
        self.f_beta = nn.Linear(H, 1) if c.gate else None
        self.embed = nn.Embedding(vocab_size, c.embed_dim, padding_idx=0)
        self.cell = build_cell(cell.name, c.embed_dim + D, H, backend=cell.backend)
        if cell.name == "lstm" and c.lstm_init != "torch":
            init_lstm_gates(self.cell, c.lstm_init, c.forget_bias, max_len + 1)
        if c.deep_output:
            self.out_h, self.out_z = nn.Linear(H, c.embed_dim), nn.Linear(D, c.embed_dim)
            self.out = nn.Linear(c.embed_dim, vocab_size)
        else:
            self.out = nn.Linear(H, vocab_size)
        self.drop = nn.Dropout(c.dropout)
        self.penalty: Tensor | None = None

    # -- the contract ---------------------------------------------------------------------------------

    def init_state(self, features: Tensor) -> State:
        """{h (and c) [B, H], the regions a [B, R, D] and their attention keys W_a a [B, R, A]}."""
        regions = self.region_proj(self.feature_norm(features.unsqueeze(1) if features.dim() == 2 else features))
        mean = regions.mean(1)
        state = {"h": torch.tanh(self.init_h(mean)), "regions": regions, "keys": self.att_regions(regions)}
        if self.init_c is not None:
            state["c"] = torch.tanh(self.init_c(mean))
        return state

    def step(self, tokens: Tensor, state: State) -> tuple[Tensor, State]:
        """One word: log-probabilities [B, V] and the next state."""
        logits, state, _ = self.attend_step(self.embed(tokens), state)
        return torch.log_softmax(logits, dim=-1), state

    def forward(self, features: Tensor, tokens: Tensor) -> Tensor:
        """Teacher forcing: logits [B, T, V]; also keeps the doubly stochastic penalty for ``auxiliary_loss``."""
        logits, alphas = self.unroll(features, tokens)
        if self.config.alpha_c > 0 and self.training:
            real = (tokens != 0).unsqueeze(-1).to(alphas.dtype)               # [B, T, 1]: padding attends nowhere
            self.penalty = self.config.alpha_c * ((1.0 - (alphas * real).sum(1)) ** 2).sum(1).mean()
        return logits

    def auxiliary_loss(self) -> Tensor | None:
        """The doubly stochastic attention penalty of the last training forward() (then forgotten)."""
        penalty, self.penalty = self.penalty, None
        return penalty

    def attention(self, features: Tensor, tokens: Tensor) -> Tensor:
        """Attention weights [B, T, R] while reading ``tokens`` (which start with <start>): where the model
        looked before predicting each next word."""
        return self.unroll(features, tokens)[1]

    # -- the equations ----------------------------------------------------------------------------------

    def unroll(self, features: Tensor, tokens: Tensor) -> tuple[Tensor, Tensor]:
        """(logits [B, T, V], attention weights [B, T, R]) of teacher forcing over ``tokens``. The recurrence
        (attention and cell) runs word by word; the output layer, which no later step reads, runs once over
        all the words."""
        state = self.init_state(features)  # before the embedding's dropout: RNG draws stay in this order
        embedded = self.drop(self.embed(tokens))
        hs, contexts, alphas = [], [], []
        for t in range(tokens.size(1)):
            h, context, alpha, state = self.read(embedded[:, t], state)
            hs.append(h)
            contexts.append(context)
            alphas.append(alpha)
        return self.output(embedded, torch.stack(hs, 1), torch.stack(contexts, 1)), torch.stack(alphas, 1)

    def attend_step(self, word: Tensor, state: State) -> tuple[Tensor, State, Tensor]:
        """(logits [B, V], next state, alpha [B, R]) for the embedded previous word [B, E]."""
        h, context, alpha, state = self.read(word, state)
        return self.output(word, h, context), state, alpha

    def read(self, word: Tensor, state: State) -> tuple[Tensor, Tensor, Tensor, State]:
        """The recurrence for one word: (h_t, the gated context z_t, alpha_t, the next state)."""
        h, regions, keys = state["h"], state["regions"], state["keys"]
        scores = self.att_score(torch.tanh(keys + self.att_hidden(h).unsqueeze(1))).squeeze(-1)  # e_t [B, R]
        alpha = torch.softmax(scores, dim=-1)
        context = torch.bmm(alpha.unsqueeze(1), regions).squeeze(1)                             # [B, D]
        if self.f_beta is not None:
            context = torch.sigmoid(self.f_beta(h)) * context
        x = torch.cat([word, context], dim=-1)
        if self.init_c is not None:
            h, c = self.cell(x, (h, state["c"]))
            new = {"h": h, "c": c, "regions": regions, "keys": keys}
        else:
            h = self.cell(x, h)
            new = {"h": h, "regions": regions, "keys": keys}
        return h, context, alpha, new

    def output(self, word: Tensor, h: Tensor, context: Tensor) -> Tensor:
        """Logits from the embedded previous word, h_t and z_t (any leading dims: one step or all of them)."""
        if self.config.deep_output:
            return self.out(self.drop(word + self.out_h(h) + self.out_z(context)))
        return self.out(self.drop(h))
