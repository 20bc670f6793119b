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
