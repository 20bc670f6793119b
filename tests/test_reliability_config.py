"""Config mistakes fail before any work: unknown keys and group choices with Hydra's message, impossible
values with one line per problem naming the key (the declared schemas, captioning/config.py)."""

from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException

import captioning.pipeline as pipeline
from captioning.config import ConfigError
from captioning.pipeline import run_options
from tests.conftest import CONFIGS, tiny_cfg


def _compose(*overrides: str):
    with initialize_config_dir(config_dir=CONFIGS, version_base="1.3"):
        return compose("train", overrides=list(overrides))


@pytest.mark.parametrize("override, message", [
    ("schedule.epochz=3", "Could not override 'schedule.epochz'"),
    ("schedule.stages.cross_entropy.epochz=3", "Could not override 'schedule.stages.cross_entropy.epochz'"),
    ("model.hidden_sz=3", "Could not override 'model.hidden_sz'"),
    ("beam_size=3", "Could not override 'beam_size'"),
    ("schedule.stages.cross_entropy.batch_size=2.5", "schedule.stages.cross_entropy.batch_size"),  # declared int
    ("model.forget_bias=high", "model.forget_bias"),  # declared float
    ("data.splitz=3", "Could not override 'data.splitz'"),
    ("encoder.image_sise=64", "Could not override 'encoder.image_sise'"),
    ("encoder.image_size=big", "encoder.image_size"),  # declared int
    ("metrics.cidr=false", "Could not override 'metrics.cidr'"),
    ("metrics.report.colums=3", "Could not override 'metrics.report.colums'"),
    ("logger.projekt=x", "Could not override 'logger.projekt'"),  # logger=none has no options
    ("trainer.backend=mpi trainer.timeot_s=3", "Could not override 'trainer.timeot_s'"),
    ("cell=transformer", "Could not find 'cell/transformer'"),
    ("schedule=forever", "Could not find 'schedule/forever'"),
])
def test_unknown_keys_and_group_choices_fail_with_hydras_message(override, message):
    with pytest.raises(ConfigCompositionException, match=message):
        _compose(*override.split())


@pytest.mark.parametrize("choice", ["cell=rnn", "cell=gru", "schedule=long", "schedule=smoke", "encoder=resnet18",
                                    "encoder=timm", "experiment=shapes_gru", "data=coco2014", "data=coco2017",
                                    "data=flickr8k", "encoder=efficientnet_lite0_grid", "metrics=full",
                                    "logger=wandb", "trainer=ddp", "experiment=quick"])
def test_every_shipped_choice_passes(choice):
    run_options(_compose(choice))


XE = "schedule.stages.cross_entropy"
BAD = [
    (f"{XE}.epochs=-1", f"{XE}.epochs must be >= 0, got -1"),
    (f"{XE}.batch_size=-4", f"{XE}.batch_size must be >= 1, got -4"),
    (f"{XE}.lr=0", f"{XE}.lr must be > 0, got 0"),
    (f"{XE}.lr=nan", f"{XE}.lr must be a finite number"),
    (f"{XE}.lr_schedule=linear", f"{XE}.lr_schedule must be one of ('cosine', 'constant', 'step')"),
    (f"{XE}.log_every=0", f"{XE}.log_every must be >= 1"),
    (f"{XE}.checkpoint_every_steps=-1", f"{XE}.checkpoint_every_steps must be >= 0"),
    (f"{XE}.clip=-1", f"{XE}.clip must be >= 0"),
    ("schedule.stages.self_critical.reward=METEOR", "schedule.stages.self_critical.reward: Unknown reward 'METEOR'"),
    ("model.hidden_size=-4", "model.hidden_size must be >= 1, got -4"),
    ("model.embed_dim=0", "model.embed_dim must be >= 1"),
    ("model.dropout=1.0", "model.dropout must be >= 0 and < 1, got 1.0"),
    ("model.init_activation=sigmoid", "model.init_activation must be one of"),
    ("model.feature_dropout=-0.1", "model.feature_dropout must be >= 0 and < 1"),
    ("model.init_hidden=-2", "model.init_hidden must be >= 0"),
    ("model.lstm_init=orthogonal", "model.lstm_init must be one of"),
    ("model.name=no_such_model", "unknown model 'no_such_model'"),
    ("cell.name=transformer", "cell.name must be one of ('rnn', 'lstm', 'gru'), got 'transformer'"),
    ("cell.backend=cudnn", "cell.backend must be one of ('scratch', 'fused')"),
    ("cell.num_layers=0", "cell.num_layers must be >= 1"),
    ("decoding.beam_size=0", "decoding.beam_size must be >= 1, got 0"),
    ("decoding.method=topk", "decoding.method must be one of ('greedy', 'sample', 'beam', 'diverse_beam'), got 'topk'"),
    ("decoding.temperature=-1", "decoding.temperature must be >= 0"),
    ("decoding.top_p=0", "decoding.top_p must be > 0 and <= 1, got 0"),
    ("decoding.num_captions=5", "decoding.num_captions=5 must be <= decoding.beam_size=3"),
    ("evaluate.baselines=[oracle]", "evaluate.baselines: unknown ['oracle']"),
    ("encoder.source=internet", "encoder.source must be one of ('package', 'torchvision', 'timm')"),
    ("encoder.image_size=8", "encoder.image_size must be >= 16, got 8"),
    ("encoder.pool=max", "encoder.pool must be one of ('avg', 'grid', 'regions'), got 'max'"),
    ("+encoder.image_sise=64", "encoder.image_sise: unknown option"),
    ("data.max_caption_len=0", "data.max_caption_len must be >= 1, got 0"),
    ("data.train_split=nope", "data.train_split: 'nope' is not one of the splits"),
    ("data.kind=imagenet", "data.kind must be one of ('shapes', 'coco', 'karpathy'), got 'imagenet'"),
    ("data.generator.workers=-1", "data.generator.workers must be >= 0, got -1"),
    ("data.generator.colours=[red,mauve]", "data.generator.colours: unknown ['mauve']"),
    ("metrics.on_missing=ignore", "metrics.on_missing must be one of ('warn', 'raise'), got 'ignore'"),
    ("metrics.rank_by=SPICE", "metrics.rank_by must be one of"),
    ("metrics.report.columns=0", "metrics.report.columns must be >= 1, got 0"),
    ("logger=wandb logger.mode=online_please", "logger.mode must be one of ('offline', 'online', 'disabled')"),
    ("logger=wandb logger.samples_per_epoch=-1", "logger.samples_per_epoch must be >= 0, got -1"),
    ("trainer.name=horovod", "trainer.name must be one of ('single', 'ddp'), got 'horovod'"),
    ("trainer=ddp trainer.backend=mpi", "trainer.backend must be one of ('auto', 'gloo', 'nccl'), got 'mpi'"),
    ("trainer=ddp trainer.timeout_s=0", "trainer.timeout_s must be > 0, got 0"),
    ("on_bad_image=ignore", "on_bad_image must be one of ('fail', 'skip'), got 'ignore'"),
    ("seed=-1", "seed must be >= 0"),
    ("precision=fp16", "precision must be one of ('auto', 'fp32', 'bf16'), got 'fp16'"),
]


@pytest.fixture
def no_work(monkeypatch):
    """Fail the test if the run gets as far as loading data or extracting features."""

    def prepare(*args, **kwargs):
        raise AssertionError("work started before the config was checked")

    monkeypatch.setattr(pipeline, "prepare", prepare)


@pytest.mark.parametrize("override, message", BAD, ids=[o for o, _ in BAD])
def test_impossible_values_fail_before_any_work(override, message, tiny_root, no_work):
    run_dir = tiny_root / "never"
    with pytest.raises(ConfigError) as info:
        pipeline.run(pipeline.run_options(tiny_cfg(tiny_root, *override.split())), run_dir)
    assert message in str(info.value)
    assert not run_dir.exists()


def test_every_problem_is_reported_at_once(tiny_root, no_work):
    with pytest.raises(ConfigError) as info:
        pipeline.run(pipeline.run_options(tiny_cfg(tiny_root, f"{XE}.epochs=-1", "cell.name=lstn", "decoding.method=topk")), "never")
    assert str(info.value).count("\n  ") == 3


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_cuda_without_a_gpu_fails_before_any_work(tiny_root, no_work):
    with pytest.raises(ValueError, match="no CUDA GPU"):
        pipeline.run(pipeline.run_options(tiny_cfg(tiny_root, "device=cuda")), tiny_root / "never")


def test_resume_from_a_missing_run_fails_before_any_work(tiny_root, no_work):
    from captioning.models.checkpoint import CheckpointError

    with pytest.raises(CheckpointError, match="does not exist"):
        pipeline.run(pipeline.run_options(tiny_cfg(tiny_root, f"resume={Path(tiny_root) / 'no_such_run'}")), tiny_root / "never")


def test_a_schedule_that_trains_nothing_is_refused(tiny_root, no_work):
    with pytest.raises(ConfigError, match="no stage has epochs > 0"):
        pipeline.run(pipeline.run_options(tiny_cfg(tiny_root, f"{XE}.epochs=0")), tiny_root / "never")


def test_the_transformer_experiment_smooths_its_labels_and_the_default_model_does_not():
    """experiment=transformer trains with label smoothing 0.1 (chosen on val and val_novel, docs/options.md);
    the default schedule keeps plain cross-entropy."""
    assert _compose("experiment=transformer").schedule.stages.cross_entropy.label_smoothing == 0.1
    assert _compose().schedule.stages.cross_entropy.label_smoothing == 0.0
    run_options(_compose("experiment=transformer"))
