"""model=transformer: its attention is torch's, its key/value cache decodes exactly what teacher forcing
computes (pooled features and a 4x4 grid, through beam search's row reordering), it is causal, it learns,
and it goes through training (cross-entropy and self-critical), checkpoints, resume and export."""

import json

import pytest
import torch
from torch import nn

from captioning.config import config_problems
from captioning.models.base import build_model
from captioning.models.checkpoint import load_checkpoint, model_from_checkpoint
from captioning.models.export import load_export
from captioning.models.transformer import Transformer
from captioning.nn.transformer import MultiHeadAttention
from captioning.nn.decoding import beam_search, greedy, sample
from captioning.text.vocab import END, START
from captioning.training.loop import caption_loss
from tests.conftest import straight_and_resumed, tiny_cfg
from tests.test_show_tell import fit, tiny_problem

SMALL = {"d_model": 32, "n_layer": 2, "n_head": 4, "d_ff": 64}


def transformer(feature_dim: int, vocab_size: int, max_len: int = 8, **options) -> Transformer:
    """A ``transformer`` model with SMALL sizes and ``options`` (the rest at their declared defaults)."""
    return build_model({"name": "transformer", **SMALL, **options}, feature_dim, vocab_size, max_len)


def features(batch: int, regions: int | None, dim: int = 20, seed: int = 0) -> torch.Tensor:
    """[batch, dim] pooled features (regions None) or [batch, regions, dim]."""
    g = torch.Generator().manual_seed(seed)
    shape = (batch, dim) if regions is None else (batch, regions, dim)
    return torch.randn(shape, generator=g)


def stepped(model: Transformer, feats: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """Log-probabilities [B, T, V] of ``tokens`` read one step at a time through the cache."""
    state, out = model.init_state(feats), []
    for t in range(tokens.size(1)):
        logp, state = model.step(tokens[:, t], state)
        out.append(logp)
    return torch.stack(out, 1)


def test_parameter_names_and_order_are_those_saved_checkpoints_hold():
    """The names and order of a 1-layer model's parameters as checkpoints (weights and optimizer states, which
    follow the order) were written before its layers became the shared block: old checkpoints load and resume."""
    names = ["region_norm.weight", "region_norm.bias", "region_proj.weight", "region_proj.bias", "row_embed.weight",
             "col_embed.weight", "word_embed.weight", "pos_embed.weight"]
    for ln in ("ln_self", "ln_cross", "ln_mlp"):
        names += [f"layers.0.{ln}.weight", f"layers.0.{ln}.bias"]
    for attn in ("self_attn", "cross_attn"):
        names += [f"layers.0.{attn}.{w}.{p}" for w in ("w_q", "w_k", "w_v", "w_o") for p in ("weight", "bias")]
    names += ["layers.0.mlp.0.weight", "layers.0.mlp.0.bias", "layers.0.mlp.2.weight", "layers.0.mlp.2.bias",
              "ln_f.weight", "ln_f.bias", "out.weight", "out.bias"]
    assert list(transformer(6, 7, n_layer=1).state_dict()) == names


@pytest.mark.parametrize("causal,queries", [(False, 7), (True, 7), (False, 1)])  # 1: a decoding step's own path
def test_attention_is_torchs_multi_head_attention(causal, queries):
    torch.manual_seed(0)
    ours, ref = MultiHeadAttention(16, 4, dropout=0.0), nn.MultiheadAttention(16, 4, batch_first=True)
    with torch.no_grad():
        ref.in_proj_weight.copy_(torch.cat([ours.w_q.weight, ours.w_k.weight, ours.w_v.weight]))
        ref.in_proj_bias.copy_(torch.cat([ours.w_q.bias, ours.w_k.bias, ours.w_v.bias]))
        ref.out_proj.weight.copy_(ours.w_o.weight)
        ref.out_proj.bias.copy_(ours.w_o.bias)
    x = torch.randn(3, queries, 16, requires_grad=True)
    if causal:  # self-attention, word t sees words <= t
        mask = torch.ones(7, 7, dtype=torch.bool).triu(1)
        expected = ref(x, x, x, attn_mask=mask, need_weights=False)[0]
        torch.testing.assert_close(ours(x, causal=True), expected, atol=1e-6, rtol=1e-5)
    else:  # cross-attention to 9 regions
        memory = torch.randn(3, 9, 16)
        expected = ref(x, memory, memory, need_weights=False)[0]
        got = ours(x, memory)
        torch.testing.assert_close(got, expected, atol=1e-6, rtol=1e-5)
        grad, = torch.autograd.grad(got.square().sum(), x)
        torch.testing.assert_close(grad, torch.autograd.grad(expected.square().sum(), x)[0], atol=1e-5, rtol=1e-5)


def test_a_decoding_steps_attention_drops_weights_in_training_only():
    torch.manual_seed(0)
    attn, x, memory = MultiHeadAttention(16, 4, dropout=0.5), torch.randn(3, 1, 16), torch.randn(3, 9, 16)
    plain = MultiHeadAttention(16, 4, dropout=0.0)
    plain.load_state_dict(attn.state_dict())
    draws = [attn(x, memory) for _ in range(2)]
    assert not torch.allclose(draws[0], draws[1]) and not torch.allclose(draws[0], plain(x, memory))
    torch.testing.assert_close(attn.eval()(x, memory), plain(x, memory))


@pytest.mark.parametrize("regions", [None, 1, 16])
def test_cached_steps_equal_teacher_forcing(regions):
    torch.manual_seed(0)
    model = transformer(20, 30).eval()
    feats, tokens = features(3, regions), torch.randint(1, 30, (3, 9))  # <start> and max_len = 8 words
    expected = torch.log_softmax(model(feats, tokens), -1)
    with torch.no_grad():
        torch.testing.assert_close(stepped(model, feats, tokens), expected, atol=1e-5, rtol=0)


def test_a_pooled_feature_is_one_region():
    torch.manual_seed(0)
    model = transformer(20, 30).eval()
    feats, tokens = features(2, None), torch.randint(1, 30, (2, 5))
    assert torch.equal(model(feats, tokens), model(feats[:, None, :], tokens))


def test_reordered_rows_keep_their_own_cache():
    """select_state (the default: index_select on dim 0) repeats and reorders rows, as beam search
    does, in the middle of decoding: each row continues exactly as its full recompute."""
    torch.manual_seed(0)
    model = transformer(20, 30).eval()
    feats, tokens = features(3, 16), torch.randint(1, 30, (3, 7))
    index = torch.tensor([2, 0, 2, 1, 0])
    state = model.init_state(feats)
    with torch.no_grad():
        for t in range(4):
            _, state = model.step(tokens[:, t], state)
        state = model.select_state(state, index)
        assert state["position"].tolist() == [4] * 5
        rest = []
        for t in range(4, 7):
            logp, state = model.step(tokens[index, t], state)
            rest.append(logp)
        expected = torch.log_softmax(model(feats[index], tokens[index]), -1)[:, 4:]
    torch.testing.assert_close(torch.stack(rest, 1), expected, atol=1e-5, rtol=0)


def test_a_reorder_within_each_image_keeps_the_image_tensors_and_equals_copying_them():
    """Beam search's reorder keeps every row on its image: the memory and the cross-attention keys and values
    are kept (the same tensors), the word caches reordered, and the state equals the default copy of every
    tensor; a selection that moves rows across images (dropping finished rows) copies them all."""
    from captioning.models.base import CaptionModel

    torch.manual_seed(0)
    model = transformer(20, 30).eval()
    with torch.no_grad():
        state = model.select_state(model.init_state(features(3, 16)), torch.tensor([0, 0, 1, 1, 2, 2]))
        _, state = model.step(torch.randint(1, 30, (6,)), state)
        within = torch.tensor([1, 1, 2, 3, 5, 4])  # each pair of rows stays on its image
        kept, copied = model.select_state(state, within), CaptionModel.select_state(model, state, within)
    assert kept["memory"] is state["memory"] and kept["layers"][0]["cross_k"] is state["layers"][0]["cross_k"]
    flat = lambda s: [s["memory"], s["position"], s["image"], *(t for c in s["layers"] for t in c.values())]  # noqa: E731
    for a, b in zip(flat(kept), flat(copied), strict=True):
        assert torch.equal(a, b)
    across = model.select_state(state, torch.tensor([0, 2, 4]))  # one row per image: shapes change
    assert across["image"].tolist() == [0, 1, 2] and across["layers"][1]["cross_v"].size(0) == 3
    swapped = model.select_state(state, torch.tensor([2, 3, 0, 1, 4, 5]))  # rows of images 0 and 1 trade places
    assert swapped["memory"] is not state["memory"] and torch.equal(swapped["memory"], state["memory"][[2, 3, 0, 1, 4, 5]])


def test_a_later_word_does_not_change_earlier_logits():
    torch.manual_seed(0)
    model = transformer(20, 30).eval()
    feats, tokens = features(2, 4), torch.randint(1, 30, (2, 8))
    changed = tokens.clone()
    changed[:, 5] = (tokens[:, 5] + 1) % 30
    a, b = model(feats, tokens), model(feats, changed)
    assert torch.equal(a[:, :5], b[:, :5]) and not torch.allclose(a[:, 5:], b[:, 5:])


def test_regions_must_form_a_square_grid_within_max_grid():
    model = transformer(20, 30, max_grid=3)
    with pytest.raises(ValueError, match="square g x g grid"):
        model.init_state(features(2, 6))
    with pytest.raises(ValueError, match="max_grid=3"):
        model(features(2, 16), torch.ones(2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match=r"\[B, R, 20\]"):
        model(torch.randn(2, 4, 19), torch.ones(2, 3, dtype=torch.long))


def test_tied_embeddings_share_one_matrix():
    tied, untied = transformer(20, 30), transformer(20, 30, tie_embeddings=False)
    assert tied.out.weight is tied.word_embed.weight
    assert untied.out.weight is not untied.word_embed.weight
    assert sum(p.numel() for p in untied.parameters()) - sum(p.numel() for p in tied.parameters()) == 30 * 32


def test_bad_options_are_refused(tmp_path):
    with pytest.raises(ValueError, match="d_model=30 must be a multiple of model.n_head=4"):
        transformer(20, 30, d_model=30)
    cfg = tiny_cfg(tmp_path, "model=transformer", "model.n_head=0",
                   "model.dropout=1.0", "+model.hidden_size=48")
    found = config_problems(cfg)
    assert "model.n_head must be >= 1, got 0" in found and "model.dropout must be >= 0 and < 1, got 1.0" in found
    assert any(p.startswith("model.hidden_size: unknown option") for p in found)


@pytest.fixture(scope="module")
def trained():
    """A small transformer that has learned 8 random captions of 8 images given as 2x2 region grids."""
    torch.manual_seed(0)
    vocab, pooled, tokens, caps = tiny_problem(feature_dim=12)
    feats = pooled[:, None, :] + 0.1 * torch.randn(8, 4, 12)  # four regions per image
    model = transformer(12, len(vocab), max_len=6, dropout=0.0)
    initial = caption_loss(model(feats, tokens[:, :-1]), tokens[:, 1:]).item()
    final = fit(model, feats, tokens, steps=150, lr=3e-3)
    return model.eval(), vocab, feats, caps, initial, final


def test_overfits_eight_images(trained):
    model, vocab, feats, caps, initial, final = trained
    assert initial > 2.0 and final < 0.05, (initial, final)
    assert [vocab.decode(t).split() for t in greedy(model, feats, max_len=6).tokens] == caps


def test_beam_search_through_the_cache(trained):
    model, _, feats, _, _, _ = trained
    batched = beam_search(model, feats, beam_size=3, max_len=6, keep_beams=3)
    single = [beam_search(model, feats[i : i + 1], beam_size=3, max_len=6, keep_beams=3) for i in range(8)]
    assert batched.tokens == [s.tokens[0] for s in single]
    for beams, one in zip(batched.beams, single):  # the same beams; scores up to float32 rounding
        assert [w for w, _ in beams] == [w for w, _ in one.beams[0]]
        assert [s for _, s in beams] == pytest.approx([s for _, s in one.beams[0]], abs=1e-4)
    assert beam_search(model, feats, beam_size=1, max_len=6).tokens == greedy(model, feats, max_len=6).tokens
    # a beam's score is the model's log-probability of its caption and <end>, as teacher forcing computes it
    best = batched.tokens[0]
    logp = torch.log_softmax(model(feats[:1], torch.tensor([[START, *best]])), -1)[0]
    total = logp[torch.arange(len(best)), torch.tensor(best)].sum() + logp[-1, END]
    assert abs(total.item() - batched.scores[0]) < 1e-4
    drawn = sample(model, feats, max_len=6, temperature=1.0, generator=torch.Generator().manual_seed(0))
    assert all(len(t) <= 6 for t in drawn.tokens)
    # keeping the image tensors through the reorders changes nothing: the default select_state's beams
    copying = beam_search(CopyEverything(model), feats, beam_size=3, max_len=6, keep_beams=3)
    assert copying.tokens == batched.tokens and copying.beams == batched.beams


class CopyEverything(nn.Module):
    """A transformer whose select_state copies every tensor (the CaptionModel default)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def init_state(self, features):
        return self.model.init_state(features)

    def step(self, tokens, state):
        return self.model.step(tokens, state)

    def select_state(self, state, index):
        from captioning.models.base import CaptionModel

        return CaptionModel.select_state(self.model, state, index)


def test_stepping_past_max_len_fails_clearly():
    model = transformer(20, 30, max_len=2).eval()
    state = model.init_state(features(1, None))
    for _ in range(3):  # <start> and two words: positions 0, 1, 2
        _, state = model.step(torch.ones(1, dtype=torch.long), state)
    with pytest.raises(ValueError, match="max_len = 2"):
        model.step(torch.ones(1, dtype=torch.long), state)


@pytest.mark.parametrize("method", ["greedy", "beam", "sample"])
def test_decoding_past_its_learned_positions_stops_there_with_a_warning(method, caplog, monkeypatch):
    from captioning.nn import decoding
    from captioning.nn.decoding import decode

    monkeypatch.setattr(decoding, "WARNED", set())  # logged once per process: each case from a clean slate

    model = transformer(20, 30, max_len=3).eval()
    model.out.bias.data[END] = -1e9  # never ends on its own: every caption runs to the limit
    with caplog.at_level("WARNING", logger="captioning.nn.decoding"):
        out = decode(model, features(2, None), method=method, max_len=10, generator=torch.Generator().manual_seed(0))
    assert [len(t) for t in out.tokens] == [3, 3]
    assert "captions stop at 3 words, not max_len=10" in caplog.text
    assert [len(t) for t in decode(model, features(2, None), method=method, max_len=2).tokens] == [2, 2]


STAGE = "schedule.stages.self_critical"
TINY_TF = ["model=transformer", "model.d_model=32", "model.n_head=2", "model.d_ff=64", "model.n_layer=2",
           "encoder.pool=regions", "encoder.grid_size=2", f"{STAGE}.samples=3", f"{STAGE}.lr=0.0005", f"{STAGE}.baseline=greedy"]


def test_trains_self_critically_checkpoints_resumes_and_exports(tiny_root):
    """Two cross-entropy epochs (the smoke schedule) then self-critical epochs, done straight and stopped
    after the first self-critical epoch and resumed: the same weights."""
    a, b = straight_and_resumed(tiny_root, "transformer", *TINY_TF, stage="self_critical")
    assert b["model"]["name"] == "transformer" and b["stage_name"] == "self_critical" and b["epoch"] == 2
    assert all(torch.equal(a["weights"][k], b["weights"][k]) for k in a["weights"])
    run_dir = tiny_root / "transformer_straight"
    epochs = json.loads((run_dir / "history.json").read_text())["epochs"]
    assert [e["stage"] for e in epochs] == ["cross_entropy"] * 2 + ["self_critical"] * 2
    assert epochs[1]["train_loss"] < epochs[0]["train_loss"] and "train_reward" in epochs[2]

    model, vocab = model_from_checkpoint(a)
    assert isinstance(model, Transformer) and model.config.d_model == 32
    assert model.out.weight is model.word_embed.weight  # still tied after loading
    exported, _ = model_from_checkpoint(load_export(run_dir / "export"))
    best, _ = model_from_checkpoint(load_checkpoint(run_dir))
    feats = torch.randn(4, model.feature_dim)
    assert beam_search(exported, feats, 3, a["max_len"]).tokens == beam_search(best, feats, 3, a["max_len"]).tokens


def test_attention_maps_are_the_last_layers_cross_attention():
    """``attention`` returns the weights that, applied to the values, give the last layer's cross-attention."""
    from captioning.models.base import build_model

    torch.manual_seed(0)
    model = build_model({"name": "transformer", "d_model": 32, "n_head": 2, "n_layer": 2, "d_ff": 64}, 20, 30, 10).eval()
    feats, tokens = torch.randn(2, 9, 20), torch.randint(1, 30, (2, 5))
    weights = model.attention(feats, tokens)
    assert weights.shape == (2, 5, 9)
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 5))
    memory, last = model.encode(feats), model.layers[-1]
    x = model.word_embed(tokens) + model.pos_embed(torch.arange(5))
    x = model.layers[0](x, memory)
    x = x + last.self_attn(last.ln_self(x), causal=True)
    query = last.ln_cross(x)
    keys, values = last.cross_attn.keys_values(memory)
    heads = last.cross_attn.weights(query, memory) @ values  # [B, heads, T, d_k]
    expected = last.cross_attn.attend(query, keys, values)
    torch.testing.assert_close(last.cross_attn.w_o(heads.transpose(1, 2).reshape(query.shape)), expected)
    torch.testing.assert_close(weights, last.cross_attn.weights(query, memory).mean(1))


def test_hypercolumn_regions_train_evaluate_and_caption_from_the_export(tiny_root):
    """A Transformer on hypercolumn regions (encoder.hypercolumn): the run trains on the cached [N, R, 1280 + 40]
    features, and the checkpoint and its export rebuild the same encoder (same cache key) and caption alike."""
    from captioning.captioner import Captioner
    from captioning.pipeline import run, run_options

    run_dir = tiny_root / "transformer_hypercolumn"
    run(run_options(tiny_cfg(tiny_root, *TINY_TF, "encoder.hypercolumn=[blocks.2]", f"{STAGE}.epochs=0")), run_dir)
    ckpt = load_checkpoint(run_dir)
    assert list(ckpt["encoder_cfg"]["hypercolumn"]) == ["blocks.2"] and "hypercolumn=blocks.2" in ckpt["encoder_key"]
    images = sorted((tiny_root / "data" / "shapes_tiny" / "images" / "test").glob("*.png"))[:3]
    from_checkpoint, from_export = Captioner.from_checkpoint(run_dir), Captioner.from_pretrained(run_dir / "export")
    assert from_checkpoint.encoder.feature_shape == (4, 1280 + 40)
    assert [c.text for c in from_checkpoint.caption(images)] == [c.text for c in from_export.caption(images)]
