"""The examples figure: a grid of a run's test images with the captions its Captioner gives them."""

import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

from PIL import Image

from captioning.evaluation.gallery import DPI, CELL_H, CELL_W, HEADER_H, MARGIN, TITLE_H, pick_examples

ROOT = Path(__file__).resolve().parents[1]


def record(i, n):
    scene = None if n is None else {"objects": [{}] * n}
    return SimpleNamespace(image_id=i, path=f"{i}.png", captions=["x"], scene=scene)


def test_pick_is_seeded_and_mixes_scene_sizes():
    records = [record(i, 1 + i % 3) for i in range(30)]
    picked = pick_examples(records, 6, seed=3)
    assert [len(r.scene["objects"]) for r in picked] == [1, 2, 3, 1, 2, 3]
    assert [r.image_id for r in picked] == [r.image_id for r in pick_examples(records[::-1], 6, seed=3)]
    assert [r.image_id for r in picked] != [r.image_id for r in pick_examples(records, 6, seed=4)]
    assert len(pick_examples(records[:4], 6)) == 4  # fewer than asked: all of them
    assert len(pick_examples([record(i, None) for i in range(9)], 5)) == 5  # no scenes: one group


def test_gallery_of_the_tiny_run(tiny_run, tmp_path):
    from captioning.captioner import Captioner
    from captioning.evaluation.gallery import render_gallery, run_records

    run_dir, _ = tiny_run
    captioner = Captioner.from_checkpoint(run_dir)
    records = run_records(run_dir)
    assert set(records) == {"test", "test_novel"}
    out = tmp_path / "figures" / "examples.png"
    gallery = render_gallery(captioner, records, out, per_split=4, columns=2, seed=0, method="beam", beam_size=2)

    assert out.is_file() and not list(out.parent.glob(".*.tmp"))  # written atomically, nothing left over
    assert gallery.rows == {"test": 2, "test_novel": 2} and gallery.columns == 2
    width = round((2 * MARGIN + 2 * CELL_W) * DPI)
    height = round((TITLE_H + 2 * (HEADER_H + 2 * CELL_H) + MARGIN) * DPI)
    with Image.open(out) as png:
        assert png.size == gallery.size == (width, height)
    # the captions drawn are the Captioner's own for those images
    for split in ("test", "test_novel"):
        mine = [e for e in gallery.examples if e.split == split]
        assert len(mine) == 4 and {e.objects for e in mine} >= {1, 2}  # scene sizes mixed
        by_id = {r.image_id: r for r in records[split]}
        expected = captioner.caption([by_id[e.image_id].path for e in mine], method="beam", beam_size=2)
        assert [(e.image_id, e.caption) for e in mine] == [(e.image_id, c.text) for e, c in zip(mine, expected)]
        assert all(e.correct in (True, False) and e.reference in by_id[e.image_id].captions for e in mine)
    assert gallery.pairs() == [(e.image_id, e.caption) for e in gallery.examples]
    # deterministic: the same seed draws the same images
    again = render_gallery(captioner, records, tmp_path / "again.png", per_split=4, columns=2, seed=0,
                           method="beam", beam_size=2)
    assert again.pairs() == gallery.pairs()


def test_script_writes_the_figure(tiny_run, tmp_path):
    run_dir, _ = tiny_run
    out = tmp_path / "examples.png"
    done = subprocess.run([sys.executable, "-m", "captioning.commands.render_examples", f"checkpoint={run_dir}",
                           f"out={out}", "per_split=2", "decoding.method=greedy"], capture_output=True, text=True,
                          cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert out.is_file() and len(done.stdout.strip().splitlines()) == 4
    bad = subprocess.run([sys.executable, "-m", "captioning.commands.render_examples", f"checkpoint={run_dir}",
                          "colour=red"], capture_output=True, text=True, cwd=ROOT)
    assert bad.returncode != 0 and "Key 'colour' not in 'GalleryRunConfig'" in bad.stderr
