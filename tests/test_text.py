"""Tokenisation must match the official COCO scorer (Stanford PTBTokenizer + punctuation removal)."""

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from captioning.text.tokenizer import PUNCTUATIONS, ptb_tokens, tokenize
from tests.fixtures import COCO_CAPTIONS as COCO

# Expected outputs recorded from `java edu.stanford.nlp.process.PTBTokenizer -preserveLines -lowerCase`
# (CoreNLP 3.4.1, the jar pycocoevalcap ships) followed by pycocoevalcap's punctuation removal.
KNOWN = {
    "A man riding a wave on top of a surfboard.": "a man riding a wave on top of a surfboard",
    "Two dogs, a cat and a bird.": "two dogs a cat and a bird",
    "He can't won't don't I'm you're it's cannot gonna": "he ca n't wo n't do n't i 'm you 're it 's can not gon na",
    '"Quoted" text (parens) [brackets] {braces}': "quoted text -lrb- parens -rrb- -lsb- brackets -rsb- -lcb- braces -rcb-",
    "a/b and c*d e&f &amp; 3/4 1 1/2 $5.00 50% #1 @home": "a/b and c * d e & f & 3/4 1 1/2 $ 5.00 50 % # 1 @home",
    "Hello... world -- dash - hyphen-word a--b e.g. U.S. Mr. Smith": "hello world dash hyphen-word a b e.g. u.s. mr. smith",
    "The dog's bone; dogs' bones! Why? Yes!!! x+y=z": "the dog 's bone dogs bones why yes !!! x + y = z",
    "Mt. St. Ave. Dr. Jr. Co. Inc. vs. No. A.M.": "mt. st. ave. dr. jr. co. inc. vs. no a.m.",
    "A cat etc.": "a cat etc.",
    "A dog in KY.": "a dog in ky.",
    "A man holding an ore.": "a man holding an ore",
    "o’clock O’Neil it’s don’t rock'n'roll": "o’clock o’neil it 's do n't rock 'n' roll",
    "it is a 1920's car, 10:30 and 2,000": "it is a 1920 's car 10:30 and 2,000",
    "www.foo.com/bar. x@y.com": "www.foo.com/bar x@y.com",
}


@pytest.mark.parametrize("caption", sorted(KNOWN))
def test_known_java_outputs(caption):
    assert tokenize(caption) == KNOWN[caption].split()


def test_tokens_are_lowercase_and_punctuation_free():
    tokens = tokenize("A Big, RED Bus... Parked: Near (The) Curb!")
    assert tokens == ["a", "big", "red", "bus", "parked", "near", "-lrb-", "the", "-rrb-", "curb"]
    assert not PUNCTUATIONS.intersection(tokens)


def test_fast_path_agrees_with_lexer():
    # plain-word captions skip the lexer; they must give what the lexer gives
    for caption in ["A dog on a couch.", "a cat, a dog and a bird", "Mr Smith in Ore.", "I cannot see", "x"]:
        lexed = [t.lower() for t in ptb_tokens(caption) if t.lower() not in PUNCTUATIONS]
        assert tokenize(caption) == lexed


def test_returns_fresh_lists():
    first = tokenize("a dog")
    first.append("mutated")
    assert tokenize("a dog") == ["a", "dog"]


def test_empty_and_whitespace():
    assert tokenize("") == []
    assert tokenize("  \n ") == []
    assert tokenize("two\nlines") == ["two", "lines"]


def _ptb_jar() -> Path:
    """The CoreNLP jar pycocoevalcap ships (a core dependency, so it is always there)."""
    import pycocoevalcap.tokenizer.ptbtokenizer as ptb

    jar = Path(ptb.__file__).parent / ptb.STANFORD_CORENLP_3_4_1_JAR
    assert jar.exists(), f"pycocoevalcap's tokenizer jar is missing: {jar}"
    return jar


def test_parity_with_java_on_real_coco_captions(tmp_path):
    if shutil.which("java") is None:
        pytest.skip("needs Java (a `java` executable on PATH) to run pycocoevalcap's PTBTokenizer jar")
    jar = _ptb_jar()
    annotations = json.loads(COCO.read_text(encoding="utf-8"))["annotations"]
    captions = [a["caption"].replace("\n", " ") for a in annotations]
    src = tmp_path / "caps.txt"
    src.write_text("\n".join(captions), encoding="utf-8")
    cmd = ["java", "-cp", str(jar), "edu.stanford.nlp.process.PTBTokenizer", "-preserveLines", "-lowerCase", str(src)]
    lines = subprocess.run(cmd, capture_output=True, check=True, env={**os.environ}).stdout.decode().split("\n")
    official = [[w for w in line.rstrip().split(" ") if w not in PUNCTUATIONS] for line in lines[: len(captions)]]
    mismatches = [c for c, ref in zip(captions, official) if tokenize(c) != ref]
    assert len(official) == len(captions) == len(annotations) and not mismatches, mismatches[:5]
