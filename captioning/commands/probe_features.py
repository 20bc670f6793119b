"""Probe the frozen encoder features of the synthetic shapes: what a decoder could read from them.

    captioning-probe                                   # the default encoder
    captioning-probe encoder=efficientnet_lite0_grid   # + the 2x2 grid
    captioning-probe probe.hidden=1024                 # an MLP probe instead of a linear one
    captioning-probe probe.target=attributes probe.split=val_novel   # colour and shape apart, on unseen pairs
    captioning-probe encoder=efficientnet_lite0_hypercolumn probe.channels=[1280,1320]   # the appended layer alone

Takes captioning-train's options (captioning/configs/probe.yaml) (data, encoder, cache_dir; features come
from the shared cache). For scenes of n objects in order along their relation axis, a probe trained on the
train split predicts each object's colour-shape pair; printed: test accuracy per slot and all n right
(captioning/evaluation/probes.py); on a shifted split (data=shapes_hard probe.split=val_shifted) also per
drawing style, the probe trained on the clean drawings. With probe.target=attributes, colour and shape are
predicted apart and also scored on the objects whose colour-shape pair no training scene has.
"""

import json
import sys

from captioning import CONFIG_DIR
from captioning.commands.cli import hydra_command

CONFIG_PATH, CONFIG_NAME = str(CONFIG_DIR), "probe"


def register() -> None:
    """Store the config schemas in Hydra's ConfigStore."""
    import captioning.config  # noqa: F401


def probe_features(cfg) -> None:
    """Train the probes on the cached features and print their test accuracies."""
    import dataclasses

    import torch

    from captioning.evaluation.probes import channel_span, probe_attributes, probe_scenes
    from captioning.features.prepare import prepare
    from captioning.pipeline import resolve_device, run_options
    from captioning.utils.memory import keep_freed_memory

    opts = run_options(cfg)  # every bad value at once, before any work
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    keep_freed_memory()  # captioning/utils/memory.py
    train, test = cfg.data.train_split, cfg.probe.split
    source = dataclasses.replace(opts.source, device=resolve_device(cfg.device))
    p = prepare(source, splits_needed=[train, test])
    hidden = cfg.probe.hidden
    probe = probe_attributes if cfg.probe.target == "attributes" else probe_scenes
    span = list(cfg.probe.channels) if cfg.probe.channels is not None else None
    channels = channel_span(span, p.feature_dim)
    results = probe(p.splits[train], p.features[train][..., channels], p.splits[test], p.features[test][..., channels],
                    hidden=hidden, epochs=cfg.probe.epochs, seed=cfg.seed)
    print(f"features {p.encoder_key}" + (f", channels {span}" if span else "")
          + f"\nprobe: {'linear' if not hidden else f'MLP, {hidden} hidden'}, target {cfg.probe.target}; split {test}")
    for n, r in results.items():
        if cfg.probe.target == "attributes":
            print(f"{n} object(s): colour {r['colour']:.3f} (unseen pairs {r['colour_unseen']:.3f}), shape "
                  f"{r['shape']:.3f} (unseen pairs {r['shape_unseen']:.3f}); {r['unseen']} unseen-pair objects "
                  f"(train {r['train']}, test {r['test']} scenes)")
        else:
            print(f"{n} object(s): colour-shape per slot {r['slot']:.3f}, all {n} right {r['all']:.3f} "
                  f"(train {r['train']}, test {r['test']})")
            for kind, k in r.get("styles", {}).items():
                print(f"  style {kind}: per slot {k['slot']:.3f}, all {n} right {k['all']:.3f} (test {k['test']})")
    print(json.dumps({"encoder": p.encoder_key, "channels": span, "hidden": hidden,
                      "target": cfg.probe.target, "split": test,
                      "results": results}))



main = hydra_command("captioning-probe", CONFIG_PATH, CONFIG_NAME, register, probe_features)

if __name__ == "__main__":
    sys.exit(main())
