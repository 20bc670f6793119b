"""scripts/render_notebook.py's markdown renderer, on a small hand-made executed notebook (no kernel)."""

import base64
import importlib.util
import io
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output
from PIL import Image

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "render_notebook.py"


def load_script():
    spec = importlib.util.spec_from_file_location("render_notebook", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def png_b64(colour) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (4, 3), colour).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def executed_notebook():
    return new_notebook(cells=[
        new_markdown_cell("# Title\n\nSome *prose*."),
        new_code_cell("print('hello')\nx = 2", outputs=[new_output("stream", name="stdout", text="hello\n"),
                                                        new_output("stream", name="stderr", text="10%\r100%\n")]),
        new_code_cell("x", outputs=[new_output("execute_result", data={"text/plain": "2"}, execution_count=2)]),
        new_code_cell("plot()", outputs=[
            new_output("display_data", data={"image/png": png_b64("red"), "text/plain": "<Figure>"}),
            new_output("display_data", data={"text/markdown": "**bold table**", "text/plain": "<Markdown>"}),
            new_output("display_data", data={"image/png": png_b64("blue"), "text/plain": "<Figure>"})]),
        new_code_cell("s = '```'", outputs=[new_output("stream", name="stdout", text="\x1b[31m```\x1b[0m\n")]),
        new_code_cell(""),
    ])


def test_markdown_of_a_notebook():
    script = load_script()
    nb = executed_notebook()
    nbformat.validate(nb)
    text, images = script.notebook_markdown(nb, "demo")
    assert list(images) == ["demo_3_1.png", "demo_3_2.png"]
    assert text == ("# Title\n\nSome *prose*.\n\n"
                    "```python\nprint('hello')\nx = 2\n```\n\n```\nhello\n```\n\n```\n100%\n```\n\n"
                    "```python\nx\n```\n\n```\n2\n```\n\n"
                    "```python\nplot()\n```\n\n![output](demo_3_1.png)\n\n**bold table**\n\n![output](demo_3_2.png)\n\n"
                    "````python\ns = '```'\n````\n\n````\n```\n````\n")


def test_write_markdown_saves_images_beside_it(tmp_path):
    script = load_script()
    out = tmp_path / "docs" / "demo.md"
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "demo_9_1.png").write_bytes(b"stale")  # from an earlier render: removed
    (tmp_path / "docs" / "other.png").write_bytes(b"keep")
    assert script.write_markdown(executed_notebook(), out) == out
    assert sorted(p.name for p in out.parent.iterdir()) == ["demo.md", "demo_3_1.png", "demo_3_2.png", "other.png"]
    with Image.open(out.parent / "demo_3_2.png") as image:
        assert image.size == (4, 3) and image.convert("RGB").getpixel((0, 0)) == (0, 0, 255)
    assert "![output](demo_3_1.png)" in out.read_text()


def noise_png(width: int, height: int) -> bytes:
    """A PNG of random pixels: no lossless compression makes it small."""
    import numpy as np

    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)).save(
        buffer, format="PNG")
    return buffer.getvalue()


def test_images_are_compressed_to_the_limit():
    script = load_script()
    small = base64.b64decode(png_b64("red"))
    assert script.compress_image(small) == (small, ".png")  # fits: untouched
    big = noise_png(600, 400)
    assert len(big) > 200_000
    data, ext = script.compress_image(big, limit=200_000)
    assert ext == ".jpg" and len(data) <= 200_000
    with Image.open(io.BytesIO(data)) as image:
        assert image.size == (600, 400)
    wide = io.BytesIO()
    Image.new("RGB", (3000, 1000), "white").save(wide, format="PNG")
    data, ext = script.compress_image(wide.getvalue(), limit=100)  # too wide and over the limit
    with Image.open(io.BytesIO(data)) as image:
        assert image.width == script.MAX_IMAGE_WIDTH


def test_a_large_image_output_is_written_as_a_jpeg_and_linked(tmp_path):
    script = load_script()
    big = base64.b64encode(noise_png(600, 400)).decode("ascii")
    nb = new_notebook(cells=[new_code_cell("plot()", outputs=[
        new_output("display_data", data={"image/png": big, "text/plain": "<Figure>"})])])
    out = script.write_markdown(nb, tmp_path / "demo.md")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo.md", "demo_0_1.jpg"]
    assert "![output](demo_0_1.jpg)" in out.read_text()
    assert (tmp_path / "demo_0_1.jpg").stat().st_size <= script.MAX_IMAGE_BYTES


def test_machine_paths_become_placeholders(tmp_path):
    script = load_script()
    run_dir = tmp_path / "runs" / "2026-12-06" / "10-00-00"
    (run_dir / "checkpoints").mkdir(parents=True)
    paths = script.machine_paths(str(run_dir / "checkpoints" / "best.pt"), script.NOTEBOOK)
    nb = new_notebook(cells=[new_code_cell("print(WORK)", outputs=[new_output("stream", name="stdout", text=(
        f"working folder {script.NOTEBOOK.parent / 'caption-demo'}\nconfigs {script.ROOT / 'captioning/configs'}\n"
        f"checkpoint {run_dir / 'checkpoints' / 'best.pt'}\nreport {run_dir / 'eval' / 'failures_val.html'}\n"
        f"home {Path.home() / 'x'}\n"))])])
    text, _ = script.notebook_markdown(nb, "demo", paths)
    assert ("working folder notebooks/caption-demo\nconfigs ./captioning/configs\n"
            "checkpoint <run dir>/checkpoints/best.pt\nreport <run dir>/eval/failures_val.html\nhome ~/x\n") in text
    assert str(tmp_path) not in text and str(script.ROOT) not in text


def test_the_page_says_how_it_was_rendered(tmp_path):
    script = load_script()
    run_dir = tmp_path / "run"
    (run_dir / ".hydra").mkdir(parents=True)
    (run_dir / ".hydra" / "overrides.yaml").write_text("- experiment=show_attend_tell\n")
    header = script.render_header(str(run_dir))
    assert "`python scripts/render_notebook.py --checkpoint <run dir>` at commit" in header
    assert "`<run dir>` is a run of `captioning-train experiment=show_attend_tell`" in header
    text, _ = script.notebook_markdown(executed_notebook(), "demo", header=header)
    assert text.startswith(header + "\n\n# Title")
