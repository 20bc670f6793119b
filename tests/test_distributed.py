"""DDP on 2 CPU processes (gloo) trains the same weights as one process with the same global batch."""

import os
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
from hydra import compose, initialize_config_dir

from captioning import CONFIG_DIR
from captioning.utils import distributed
from captioning.features.prepare import prepare
from captioning.models.checkpoint import load_checkpoint
from captioning.pipeline import run_options
from captioning.training.loop import train
from captioning.utils.distributed import TrainerConfig
from captioning.utils.schema import build

CONFIGS = str(CONFIG_DIR)
# dropout 0: the ranks draw their own dropout masks, so only a dropout-free run can match exactly.
# Pooled 1280-d features: the grid features have ~950 dimensions constant over these 64 images, whose
# LayerNorm gains get float-noise gradients that Adam scales up to lr-sized steps (in one process as
# much as in two), so after 28 steps their weights differ by ~lr whatever the summation order. fp32
# training steps: bf16 matmuls summed in another order differ by more than the comparison allows.
TINY = ["data=shapes_tiny", "schedule=smoke", "precision=fp32", "model.hidden_size=48", "model.embed_dim=24",
        "model.dropout=0", "encoder=efficientnet_lite0", "encoder.pool=avg", "encoder.image_size=128",
        "encoder.precision=fp32", "encoder.batch_size=32", "encoder.num_workers=0", "data.generator.workers=0"]


def tiny_cfg(root: Path, *overrides: str):
    with initialize_config_dir(config_dir=CONFIGS, version_base="1.3"):
        return compose("train", overrides=[*TINY, f"cache_dir={root / 'cache'}", *overrides])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank_main(rank: int, world: int, port: int, cfg, prepared, root: Path, name: str = "rank") -> None:
    """One torchrun-like worker: the environment torchrun would set, then setup + train."""
    torch.set_num_threads(1)
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dp, _ = distributed.setup(build(TrainerConfig, cfg.trainer), cfg.device)
    assert (dp.rank, dp.world_size) == (rank, world)
    try:
        train(run_options(cfg).training, prepared, root / f"{name}{rank}")
    finally:
        distributed.teardown()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    # one thread: the ranks are the parallelism here, and spare OpenMP threads only fight over the cores
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("ddp")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("CAPTIONING_DATA", str(root / "data"))
        cfg = tiny_cfg(root)
        yield root, cfg, prepare(run_options(cfg).source, splits_needed=["train", "val"])
    torch.set_num_threads(threads)


def test_two_ranks_train_the_weights_of_one_process(tiny):
    root, cfg, prepared = tiny
    assert all(isinstance(f, np.memmap) for f in prepared.features.values())  # ranks read rows of one cache
    # 320 captions in global batches of 24: 13 full steps and a last one of 8, split 4 + 4
    overrides = ["schedule.stages.cross_entropy.batch_size=24"]
    single = train(run_options(tiny_cfg(root, *overrides)).training, prepared, root / "single")
    # fork, not spawn: a spawned child spends seconds importing torch before it can join
    mp.start_processes(_rank_main, args=(2, _free_port(), tiny_cfg(root, "trainer=ddp", *overrides), prepared, root),
                       nprocs=2, join=True, start_method="fork")
    a = load_checkpoint(root / "single" / "checkpoints" / "last.pt")
    b = load_checkpoint(root / "rank0" / "checkpoints" / "last.pt")
    assert a["epoch"] == b["epoch"] == 2
    # float summation order differs between one process and two ranks; Adam turns that noise into
    # differences of up to 3.4e-5 (measured) on weights with near-zero gradients, of weights ~0.1 in size
    for name, value in a["weights"].items():
        torch.testing.assert_close(b["weights"][name], value, rtol=1e-4, atol=1e-4, msg=name)
    assert not (root / "rank1").exists()  # only rank 0 writes
    losses = [e["train_loss"] for e in b["history"]["epochs"]]
    assert losses == pytest.approx([e["train_loss"] for e in single["epochs"]], rel=1e-4)


def test_two_ranks_train_an_attention_model_like_one_process(tiny):
    """show_attend_tell (dict state, a per-step cell) under DDP; alpha_c=0: with the penalty on, each rank's
    penalty is weighted by its share of the batch's words (the cross-entropy's scale), not of its images."""
    root, cfg, prepared = tiny
    # region_dim=0: a projection of the 1280-d pooled feature has the near-constant inputs the note on TINY
    # describes (Adam scales their float-noise gradients to lr-sized steps, in one process as in two)
    overrides = ["model=show_attend_tell", "model.alpha_c=0", "model.region_dim=0",
                 "schedule.stages.cross_entropy.batch_size=24"]
    single = train(run_options(tiny_cfg(root, *overrides)).training, prepared, root / "sat_single")
    mp.start_processes(_rank_main, args=(2, _free_port(), tiny_cfg(root, "trainer=ddp", *overrides), prepared, root,
                                         "sat_rank"), nprocs=2, join=True, start_method="fork")
    a = load_checkpoint(root / "sat_single" / "checkpoints" / "last.pt")
    b = load_checkpoint(root / "sat_rank0" / "checkpoints" / "last.pt")
    for name, value in a["weights"].items():
        torch.testing.assert_close(b["weights"][name], value, rtol=1e-4, atol=1e-4, msg=name)
    assert [e["train_loss"] for e in b["history"]["epochs"]] == pytest.approx(
        [e["train_loss"] for e in single["epochs"]], rel=1e-4)


def _ddp(root: Path, cfg, prepared, name: str) -> dict:
    """Train ``cfg`` on 2 gloo ranks; rank 0's last checkpoint."""
    mp.start_processes(_rank_main, args=(2, _free_port(), cfg, prepared, root, name), nprocs=2, join=True,
                       start_method="fork")
    return load_checkpoint(root / f"{name}0" / "checkpoints" / "last.pt")


def test_every_ranks_rng_is_saved_and_restored_so_resume_with_dropout_is_exact(tiny):
    # dropout: each rank draws its own masks from its own stream; a resumed rank must continue that stream
    root, _, prepared = tiny
    ddp = ["trainer=ddp", "model.dropout=0.3", "schedule.stages.cross_entropy.val_max_images=8"]
    straight = _ddp(root, tiny_cfg(root, *ddp), prepared, "straight")
    part = _ddp(root, tiny_cfg(root, *ddp, "schedule.stages.cross_entropy.epochs=1"), prepared, "part")
    assert len(part["rank_rng"]) == 2 and part["rng"]["torch"].equal(part["rank_rng"][0]["torch"])
    assert not part["rank_rng"][0]["torch"].equal(part["rank_rng"][1]["torch"])  # the ranks' own streams
    resumed = _ddp(root, tiny_cfg(root, *ddp, f"resume={root / 'part0'}"), prepared, "part")
    assert resumed["epoch"] == straight["epoch"] == 2
    for name, value in straight["weights"].items():
        assert torch.equal(resumed["weights"][name], value), name
    for rank in range(2):
        assert resumed["rank_rng"][rank]["torch"].equal(straight["rank_rng"][rank]["torch"])


def test_ddp_without_torchrun_and_single_under_torchrun_fail_clearly(monkeypatch):
    for key in distributed.TORCHRUN_ENV:
        monkeypatch.delenv(key, raising=False)
    with pytest.raises(ValueError, match="torchrun"):
        distributed.setup(TrainerConfig(name="ddp"), "cpu")
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ValueError, match="trainer=ddp"):
        distributed.setup(TrainerConfig(), "cpu")


def test_shards_interleave_and_scale_to_the_global_mean():
    tokens = torch.tensor([[1, 5, 2, 0], [1, 5, 6, 2], [1, 2, 0, 0]])  # 2, 3 and 1 target words
    idx = torch.tensor([0, 1, 2])
    r0, s0 = distributed.DataParallel(0, 2).shard(idx, tokens)
    r1, s1 = distributed.DataParallel(1, 2).shard(idx, tokens)
    assert r0.tolist() == [0, 2] and r1.tolist() == [1]
    assert (s0, s1) == (2 * 3 / 6, 2 * 3 / 6)
    # a rank with nothing left in a short last batch joins the all-reduce with a zero-weight caption
    assert distributed.DataParallel(2, 4).shard(idx[:2], tokens)[1] == 0.0
    assert distributed.DataParallel().shard(idx, tokens) == (idx, 1.0)
