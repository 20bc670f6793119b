import json

import numpy as np
import pytest
import torch

from captioning.nn.cells import GRU, LSTM
from captioning.lm.model import CharCellConfig, CharModelConfig, CharRNN
from captioning.lm.visualize import visualize_lm
from captioning.lm.vocab import CharVocab
from captioning.nn.viz import (cells_html, gate_saturation, heatmap_png, record_decoder, record_text, render_decoder,
                            saturation_scatter_png, text_activation_png)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
TEXT = 'def f(x):\n    return "a(b)" + x  # done\n' * 3


def small_model(vocab: CharVocab, cell: str = "lstm") -> CharRNN:
    torch.manual_seed(0)
    return CharRNN(len(vocab), CharCellConfig(cell, hidden_size=8, num_layers=2), CharModelConfig(embedding_dim=4),
                   backend="fused").eval()


def test_recording_matches_the_fused_run():
    vocab = CharVocab.build(TEXT)
    model = small_model(vocab)
    rec = record_text(model, vocab, TEXT, chunk=17)  # chunked: the state must be carried
    out, (h_n, c_n) = model.rnn(model.inputs(vocab.encode(TEXT)).unsqueeze(1))
    assert rec.h.shape == (2, len(TEXT), 8) and rec.c.shape == (2, len(TEXT), 8)
    assert np.allclose(rec.h[-1], out[:, 0].detach().numpy(), atol=1e-5)  # top layer = the fused output
    assert np.allclose(rec.c[:, -1], c_n[:, 0].detach().numpy(), atol=1e-5)
    assert set(rec.gates) == {"input", "forget", "output"} and model.rnn.backend == "fused"
    acts, labels = rec.cells()
    assert acts.shape == (len(TEXT), 32) and labels[0] == "h0.0" and labels[-1] == "c1.7"
    assert np.allclose(acts[:, labels.index("c1.3")], np.tanh(rec.c[1, :, 3]))


def test_gate_saturation_fractions():
    g = np.array([[[0.05, 0.5], [0.95, 0.5], [0.05, 0.99], [0.5, 0.5]]])  # [L=1, T=4, H=2]
    left, right = gate_saturation({"forget": g})["forget"]
    assert left.tolist() == [[0.5, 0.0]] and right.tolist() == [[0.25, 0.25]]


def test_renderings_write_files(tmp_path):
    values = np.linspace(-1, 1, len(TEXT))
    cells_html(list(TEXT), [("cell <3>", values)], tmp_path / "c.html", title="t")
    page = (tmp_path / "c.html").read_text()
    assert page.count("<span style=") == len(TEXT) + 2 and "cell &lt;3&gt;" in page and "rgb(0,0,255)" in page
    text_activation_png(TEXT, values, tmp_path / "t.png", width=30)
    heatmap_png(np.stack([values, -values]), ["a", "b"], list(TEXT), tmp_path / "h.png")
    saturation_scatter_png({"reset": (np.random.rand(2, 5), np.random.rand(2, 5))}, tmp_path / "s.png")
    for name in ("t.png", "h.png", "s.png"):
        assert (tmp_path / name).read_bytes()[:8] == PNG_MAGIC
    with pytest.raises(ValueError, match="no gates"):
        saturation_scatter_png({}, tmp_path / "x.png")


@pytest.mark.parametrize("cls", [LSTM, GRU])
def test_record_decoder_from_an_initial_state(cls):
    torch.manual_seed(0)
    rnn, embed = cls(6, 5, num_layers=1, backend="fused"), torch.nn.Embedding(10, 6)
    h0 = torch.randn(1, 1, 5)
    init = (h0, torch.randn(1, 1, 5)) if cls is LSTM else h0
    ids = [1, 4, 7, 2]
    rec = record_decoder(rnn, embed, ids, init)
    _, final = rnn(embed(torch.tensor(ids)).unsqueeze(1), init)
    h_n = final[0] if cls is LSTM else final
    assert rec.h.shape == (1, 4, 5)
    assert np.allclose(rec.h[0, -1], h_n[0, 0].detach().numpy(), atol=1e-5)
    zero_start = record_decoder(rnn, embed, ids)
    assert not np.allclose(zero_start.h[0, 0], rec.h[0, 0])  # the initial state matters


def test_render_decoder_words(tmp_path):
    torch.manual_seed(0)
    rnn, embed = LSTM(6, 5, backend="fused"), torch.nn.Embedding(10, 6)
    rec = record_decoder(rnn, embed, [1, 4, 7, 2])
    words = ["<start>", "a", "red", "circle"]
    shown = render_decoder(words, rec, tmp_path, top=3)
    acts, labels = rec.cells()
    assert shown == [labels[j] for j in np.argsort(-acts.std(axis=0))[:3]]
    assert (tmp_path / "decoder.png").read_bytes()[:8] == PNG_MAGIC
    assert "circle" in (tmp_path / "decoder.html").read_text()
    assert render_decoder(words, rec, tmp_path, units=["c0.1"]) == ["c0.1"]
    with pytest.raises(ValueError, match="3 words for 4"):
        render_decoder(words[:3], rec, tmp_path)


def test_visualize_lm_writes_the_report(tmp_path):
    vocab = CharVocab.build(TEXT)
    model = small_model(vocab, "gru")
    best = visualize_lm(model, vocab, TEXT, tmp_path, language="python", top_k=2, cells=["h1.2"], png_chars=60)
    report = json.loads((tmp_path / "ranking.json").read_text())
    assert set(best) == set(report["best"]) >= {"in_quote", "in_comment", "bracket_depth", "indent_depth"}
    assert all(len(v) == 2 for v in report["top"].values())
    for name in ["cells.html", "heatmap.png", "saturation.png", "best_in_comment.png"]:
        assert (tmp_path / name).exists()
    assert "chosen cell h1.2" in (tmp_path / "cells.html").read_text()
    with pytest.raises(ValueError, match="unknown cells"):
        visualize_lm(model, vocab, TEXT, tmp_path, cells=["h9.9"])
