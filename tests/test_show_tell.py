"""show_tell learns (overfits 8 images with each cell), masks padding, and round-trips checkpoints."""

import pytest
import torch

from captioning.models.checkpoint import CheckpointError, load_checkpoint, model_from_checkpoint, save_checkpoint
from captioning.nn.decoding import greedy
from captioning.text.vocab import END, PAD, START, Vocabulary
from captioning.training.loop import caption_loss
from tests.conftest import show_tell


def tiny_problem(n=8, feature_dim=12, seed=0):
    """n random 'images' (feature vectors), each with its own caption of 3-6 words."""
    g = torch.Generator().manual_seed(seed)
    words = [f"w{i}" for i in range(10)]
    vocab = Vocabulary(words)
    feats = torch.randn(n, feature_dim, generator=g)
    caps = []
    for _ in range(n):
        length = int(torch.randint(3, 7, (1,), generator=g))
        caps.append([words[int(i)] for i in torch.randint(0, 10, (length,), generator=g)])
    tokens = torch.zeros(n, 8, dtype=torch.long)
    for i, c in enumerate(caps):
        ids = vocab.encode(c, 6)
        tokens[i, : len(ids)] = torch.tensor(ids)
    return vocab, feats, tokens, caps


def fit(decoder, feats, tokens, steps=150, lr=1e-2):
    opt = torch.optim.Adam(decoder.parameters(), lr=lr)
    for _ in range(steps):
        loss = caption_loss(decoder(feats, tokens[:, :-1]), tokens[:, 1:])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return loss.item()


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_overfits_eight_images(cell):
    torch.manual_seed(0)
    vocab, feats, tokens, caps = tiny_problem()
    decoder = show_tell(12, len(vocab), cell=cell, embed_dim=16, hidden_size=32, dropout=0.0)
    initial = caption_loss(decoder(feats, tokens[:, :-1]), tokens[:, 1:]).item()
    final = fit(decoder, feats, tokens)
    assert initial > 2.0 and final < 0.05, (initial, final)
    decoder.eval()
    # the image alone (through h0) tells the decoder which caption to write
    assert [vocab.decode(t).split() for t in greedy(decoder, feats, max_len=6).tokens] == caps


def test_loss_ignores_padding():
    logits = torch.randn(2, 3, 5)
    targets = torch.tensor([[4, 2, PAD], [4, PAD, PAD]])
    manual = torch.nn.functional.cross_entropy(logits[targets != PAD], targets[targets != PAD])
    torch.testing.assert_close(caption_loss(logits, targets), manual)


def test_initial_state_comes_from_the_image():
    decoder = show_tell(4, 9, cell="lstm", hidden_size=6, num_layers=2)
    feats = torch.randn(3, 4)
    h0, c0 = decoder.init_state(feats)
    assert h0.shape == c0.shape == (2, 3, 6)
    assert not torch.allclose(h0[:, 0], h0[:, 1])  # different images, different states
    h0_gru = show_tell(4, 9, cell="gru", hidden_size=6).init_state(feats)
    assert h0_gru.shape == (1, 3, 6)


def test_two_layer_projection_to_h0():
    torch.manual_seed(0)
    decoder = show_tell(5, 9, cell="lstm", hidden_size=6, num_layers=2, init_hidden=7, dropout=0.3).eval()
    feats = torch.randn(3, 5)
    lin1, lin2 = decoder.init_mlp[0], decoder.init_state_proj
    f = torch.nn.functional.layer_norm(feats, (5,), decoder.feature_norm.weight, decoder.feature_norm.bias)
    expected = torch.tanh(torch.relu(f @ lin1.weight.T + lin1.bias) @ lin2.weight.T + lin2.bias)  # [B, 2*2*6]
    expected = expected.view(3, 2, 2, 6).permute(1, 2, 0, 3)  # (h, c) x layers x B x H
    h0, c0 = decoder.init_state(feats)
    torch.testing.assert_close(h0, expected[0])
    torch.testing.assert_close(c0, expected[1])
    with pytest.raises(ValueError, match="init_hidden"):
        show_tell(5, 9, init_hidden=-1.5)


def test_two_layer_projection_learns_and_round_trips(tmp_path):
    torch.manual_seed(0)
    vocab, feats, tokens, caps = tiny_problem()
    decoder = show_tell(12, len(vocab), cell="lstm", embed_dim=16, hidden_size=32, init_hidden=24, dropout=0.0)
    assert fit(decoder, feats, tokens) < 0.05
    decoder.eval()
    assert [vocab.decode(t).split() for t in greedy(decoder, feats, max_len=6).tokens] == caps
    save_checkpoint(tmp_path / "m.pt", decoder, vocab, {"name": "x"}, "key")
    loaded, _ = model_from_checkpoint(load_checkpoint(tmp_path / "m.pt"))
    assert loaded.hyperparameters()["init_hidden"] == 24
    assert greedy(loaded, feats).tokens == greedy(decoder, feats).tokens


def test_feature_dropout_is_separate_from_dropout():
    feats = torch.randn(4, 5)
    only_words = show_tell(5, 9, hidden_size=6, dropout=0.5, feature_dropout=0.0)
    torch.testing.assert_close(only_words.train().init_state(feats)[0], only_words.eval().init_state(feats)[0])
    only_feature = show_tell(5, 9, hidden_size=6, dropout=0.0, feature_dropout=0.5)
    assert not torch.allclose(only_feature.train().init_state(feats)[0], only_feature.eval().init_state(feats)[0])
    default = show_tell(5, 9, hidden_size=6, dropout=0.3)
    assert default.feature_drop.p == 0.3  # unset: the decoder's dropout


def test_lstm_init_sets_the_gate_biases_of_every_layer():
    decoder = show_tell(4, 9, cell="lstm", hidden_size=3, num_layers=2, lstm_init="forget_bias", forget_bias=2.0)
    for layer in range(2):
        _, _, b_ih, b_hh = decoder.rnn.layer_weights(layer)
        # gate order i, f, g, o as in torch.nn.LSTM: the forget gate's total bias is 2, the others untouched
        assert torch.equal(b_ih[3:6], torch.full((3,), 2.0)) and torch.equal(b_hh[3:6], torch.zeros(3))
        assert not torch.equal(b_ih[:3] + b_hh[:3], torch.zeros(3))
    chrono = show_tell(4, 9, cell="lstm", hidden_size=3, lstm_init="chrono", max_len=16)
    _, _, b_ih, b_hh = chrono.rnn.layer_weights(0)
    b_f = b_ih[3:6] + b_hh[3:6]
    assert bool(((b_f >= 0) & (b_f <= torch.log(torch.tensor(16.0)))).all())
    torch.testing.assert_close(b_ih[:3] + b_hh[:3], -b_f)  # input gate = -forget gate
    gru = show_tell(4, 9, cell="gru", hidden_size=3, lstm_init="forget_bias")  # no forget gate: ignored
    torch.manual_seed(0)
    plain_gru = show_tell(4, 9, cell="gru", hidden_size=3, lstm_init="torch")
    assert gru.rnn.layer_weights(0)[2].shape == plain_gru.rnn.layer_weights(0)[2].shape


def test_checkpoint_round_trip_gives_identical_captions(tmp_path):
    torch.manual_seed(1)
    vocab, feats, tokens, _ = tiny_problem()
    decoder = show_tell(12, len(vocab), cell="gru", embed_dim=8, hidden_size=16)
    fit(decoder, feats, tokens, steps=30)
    decoder.eval()
    save_checkpoint(tmp_path / "m.pt", decoder, vocab, {"name": "x"}, "key")
    loaded, vocab2 = model_from_checkpoint(load_checkpoint(tmp_path / "m.pt"))
    assert vocab2 == vocab
    assert greedy(loaded, feats).tokens == greedy(decoder, feats).tokens
    for name, p in decoder.state_dict().items():
        assert torch.equal(p, loaded.state_dict()[name])


def test_bad_checkpoints_fail_clearly(tmp_path):
    vocab, *_ = tiny_problem()
    decoder = show_tell(12, len(vocab), cell="rnn", embed_dim=8, hidden_size=16)
    save_checkpoint(tmp_path / "good.pt", decoder, vocab, {}, "")
    data = (tmp_path / "good.pt").read_bytes()
    (tmp_path / "truncated.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="corrupted or truncated"):
        load_checkpoint(tmp_path / "truncated.pt")
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.pt")
    torch.save({"format_version": 99, "decoder_hparams": {}, "decoder": {}, "vocab": {}, "encoder_cfg": {}},
               tmp_path / "newer.pt")
    with pytest.raises(CheckpointError, match="newer"):
        load_checkpoint(tmp_path / "newer.pt")
    other = Vocabulary([f"x{i}" for i in range(30)])
    save_checkpoint(tmp_path / "mixed.pt", decoder, other, {}, "")
    with pytest.raises(CheckpointError, match="vocabulary"):
        model_from_checkpoint(load_checkpoint(tmp_path / "mixed.pt"))
    assert START != END


def test_config_model_options_reach_the_model(tiny_root):
    from captioning.models.base import build_model
    from tests.conftest import tiny_cfg

    cfg = tiny_cfg(tiny_root, "model.init_hidden=8", "model.feature_dropout=0.4")
    lstm = build_model(cfg.model, 12, 2, cfg.data.max_caption_len)
    hp = lstm.hyperparameters()
    assert hp["name"] == "show_tell" and hp["cell"]["name"] == "lstm" and hp["lstm_init"] == "forget_bias"
    assert hp["init_hidden"] == 8 and lstm.init_mlp[0].out_features == 8 and lstm.feature_drop.p == 0.4
    _, _, b_ih, b_hh = lstm.rnn.layer_weights(0)
    H = lstm.hidden_size
    assert torch.equal(b_ih[H : 2 * H] + b_hh[H : 2 * H], torch.ones(H))  # the default: forget-gate bias 1
    gru = build_model(tiny_cfg(tiny_root, "cell=gru", "cell.num_layers=2").model, 12, 2, 16)
    assert gru.cell == "gru" and gru.num_layers == 2  # the cell group reaches the model


def test_a_format_1_checkpoint_loads_as_show_tell(tmp_path):
    torch.manual_seed(0)
    vocab, feats, tokens, _ = tiny_problem()
    model = show_tell(12, len(vocab), cell="gru", embed_dim=8, hidden_size=16, dropout=0.0, lstm_init="torch")
    old = {"format_version": 1, "decoder": model.state_dict(), "vocab": vocab.state_dict(), "encoder_cfg": {},
           "encoder_key": "", "max_len": 16,
           "decoder_hparams": {"feature_dim": 12, "vocab_size": len(vocab), "cell": "gru", "embed_dim": 8,
                               "hidden_size": 16, "num_layers": 1, "dropout": 0.0, "init_activation": "tanh",
                               "feature_norm": True, "backend": "fused"}}
    torch.save(old, tmp_path / "v1.pt")
    loaded, _ = model_from_checkpoint(load_checkpoint(tmp_path / "v1.pt"))
    assert loaded.hyperparameters() == model.hyperparameters()
    assert greedy(loaded, feats).tokens == greedy(model.eval(), feats).tokens


def test_a_checkpoint_that_would_run_code_is_refused(tmp_path):
    class Payload:
        def __reduce__(self):
            return (exec, ("import pathlib; pathlib.Path(%r).write_text('ran')" % str(tmp_path / "pwned"),))

    torch.save({"format_version": 2, "model": Payload()}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match="could run code"):
        load_checkpoint(tmp_path / "evil.pt")
    assert not (tmp_path / "pwned").exists()
