"""Baselines: the most frequent caption and Devlin et al.'s nearest-neighbour consensus retrieval."""

import numpy as np
import pytest

from captioning.evaluation.baselines import _CaptionVectors, most_frequent, nearest_neighbour


def test_most_frequent_normalises_like_the_scorer():
    captions = [["A dog.", "a cat"], ["a DOG", "a bird"], ["a cat on a mat"]]
    assert most_frequent(captions) == "a dog"
    assert most_frequent(["a bird", "A bird!", "a cat"]) == "a bird"
    with pytest.raises(ValueError):
        most_frequent([])


TRAIN_FEATS = np.array([[1.0, 0.0, 0.0], [0.9, 0.1, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]], dtype=np.float32)
TRAIN_CAPS = [
    ["a red circle on the left", "a red circle"],
    ["a red circle on the left side", "a green thing"],
    ["a blue square at the top"],
    ["two yellow triangles"],
]


def test_consensus_picks_the_caption_the_neighbours_agree_on():
    # query next to images 0 and 1: the candidate sharing most n-grams with the others wins
    out = nearest_neighbour(TRAIN_FEATS, TRAIN_CAPS, np.array([[1.0, 0.05, 0.0]]), k=2)
    assert out == ["a red circle on the left"]


def test_cosine_similarity_ignores_feature_scale():
    queries = np.array([[0.0, 50.0, 0.1], [0.0, 0.0, 0.01]], dtype=np.float32)
    assert nearest_neighbour(TRAIN_FEATS, TRAIN_CAPS, queries, k=1) == ["a blue square at the top", "two yellow triangles"]


def test_one_caption_per_query_and_k_larger_than_train():
    queries = np.random.default_rng(0).normal(size=(7, 3)).astype(np.float32)
    out = nearest_neighbour(TRAIN_FEATS, TRAIN_CAPS, queries, k=100)
    assert len(out) == 7 and all(any(c in caps for caps in TRAIN_CAPS) for c in out)


def test_consensus_is_mean_similarity_to_the_others():
    vectors = _CaptionVectors([["a b c", "a b d"], ["x y z"]])
    consensus = vectors.consensus(np.array([0, 1, 2]))
    assert consensus[2] == pytest.approx(0.0)  # shares nothing
    assert consensus[0] == pytest.approx(consensus[1]) and consensus[0] > 0
    alone = vectors.consensus(np.array([0]))
    assert alone.shape == (1,) and alone[0] == pytest.approx(0.0)


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match="caption lists"):
        nearest_neighbour(TRAIN_FEATS, TRAIN_CAPS[:2], TRAIN_FEATS, k=1)
    with pytest.raises(ValueError, match="k >= 1"):
        nearest_neighbour(TRAIN_FEATS, TRAIN_CAPS, TRAIN_FEATS, k=0)
    with pytest.raises(ValueError, match="do not match"):
        nearest_neighbour(TRAIN_FEATS, TRAIN_CAPS, np.zeros((2, 5), dtype=np.float32), k=1)


def test_nearest_in_train_chunks_equals_one_matrix_product():
    # the training cache is read in chunks (memory-mapped at scale): the merged top-k must not change
    from captioning.evaluation.baselines import _nearest

    rng = np.random.default_rng(0)
    train, query = rng.normal(size=(50, 8)).astype(np.float32), rng.normal(size=(7, 8)).astype(np.float32)
    unit = lambda x: x / np.linalg.norm(x, axis=1, keepdims=True)  # noqa: E731
    expected = np.argsort(-(unit(query) @ unit(train).T), axis=1)[:, :5]
    assert (_nearest(train, query, 5, chunk=3, train_chunk=4) == expected).all()
    assert (_nearest(train, query, 5) == expected).all()
    readonly = np.lib.stride_tricks.as_strided(train)  # a read-only view, like the cache's memmap
    readonly.flags.writeable = False
    assert (_nearest(readonly, query, 5, train_chunk=16) == expected).all()
