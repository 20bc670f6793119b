"""The attention figure: whole captions (wrapped, never cut), the weights as a heat map over the image, a title
and a label per strip; the title's description of the model from a run's config."""

import numpy as np
import pytest
from PIL import Image

from captioning.evaluation.attention_maps import (HEAT_MAP, WORDS_PER_ROW, attention_figure, heat, model_description,
                                                  render_attention)


def strip(words: list[str], regions: int = 16, seed: int = 0) -> tuple[Image.Image, list[str], np.ndarray]:
    """An image, its words and weights (one row per word, each summing to 1)."""
    rng = np.random.default_rng(seed)
    weights = rng.random((len(words), regions))
    return Image.new("RGB", (64, 64), (200, 200, 200)), words, weights / weights.sum(1, keepdims=True)


def word_panels(fig) -> list:
    """The axes that show one word (titled by it, two images: the picture and the heat map)."""
    return [ax for ax in fig.axes if len(ax.get_images()) == 2]


def test_every_word_of_a_long_caption_gets_a_panel_on_wrapped_rows():
    long = [f"w{i}" for i in range(2 * WORDS_PER_ROW + 3)] + ["<end>"]
    fig = attention_figure([strip(long), strip(["a", "<end>"], seed=1)], title="t", labels=["test", "test_novel"])
    panels = word_panels(fig)
    assert [ax.get_title() for ax in panels] == long + ["a", "<end>"]
    rows = {round(ax.get_position().y0, 3) for ax in panels[: len(long)]}
    assert len(rows) == 3  # 2 * WORDS_PER_ROW + 4 panels wrap onto three rows
    assert [ax.get_title() for ax in fig.axes if len(ax.get_images()) == 1] == ["test", "test_novel"]
    assert fig.get_suptitle().splitlines()[0] == "t"


def test_the_weights_are_a_heat_map_over_the_image_on_one_scale():
    image, words, weights = strip(["red", "circle"], regions=4)
    weights[0] = [0.7, 0.1, 0.1, 0.1]  # "red": the top-left region
    weights[1] = [0.25, 0.25, 0.25, 0.25]  # "circle": everywhere alike
    fig = attention_figure([(image, words, weights)], title="t")
    (picture, red), (_, circle) = (ax.get_images() for ax in word_panels(fig))
    assert red.get_cmap().name == HEAT_MAP and 0 < red.get_alpha() < 1
    assert red.get_clim() == circle.get_clim() == (0.0, pytest.approx(0.7))  # one scale: the largest weight
    values = np.asarray(red.get_array())
    assert values.shape == (64, 64) and values[:16, :16].mean() > values[48:, 48:].mean()  # hot where it looked
    np.testing.assert_allclose(np.asarray(circle.get_array()), 0.25, rtol=1e-5)  # flat: no false peak
    np.testing.assert_array_equal(np.asarray(picture.get_array()), np.asarray(image))
    assert fig.get_suptitle().splitlines() == ["t", "colour: attention weight, 0 (blue) to 0.70 (red) in every "
                                               "panel; looking everywhere alike would be 1/4 = 0.25"]


def test_heat_keeps_the_weights():
    up = heat(np.array([[0.1, 0.2], [0.2, 0.5]]), 8, 8)
    assert up.shape == (8, 8) and 0.1 <= up.min() and up.max() <= 0.5 and up[-1, -1] == pytest.approx(0.5)


def test_a_grid_that_is_not_square_is_refused():
    with pytest.raises(ValueError, match="not a square grid"):
        attention_figure([strip(["a"], regions=6)])


def test_render_writes_a_png(tmp_path):
    path = render_attention([strip(["a", "b", "<end>"])], tmp_path / "a.png", title="x", labels=["val"])
    assert Image.open(path).size[0] > 100


@pytest.mark.parametrize("config, regions, expected", [
    ({"model": {"name": "show_attend_tell"}, "cell": {"name": "lstm"},
      "encoder": {"name": "efficientnet_lite0", "hypercolumn": ["blocks.3"], "last_map": False}}, 16,
     "show_attend_tell (LSTM) on efficientnet_lite0's blocks.3 regions (4 x 4)"),
    ({"model": {"name": "transformer"}, "cell": {"name": "lstm"},
      "encoder": {"name": "efficientnet_lite0", "hypercolumn": ["blocks.2"], "last_map": True}}, 64,
     "transformer on efficientnet_lite0's last map + blocks.2 regions (8 x 8)"),
    ({"model": {"name": "show_attend_tell"}, "cell": {"name": "gru"},
      "encoder": {"name": "resnet50", "hypercolumn": [], "last_map": True}}, None,
     "show_attend_tell (GRU) on resnet50's last map regions"),
])
def test_the_title_names_the_model_and_its_regions(config, regions, expected):
    assert model_description(config, regions) == expected
