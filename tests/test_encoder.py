"""Encoders: the offline EfficientNet-Lite0 weights map onto timm exactly; features are what the classifier
reads; torchvision/timm plumbing (random weights, never downloaded); frozen by default; clear offline errors."""

from urllib.error import URLError

import pytest
import torch
from PIL import Image
from skimage import data as skdata

import captioning.features.backbones as backbones
import captioning.features.encoder as encoder_mod
from captioning import CONFIG_DIR
from captioning.data.images import ImageTransform
from captioning.features.backbones import EncoderWeightsUnavailable, load_efficientnet_lite0
from captioning.features.encoder import build_encoder
from captioning.features.folding import folded_if_equal

CONFIGS = CONFIG_DIR / "encoder"
LITE0 = dict(name="efficientnet_lite0", source="package", weights="package", image_size=224)


@pytest.fixture(scope="module")
def lite0_224():
    return build_encoder(LITE0)


@pytest.fixture(scope="module")
def photos(lite0_224):
    return torch.stack([lite0_224.transform(Image.fromarray(a)) for a in (skdata.chelsea(), skdata.coffee())])


def test_lite0_weights_classify_real_photos(lite0_224, photos):
    classifier = load_efficientnet_lite0().eval()
    with torch.inference_mode():
        logits = classifier(photos)
        from_features = classifier.classifier(lite0_224(photos))
    cat, coffee = logits.argmax(1).tolist()
    assert 281 <= cat <= 285 and coffee in (967, 968)
    # Logits of the package's own reference model (efficientnet_lite_pytorch) on these inputs; timm's
    # efficientnet_lite0 (symmetric padding, BN eps 1e-5) takes the same tensors but is off by ~2.
    assert logits[0, [285, 282, 281]].tolist() == pytest.approx([10.470, 8.442, 8.163], abs=0.05)
    assert logits[1, [967, 968]].tolist() == pytest.approx([10.816, 7.573], abs=0.05)
    # The encoder's feature is exactly the vector the classifier's last layer reads (its BatchNorms
    # folded into the convolutions, which changes nothing but speed).
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in lite0_224.modules())
    torch.testing.assert_close(from_features, logits, rtol=1e-4, atol=1e-4)


def test_bf16_precision_keeps_the_features(photos, lite0_224):
    fast = build_encoder({**LITE0, "precision": "bf16"})
    with torch.inference_mode():
        a, b = lite0_224(photos), fast(photos)
    assert b.dtype == torch.float32 and "precision=bf16" in fast.cache_key
    assert torch.nn.functional.cosine_similarity(a, b).min() > 0.97


def test_mapping_refuses_mismatched_tensors(monkeypatch):
    real_load = torch.load

    def shrunk(*args, **kwargs):
        state = real_load(*args, **kwargs)
        state["_fc.weight"] = state["_fc.weight"][:10]
        return state

    monkeypatch.setattr(torch, "load", shrunk)
    with pytest.raises(ValueError, match=r"cannot map .*_fc\.weight"):
        load_efficientnet_lite0()


def test_frozen_by_default_and_trainable_on_request():
    tiny = dict(name="resnet10t", source="timm", weights=None, image_size=16)
    frozen = build_encoder(tiny)
    assert not any(p.requires_grad for p in frozen.parameters())
    frozen.train()
    assert not any(m.training for m in frozen.modules())  # BatchNorm statistics stay fixed
    tuned = build_encoder({**tiny, "trainable": True})
    tuned.train()
    assert all(p.requires_grad for p in tuned.parameters()) and tuned.training
    # fine-tuning keeps BatchNorm on its pretrained statistics (small batches), but trains its scale and shift
    assert not tuned.backbone.model.bn1.training and tuned.backbone.model.bn1.weight.requires_grad


def test_finetuned_weights_rebuild_the_same_encoder_under_a_new_key():
    tiny = dict(name="resnet10t", source="timm", weights=None, image_size=32)
    tuned = build_encoder({**tiny, "trainable": True})
    with torch.no_grad():
        for p in tuned.backbone.parameters():
            p.add_(0.01 * torch.randn_like(p))  # stands in for a few fine-tuning steps
    state = tuned.backbone.state_dict()
    rebuilt = build_encoder(tiny, state=state)  # frozen again: for captioning and feature extraction
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(rebuilt.eval()(x), tuned.eval()(x), rtol=1e-4, atol=1e-4)
    assert rebuilt.weights_id == tuned.finetuned_weights_id() and rebuilt.cache_key != tuned.cache_key
    assert "+finetuned:" in rebuilt.cache_key
    other = dict(name="resnet18", source="timm", weights=None, image_size=32)
    with pytest.raises(ValueError, match="fine-tuned encoder weights don't fit"):
        build_encoder(other, state=state)


def test_grid_pool_appends_a_2x2_map_whose_mean_is_the_pooled_vector(lite0_224):
    grid = build_encoder({**LITE0, "image_size": 128, "pool": "grid"})
    assert (lite0_224.feature_dim, grid.feature_dim) == (1280, 5 * 1280)
    x = torch.randn(2, 3, 128, 128)
    with torch.inference_mode():
        g = grid(x)
        pooled = grid.backbone.pool(grid.backbone.feature_map(x))
    torch.testing.assert_close(g[:, :1280], pooled)
    cells = g[:, 1280:].view(2, 1280, 4)  # 128 px -> a 4x4 map, so the 2x2 cells tile it exactly
    torch.testing.assert_close(cells.mean(2), pooled, rtol=1e-4, atol=1e-5)
    assert "pool=grid2x2" in grid.cache_key


def test_hypercolumn_appends_an_inner_stage_at_the_last_maps_scale():
    cfg = {**LITE0, "image_size": 128, "pool": "regions", "grid_size": 2, "precision": "fp32"}
    plain, hyper = build_encoder(cfg), build_encoder({**cfg, "hypercolumn": ["blocks.2"]})
    assert hyper.feature_shape == (4, 1280 + 40)
    x = torch.randn(2, 3, 128, 128)
    with torch.inference_mode():
        got, regions = hyper(x), plain(x)
        # the reference: EfficientNet's stem and first three stages run by hand on the unfolded network
        net = load_efficientnet_lite0().eval()
        stage = net.blocks[:3](net.bn1(net.conv_stem(x)))  # [2, 40, 16, 16] at 128 px
    torch.testing.assert_close(got[..., :1280], regions)  # the last map's cells are unchanged
    cells = stage.view(2, 40, 2, 8, 2, 8).mean((3, 5)).flatten(2).transpose(1, 2)  # 2x2 cells, row-major
    rms = lambda t: t.pow(2).mean(-1, keepdim=True).sqrt()
    torch.testing.assert_close(got[..., 1280:], cells * rms(regions) / rms(cells), rtol=2e-3, atol=2e-4)
    assert "hypercolumn=blocks.2" in hyper.cache_key and "hypercolumn" not in plain.cache_key
    with pytest.raises(ValueError, match="no inner layer 'blocks.9'"):
        build_encoder({**cfg, "hypercolumn": ["blocks.9"]})
    with pytest.raises(ValueError, match="needs pool=regions"):
        build_encoder({**cfg, "pool": "avg", "hypercolumn": ["blocks.2"]})


def test_hypercolumn_without_the_last_map_keeps_only_the_inner_layers():
    cfg = {**LITE0, "image_size": 128, "pool": "regions", "grid_size": 2, "precision": "fp32"}
    both = build_encoder({**cfg, "hypercolumn": ["blocks.2", "blocks.3"]})
    inner = build_encoder({**cfg, "hypercolumn": ["blocks.2", "blocks.3"], "last_map": False})
    assert (both.feature_shape, inner.feature_shape) == ((4, 1280 + 40 + 80), (4, 40 + 80))
    x = torch.randn(2, 3, 128, 128)
    later = []  # a stage after the deepest named one must not run
    inner.backbone.network.get_submodule("blocks.4").register_forward_hook(lambda *args: later.append(1))
    with torch.inference_mode():
        got, full = inner(x), both(x)
    assert not later
    rms = lambda t: t.pow(2).mean(-1, keepdim=True).sqrt()
    for span in (slice(0, 40), slice(40, 120)):  # each layer's cells, rescaled to unit root mean square
        ref = full[..., 1280:][..., span]
        torch.testing.assert_close(got[..., span], ref / rms(ref), rtol=2e-3, atol=2e-4)
        torch.testing.assert_close(rms(got[..., span]), torch.ones(2, 4, 1))
    assert "|last_map=false" in inner.cache_key and "last_map" not in both.cache_key
    assert inner.cache_key.replace("|last_map=false", "") == both.cache_key
    with pytest.raises(ValueError, match="encoder.hypercolumn is empty"):
        build_encoder({**cfg, "last_map": False})


def test_hypercolumn_names_a_torchvision_trunks_layers():
    import torchvision

    model = torchvision.models.get_model("resnet18", weights=None).eval()
    enc = encoder_mod.Encoder(backbones.split_torchvision(model, "resnet18"), ImageTransform(64), name="resnet18",
                              source="torchvision", weights_id="test", pool="regions", grid_size=2, hypercolumn=["5"])
    assert enc.feature_shape == (4, 512 + 128)  # the trunk's child 5 is layer2, 128 channels
    assert enc(torch.randn(2, 3, 64, 64)).shape == (2, 4, 640)


def test_cache_key_names_everything_that_changes_features(lite0_224):
    key = lite0_224.cache_key
    assert "efficientnet-lite0-57934424.pth" in key and "pool=avg" in key
    assert lite0_224.transform.key in key
    base = ImageTransform(224)
    variants = [base, ImageTransform(48), ImageTransform(224, resize="center_crop"),
                ImageTransform(224, interpolation="bilinear"), ImageTransform(224, mean=(0.5, 0.5, 0.5)),
                ImageTransform(224, std=(0.5, 0.5, 0.5))]
    assert len({t.key for t in variants}) == len(variants)
    # Random weights differ per build, so their key does too.
    tiny = dict(name="resnet18", source="timm", weights=None, image_size=16)
    assert build_encoder(tiny).cache_key != build_encoder(tiny).cache_key


def _penultimate(model, last):
    """The model itself with its last Linear replaced by identity: what that Linear would read."""
    parent, name = last
    setattr(parent, name, torch.nn.Identity())
    return model.eval()


@pytest.mark.parametrize("name,dim", [("resnet18", 512), ("mobilenet_v3_small", 1024), ("vgg11", 4096)])
def test_torchvision_feature_is_what_the_classifier_reads(name, dim):
    import torchvision

    torch.manual_seed(0)
    model = torchvision.models.get_model(name, weights=None).eval()
    backbone = backbones.split_torchvision(model, name)
    enc = encoder_mod.Encoder(backbone, ImageTransform(64), name=name, source="torchvision",
                              weights_id="test", channels_last=True)
    last = (model, "fc") if hasattr(model, "fc") else (model.classifier, str(len(model.classifier) - 1))
    x = torch.randn(2, 3, 64, 64)
    with torch.inference_mode():
        expected = _penultimate(model, last)(x)
        got = enc(x)
    assert enc.feature_dim == dim
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)


def test_timm_source_with_random_weights_and_grid():
    enc = build_encoder(dict(name="resnet18", source="timm", weights=None, image_size=64, pool="grid"))
    assert enc.feature_dim == 512 * 5
    assert enc(torch.randn(1, 3, 64, 64)).shape == (1, 2560)


@pytest.mark.parametrize("config", sorted(p.stem for p in CONFIGS.glob("*.yaml")))
def test_every_config_is_valid(config):
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        cfg = compose(config)  # resolves a file's own defaults list (e.g. the _grid variant)
    cfg = encoder_mod.validate_encoder_config(cfg)
    assert cfg.source in backbones.SOURCES and cfg.weights is not None


def test_config_mistakes_are_named():
    with pytest.raises(ValueError, match="source must be one of"):
        build_encoder({**LITE0, "source": "caffe"})
    with pytest.raises(ValueError, match="pool must be"):
        build_encoder({**LITE0, "pool": "max"})
    with pytest.raises(ValueError, match="image_size"):
        build_encoder({**LITE0, "image_size": -1})
    with pytest.raises(ValueError, match="encoder.image_sise: unknown option"):
        build_encoder({**LITE0, "image_sise": 64})
    with pytest.raises(ValueError, match="interpolation must be one of"):
        build_encoder({**LITE0, "image_size": 16, "weights": None, "interpolation": "cubic"})
    with pytest.raises(ValueError, match="torchvision has no model 'resnet18' with weights 'IMAGENET9K'"):
        build_encoder(dict(name="resnet18", source="torchvision", weights="IMAGENET9K", image_size=64))


def test_offline_torchvision_download_fails_clearly(monkeypatch, tmp_path):
    import torchvision.models._api as tv_api

    def no_network(url, *args, **kwargs):
        raise URLError("Name or service not known")

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(tv_api, "load_state_dict_from_url", no_network)
    with pytest.raises(EncoderWeightsUnavailable, match=r"'resnet18'.*offline.*efficientnet_lite0"):
        build_encoder(dict(name="resnet18", source="torchvision", weights="DEFAULT", image_size=64))


def test_offline_timm_fails_at_once(monkeypatch):
    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "try_to_load_from_cache", lambda *a, **k: None)
    monkeypatch.setattr(backbones, "host_reachable", lambda host, timeout=3.0: False)
    with pytest.raises(EncoderWeightsUnavailable, match=r"'resnet18'.*huggingface.*efficientnet_lite0"):
        build_encoder(dict(name="resnet18", source="timm", weights="pretrained", image_size=64))


class _BnFirst(torch.nn.Module):
    """Registers conv before bn but applies bn first: folding by registration order would be wrong."""

    def __init__(self):
        super().__init__()
        self.conv, self.bn = torch.nn.Conv2d(3, 3, 3, padding=1), torch.nn.BatchNorm2d(3)

    def forward(self, x):
        return self.conv(self.bn(x))


@pytest.mark.parametrize("bn_first", [False, True])
def test_batchnorm_folding_is_kept_only_when_it_changes_nothing(bn_first):
    torch.manual_seed(0)
    conv_bn = torch.nn.Sequential(torch.nn.Conv2d(3, 3, 3, padding=1), torch.nn.BatchNorm2d(3))
    trunk = _BnFirst() if bn_first else conv_bn
    bn = trunk.bn if bn_first else trunk[1]
    bn.running_mean.uniform_(-1, 1), bn.running_var.uniform_(0.5, 2), bn.weight.data.uniform_(0.5, 2)
    backbone = backbones.SequentialBackbone(trunk, torch.nn.Flatten(1)).eval()
    x = torch.randn(2, 3, 8, 8)
    expected = backbone.pool(backbone.feature_map(x))
    result = folded_if_equal(backbone, 8)
    assert (result is backbone) == bn_first
    has_bn = any(isinstance(m, torch.nn.BatchNorm2d) for m in result.modules())
    assert has_bn == bn_first
    torch.testing.assert_close(result.pool(result.feature_map(x)), expected, rtol=1e-5, atol=1e-5)
