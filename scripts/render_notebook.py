"""Execute the demo notebook and write it, outputs included, as markdown a reader can see without running it.

    python scripts/render_notebook.py --checkpoint runs/<run dir>    # the demo on a trained model
    python scripts/render_notebook.py                                # no checkpoint: it trains experiment=quick

Runs notebooks/caption_demo.ipynb top to bottom with nbclient (as tests/test_notebook.py does; the
stored notebook is left without outputs) and writes docs/notebook/caption_demo.md: markdown cells as
they are, code in ```python fences, text outputs in plain fences, rich markdown outputs as markdown,
and every image output next to the .md (caption_demo_<cell>_<n>.png, or .jpg where no PNG of it fits in
MAX_IMAGE_BYTES), linked from it. Paths of this machine in the outputs (the checkpoint's run directory, the
checkout, the notebook's working folder, the Python installation, the home folder) are written as
placeholders (``<run dir>``, ``.``, ...): the page reads the same whoever renders it.
"""

from __future__ import annotations

import argparse
import base64
import io
import os
import re
import site
import sys
import sysconfig
from pathlib import Path
from typing import Any, Mapping

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "caption_demo.ipynb"
OUT = ROOT / "docs" / "notebook" / "caption_demo.md"
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")  # colour codes in tracebacks and progress bars
MAX_IMAGE_BYTES = 200_000  # per image: the page stays light; a figure over it becomes a JPEG
MAX_IMAGE_WIDTH = 1400     # px: wider than any docs column (the inline backend's figures are rarely wider)
# an absolute path left after scrubbing: reported, so that a new kind of machine path is noticed
MACHINE_PATH = re.compile(r"(?<![\w:/.~<-])/(?:work|root|home|tmp|Users|var|opt|usr|mnt|private)/[^\s'\"`)]*")


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


def compress_image(png: bytes, limit: int = MAX_IMAGE_BYTES) -> tuple[bytes, str]:
    """(bytes, ".png" or ".jpg") of an image output: as it is where it fits in ``limit`` bytes and
    MAX_IMAGE_WIDTH; else scaled to that width, as an optimised PNG, a 256-colour PNG or, where neither fits,
    a JPEG (quality 85)."""
    from PIL import Image

    with Image.open(io.BytesIO(png)) as opened:
        if len(png) <= limit and opened.width <= MAX_IMAGE_WIDTH:
            return png, ".png"
        image = opened.convert("RGBA")
    if image.width > MAX_IMAGE_WIDTH:
        image = image.resize((MAX_IMAGE_WIDTH, round(image.height * MAX_IMAGE_WIDTH / image.width)), Image.LANCZOS)
    flat = Image.new("RGB", image.size, (255, 255, 255))  # figures are drawn on white: transparency onto it
    flat.paste(image, mask=image.getchannel("A"))
    for candidate in (flat, flat.quantize(256)):
        buffer = io.BytesIO()
        candidate.save(buffer, format="PNG", optimize=True)
        if buffer.tell() <= limit:
            return buffer.getvalue(), ".png"
    buffer = io.BytesIO()
    flat.save(buffer, format="JPEG", quality=85, optimize=True)
    return buffer.getvalue(), ".jpg"


def scrub(text: str, replacements: Mapping[str, str]) -> str:
    """``text`` with each path of ``replacements`` (longest first) written as its placeholder."""
    for path in sorted(replacements, key=len, reverse=True):
        if path:
            text = text.replace(path, replacements[path])
    return text


def machine_paths(checkpoint: str | None, notebook: Path) -> dict[str, str]:
    """The paths of this machine a rendering may print -> what the page says instead."""
    paths = {str(ROOT): ".", str(notebook.resolve().parent): "notebooks", str(Path.home()): "~"}
    for folder in {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"], *site.getsitepackages()}:
        paths[folder] = "<site-packages>"
    paths[sys.prefix] = "<python>"
    if checkpoint:
        source = Path(checkpoint).resolve()
        run_dir = source if source.is_dir() else source.parent.parent  # <run>/checkpoints/best.pt, as the notebook
        paths[str(run_dir)] = "<run dir>"
        paths[str(source)] = "<run dir>" if source == run_dir else f"<run dir>/{source.relative_to(run_dir)}"
    return paths


def notebook_markdown(nb: Mapping[str, Any], stem: str, replacements: Mapping[str, str] | None = None,
                      header: str = "") -> tuple[str, dict[str, bytes]]:
    """(the markdown of an executed notebook, {image file name: bytes}) with images named
    ``<stem>_<cell>_<n>.png`` (``.jpg`` where compress_image makes a JPEG), to be saved next to the markdown;
    the paths of ``replacements`` written as their placeholders; ``header`` (how it was rendered) first."""
    parts, images = [header] if header else [], {}
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
                    data, ext = compress_image(png)
                    if ext != ".png":
                        text = text.replace(name, name[: -len(".png")] + ext)
                        name = name[: -len(".png")] + ext
                    images[name] = data
                if text:
                    parts.append(text)
    return scrub("\n\n".join(p for p in parts if p) + "\n", replacements or {}), images


def write_markdown(nb: Mapping[str, Any], out: str | Path, replacements: Mapping[str, str] | None = None,
                   header: str = "") -> Path:
    """Write the notebook as ``out`` with its images beside it (atomically; stale images of an earlier
    render removed); the paths of ``replacements`` written as their placeholders, ``header`` first."""
    from captioning.utils.io import atomic_save_bytes, atomic_write

    out = Path(out)
    text, images = notebook_markdown(nb, out.stem, replacements, header)
    for old in [*out.parent.glob(f"{out.stem}_*_*.png"), *out.parent.glob(f"{out.stem}_*_*.jpg")]:
        if old.name not in images:
            old.unlink()
    for name, data in images.items():
        atomic_save_bytes(data, out.parent / name)
    with atomic_write(out, "w") as f:
        f.write(text)
    left = sorted(set(MACHINE_PATH.findall(text)))
    if left:
        print(f"warning: {out} still names paths of this machine: {', '.join(left[:5])}", file=sys.stderr)
    return out


def render_header(checkpoint: str | None) -> str:
    """What the page is and the command that drew its figures: the commit, the date and the run it showed."""
    import datetime
    import subprocess

    from captioning.models.card import recorded_command

    rev = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                         text=True).stdout.strip() or "unknown"
    command = "python scripts/render_notebook.py" + (" --checkpoint <run dir>" if checkpoint else "")
    run = "it trained its own model (experiment=quick)"
    if checkpoint:
        source = Path(checkpoint).resolve()
        trained = recorded_command(source if source.is_dir() else source.parent.parent)
        run = f"`<run dir>` is a run of `{trained}`" if trained else "`<run dir>` is a training run"
    return (f"*notebooks/caption_demo.ipynb executed, its outputs and figures included: `{command}` at commit "
            f"{rev} ({datetime.date.today().isoformat()}); {run}.*")


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
    out = write_markdown(nb, args.out, machine_paths(args.checkpoint, args.notebook), render_header(args.checkpoint))
    print(f"wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
