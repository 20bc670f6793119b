"""The README's shape: the quickstart pair verbatim first, then its topics in order. That every command in it
(and in docs/) composes is tests/test_doc_commands.py."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
QUICKSTART = ["pip install -e . && captioning-train", 'pip install -e ".[test]" && python -m pytest -q']


def code_blocks(text: str) -> list[tuple[str, str]]:
    """(language, body) of every fenced block."""
    return re.findall(r"^```(\w*)\n(.*?)^```", text, flags=re.S | re.M)


def test_quickstart_commands_are_the_first_two_blocks_verbatim():
    blocks = code_blocks(README)
    assert [body.strip() for _, body in blocks[:2]] == QUICKSTART


def test_the_readme_covers_its_topics_in_order():
    headings = [h.lower() for h in re.findall(r"^## (.+)$", README, flags=re.M)]
    wanted = ["main job", "coco", "evaluation", "character-level", "notebook", "results"]
    positions = [next(i for i, h in enumerate(headings) if w in h) for w in wanted]
    assert positions == sorted(positions), headings
