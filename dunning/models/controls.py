"""Control characters in text that comes from data (names, order ids, reasons).

A terminal obeys ESC/CSI sequences (`ESC[2J` clears the screen) and bidi overrides reorder
what is shown; a mail header ends at a line break. `escape_controls` makes them visible
for the terminal (`\\x1b`), `strip_controls` removes them from a mail header's name.
"""

from __future__ import annotations

import re
import unicodedata

# C0/C1 and DEL (Cc), format characters such as U+202E (Cf), line and paragraph
# separators, surrogates and private use: none belongs in a name shown or sent.
UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs", "Co"})


def _unsafe(char: str) -> bool:
    return unicodedata.category(char) in UNSAFE_CATEGORIES


def _visible(char: str) -> str:
    n = ord(char)
    if n < 0x100:
        return f"\\x{n:02x}"
    return f"\\u{n:04x}" if n < 0x10000 else f"\\U{n:08x}"


def escape_controls(text: str, keep: str = "") -> str:
    """`text` with every control character written as its escape (ESC -> `\\x1b`);
    those in `keep` (e.g. a message's own line breaks) stay."""
    if text.isprintable():  # the common case: nothing to look at per character
        return text
    return "".join(_visible(c) if _unsafe(c) and c not in keep else c for c in text)


# What JSON leaves raw but a terminal obeys: DEL and C1 (CSI is 0x9b), bidi and invisible
# format characters, line separators. json.dump already escapes C0.
_JSON_RAW_CONTROLS = re.compile("[\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u206f\ufeff]")


def escape_json_text(document: str) -> str:
    """A JSON document with those characters as \\u escapes: the same data, safe to show."""
    return _JSON_RAW_CONTROLS.sub(lambda m: f"\\u{ord(m.group()):04x}", document)


def strip_controls(text: str) -> str:
    """`text` without control characters, runs of white space as one space."""
    if not text.isprintable():
        text = "".join(" " if _unsafe(c) else c for c in text)
    return " ".join(text.split())
