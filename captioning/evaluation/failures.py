"""Where a captioning model fails: worst-k and random images, error kinds, wrong words; HTML + PNG reports.

``collect_failures`` gathers the cases from per-image scores. On synthetic scenes a ``scene_fn(scene,
caption) -> list[str]`` (``captioning.data.scenes.error_kinds``) names what went wrong in each caption;
on data without scenes the report lists the most frequent wrong words (generated, but in none of the
image's references) with example images. Given each caption's hallucinated objects (CHAIR,
captioning/evaluation/measures.py), it ranks the objects most often hallucinated and the captions with
the most, and each case names its own. ``render_html`` writes a self-contained page (thumbnails
embedded as base64) and ``render_contact_sheet`` a PNG grid; both are written atomically.
"""

from __future__ import annotations

import base64
import html
import io
import random
import textwrap
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from PIL import Image, ImageDraw

from captioning.utils.io import atomic_write
from captioning.text.tokenizer import tokenize

SceneFn = Callable[[Mapping[str, Any], str], Sequence[str]]


@dataclass
class FailureCase:
    """One image as the report shows it."""

    image_id: int
    path: str
    caption: str
    references: list[str]
    scores: dict[str, float]
    error_kinds: list[str] | None = None  # None: no scene to check against
    wrong_words: list[str] = field(default_factory=list)
    hallucinated: list[str] | None = None  # None: hallucination not measured on this data


@dataclass
class FailureReport:
    """Worst-k and random cases of one split, plus error-kind counts or frequent wrong words."""

    split: str
    rank_by: str
    n_images: int
    worst: list[FailureCase]
    random: list[FailureCase]
    error_counts: dict[str, int] | None  # over all images with scenes; None without scenes
    wrong_words: list[tuple[str, int, list[int]]]  # (word, images it is wrong in, example image ids)
    metrics: dict[str, float] = field(default_factory=dict)
    # (object, captions naming it though the image lacks it, example image ids), most frequent first
    hallucinations: list[tuple[str, int, list[int]]] | None = None
    most_hallucinating: list[FailureCase] = field(default_factory=list)  # most hallucinated objects first
    # synthetic scenes: accuracies per group of scenes and per kind of object (scene_metrics.group_breakdown,
    # object_breakdown), e.g. by object count, drawing style, place in the row
    scene_groups: dict[str, dict[str, float]] = field(default_factory=dict)
    object_groups: dict[str, dict[str, float]] = field(default_factory=dict)


def wrong_words(caption: str, references: Sequence[str]) -> list[str]:
    """Words of ``caption`` found in none of ``references`` (scorer tokenisation), in caption order."""
    known = {w for ref in references for w in tokenize(ref)}
    return list(dict.fromkeys(w for w in tokenize(caption) if w not in known))


def _rank_key(per_image: Mapping[Any, Mapping[str, float]], rank_by: str) -> str:
    """``rank_by`` when every image has it, else Bleu_4 (e.g. CIDEr switched off, as by metrics=bleu)."""
    return rank_by if per_image and all(rank_by in s for s in per_image.values()) else "Bleu_4"


def collect_failures(
    records: Sequence[Any],
    hypotheses: Mapping[int, str],
    per_image: Mapping[int, Mapping[str, float]],
    split: str = "test",
    rank_by: str = "CIDEr",
    worst_k: int = 24,
    random_k: int = 12,
    seed: int = 0,
    scene_fn: SceneFn | None = None,
    top_words: int = 20,
    examples_per_word: int = 4,
    hallucinated: Mapping[int, Sequence[str]] | None = None,
) -> FailureReport:
    """Worst-k by ``per_image[id][rank_by]``, a seeded random sample, error kinds and wrong words; given
    ``hallucinated`` ({image_id: hallucinated object names}), the objects ranked by how many captions
    hallucinate them and the worst-k captions by their number of hallucinated objects."""
    missing = [r.image_id for r in records if r.image_id not in hypotheses or r.image_id not in per_image]
    if missing:
        raise ValueError(f"{len(missing)} records have no hypothesis or per-image score, e.g. ids {missing[:5]}")
    key = _rank_key(per_image, rank_by)
    cases, error_counts, word_images = {}, Counter(), defaultdict(list)
    with_scene = any(getattr(r, "scene", None) is not None for r in records) and scene_fn is not None
    for r in records:
        hyp = hypotheses[r.image_id]
        kinds = list(scene_fn(r.scene, hyp)) if with_scene and r.scene is not None else None
        error_counts.update(kinds or [])
        wrong = wrong_words(hyp, r.captions)
        for w in wrong:
            word_images[w].append(r.image_id)
        named = list(hallucinated.get(r.image_id, [])) if hallucinated is not None else None
        cases[r.image_id] = FailureCase(r.image_id, r.path, hyp, list(r.captions), dict(per_image[r.image_id]),
                                        kinds, wrong, named)  # fmt: skip
    order = sorted(cases, key=lambda i: (cases[i].scores[key], str(i)))  # lowest first, ties by id
    sample = random.Random(seed).sample(list(cases), min(random_k, len(cases)))
    frequent = sorted(word_images.items(), key=lambda kv: (-len(kv[1]), kv[0]))[:top_words]
    ranked, worst_named = None, []
    if hallucinated is not None:
        object_images = defaultdict(list)
        for i in cases:
            for name in dict.fromkeys(cases[i].hallucinated or []):
                object_images[name].append(i)
        ranked = [(w, len(ids), ids[:examples_per_word])
                  for w, ids in sorted(object_images.items(), key=lambda kv: (-len(kv[1]), kv[0]))]
        named = [i for i in cases if cases[i].hallucinated]
        by_count = sorted(named, key=lambda i: (-len(cases[i].hallucinated), str(i)))
        worst_named = [cases[i] for i in by_count[:worst_k]]
    return FailureReport(
        split=split,
        rank_by=key,
        n_images=len(cases),
        worst=[cases[i] for i in order[:worst_k]],
        random=[cases[i] for i in sample],
        error_counts=dict(error_counts.most_common()) if with_scene else None,
        wrong_words=[(w, len(ids), ids[:examples_per_word]) for w, ids in frequent],
        hallucinations=ranked,
        most_hallucinating=worst_named,
    )


def report_rows(report: FailureReport) -> list[dict[str, Any]]:
    """The worst and random cases as flat rows (e.g. for a W&B table)."""
    rows = []
    for group, cases in (("worst", report.worst), ("random", report.random)):
        for c in cases:
            rows.append({"group": group, "image_id": c.image_id, "path": c.path, "caption": c.caption,
                         "references": " | ".join(c.references), **c.scores,
                         "error_kinds": ", ".join(c.error_kinds or []), "wrong_words": ", ".join(c.wrong_words),
                         "hallucinated": ", ".join(c.hallucinated or [])})
    return rows


def thumbnail(path: str, size: int) -> Image.Image:
    """The image shrunk to fit ``size`` x ``size``; a grey placeholder saying so when it cannot be read."""
    from captioning.data.images import BadImageError, load_rgb

    try:
        image = load_rgb(path)
        image.thumbnail((size, size))
        return image
    except (BadImageError, OSError):
        image = Image.new("RGB", (size, size), (200, 200, 200))
        ImageDraw.Draw(image).text((4, size // 2 - 6), "no image", fill=(80, 80, 80))
        return image


def _data_uri(image: Image.Image) -> str:
    """Base64 ``data:`` URI: PNG for flat synthetic images (few colours), JPEG for photos (10x smaller)."""
    buffer = io.BytesIO()
    flat = image.getcolors(256) is not None
    image.save(buffer, format="PNG" if flat else "JPEG", quality=85)
    mime = "png" if flat else "jpeg"
    return f"data:image/{mime};base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


_CSS = """body{font-family:sans-serif;margin:1.5em;color:#222}table{border-collapse:collapse;margin:0.5em 0 1.5em}
td,th{border:1px solid #ccc;padding:4px 8px;vertical-align:top;text-align:left}th{background:#f3f3f3}
.cap{font-weight:bold}.err{color:#b00}ul{margin:0;padding-left:1.2em}.score{font-family:monospace}"""


def _e(value: Any) -> str:
    return html.escape(str(value))


def _case_row(case: FailureCase, thumb: str, score_keys: list[str], hallucination: bool) -> str:
    refs = "".join(f"<li>{_e(r)}</li>" for r in case.references)
    scores = "<br>".join(f"{_e(k)} {case.scores[k]:.3f}" for k in score_keys if k in case.scores)
    kinds = ", ".join(case.error_kinds) if case.error_kinds else ("none" if case.error_kinds is not None else "")
    wrong = ", ".join(case.wrong_words)
    named = f'<td class="err">{_e(", ".join(case.hallucinated or []) or "none")}</td>' if hallucination else ""
    return (f'<tr><td><img src="{thumb}" alt="image {_e(case.image_id)}"><br>{_e(case.image_id)}</td>'
            f'<td class="cap">{_e(case.caption)}</td><td><ul>{refs}</ul></td><td class="score">{scores}</td>'
            f'<td class="err">{_e(kinds)}</td><td>{_e(wrong)}</td>{named}</tr>')


def _case_table(cases: list[FailureCase], thumbs: dict[int, str], score_keys: list[str],
                hallucination: bool = False) -> str:
    head = ("<tr><th>image</th><th>generated caption</th><th>references</th><th>scores</th>"
            "<th>error kinds</th><th>wrong words</th>" + ("<th>hallucinated objects</th>" if hallucination else "")
            + "</tr>")
    rows = "".join(_case_row(c, thumbs[c.image_id], score_keys, hallucination) for c in cases)
    return "<table>" + head + rows + "</table>"


def _group_table(title: str, note: str, groups: Mapping[str, Mapping[str, float]], size_key: str) -> str:
    """One row per group: its size, then each of its fractions (blank where a group lacks one)."""
    keys = list(dict.fromkeys(k for g in groups.values() for k in g if k != size_key))
    head = "".join(f"<th>{_e(k)}</th>" for k in ("group", size_key, *keys))
    rows = "".join(f"<tr><td>{_e(name)}</td><td>{int(g[size_key])}</td>"
                   + "".join(f"<td class='score'>{g[k]:.3f}</td>" if k in g else "<td></td>" for k in keys) + "</tr>"
                   for name, g in groups.items())  # fmt: skip
    return f"<h2>{_e(title)}</h2><p>{_e(note)}</p><table><tr>{head}</tr>{rows}</table>"


def _summary_tables(report: FailureReport) -> str:
    parts = []
    if report.metrics:
        cells = "".join(f"<tr><td>{_e(k)}</td><td class='score'>{v:.4f}</td></tr>" for k, v in report.metrics.items())
        parts.append(f"<h2>Metrics</h2><table>{cells}</table>")
    if report.scene_groups:
        parts.append(_group_table("Scene accuracy by group", "Scene attribute accuracies within each group of "
                                  "scenes (by object count, drawing style, twins, held-out pairs).",
                                  report.scene_groups, "images"))
    if report.object_groups:
        parts.append(_group_table("Objects by kind", "Share of scene objects bound (colour, shape and size on one "
                                  "described object) and named with the right colour, shape, size; place=k is "
                                  "the k-th along the row or column.", report.object_groups, "objects"))
    if report.error_counts is not None:
        cells = "".join(f"<tr><td>{_e(k)}</td><td>{n}</td><td>{n / report.n_images:.1%}</td></tr>"
                        for k, n in report.error_counts.items()) or "<tr><td colspan=3>no errors found</td></tr>"
        parts.append(f"<h2>Errors by kind</h2><table><tr><th>kind</th><th>captions</th><th>share</th></tr>"
                     f"{cells}</table>")
    cells = "".join(f"<tr><td>{_e(w)}</td><td>{n}</td><td>{_e(', '.join(map(str, ids)))}</td></tr>"
                    for w, n, ids in report.wrong_words) or "<tr><td colspan=3>none</td></tr>"
    if report.hallucinations is not None:
        cells = "".join(f"<tr><td>{_e(w)}</td><td>{n}</td><td>{n / report.n_images:.1%}</td>"
                        f"<td>{_e(', '.join(map(str, ids)))}</td></tr>"
                        for w, n, ids in report.hallucinations) or "<tr><td colspan=4>none</td></tr>"
        parts.append("<h2>Hallucinated objects</h2><p>Named by the caption, absent from the image (CHAIR); "
                     "most frequent first.</p><table><tr><th>object</th><th>captions</th><th>share</th>"
                     f"<th>example image ids</th></tr>{cells}</table>")
    parts.append("<h2>Most frequent wrong words</h2><p>Generated, but in none of the image's references.</p>"
                 f"<table><tr><th>word</th><th>captions</th><th>example image ids</th></tr>{cells}</table>")
    return "".join(parts)


def render_html(report: FailureReport, path: str | Path, thumb_size: int = 128) -> Path:
    """Write the report as one self-contained HTML file (thumbnails embedded); returns its path."""
    cases = {c.image_id: c for c in report.worst + report.random + report.most_hallucinating}
    thumbs = {i: _data_uri(thumbnail(c.path, thumb_size)) for i, c in cases.items()}
    score_keys = sorted({k for c in cases.values() for k in c.scores}, key=lambda k: (k != report.rank_by, k))
    title = f"Failure cases: {report.split}"
    shown = report.hallucinations is not None
    most = (f"<h2>Captions with the most hallucinated objects ({len(report.most_hallucinating)})</h2>"
            + _case_table(report.most_hallucinating, thumbs, score_keys, shown)) if report.most_hallucinating else ""
    body = (f"<h1>{_e(title)}</h1><p>{report.n_images} images; worst {len(report.worst)} by "
            f"{_e(report.rank_by)}, and a random sample of {len(report.random)}.</p>"
            + _summary_tables(report)
            + f"<h2>Worst {len(report.worst)} by {_e(report.rank_by)}</h2>"
            + _case_table(report.worst, thumbs, score_keys, shown)
            + most
            + f"<h2>Random sample of {len(report.random)}</h2>"
            + _case_table(report.random, thumbs, score_keys, shown))
    page = (f'<!DOCTYPE html><html><head><meta charset="utf-8"><title>{_e(title)}</title>'
            f"<style>{_CSS}</style></head><body>{body}</body></html>\n")
    with atomic_write(path, "w") as f:
        f.write(page)
    return Path(path)


def render_contact_sheet(report: FailureReport, path: str | Path, thumb_size: int = 128, columns: int = 6) -> Path:
    """Write a PNG grid of the worst cases: thumbnail, generated caption, score, error kinds."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    cases = report.worst or report.random
    rows = max(1, -(-len(cases) // columns))
    fig = Figure(figsize=(2.6 * columns, 4.0 * rows + 0.6))  # room under each image for 6 lines of text
    FigureCanvasAgg(fig)  # a canvas without pyplot: no global backend state is touched
    fig.suptitle(f"{report.split}: worst {len(cases)} by {report.rank_by}", fontsize=12)
    for k, case in enumerate(cases):
        ax = fig.add_subplot(rows, columns, k + 1)
        ax.imshow(thumbnail(case.path, thumb_size))
        ax.set_xticks([])
        ax.set_yticks([])
        label = textwrap.fill(case.caption, 30)
        label += f"\n{report.rank_by} {case.scores[report.rank_by]:.2f}"
        if case.error_kinds:
            label += "\n" + textwrap.fill(", ".join(case.error_kinds), 30)
        if case.hallucinated:
            label += "\n" + textwrap.fill("hallucinated: " + ", ".join(case.hallucinated), 30)
        ax.set_xlabel(label, fontsize=7)
    fig.tight_layout()
    with atomic_write(path, "wb") as f:
        fig.savefig(f, format="png", dpi=100)
    return Path(path)
