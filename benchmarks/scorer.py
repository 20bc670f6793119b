"""Our BLEU (pure Python) vs the official COCO scorer (pycocoevalcap: Java PTBTokenizer + BleuScorer).

On real COCO captions: for each image one human caption is the hypothesis and the others are its
references, so the numbers are what a human scores against the other humans.
"""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks.common import Options, stopwatch
from captioning.evaluation.metrics import score

COCO_CAPTIONS = Path(__file__).resolve().parents[3] / "shared" / "data" / "coco" / "captions_val2014_subset4800.json"


def hypotheses_and_references(path: Path, limit: int | None = None) -> tuple[dict, dict]:
    """{image_id: [other captions]} and {image_id: first caption} from a COCO captions json."""
    data = json.loads(Path(path).read_text())
    caps: dict[int, list[str]] = {}
    for a in data["annotations"]:
        caps.setdefault(a["image_id"], []).append(a["caption"])
    ids = sorted(i for i, c in caps.items() if len(c) >= 2)[:limit]
    return {i: caps[i][1:] for i in ids}, {i: caps[i][0] for i in ids}


def official_bleu(refs: dict, hyps: dict) -> dict[str, float]:
    """pycocoevalcap exactly as the COCO evaluation server runs it: PTBTokenizer (Java), then Bleu(4)."""
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    tok = PTBTokenizer()
    gts = tok.tokenize({i: [{"caption": c} for c in rs] for i, rs in refs.items()})
    res = tok.tokenize({i: [{"caption": hyps[i]}] for i in refs})
    values, _ = Bleu(4).compute_score(gts, res, verbose=0)
    return {f"Bleu_{n + 1}": v for n, v in enumerate(values)}


def scorer_report(opts: Options, path: Path = COCO_CAPTIONS) -> str:
    """Markdown: seconds and BLEU-1..4 of both scorers on the same captions."""
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: the bleu section reads the shared COCO captions "
                                "(../shared/data/coco next to the repository)")
    refs, hyps = hypotheses_and_references(path, opts.pick(None, 500))
    n_caps = len(hyps) + sum(len(r) for r in refs.values())
    with stopwatch() as t_ours:
        ours = score(refs, hyps)
    with stopwatch() as t_official:
        official = official_bleu(refs, hyps)
    diff = max(abs(ours[k] - official[k]) for k in ours)
    lines = [f"{len(hyps)} COCO val2014 images ({path.name}): the first caption of each is the hypothesis, "
             f"its other captions the references ({n_caps} captions in all). Both include tokenisation.", "",
             "| scorer | seconds | Bleu_1 | Bleu_2 | Bleu_3 | Bleu_4 |", "|---|---|---|---|---|---|"]
    for name, t, m in (("ours (captioning.evaluation.metrics.score, pure Python)", t_ours[0], ours),
                       ("official (pycocoevalcap, Java PTBTokenizer)", t_official[0], official)):
        lines.append(f"| {name} | {t:.2f} | " + " | ".join(f"{m[f'Bleu_{n}']:.6f}" for n in range(1, 5)) + " |")
    lines += ["", f"Largest difference: {diff:.1e}; ours / official time: **{t_ours[0] / t_official[0]:.2f}x**."]
    return "\n".join(lines)
