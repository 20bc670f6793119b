"""Draw a run's captions on its test images: `python scripts/render_examples.py checkpoint=RUN_DIR [key=value ...]`.

Writes docs/figures/examples.png (or out=...): per_split (6) images of each split in splits
(test,test_novel) of the run's own data, picked by seed (0) with 1-, 2- and 3-object scenes mixed,
each with the generated caption, one reference caption in grey and, on synthetic scenes, a check or a
cross for whether the whole scene is described right. Other options: columns (= per_split), title,
and the decoding options of scripts/caption.py: method (beam | greedy | sample), beam_size (3),
length_alpha (0.0), temperature (1.0).
"""

import sys

from captioning.cli import DEFAULTS as CAPTION_DEFAULTS
from captioning.cli import decoding_options

DEFAULTS = {**CAPTION_DEFAULTS, "out": "docs/figures/examples.png", "per_split": "6", "columns": "0",
            "splits": "test,test_novel", "title": ""}


def main(argv: list[str]) -> int:
    """Parse key=value options, caption the picked images and write the figure."""
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0
    opts = dict(DEFAULTS)
    for arg in argv:
        key, eq, value = arg.partition("=")
        if not eq or key not in DEFAULTS or key in ("show_beams", "batch_size"):
            print(f"error: expected key=value with key in checkpoint, out, per_split, columns, splits, seed, title, "
                  f"method, beam_size, length_alpha, temperature; got {arg!r}", file=sys.stderr)
            return 2
        opts[key] = value
    if not opts["checkpoint"]:
        print("error: checkpoint=<run dir or .pt file> is required", file=sys.stderr)
        return 2
    decoding = decoding_options(opts)
    decoding.pop("keep_beams")

    from captioning.captioner import Captioner
    from captioning.evaluation.gallery import render_gallery, run_records
    from captioning.models.checkpoint import CheckpointError

    try:
        captioner = Captioner.from_checkpoint(opts["checkpoint"])
        records = run_records(opts["checkpoint"], [s for s in opts["splits"].split(",") if s])
        gallery = render_gallery(captioner, records, opts["out"], per_split=int(opts["per_split"]),
                                 seed=int(opts["seed"]), columns=int(opts["columns"]) or None, title=opts["title"],
                                 **decoding)
    except (CheckpointError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for e in gallery.examples:
        mark = {True: "right", False: "wrong", None: "-"}[e.correct]
        print(f"{e.split}\t{e.image_id}\t{mark}\t{e.caption}")
    print(f"wrote {gallery.path} ({gallery.size[0]}x{gallery.size[1]} px)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
