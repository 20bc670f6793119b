import pytest
import torch

from captioning.lm.corpus import Corpus, StreamBatches, list_files, load_corpus, read_files, resolve_source


def test_validation_is_the_last_tenth():
    text = "".join(chr(97 + i % 26) for i in range(1000))
    corpus = Corpus.from_text(text, val_fraction=0.1)
    assert len(corpus.train) == 900 and len(corpus.val) == 100
    assert corpus.vocab.decode(corpus.val) == text[900:]


def test_file_folder_and_glob(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "a.py").write_text("print(1)\n")
    (tmp_path / "sub" / "b.py").write_text("x = 2\n")
    (tmp_path / "c.txt").write_text("not python")
    folder = list_files(str(tmp_path), "**/*.py")
    assert [f.name for f in folder] == ["a.py", "b.py"]
    assert [f.name for f in list_files(str(tmp_path / "**" / "*.py"))] == ["a.py", "b.py"]
    assert [f.name for f in list_files(str(tmp_path / "c.txt"))] == ["c.txt"]
    assert [f.name for f in list_files(str(tmp_path), "**/*.py", exclude=["*/sub/*"])] == ["a.py"]
    assert read_files(folder) == "print(1)\n\nx = 2\n"
    assert read_files(folder, max_chars=5) == "print"
    corpus = load_corpus([str(tmp_path / "missing.txt"), str(tmp_path)], pattern="**/*.py", val_fraction=0.2)
    assert corpus.vocab.decode(corpus.train) + corpus.vocab.decode(corpus.val) == "print(1)\n\nx = 2\n"


def test_missing_corpus_names_paths_and_hint(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere.txt.*prepare-data"):
        resolve_source([str(tmp_path / "nowhere.txt")], hint="run captioning-prepare-data")
    with pytest.raises(FileNotFoundError, match="no files"):
        list_files(str(tmp_path / "*.tex"))


def test_streams_continue_from_chunk_to_chunk():
    data = torch.arange(103)
    batches = StreamBatches(data, batch_size=4, seq_len=5)
    assert len(batches) == 5  # streams of 25 characters, 5 chunks of 5
    x0, y0 = batches[0]
    x1, _ = batches[1]
    assert x0.shape == (5, 4)
    assert torch.equal(y0, x0 + 1)  # targets are the next character
    assert torch.equal(x1[0], x0[-1] + 1)  # row b of chunk 1 continues row b of chunk 0
    assert x0[0].tolist() == [0, 25, 50, 75]  # each column is one contiguous stream
    with pytest.raises(ValueError, match="too short"):
        StreamBatches(torch.arange(10), batch_size=4, seq_len=5)
