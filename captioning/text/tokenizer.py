"""Caption tokenisation exactly as the official COCO caption scorer does it, without Java.

pycocoevalcap runs Stanford CoreNLP 3.4.1's ``PTBTokenizer -preserveLines -lowerCase`` and then drops
the tokens in its ``PUNCTUATIONS`` list. That tokenizer is a JFlex lexer (PTBLexer.flex): at each
position the rule with the longest match wins (trailing context counts towards the length), ties go to
the earlier rule. The rules that matter for English text are ported below as ``regex`` patterns (the
``regex`` package comes with nltk; its POSIX mode gives JFlex's longest match) and checked against the
3.4.1 jar; ``ptb_tokens`` runs the longest-match loop. nltk's TreebankWordTokenizer is close but not
the same (it never splits sentence-internal periods, keeps ``(`` rather than ``-lrb-``, ...).

Quirks of the official pipeline kept on purpose, because BLEU parity depends on them:
- ``-lowerCase`` turns ``(`` -> ``-LRB-`` -> ``-lrb-``, and the punctuation list only has upper-case
  ``-LRB-``, so ``-lrb-``/``-rrb-`` survive as tokens; so do ``!!``, ``??``, ``&``, ``%`` and ``$``.
- Abbreviations keep their period (``mr.``, ``st.``, ``etc.``); ``cannot``/``gonna`` are split.
Known limit: the scorer tokenises all captions as one file, so a caption ending in a one-letter
"acronym" (``... a.``) followed by a line starting "A"/"The" loses that period; each caption here is
tokenised as if it were the last line.
"""

from __future__ import annotations

import functools
import re
from typing import Callable, NamedTuple

import regex

# pycocoevalcap/tokenizer/ptbtokenizer.py, compared after Java's lower-casing (so "-lrb-" stays).
PUNCTUATIONS = frozenset(
    ["''", "'", "``", "`", "-LRB-", "-RRB-", "-LCB-", "-RCB-", ".", "?", "!", ",", ":", "-", "--", "...", ";"]
)

# --- JFlex macros of PTBLexer.flex, in `regex` syntax ------------------------------------------------
_M: dict[str, str] = {}
_M["SPACE"] = r"[ \t\u00A0\u2000-\u200A\u3000]"
_M["NEWLINE"] = r"(?:\r\n?|\n|\u2028|\u2029|\u000B|\u000C|\u0085)"
_M["SPACENL"] = r"(?:{SPACE}|{NEWLINE})"
_M["LETTER"] = r"[\p{L}\p{M}\u00AD]"
_M["DIGIT"] = r"\p{Nd}"
_M["ALNUM"] = r"[\p{Alpha}\p{Digit}]"
_M["APOS"] = r"(?:['\u0092\u2019\u00B4]|&apos;)"
_M["APOSETC"] = r"(?:{APOS}|[`\u0091\u2018\u201B])"
_M["HYPHEN"] = r"[\-_\u058A\u2010\u2011]"
_M["WORD"] = r"{LETTER}(?:{LETTER}|{DIGIT})*(?:[.!?]{LETTER}(?:{LETTER}|{DIGIT})*)*"
_M["NUM"] = r"(?:{DIGIT}+|{DIGIT}*(?:[.:,\u00AD\u066B\u066C]{DIGIT}+)+)"
_M["NUMBER"] = r"[\-+]?{NUM}"
_M["REDAUX"] = r"{APOS}(?:[msdMSD]|(?:re|ve|ll))"
_M["SWORD"] = r"[A-Za-z\u00AD]*[A-MO-Za-mo-z]\u00AD*"
_M["SREDAUX"] = r"(?:n){APOSETC}(?:t)"
_M["ACRO"] = r"(?:[A-Za-z](?:\.[A-Za-z])*|(?:canada|sino|korean|eu|japan|non)-u\.s|u\.s\.-(?:u\.k|u\.s\.s\.r))"
_M["ACRO2"] = r"(?:[A-Za-z](?:\.[A-Za-z])+|(?:canada|sino|korean|eu|japan|non)-u\.s|u\.s\.-(?:u\.k|u\.s\.s\.r))"
_M["ABBREV1"] = (  # usually followed by lower-case words; sentence end if an upper-case word follows
    r"(?:(?:jan|feb|mar|apr|jun|jul|aug|sep|sept|oct|nov|dec|mon|tue|tues|wed|thu|thurs|fri"
    r"|ala|ariz|calif|colo|conn|ct|dak|fla|ga|ind|kans?|ky|md|mich|minn|mo|mont|neb|nev|okla|penn|tenn"
    r"|va|vt|wisc?|wyo|inc|cos?|corp|pp?t[ye]s?|ltd|plc|rt|bancorp|bhd|assn|univ|intl|sys|tel|est|ext|sq"
    r"|jr|bros|(?:ed|ph)\.d|esq|etc|al|seq|bldg)"
    r"|[A]z|[A]rk|[D]el|[I]ll|[L]a|[M]ass|[M]iss|[O]re|[P]a|[T]ex|[W]ash)\."
)
_M["ABBREV4"] = (  # usually followed by an upper-case word (titles, acronyms)
    r"(?:(?:mr|mrs|ms|mx|drs?|profs?|sens?|reps?|attys?|lt|col|gen|messrs|govs?|adm|rev|maj|sgt|cpl|pvt"
    r"|capt|ste?|ave|pres|lieut|rt|hon|brig|co?mdr|pfc|spc|supts?|det|mt|ft|adj|adv|asst|assoc|ens|insp"
    r"|mlle|mme|msgr|sfc|sr|vs|alex|wm|jos|cie|a\.k\.a|cf|treas|ph|invt|elec|natl|m[ft]g|dept|blvd|rd)"
    r"|[M]iss|[v]|{ACRO})"
)
_M["ABBREV3"] = r"(?:ca|figs?|prop|nos?|sect?s?|arts?|paras?|bldg|pp|op|approx|[P][t]|rs)\."
_M["SENT_START"] = (  # words after which an acronym's period ends a sentence (capital first letter)
    r"(?:[A]bout|[A]ccording|[A]dditionally|[A]fter|[A]n|[A]|[A]s|[A]t|[B]ut|[D]id|[D]uring|[E]arlier"
    r"|[H]e|[H]er|[H]ere|[H]ow|[H]owever|[I]f|[I]n|[I]t|[L]ast|[M]any|[M]ore|[M]r\.|[M]s\.|[N]ow|[O]nce"
    r"|[O]ne|[O]ther|[O]ur|[S]he|[S]ince|[S]o|[S]ome|[S]uch|[T]hat|[T]he|[T]heir|[T]hen|[T]here|[T]hese"
    r"|[T]hey|[T]his|[W]e|[W]hen|[W]hile|[W]hat|[W]ho|[W]hy|[Y]et|[Y]ou)"
)
_M["THING"] = (
    r"(?:[dDoOlL]{APOSETC}{ALNUM})?(?:{ALNUM}+|{NUMBER})"
    r"(?:{HYPHEN}(?:[dDoOlL]{APOSETC}{ALNUM})?(?:{ALNUM}+|{NUM}))*"
)
_M["HTHING"] = r"{ALNUM}[\p{Alpha}\p{Digit}.,\u00AD]*(?:-(?:[\p{Alpha}\p{Digit}\u00AD]+(?:\.{DIGIT}+)?|{ACRO2}\.))+"
_M["APOWORD"] = (
    r"(?:{APOS}n{APOS}?|[lLdDjJ]{APOS}|(?:dunkin|somethin|ol){APOS}|{APOS}(?:em)|(?:diff){APOSETC}(?:rent)"
    r"|[A-HJ-XZn]{APOSETC}\p{L}{2,}|{APOS}[2-9]0(?:s)|{APOS}(?:till?)"
    r"|\p{L}+[aeiouyAEIOUY]{APOSETC}[aeiouA-Z]\p{L}*|{APOS}(?:cause)|(?:cont'd)\.?|(?:nor'easter|c'mon"
    r"|e'er|s'mores|ev'ry|li'l|nat'l)|O{APOSETC}o)"
)
_M["QUOTES"] = r"(?:{APOS}|''|[`\u2018-\u201F\u0082\u0084\u0091-\u0094\u2039\u203A\u00AB\u00BB]{1,2})"
_M["DBLQUOT"] = r"(?:\"|&quot;)"
_M["SGML"] = (
    r"<(?:[!?][A-Za-z\-][^>\r\n]*|[A-Za-z][A-Za-z0-9_:.\-]*(?:[ ]+(?:[A-Za-z][A-Za-z0-9_:.\-]*"
    r"|[A-Za-z][A-Za-z0-9_:.\-]*[ ]*=[ ]*(?:'[^']*'|\"[^\"]*\"|[A-Za-z][A-Za-z0-9_:.\-]*)))*[ ]*/?"
    r"|/[A-Za-z][A-Za-z0-9_:.\-]*)[ ]*>"
)
_M["MISCSYMBOL"] = (
    r"[+%&~\^|\\\u00A6\u00A7\u00A8\u00A9\u00AC\u00AE\u00AF\u00B0-\u00BA\u00D7\u00F7\u2016\u2017\u2020-\u2025"
    r"\u2030-\u2038\u203B\u203C\u2043\u203E-\u2042\u2044\u207A-\u207F\u208A-\u208E\u2100-\u214F\u2190-\u21FF"
    r"\u2200-\u2BFF\u3001-\u3006\u3008-\u3020\u30FB\uFF01-\uFF0F\uFF1A-\uFF20\uFF3B-\uFF40\uFF5B-\uFF65]"
)


def _expand(pattern: str) -> str:
    """Substitute ``{NAME}`` macros (repeatedly, as macros use macros); leave ``{2,}`` quantifiers alone."""
    for _ in range(6):
        pattern = re.sub(r"(?<!\\[pP])\{([A-Z][A-Z_0-9]+)\}", lambda m: _M[m.group(1)], pattern)
    return pattern


def _caseless(pattern: str) -> str:
    """JFlex's %caseless: literal letters match either case; character classes stay case-sensitive.

    Each literal letter ``a`` outside a class becomes ``[aA]`` (scoped IGNORECASE groups would be
    simpler, but `regex` mishandles negated classes with letter ranges inside them).
    """
    out, i = [], 0
    while i < len(pattern):
        ch = pattern[i]
        if pattern.startswith("(?", i):  # group syntax: (?:  (?P<t>  (?=  (?s:
            end = min(j for j in (pattern.find(c, i + 2) for c in ":>=!") if j >= 0) + 1
        elif ch == "\\":
            nxt = pattern[i + 1]
            end = pattern.index("}", i) + 1 if nxt in "pP" else i + {"u": 6, "x": 4}.get(nxt, 2)
        elif ch == "[":
            end = i + 1 + (pattern[i + 1] == "^")
            end += pattern[end] == "]"  # a leading ']' is a member
            while pattern[end] != "]":
                end += 2 if pattern[end] == "\\" else 1
            end += 1
        else:
            out.append(f"[{ch.lower()}{ch.upper()}]" if ch.isalpha() else ch)
            i += 1
            continue
        out.append(pattern[i:end])
        i = end
    return "".join(out)


# --- token actions: text -> (token or None, characters to push back) -------------------------------

_SINGLE_QUOTE = re.compile(r"&apos;|'")
_DOUBLE_QUOTE = re.compile(r"\"|''|'`|`'|&quot;")
_LATEX_MAPS = [
    (re.compile("[\u0082\u008B\u0091\u2018\u201A\u201B\u2039]"), "`"),
    (re.compile("[\u0092\u009B\u00B4\u2019\u203A]"), "'"),
    (re.compile("[\u0084\u0093\u201C\u201E\u00AB]|[\u0091\u2018]'"), "``"),
    (re.compile("[\u0094\u201D\u00BB]|[\u0092\u2019]'"), "''"),
]


def _latex_quotes(text: str, probably_left: bool) -> str:
    """PTBLexer.latexQuotes: straight quotes by guessed side, curly quotes by their own side."""
    if probably_left:
        text = _DOUBLE_QUOTE.sub("``", _SINGLE_QUOTE.sub("`", text))
    else:
        text = _DOUBLE_QUOTE.sub("''", _SINGLE_QUOTE.sub("'", text))
    for pattern, replacement in _LATEX_MAPS:
        text = pattern.sub(replacement, text)
    return text


Action = Callable[[str], "tuple[str | None, int]"]


def _keep(text: str) -> tuple[str | None, int]:
    return text, 0


def _drop(text: str) -> tuple[str | None, int]:
    return None, 0


def _const(token: str) -> Action:
    return lambda text: (token, 0)


def _push(n: int) -> Action:
    """Return all but the last ``n`` characters; they are lexed again (``yypushback``)."""
    return lambda text: (text[:-n], n)


def _quote(probably_left: bool) -> Action:
    return lambda text: (_latex_quotes(text, probably_left), 0)


def _abbrev_with_period(text: str) -> tuple[str | None, int]:
    """Keep ``etc.`` whole and lex its period again as a sentence end (the reduplicated period)."""
    return text, 1


def _acronym(text: str) -> tuple[str | None, int]:
    """processAcronym: ``I.`` -> ``I`` + ``.``; longer acronyms keep the period and repeat it."""
    return (text[:-1], 1) if len(text) == 2 else (text, 1)


def _ellipsis(text: str) -> tuple[str | None, int]:
    return "...", 0


def _hyphens(text: str) -> tuple[str | None, int]:
    return ("--" if 3 <= len(text) <= 4 else text), 0


def _number(text: str) -> tuple[str | None, int]:
    return re.sub("[\u00AD\u066C\u2009\u202F]", "", text).strip(), 0


def _nbsp(text: str) -> tuple[str | None, int]:
    return text.replace(" ", "\u00A0"), 0


def _parens(text: str) -> tuple[str | None, int]:
    return text.replace(" ", "\u00A0").replace("(", "-LRB-").replace(")", "-RRB-"), 0


_FRACTIONS = {"\u00BC": "1/4", "\u00BD": "1/2", "\u00BE": "3/4", "\u2153": "1/3", "\u2154": "2/3"}
_CURRENCY = {"\u00A2": "cents", "\u00A3": "#", "\u0080": "$", "\u20AC": "$"}  # others stay as they are


class _Rule(NamedTuple):
    pattern: regex.Pattern  # group "t" is the token text; anything after it is trailing context
    action: Action


def _rule(main: str, action: Action = _keep, context: str | None = None) -> _Rule:
    """Compile ``main/context`` as one POSIX (leftmost-longest) pattern, like a JFlex rule."""
    body = f"(?P<t>{_expand(main)})" + (f"(?:{_expand(context)})" if context else "")
    return _Rule(regex.compile(_caseless(body), regex.POSIX | regex.VERSION0), action)


_RULES: list[_Rule] = [
    _rule(r"c\+\+|(?:c|f)#"),
    _rule(r"cannot|'twas|dunno", _push(3)),
    _rule(r"'tis|gonna|gotta|lemme|gimme|wanna|nno", _push(2)),
    _rule(r"{SGML}", _nbsp),
    _rule(r"&(?:md|mdash|ndash);|[\u0096\u0097\u2013\u2014\u2015]", _const("--")),
    _rule(r"&(?:amp);", _const("&")),
    _rule(r"&(?:ht|tl|ur|lr|qc|ql|qr|odq|cdq|#[0-9]+);"),
    _rule(r"{WORD}", _keep, r"{REDAUX}"),
    _rule(r"{SWORD}", _keep, r"{SREDAUX}"),
    _rule(r"{WORD}"),
    _rule(r"{APOWORD}"),
    _rule(r"[yY]{APOS}", _keep, r"\p{L}"),
    _rule(r"https?://[^ \t\n\f\r\"<>|()]+[^ \t\n\f\r\"<>|.!?(){},\-]"),
    _rule(r"(?:(?:www\.(?:[^ \t\n\f\r\"<>|.!?(){},]+\.)+[a-zA-Z]{2,4})"
          r"|(?:(?:[^ \t\n\f\r\"`'<>|.!?(){},-_$]+\.)+(?:com|net|org|edu)))"  # ",-_" is a range in JFlex
          r"(?:/[^ \t\n\f\r\"<>|()]+[^ \t\n\f\r\"<>|.!?(){},\-])?"),
    _rule(r"[a-zA-Z0-9][^ \t\n\f\r\"<>|()\u00A0{}]*@(?:[^ \t\n\f\r\"<>|(){}.\u00A0]+\.)*[^ \t\n\f\r\"<>|(){}.\u00A0]+"),
    _rule(r"@[a-zA-Z_][a-zA-Z_0-9]*|#\p{L}[\p{L}\p{Nd}]*"),
    _rule(r"{REDAUX}", _quote(False), r"[^\p{Alpha}]"),
    _rule(r"{SREDAUX}", _quote(False), r"[^\p{Alpha}]"),
    _rule(r"{DIGIT}{1,2}[\-/]{DIGIT}{1,2}[\-/]{DIGIT}{2,4}"),
    _rule(r"{NUMBER}", _number),
    _rule(r"[\u207A\u207B\u208A\u208B]?(?:[\u2070\u00B9\u00B2\u00B3\u2074-\u2079]+|[\u2080-\u2089]+)"),
    _rule(r"(?:{DIGIT}{1,4}[\- \u00A0])?{DIGIT}{1,4}(?:\\?/|\u2044){DIGIT}{1,4}", _nbsp),
    _rule(r"[\u00BC\u00BD\u00BE\u2153-\u215E]", lambda t: (_FRACTIONS.get(t, t), 0)),
    _rule(r"-(?:rrb|lrb|rcb|lcb|rsb|lsb)-|(?:c\.d\.s|pro-|anti-|s&p-500|s&amp;p-500|s&ls|s&amp;ls)"
          r"|(?:cap){APOS}(?:n)|(?:c){APOS}(?:est)", lambda t: (re.sub("(?i)&amp;", "&", t), 0)),
    _rule(r"(?:E|Yahoo|Jeopardy)!"),
    _rule(r"{ALNUM}+(?:-\p{Alpha}+){0,2}(?:\\?/{ALNUM}+(?:-\p{Alpha}+){0,2}){1,2}"),
    _rule(r"[A-Z]*\$|#"),
    _rule(r"[\u00A2\u00A3\u00A4\u00A5\u0080\u20A0\u20AA\u20AC\u20B9\u060B\u0E3F\u20A4\uFFE0\uFFE1\uFFE5\uFFE6]",
          lambda t: (_CURRENCY.get(t, t), 0)),
    _rule(r"{ACRO}\.", _acronym, r"{SPACENL}+{SENT_START}(?:{SPACENL}|[?!])"),
    _rule(r"{ABBREV3}", _keep, r"{SPACENL}?{DIGIT}"),
    _rule(r"(?:so|no)\.", _keep, r"{SPACENL}+(?:africa|korea|cal)"),
    _rule(r"(?:pt[ey]|co)\.", _keep, r"{SPACE}(?:ltd|lim)"),
    _rule(r"{ABBREV1}", _abbrev_with_period, r"{SPACENL}(?:{SPACENL}|\p{Lu}|{SGML})"),
    _rule(r"{ABBREV1}", _keep, r"(?s:..)"),
    _rule(r"{ABBREV1}", _abbrev_with_period),
    _rule(r"{ABBREV4}\."),
    _rule(r"{ABBREV4}", _keep, r"{SPACE}"),
    _rule(r"{ACRO}", _keep, r"{SPACENL}"),
    _rule(r"{APOS}[0-9][0-9]", _keep, r"{SPACENL}"),
    _rule(r"{WORD}\.", _keep, r"[,;:\u3001]"),
    _rule(r"(?:\([0-9]{2,3}\)[ \u00A0]?|(?:\+\+?)?(?:[0-9]{2,4}[\- \u00A0])?[0-9]{2,4}[\- \u00A0])"
          r"[0-9]{3,4}[\- \u00A0]?[0-9]{3,5}|(?:(?:\+\+?)?[0-9]{2,4}\.)?[0-9]{2,4}\.[0-9]{3,4}\.[0-9]{3,5}", _parens),
    _rule(r"{DBLQUOT}", _quote(True), r"[\p{Alpha}\p{Digit}$]"),
    _rule(r"{DBLQUOT}", _quote(False)),
    _rule(r"\x7F", _drop),
    _rule(r"<|&(?:lt);", _const("<")),
    _rule(r">|&(?:gt);", _const(">")),
    _rule(r"[<>]?[:;=][\-o\*']?[\(\)DPdpO\\{@\|\[\]]", _parens, r"[^\p{Alpha}\p{Digit}]"),
    _rule(r"\{", _const("-LCB-")),
    _rule(r"\}", _const("-RCB-")),
    _rule(r"\[", _const("-LSB-")),
    _rule(r"\]", _const("-RSB-")),
    _rule(r"\(", _const("-LRB-")),
    _rule(r"\)", _const("-RRB-")),
    _rule(r"-+", _hyphens),
    _rule(r"(?:\.\.\.+|[\u0085\u2026])", _ellipsis, r"\.{SPACENL}+\p{L}"),
    _rule(r"\.[ \u00A0](?:\.[ \u00A0])+\.", _ellipsis, r"{SPACE}\.{SPACENL}+\p{L}"),
    _rule(r"\.\.\.+|[\u0085\u2026]|\.[ \u00A0](?:\.[ \u00A0])+\.", _ellipsis),
    _rule(r"@+|#+|_+"),
    _rule(r"\*+|(?:\\\*){1,3}"),
    _rule(r"[,;:\u3001]"),
    _rule(r"[?!]+"),
    _rule(r"[.\u00A1\u00BF\u037E\u0589\u061F\u06D4\u0700-\u0702\u07FA\u3002]"),
    _rule(r"=+"),
    _rule(r"/"),
    _rule(r"(?:mm-hm|mm-mm|o-kay|uh-huh|uh-oh)(?:s|es|d|ed)?"),
    _rule(r"(?:e|a|u|x|agro|ante|anti|arch|be|bi|bio|co|counter|cross|cyber|de|eco|ex|extra|inter|intra"
          r"|macro|mega|micro|mini|multi|neo|non|over|pan|para|peri|post|pre|pro|pseudo|quasi|re|semi|sub"
          r"|super|tri|ultra|un|uni|vice)(?:-(?:[\p{Alpha}\p{Digit}\u00AD]+|{ACRO2}\.))+"),
    _rule(r"{ALNUM}[\p{Alpha}\p{Digit}.,\u00AD]*-(?:esque|ette|fest|fold|gate|itis|less|most|o-torium|rama|wise)"
          r"(?:s|es|d|ed)?"),
    _rule(r"{HTHING}"),
    _rule(r"{HTHING}\.", _keep, r"[,;:\u3001]"),
    _rule(r"{THING}"),
    _rule(r"[A-Z]+(?:(?:[+&]|&amp;)[A-Z]+)+", lambda t: (re.sub("(?i)&amp;", "&", t), 0)),
    _rule(r"'", _quote(True), r"[A-Za-z][^ \t\n\r\u00A0]"),
    _rule(r"{REDAUX}", _quote(False)),
    _rule(r"{QUOTES}", _quote(False)),
    _rule(r"{SREDAUX}", _quote(False)),
    _rule(r"<<|>>"),
    _rule(r"{MISCSYMBOL}"),
    _rule(r"\x00|{SPACE}+|[\u200B\u200E\u200F\uFEFF]|{NEWLINE}|&(?:nbsp);", _drop),
    _rule(r"(?s:.)", _drop),  # untokenizable character: deleted (the lexer's default)
]


# A run of ASCII letters ended by a space is always a token of its own (only a '.', an apostrophe, a
# hyphen, a digit or '@' next to it can make a longer rule win), unless it is one of the split words.
_PLAIN_WORD = regex.compile(r"[A-Za-z]+(?=[ \t\n])")
_SPLIT_WORDS = frozenset(["cannot", "dunno", "gonna", "gotta", "lemme", "gimme", "wanna", "nno"])


def ptb_tokens(text: str) -> list[str]:
    """Stanford PTBTokenizer's tokens for ``text`` (original case, punctuation kept)."""
    text = text + "\n"  # each caption is a line of the scorer's input file
    tokens: list[str] = []
    pos = 0
    while pos < len(text):
        if text[pos] == " ":  # shortcut: spaces only separate tokens
            pos += 1
            continue
        plain = _PLAIN_WORD.match(text, pos)
        if plain is not None and plain.group().lower() not in _SPLIT_WORDS:
            tokens.append(plain.group())
            pos = plain.end()
            continue
        best_len, best = 0, None
        for rule in _RULES:  # longest match wins; the earlier rule wins a tie
            m = rule.pattern.match(text, pos)
            if m is not None and m.end() - pos > best_len:
                best_len, best = m.end() - pos, (rule, m.group("t"))
        rule, matched = best
        token, pushback = rule.action(matched)
        pos += len(matched) - pushback
        if token:
            tokens.append(token)
    return tokens


_SIMPLE = regex.compile(r"[A-Za-z, ]*[A-Za-z][A-Za-z, ]*")


@functools.lru_cache(maxsize=1 << 14)
def _period_is_separate(word: str) -> bool:
    """True when a caption-final ``word.`` lexes as ``word`` + ``.`` (not an abbreviation like ``etc.``)."""
    return ptb_tokens(word + ".") == [word, "."]


@functools.lru_cache(maxsize=1 << 16)
def _tokenize(caption: str) -> tuple[str, ...]:
    stripped = caption.replace("\n", " ").strip()
    core = stripped[:-1] if stripped.endswith(".") else stripped
    if _SIMPLE.fullmatch(core):
        # Fast path (most captions): words, spaces and commas lex as themselves, except the split
        # words and a final period that turns the last word into an abbreviation ("etc.").
        words = core.lower().replace(",", " ").split()
        if not _SPLIT_WORDS.intersection(words) and (core == stripped or _period_is_separate(core.split()[-1])):
            return tuple(words)
    tokens = (t.lower() for t in ptb_tokens(stripped))
    # Tokens never hold spaces for the scorer: its BLEU/CIDEr split on any whitespace, including the
    # non-breaking space PTB puts inside "1 1/2".
    return tuple(w for token in tokens if token not in PUNCTUATIONS for w in token.split())


def tokenize(caption: str) -> list[str]:
    """Lower-cased tokens of ``caption`` as the official COCO scorer sees them (PTB, punctuation dropped)."""
    return list(_tokenize(caption))
