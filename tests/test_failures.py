"""Failure report: case selection, error kinds, wrong words, and the rendered HTML / PNG."""

import re

import pytest
from PIL import Image

from captioning.data.coco import ImageRecord
from captioning.evaluation.failures import collect_failures, render_contact_sheet, render_html, wrong_words


def _records(tmp_path, n=10, scenes=False):
    records = []
    for i in range(n):
        path = tmp_path / f"img{i}.png"
        Image.new("RGB", (40, 30), (20 * i, 100, 200)).save(path)
        scene = {"objects": [{"colour": "red"}], "n": i} if scenes else None
        records.append(ImageRecord(i, str(path), [f"a red circle number {i}", "a red circle"], scene))
    return records


def _inputs(tmp_path, n=10, scenes=False):
    records = _records(tmp_path, n, scenes)
    hyps = {r.image_id: ("a blue circle" if r.image_id % 2 else "a red circle") for r in records}
    per_image = {r.image_id: {"Bleu_4": 0.1 * r.image_id, "CIDEr": 1.0 - 0.05 * r.image_id} for r in records}
    return records, hyps, per_image


def test_worst_random_and_wrong_words(tmp_path):
    records, hyps, per_image = _inputs(tmp_path)
    report = collect_failures(records, hyps, per_image, split="val", rank_by="CIDEr", worst_k=3, random_k=4, seed=1)
    assert [c.image_id for c in report.worst] == [9, 8, 7]  # lowest CIDEr first
    assert len(report.random) == 4
    again = collect_failures(records, hyps, per_image, worst_k=3, random_k=4, seed=1)
    assert [c.image_id for c in again.random] == [c.image_id for c in report.random]
    assert report.error_counts is None
    assert report.wrong_words == [("blue", 5, [1, 3, 5, 7])]
    assert report.worst[0].wrong_words == ["blue"]


def test_rank_falls_back_to_bleu_without_cider(tmp_path):
    records, hyps, per_image = _inputs(tmp_path)
    per_image = {i: {"Bleu_4": s["Bleu_4"]} for i, s in per_image.items()}
    report = collect_failures(records, hyps, per_image, rank_by="CIDEr", worst_k=2)
    assert report.rank_by == "Bleu_4" and [c.image_id for c in report.worst] == [0, 1]


def test_error_kinds_come_from_the_scene_function(tmp_path):
    records, hyps, per_image = _inputs(tmp_path, scenes=True)

    def scene_fn(scene, caption):
        kinds = ["colour"] if "blue" in caption else []
        return kinds + (["count"] if scene["n"] > 7 else [])

    report = collect_failures(records, hyps, per_image, scene_fn=scene_fn, worst_k=10)
    assert report.error_counts == {"colour": 5, "count": 2}
    by_id = {c.image_id: c for c in report.worst}
    assert by_id[9].error_kinds == ["colour", "count"] and by_id[0].error_kinds == []


def test_missing_hypotheses_are_named(tmp_path):
    records, hyps, per_image = _inputs(tmp_path)
    del hyps[3]
    with pytest.raises(ValueError, match="no hypothesis"):
        collect_failures(records, hyps, per_image)


def test_wrong_words_use_the_scorer_tokens():
    assert wrong_words("A Red, red square!", ["a red circle"]) == ["square"]


def test_html_has_the_expected_rows_and_escapes(tmp_path):
    records, hyps, per_image = _inputs(tmp_path, scenes=True)
    hyps[9] = "<script>alert(1)</script>"
    records[0].path = str(tmp_path / "missing.png")  # unreadable images get a placeholder
    report = collect_failures(records, hyps, per_image, worst_k=3, random_k=2,
                              scene_fn=lambda s, c: ["shape"] if "script" in c else [])
    out = render_html(report, tmp_path / "out" / "failures_val.html", thumb_size=32)
    page = out.read_text()
    tables = page.split("<table>")
    worst_table, random_table = tables[-2], tables[-1]
    assert worst_table.count("<tr>") == 1 + 3 and random_table.count("<tr>") == 1 + 2
    assert len(re.findall(r'src="data:image/(png|jpeg);base64,', page)) == 5
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert "Errors by kind" in page and ">shape<" in page
    assert [p.name for p in out.parent.iterdir()] == ["failures_val.html"]  # no temp files left


def test_contact_sheet_is_a_png(tmp_path):
    records, hyps, per_image = _inputs(tmp_path, n=7)
    report = collect_failures(records, hyps, per_image, worst_k=7)
    out = render_contact_sheet(report, tmp_path / "sheet.png", thumb_size=32, columns=4)
    with Image.open(out) as image:
        assert image.format == "PNG" and image.width > 200 and image.height > 200
