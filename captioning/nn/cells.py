"""Recurrent cells written from their equations, compatible with torch.nn.

Every class here mirrors its torch.nn namesake: constructor arguments, call convention, parameter
names (``weight_ih``, ``weight_hh``, ``bias_ih``, ``bias_hh``; ``..._l{k}`` for layer k) and gate
order (LSTM: i, f, g, o; GRU: r, z, n). A state dict of ``torch.nn.LSTM`` loads into ``LSTM``
unchanged and gives the same outputs and gradients.

The cells never call torch.nn's recurrent code. The multi-layer modules have two backends:

* ``scratch``: our cells, one time step after another. Only this one can return every layer's state
  (and gates) at every time step, which the visualisation needs.
* ``fused``: torch's own kernel (``torch._VF``, cuDNN on a GPU) run on the very same parameters.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from captioning.utils.schema import option

# --------------------------------------------------------------------------------------------------
# One time step of each cell. ``gi`` is the input projection x W_ih^T + b_ih, computed beforehand
# (for a whole sequence at once in the multi-layer modules: one big GEMM instead of T small ones).
# Where the hidden bias only adds to the same sum (RNN, LSTM), the modules fold b_hh into gi too and
# pass b_hh=None: one fewer addition per step. Each returns the new state and the gate activations
# (for the gate-saturation statistics).
# --------------------------------------------------------------------------------------------------


def rnn_step(gi: Tensor, h: Tensor, w_hh: Tensor, b_hh: Tensor | None, nonlinearity: str = "tanh") -> Tensor:
    """Elman step: h' = tanh(x W_ih^T + b_ih + h W_hh^T + b_hh)."""
    pre = torch.addmm(gi if b_hh is None else gi + b_hh, h, w_hh.t())
    return torch.tanh(pre) if nonlinearity == "tanh" else torch.relu(pre)


def lstm_step(gi: Tensor, h: Tensor, c: Tensor, w_hh: Tensor, b_hh: Tensor | None) -> tuple[Tensor, Tensor, dict]:
    """LSTM step (Hochreiter & Schmidhuber, with forget gate): gates i, f, g, o in torch's order."""
    gates = torch.addmm(gi if b_hh is None else gi + b_hh, h, w_hh.t())
    i, f, g, o = gates.chunk(4, dim=-1)
    i, f, g, o = torch.sigmoid(i), torch.sigmoid(f), torch.tanh(g), torch.sigmoid(o)
    c_next = f * c + i * g
    h_next = o * torch.tanh(c_next)
    return h_next, c_next, {"input": i, "forget": f, "output": o}


def gru_step(gi: Tensor, h: Tensor, w_hh: Tensor, b_hh: Tensor | None) -> tuple[Tensor, dict]:
    """GRU step (Cho et al. 2014) in torch's form: the hidden bias of n sits inside r * (...)."""
    gh = nn.functional.linear(h, w_hh, b_hh)
    i_r, i_z, i_n = gi.chunk(3, dim=-1)
    h_r, h_z, h_n = gh.chunk(3, dim=-1)
    r = torch.sigmoid(i_r + h_r)
    z = torch.sigmoid(i_z + h_z)
    n = torch.tanh(i_n + r * h_n)
    h_next = (1.0 - z) * n + z * h
    return h_next, {"reset": r, "update": z}


LSTM_INITS = ("torch", "forget_bias", "chrono")


def init_lstm_gates(rnn: nn.Module, scheme: str = "torch", forget_bias: float = 1.0, t_max: int | None = None) -> None:
    """Initialise an LSTM's gate biases; every scheme sets the total bias b_ih + b_hh of a gate.

    * ``torch``: leave torch's uniform init (forget gate ~ 0.5, so memory halves every step);
    * ``forget_bias``: forget bias ``forget_bias`` (1 in Gers et al. 2000, Jozefowicz et al. 2015);
    * ``chrono`` (Tallec & Ollivier 2018): b_f ~ log U(1, t_max - 1) and b_i = -b_f, so the units'
      memory time-scales spread up to ``t_max`` steps, the longest dependency expected.
    """
    if scheme not in LSTM_INITS:
        raise ValueError(f"unknown lstm_init {scheme!r}; choose one of {LSTM_INITS}")
    if scheme == "torch":
        return
    if isinstance(rnn, (LSTMCell, nn.LSTMCell)):  # a single cell: one layer
        biases = [(rnn.bias_ih, rnn.bias_hh)]
    elif getattr(rnn, "gate_count", None) == 4 and hasattr(rnn, "layer_weights"):
        biases = [rnn.layer_weights(layer)[2:] for layer in range(rnn.num_layers)]
    else:
        raise ValueError(f"lstm_init {scheme!r} applies to LSTM cells only, not {type(rnn).__name__}: use 'torch'")
    if scheme == "chrono" and (t_max is None or t_max < 3):
        raise ValueError(f"lstm_init 'chrono' needs t_max >= 3 (the longest dependency), got {t_max}")
    H = rnn.hidden_size
    with torch.no_grad():
        for b_ih, b_hh in biases:
            if b_ih is None:
                raise ValueError(f"lstm_init {scheme!r} needs an LSTM with bias=True")
            if scheme == "forget_bias":
                b_f = torch.full((H,), float(forget_bias))
            else:
                b_f = torch.log(torch.empty(H).uniform_(1.0, t_max - 1.0))
                b_ih[:H], b_hh[:H] = -b_f, 0.0  # gate order i, f, g, o
            b_ih[H : 2 * H], b_hh[H : 2 * H] = b_f, 0.0


def uniform_init(module: nn.Module, hidden_size: int) -> None:
    """torch.nn's initialisation of recurrent weights: every parameter ~ U(-1/sqrt(H), 1/sqrt(H))."""
    bound = 1.0 / math.sqrt(hidden_size)
    for p in module.parameters():
        nn.init.uniform_(p, -bound, bound)


# --------------------------------------------------------------------------------------------------
# Single cells: drop-in replacements for torch.nn.RNNCell / LSTMCell / GRUCell.
# --------------------------------------------------------------------------------------------------


class _CellBase(nn.Module):
    """Parameters shared by the three cells; ``gate_count`` blocks of ``hidden_size`` rows each."""

    gate_count = 1

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, device=None, dtype=None) -> None:
        super().__init__()
        if input_size <= 0 or hidden_size <= 0:
            raise ValueError(f"input_size and hidden_size must be positive, got {input_size}, {hidden_size}")
        kw = {"device": device, "dtype": dtype}
        self.input_size, self.hidden_size, self.bias = input_size, hidden_size, bias
        rows = self.gate_count * hidden_size
        self.weight_ih = nn.Parameter(torch.empty(rows, input_size, **kw))
        self.weight_hh = nn.Parameter(torch.empty(rows, hidden_size, **kw))
        if bias:
            self.bias_ih = nn.Parameter(torch.empty(rows, **kw))
            self.bias_hh = nn.Parameter(torch.empty(rows, **kw))
        else:
            self.register_parameter("bias_ih", None)
            self.register_parameter("bias_hh", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Uniform(-1/sqrt(H), 1/sqrt(H)) for every parameter, as torch.nn does."""
        uniform_init(self, self.hidden_size)

    def extra_repr(self) -> str:
        return f"{self.input_size}, {self.hidden_size}, bias={self.bias}"

    def _prepare(self, x: Tensor, hx: Tensor | None) -> tuple[Tensor, Tensor, bool]:
        """Add a batch dimension to unbatched input and default the state to zeros."""
        unbatched = x.dim() == 1
        if unbatched:
            x = x.unsqueeze(0)
            hx = hx.unsqueeze(0) if hx is not None else None
        if hx is None:
            hx = x.new_zeros(x.size(0), self.hidden_size)
        return x, hx, unbatched


class RNNCell(_CellBase):
    """Elman cell: h' = tanh(W_ih x + b_ih + W_hh h + b_hh) (or relu)."""

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, nonlinearity: str = "tanh",
                 device=None, dtype=None) -> None:
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"Unknown nonlinearity {nonlinearity!r}: use 'tanh' or 'relu'")
        self.nonlinearity = nonlinearity
        super().__init__(input_size, hidden_size, bias, device, dtype)

    def forward(self, input: Tensor, hx: Tensor | None = None) -> Tensor:
        x, h, unbatched = self._prepare(input, hx)
        gi = nn.functional.linear(x, self.weight_ih, self.bias_ih)
        h = rnn_step(gi, h, self.weight_hh, self.bias_hh, self.nonlinearity)
        return h.squeeze(0) if unbatched else h


class LSTMCell(_CellBase):
    """LSTM cell; returns (h', c')."""

    gate_count = 4

    def forward(self, input: Tensor, hx: tuple[Tensor, Tensor] | None = None) -> tuple[Tensor, Tensor]:
        h0, c0 = hx if hx is not None else (None, None)
        x, h, unbatched = self._prepare(input, h0)
        c = h.new_zeros(h.shape) if c0 is None else (c0.unsqueeze(0) if unbatched else c0)
        gi = nn.functional.linear(x, self.weight_ih, self.bias_ih)
        h, c, _ = lstm_step(gi, h, c, self.weight_hh, self.bias_hh)
        return (h.squeeze(0), c.squeeze(0)) if unbatched else (h, c)


class GRUCell(_CellBase):
    """GRU cell; returns h'."""

    gate_count = 3

    def forward(self, input: Tensor, hx: Tensor | None = None) -> Tensor:
        x, h, unbatched = self._prepare(input, hx)
        gi = nn.functional.linear(x, self.weight_ih, self.bias_ih)
        h, _ = gru_step(gi, h, self.weight_hh, self.bias_hh)
        return h.squeeze(0) if unbatched else h


# --------------------------------------------------------------------------------------------------
# Multi-layer modules: drop-in replacements for torch.nn.RNN / LSTM / GRU.
# --------------------------------------------------------------------------------------------------

BACKENDS = ("scratch", "fused")


class AllStates(NamedTuple):
    """Every layer's state at every step, from the scratch backend: tensors shaped [layers, T, B, H]."""

    h: Tensor
    c: Tensor | None
    gates: dict[str, Tensor]


class _RecurrentBase(nn.Module):
    """Shared unrolling logic; subclasses name their mode and state layout."""

    gate_count = 1
    has_cell_state = False
    fold_hidden_bias = True  # False for the GRU, whose hidden bias of n sits inside r * (...)

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False,
                 backend: str = "scratch", device=None, dtype=None) -> None:
        super().__init__()
        if backend not in BACKENDS:
            raise ValueError(f"Unknown backend {backend!r}: choose one of {BACKENDS}")
        if bidirectional:
            raise NotImplementedError("bidirectional recurrence is not supported: a decoder runs forwards")
        if num_layers < 1 or hidden_size < 1 or input_size < 1:
            raise ValueError(f"sizes must be positive: input {input_size}, hidden {hidden_size}, layers {num_layers}")
        if not 0.0 <= dropout <= 1.0:
            raise ValueError(f"dropout must be in [0, 1], got {dropout}")
        kw = {"device": device, "dtype": dtype}
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.bias, self.batch_first, self.dropout, self.backend = bias, batch_first, float(dropout), backend
        self.bidirectional = False
        rows = self.gate_count * hidden_size
        for layer in range(num_layers):
            in_size = input_size if layer == 0 else hidden_size
            self.register_parameter(f"weight_ih_l{layer}", nn.Parameter(torch.empty(rows, in_size, **kw)))
            self.register_parameter(f"weight_hh_l{layer}", nn.Parameter(torch.empty(rows, hidden_size, **kw)))
            if bias:
                self.register_parameter(f"bias_ih_l{layer}", nn.Parameter(torch.empty(rows, **kw)))
                self.register_parameter(f"bias_hh_l{layer}", nn.Parameter(torch.empty(rows, **kw)))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Uniform(-1/sqrt(H), 1/sqrt(H)) for every parameter, as torch.nn does."""
        uniform_init(self, self.hidden_size)

    def extra_repr(self) -> str:
        return (f"{self.input_size}, {self.hidden_size}, num_layers={self.num_layers}, "
                f"batch_first={self.batch_first}, dropout={self.dropout}, backend={self.backend!r}")

    def layer_weights(self, layer: int) -> tuple[Tensor, Tensor, Tensor | None, Tensor | None]:
        """(weight_ih, weight_hh, bias_ih, bias_hh) of one layer."""
        get = lambda name: getattr(self, f"{name}_l{layer}", None)  # noqa: E731
        return get("weight_ih"), get("weight_hh"), get("bias_ih"), get("bias_hh")

    def flat_weights(self) -> list[Tensor]:
        """Parameters in the order torch's fused kernels expect."""
        return [w for layer in range(self.num_layers) for w in self.layer_weights(layer) if w is not None]

    # -- public entry point ----------------------------------------------------------------------

    def forward(self, input: Tensor | PackedSequence, hx=None, lengths: Tensor | None = None,
                return_all_states: bool = False):
        """Run the stack over a sequence; returns what torch.nn does (+ AllStates if asked).

        ``lengths`` (one per sequence) marks padding: padded steps never change a sequence's final
        state, and their outputs are zero. A PackedSequence input is accepted as torch.nn does.
        """
        if return_all_states and self.backend != "scratch":
            raise ValueError("return_all_states needs backend='scratch' (the fused kernel keeps no per-step state)")
        packed = isinstance(input, PackedSequence)
        if packed:
            sorted_idx, unsorted_idx = input.sorted_indices, input.unsorted_indices
            input, lengths = pad_packed_sequence(input, batch_first=self.batch_first)
        unbatched = input.dim() == 2
        if unbatched:
            input = input.unsqueeze(1 if not self.batch_first else 0)
            hx = self._map_state(hx, lambda t: t.unsqueeze(1))
        x = input.transpose(0, 1) if self.batch_first else input  # [T, B, I] from here on
        hx = self._default_state(x, hx)
        if lengths is not None:
            lengths = torch.as_tensor(lengths, device="cpu", dtype=torch.long)
            if lengths.numel() != x.size(1) or lengths.min() < 1 or lengths.max() > x.size(0):
                raise ValueError(f"lengths must hold one value in [1, {x.size(0)}] per sequence, got {lengths.tolist()}")
        if self.backend == "fused":
            out, state, all_states = *self._forward_fused(x, hx, lengths), None
        else:
            out, state, all_states = self._forward_scratch(x, hx, lengths, return_all_states)
        out = out.transpose(0, 1) if self.batch_first else out
        if unbatched:
            out = out.squeeze(1 if not self.batch_first else 0)
            state = self._map_state(state, lambda t: t.squeeze(1))
        if packed:
            out = pack_padded_sequence(out, lengths, batch_first=self.batch_first, enforce_sorted=False)
            out = PackedSequence(out.data, out.batch_sizes, sorted_idx, unsorted_idx)
        return (out, state, all_states) if return_all_states else (out, state)

    # -- state helpers -----------------------------------------------------------------------------

    def _map_state(self, state, fn):
        if state is None:
            return None
        return tuple(fn(s) for s in state) if self.has_cell_state else fn(state)

    def _default_state(self, x: Tensor, hx):
        shape = (self.num_layers, x.size(1), self.hidden_size)
        if hx is None:
            zeros = x.new_zeros(shape)
            return (zeros, zeros.clone()) if self.has_cell_state else zeros
        for s in (hx if self.has_cell_state else (hx,)):
            if tuple(s.shape) != shape:
                raise ValueError(f"initial state must have shape {shape}, got {tuple(s.shape)}")
        return hx

    # -- scratch backend: our cells, step by step --------------------------------------------------

    def _forward_scratch(self, x: Tensor, hx, lengths: Tensor | None, record: bool):
        steps, batch = x.size(0), x.size(1)
        h0 = hx[0] if self.has_cell_state else hx
        c0 = hx[1] if self.has_cell_state else None
        # mask[t, b] is True while step t is real data for sequence b
        mask = None
        if lengths is not None:
            mask = (torch.arange(steps).unsqueeze(1) < lengths.unsqueeze(0)).to(x.device).unsqueeze(-1)
        layer_input, h_last, c_last = x, [], []
        rec_h, rec_c, rec_g = [], [], {}
        for layer in range(self.num_layers):
            w_ih, w_hh, b_ih, b_hh = self.layer_weights(layer)
            # all steps' input projections in one GEMM; unbind (not gi_all[t]) so that backward
            # stacks the T gradients once instead of filling a full-size zero tensor per step
            fold = self.fold_hidden_bias and b_hh is not None
            gi_steps = nn.functional.linear(layer_input, w_ih, b_ih + b_hh if fold else b_ih).unbind(0)
            b_hh = None if fold else b_hh
            h, c = h0[layer], (c0[layer] if c0 is not None else None)
            outputs, hs, cs, gates_seq = [], [], [], []
            for t in range(steps):
                h_new, c_new, gates = self._step(gi_steps[t], h, c, w_hh, b_hh)
                if mask is not None:
                    m = mask[t]
                    h_new = torch.where(m, h_new, h)
                    c_new = torch.where(m, c_new, c) if c_new is not None else None
                h, c = h_new, c_new
                outputs.append(h if mask is None else h * mask[t])
                if record:
                    hs.append(h)
                    cs.append(c)
                    gates_seq.append(gates)
            layer_out = torch.stack(outputs)
            h_last.append(h)
            c_last.append(c)
            if record:
                rec_h.append(torch.stack(hs))
                if c is not None:
                    rec_c.append(torch.stack(cs))
                for name in gates_seq[0]:
                    rec_g.setdefault(name, []).append(torch.stack([g[name] for g in gates_seq]))
            if self.dropout > 0 and self.training and layer < self.num_layers - 1:
                layer_out = nn.functional.dropout(layer_out, self.dropout, training=True)
            layer_input = layer_out
        h_n = torch.stack(h_last)
        state = (h_n, torch.stack(c_last)) if self.has_cell_state else h_n
        all_states = None
        if record:
            all_states = AllStates(torch.stack(rec_h), torch.stack(rec_c) if rec_c else None,
                                   {k: torch.stack(v) for k, v in rec_g.items()})
        return layer_input, state, all_states

    def _step(self, gi, h, c, w_hh, b_hh):
        raise NotImplementedError

    # -- fused backend: torch's kernel on the same parameters --------------------------------------

    def _forward_fused(self, x: Tensor, hx, lengths: Tensor | None):
        weights = self.flat_weights()
        args = (weights, self.bias, self.num_layers, self.dropout, self.training, False)
        if lengths is None:
            result = self._vf(x, hx, *args, False)
            return result[0], self._state_from(result)
        packed = pack_padded_sequence(x, lengths, enforce_sorted=False)
        hx = self._map_state(hx, lambda t: t.index_select(1, packed.sorted_indices))
        result = self._vf(packed.data, packed.batch_sizes, hx, *args)
        out = PackedSequence(result[0], packed.batch_sizes, packed.sorted_indices, packed.unsorted_indices)
        out, _ = pad_packed_sequence(out, total_length=x.size(0))
        state = self._map_state(self._state_from(result), lambda t: t.index_select(1, packed.unsorted_indices))
        return out, state

    def _vf(self, *args):
        raise NotImplementedError

    def _state_from(self, result):
        return (result[1], result[2]) if self.has_cell_state else result[1]


class RNN(_RecurrentBase):
    """Multi-layer Elman RNN; ``nonlinearity`` 'tanh' (default) or 'relu'. Returns (output, h_n)."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, nonlinearity: str = "tanh",
                 bias: bool = True, batch_first: bool = False, dropout: float = 0.0,
                 bidirectional: bool = False, backend: str = "scratch", device=None, dtype=None) -> None:
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"Unknown nonlinearity {nonlinearity!r}: use 'tanh' or 'relu'")
        self.nonlinearity = nonlinearity
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional,
                         backend, device, dtype)

    def _step(self, gi, h, c, w_hh, b_hh):
        return rnn_step(gi, h, w_hh, b_hh, self.nonlinearity), None, {}

    def _vf(self, *args):
        kernel = torch._VF.rnn_tanh if self.nonlinearity == "tanh" else torch._VF.rnn_relu
        return kernel(*args)


class LSTM(_RecurrentBase):
    """Multi-layer LSTM. Returns (output, (h_n, c_n))."""

    gate_count = 4
    has_cell_state = True

    def _step(self, gi, h, c, w_hh, b_hh):
        return lstm_step(gi, h, c, w_hh, b_hh)

    def _vf(self, *args):
        # torch's kernel takes the state as a tuple in the position after the input (and batch sizes)
        return torch._VF.lstm(*args)


class GRU(_RecurrentBase):
    """Multi-layer GRU. Returns (output, h_n)."""

    gate_count = 3
    fold_hidden_bias = False

    def _step(self, gi, h, c, w_hh, b_hh):
        h_new, gates = gru_step(gi, h, w_hh, b_hh)
        return h_new, None, gates

    def _vf(self, *args):
        return torch._VF.gru(*args)


CELLS = {"rnn": RNN, "lstm": LSTM, "gru": GRU}


@dataclass
class CellConfig:
    """Options of the `cell` config group (configs/cell/*.yaml)."""

    name: str = option("lstm", "the recurrent cell", choices=tuple(CELLS))
    num_layers: int = option(1, "stacked recurrent layers", ge=1)
    backend: str = option("fused", "fused: torch's kernel | scratch: our step-by-step cells (records states)",
                          choices=BACKENDS)


CELL_CLASSES = {"scratch": {"rnn": RNNCell, "lstm": LSTMCell, "gru": GRUCell},
                "fused": {"rnn": nn.RNNCell, "lstm": nn.LSTMCell, "gru": nn.GRUCell}}


def build_cell(cell: str, input_size: int, hidden_size: int, backend: str = "fused") -> nn.Module:
    """One cell by name, for models that compute each step's input from the last state (attention):
    ``scratch`` = our cells above, ``fused`` = torch.nn's (same parameter names and results)."""
    if cell not in CELLS or backend not in BACKENDS:
        raise ValueError(f"Unknown cell {cell!r} or backend {backend!r}: choose from {sorted(CELLS)}, {BACKENDS}")
    return CELL_CLASSES[backend][cell](input_size, hidden_size)


def build_rnn(cell: str, input_size: int, hidden_size: int, **kwargs) -> _RecurrentBase:
    """Make a multi-layer recurrent module by name ('rnn', 'lstm' or 'gru')."""
    if cell not in CELLS:
        raise ValueError(f"Unknown cell {cell!r}: choose one of {sorted(CELLS)}")
    return CELLS[cell](input_size, hidden_size, **kwargs)
