"""Caption images: `captioning-caption IMAGE_OR_FOLDER ... checkpoint=RUN_DIR_OR_PT [key=value ...]`.

Options (Hydra overrides of captioning/configs/caption.yaml, declared by CaptionRunConfig in
captioning/config.py): checkpoint (required: a run directory or a .pt file), the same decoding.* keys as
captioning-evaluate: decoding.method (beam | diverse_beam | greedy | sample), decoding.beam_size (3),
decoding.length_alpha (0.0), decoding.temperature (1.0, for method=sample), decoding.batch_size (32
images at once), decoding.groups, diversity, block_ngram, bad_endings, top_k, top_p, max_len (0: the
checkpoint's training limit), num_captions (n > 1: the n captions are printed under each image's first); keep_beams (0: how many top beams to print with their log-probabilities), seed (0),
attention (a PNG path: attention models draw where they looked for each word; others exit 2).
Image files and folders are the positional arguments (or images=[...]); folders are searched for
.jpg/.jpeg/.png/.bmp/.gif/.webp/.tif files. Any RGB, grayscale, RGBA or palette image works. Prints
`path<TAB>caption` per image; exits 1 if an image could not be read, 2 if the checkpoint is unusable.
`--cfg job` prints the composed options, `--config-dir DIR` adds a folder of your own configs.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Any

from captioning import CONFIG_DIR
from captioning.commands.cli import UserError, command_options, hydra_command, one_line, quoted, split_positional

CONFIG_PATH, CONFIG_NAME = str(CONFIG_DIR), "caption"
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
# the spellings of the key=value parser this command had before it moved to Hydra
RENAMED = {"method": "decoding.method", "beam_size": "decoding.beam_size", "length_alpha": "decoding.length_alpha",
           "temperature": "decoding.temperature", "batch_size": "decoding.batch_size", "show_beams": "keep_beams"}


def hydra_argv(argv: list[str]) -> list[str]:
    """Hydra's command line from the caption command's: image paths (arguments that are neither flags nor
    key=value, or existing files whose name holds '=') become one ``images=[...]`` override; a key of the
    old key=value parser is an error naming its new spelling."""
    out, images = split_positional(argv)
    for arg in out:
        key = arg.split("=", 1)[0].lstrip("+~")
        if "=" in arg and key in RENAMED:
            raise UserError(f"{key}= is now {RENAMED[key]}= (e.g. {RENAMED[key]}={arg.split('=', 1)[1]}); "
                            "see captioning-caption --help")
    if images:
        out.append(f"images=[{','.join(quoted(p) for p in images)}]")
    return out


def image_paths(images: list[str]) -> list[Path]:
    """The image files: files as given, folders searched (sorted) for files with an image suffix."""
    paths = []
    for arg in images:
        if Path(arg).is_dir():
            paths += sorted(p for p in Path(arg).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        else:
            paths.append(Path(arg))
    return paths


def caption_images(opts: Any) -> int:
    """Print `path<TAB>caption` per image (and the top beams when asked); 1 if any image failed, 2 if the
    checkpoint cannot be used."""
    import torch

    from captioning.captioner import Captioner
    from captioning.data.images import BadImageError, load_rgb
    from captioning.models.checkpoint import CheckpointError

    paths = image_paths(list(opts.images))
    if not paths:
        raise UserError("no images given: pass image files or folders")
    d = opts.decoding
    kwargs = {**{k: v for k, v in dataclasses.asdict(d).items() if k != "batch_size"}, "keep_beams": opts.keep_beams,
              "generator": torch.Generator().manual_seed(opts.seed)}
    try:
        captioner = Captioner.from_checkpoint(opts.checkpoint)
        captioner.encoder  # noqa: B018 - build it now: a mismatched encoder is a checkpoint error, not a crash
    except CheckpointError as exc:
        print(f"error: {one_line(exc)}", file=sys.stderr)
        return 2
    failed, strips = 0, []
    for start in range(0, len(paths), d.batch_size):
        good = []
        for p in paths[start : start + d.batch_size]:
            try:
                good.append((p, load_rgb(p)))
            except BadImageError as exc:
                failed += 1
                print(f"error: {one_line(exc)}", file=sys.stderr)
        if not good:
            continue
        if opts.attention:
            try:
                attended = captioner.attend([im for _, im in good], **kwargs)
            except CheckpointError as exc:
                print(f"error: attention={opts.attention}: {one_line(exc)}", file=sys.stderr)
                return 2
            strips += [(im, words, weights) for (_, im), (_, words, weights) in zip(good, attended)]
            captions = [cap for cap, _, _ in attended]
        else:
            captions = captioner.caption([im for _, im in good], **kwargs)
        for (p, _), cap in zip(good, captions):
            print(f"{p}\t{cap.text}")
            for text, score in cap.beams:
                print(f"    {score:8.3f}  {text}")
    if strips:
        from captioning.evaluation.attention_maps import render_attention

        print(f"attention maps: {render_attention(strips, opts.attention)}", file=sys.stderr)
    return 1 if failed else 0


def register() -> None:
    """Store the config schemas in Hydra's ConfigStore."""
    import captioning.config  # noqa: F401


def caption(cfg: Any) -> int:
    """Check the options, then caption the images (the exit status)."""
    from captioning.config import CaptionRunConfig
    from captioning.utils.memory import keep_freed_memory

    opts = command_options(CaptionRunConfig, cfg)  # every bad value named before anything is loaded
    keep_freed_memory()  # the CNN's activation maps reused, not mapped anew (captioning/utils/memory.py)
    return caption_images(opts)


main = hydra_command("captioning-caption", CONFIG_PATH, CONFIG_NAME, register, caption, rewrite=hydra_argv)

if __name__ == "__main__":
    sys.exit(main())
