"""The caption command line: paths and key=value options in, one caption per image out."""

from __future__ import annotations

import sys
from pathlib import Path

import torch

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
DEFAULTS = {"checkpoint": None, "method": "beam", "beam_size": "3", "length_alpha": "0.0",
            "temperature": "1.0", "show_beams": "0", "seed": "0", "batch_size": "32"}
METHODS = ("beam", "greedy", "sample")


def parse_args(argv: list[str]) -> tuple[list[Path], dict]:
    """Split argv into image paths (folders expanded) and key=value options; unknown keys are errors."""
    opts, paths = dict(DEFAULTS), []
    for arg in argv:
        if "=" in arg and not Path(arg).exists():
            key, value = arg.split("=", 1)
            if key not in DEFAULTS:
                raise SystemExit(f"unknown option {key!r}; known: {', '.join(DEFAULTS)}")
            opts[key] = value
        elif Path(arg).is_dir():
            paths += sorted(p for p in Path(arg).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        else:
            paths.append(Path(arg))
    if not opts["checkpoint"]:
        raise SystemExit("checkpoint=<run dir or .pt file> is required (see --help)")
    if not paths:
        raise SystemExit("no images given: pass image files or folders")
    return paths, opts


def decoding_options(o: dict) -> dict:
    """The decoder's keyword arguments from the string options; a clear exit on a bad value."""
    try:
        kwargs = {"method": o["method"], "beam_size": int(o["beam_size"]), "length_alpha": float(o["length_alpha"]),
                  "temperature": float(o["temperature"]), "keep_beams": int(o["show_beams"]),
                  "generator": torch.Generator().manual_seed(int(o["seed"]))}
        batch_size = int(o["batch_size"])
    except ValueError as exc:
        raise SystemExit(f"bad option value: {exc}") from None
    if kwargs["method"] not in METHODS:
        raise SystemExit(f"method must be one of {', '.join(METHODS)}, got {kwargs['method']!r}")
    if kwargs["beam_size"] < 1 or batch_size < 1 or kwargs["keep_beams"] < 0 or kwargs["temperature"] < 0:
        raise SystemExit("beam_size and batch_size must be >= 1, show_beams and temperature >= 0")
    return kwargs


def caption_main(argv: list[str]) -> int:
    """Print `path<TAB>caption` per image (and the top beams when asked); exit 1 if any image failed."""
    if not argv or argv[0] in ("-h", "--help"):
        print(sys.modules["__main__"].__doc__ or __doc__)
        return 0
    from captioning.data.images import BadImageError
    from captioning.captioner import Captioner
    from captioning.models.checkpoint import CheckpointError

    paths, o = parse_args(argv)
    kwargs = decoding_options(o)
    try:
        captioner = Captioner.from_checkpoint(o["checkpoint"])
        captioner.encoder  # noqa: B018 - build it now: a mismatched encoder is a checkpoint error, not a crash
    except CheckpointError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    failed = 0
    for start in range(0, len(paths), int(o["batch_size"])):
        batch = paths[start : start + int(o["batch_size"])]
        good = []
        for p in batch:
            try:
                from captioning.data.images import load_rgb

                good.append((p, load_rgb(p)))
            except BadImageError as exc:
                failed += 1
                print(f"error: {exc}", file=sys.stderr)
        if not good:
            continue
        for (p, _), cap in zip(good, captioner.caption([im for _, im in good], **kwargs)):
            print(f"{p}\t{cap.text}")
            for text, score in cap.beams:
                print(f"    {score:8.3f}  {text}")
    return 1 if failed else 0
