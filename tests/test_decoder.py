"""The caption decoder learns (overfits 8 images with each cell), masks padding, and round-trips checkpoints."""

import pytest
import torch

from captioning.decoder import CaptionDecoder, caption_loss
from captioning.decoding import greedy
from captioning.model import CheckpointError, decoder_from_checkpoint, load_checkpoint, save_checkpoint
from captioning.vocab import END, PAD, START, Vocabulary


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
    decoder = CaptionDecoder.build(feature_dim=12, vocab_size=len(vocab), cell=cell, embed_dim=16,
                                   hidden_size=32, dropout=0.0)
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
    decoder = CaptionDecoder.build(feature_dim=4, vocab_size=9, cell="lstm", hidden_size=6, num_layers=2)
    feats = torch.randn(3, 4)
    h0, c0 = decoder.init_state(feats)
    assert h0.shape == c0.shape == (2, 3, 6)
    assert not torch.allclose(h0[:, 0], h0[:, 1])  # different images, different states
    h0_gru = CaptionDecoder.build(feature_dim=4, vocab_size=9, cell="gru", hidden_size=6).init_state(feats)
    assert h0_gru.shape == (1, 3, 6)


def test_checkpoint_round_trip_gives_identical_captions(tmp_path):
    torch.manual_seed(1)
    vocab, feats, tokens, _ = tiny_problem()
    decoder = CaptionDecoder.build(feature_dim=12, vocab_size=len(vocab), cell="gru", embed_dim=8, hidden_size=16)
    fit(decoder, feats, tokens, steps=30)
    decoder.eval()
    save_checkpoint(tmp_path / "m.pt", decoder, vocab, {"name": "x"}, "key")
    loaded, vocab2 = decoder_from_checkpoint(load_checkpoint(tmp_path / "m.pt"))
    assert vocab2 == vocab
    assert greedy(loaded, feats).tokens == greedy(decoder, feats).tokens
    for name, p in decoder.state_dict().items():
        assert torch.equal(p, loaded.state_dict()[name])


def test_bad_checkpoints_fail_clearly(tmp_path):
    vocab, *_ = tiny_problem()
    decoder = CaptionDecoder.build(feature_dim=12, vocab_size=len(vocab), cell="rnn", embed_dim=8, hidden_size=16)
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
        decoder_from_checkpoint(load_checkpoint(tmp_path / "mixed.pt"))
    assert START != END
