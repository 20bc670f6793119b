"""Execute the demo notebook and write it, outputs included, as markdown a reader can see without running it.

    python scripts/render_notebook.py --checkpoint runs/<run dir>    # the demo on a trained model
    python scripts/render_notebook.py                                # no checkpoint: it trains experiment=quick

Runs notebooks/caption_demo.ipynb top to bottom with nbclient (as tests/test_notebook.py does; the
stored notebook is left without outputs) and writes docs/notebook/caption_demo.md: markdown cells as
they are, code in ```python fences, text outputs in plain fences, rich markdown outputs as markdown,
and every image output as a PNG next to the .md (caption_demo_<cell>_<n>.png), linked from it.
"""

from __future__ import annotations

import argparse
import base64
import os
import re
import sys
from pathlib import Path
from typing import Any, Mapping

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "caption_demo.ipynb"
OUT = ROOT / "docs" / "notebook" / "caption_demo.md"
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")  # colour codes in tracebacks and progress bars


def _text(value: Any) -> str:
    return "".join(value) if isinstance(value, list) else str(value)


def _fence(text: str, lang: str = "") -> str:
    text = ANSI.sub("", text).rstrip("\n")
    ticks = "`" * max(3, 1 + max((len(m) for m in re.findall(r"`+", text)), default=0))  # outlast any ``` inside
    return f"{ticks}{lang}\n{text}\n{ticks}"


def output_markdown(output: Mapping[str, Any], image_name: str) -> tuple[str, bytes | None]:
    """(markdown, PNG bytes to save as ``image_name`` beside the markdown, or None) for one code-cell output."""
    kind = output.get("output_type")
    if kind == "stream":  # a progress bar redraws its line after "\r": keep what was shown last
        lines = _text(output.get("text", "")).split("\n")
        return _fence("\n".join(line.rstrip("\r").rsplit("\r", 1)[-1] for line in lines)), None
    if kind == "error":
        return _fence("\n".join(output.get("traceback") or [f"{output.get('ename')}: {output.get('evalue')}"])), None
    data = output.get("data", {})
    if "image/png" in data:
        return f"![output]({image_name})", base64.b64decode(_text(data["image/png"]))
    if "text/markdown" in data:
        return _text(data["text/markdown"]).strip("\n"), None
    if "text/plain" in data:
        return _fence(_text(data["text/plain"])), None
    return "", None


def notebook_markdown(nb: Mapping[str, Any], stem: str) -> tuple[str, dict[str, bytes]]:
    """(the markdown of an executed notebook, {image file name: PNG bytes}) with images named
    ``<stem>_<cell>_<n>.png``, to be saved next to the markdown."""
    parts, images = [], {}
    for i, cell in enumerate(nb["cells"]):
        source = _text(cell.get("source", "")).strip("\n")
        if cell["cell_type"] == "markdown":
            parts.append(source)
        elif cell["cell_type"] == "code":
            if source:
                parts.append(_fence(source, "python"))
            for output in cell.get("outputs", []):
                name = f"{stem}_{i}_{len(images) + 1}.png"
                text, png = output_markdown(output, name)
                if png is not None:
                    images[name] = png
                if text:
                    parts.append(text)
    return "\n\n".join(p for p in parts if p) + "\n", images


def write_markdown(nb: Mapping[str, Any], out: str | Path) -> Path:
    """Write the notebook as ``out`` with its images beside it (atomically; stale images of an earlier
    render removed)."""
    from captioning.utils.io import atomic_save_bytes, atomic_write

    out = Path(out)
    text, images = notebook_markdown(nb, out.stem)
    for old in out.parent.glob(f"{out.stem}_*_*.png"):
        if old.name not in images:
            old.unlink()
    for name, png in images.items():
        atomic_save_bytes(png, out.parent / name)
    with atomic_write(out, "w") as f:
        f.write(text)
    return out


def execute(notebook: Path, timeout: int) -> Any:
    """The notebook executed top to bottom in a fresh python3 kernel (its folder as working directory)."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(notebook, as_version=4)
    NotebookClient(nb, timeout=timeout, kernel_name="python3",
                   resources={"metadata": {"path": str(notebook.parent)}}).execute()  # raises on any error
    return nb


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", help="run directory or .pt file for the demo (CAPTION_DEMO_CHECKPOINT); "
                        "without it the notebook trains its own model")
    parser.add_argument("--notebook", type=Path, default=NOTEBOOK, help=f"default: {NOTEBOOK.relative_to(ROOT)}")
    parser.add_argument("--out", type=Path, default=OUT, help=f"default: {OUT.relative_to(ROOT)}")
    parser.add_argument("--fast", action="store_true", help="CAPTION_DEMO_FAST=1: a tiny model (for a quick look)")
    parser.add_argument("--timeout", type=int, default=1800, help="seconds per cell (default: 1800)")
    args = parser.parse_args(argv)
    if args.checkpoint:
        os.environ["CAPTION_DEMO_CHECKPOINT"] = str(Path(args.checkpoint).resolve())
    if args.fast:
        os.environ["CAPTION_DEMO_FAST"] = "1"
    os.environ.setdefault("MPLBACKEND", "module://matplotlib_inline.backend_inline")  # figures as PNG outputs
    nb = execute(args.notebook, args.timeout)
    print(f"wrote {write_markdown(nb, args.out)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
