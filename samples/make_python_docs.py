"""Write samples/python-docs.txt from Python's own documentation topics (``pydoc_data``).

    python3 samples/make_python_docs.py

The topics are the Language Reference sections that ``help("for")`` shows; they ship with
CPython in ``Lib/pydoc_data/topics.py`` under the PSF License (see samples/README.md). The sample
keeps their prose: each heading becomes a Markdown heading, wrapped lines of a paragraph or a
list item are joined into one line (so no sentence is cut by a line break), and code examples,
grammar rules, tables and lists of signatures are left out, as are paragraphs that an earlier
topic already holds (several topics repeat sections of others) — a long document to summarize
should read as prose.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from pydoc_data.topics import topics

OUT = Path(__file__).resolve().parent / "python-docs.txt"
_BULLET = re.compile(r"(\*|-|\d+\.|\(\d+\))\s")
_UNDERLINE = re.compile(r"^([*=\-^~#])\1{2,}$")
_ENDS = tuple(".:?!)")


def _is_prose(lines: list[str]) -> bool:
    """Wrapped prose: one indentation, sentence-like, no code or grammar markers."""
    indents = {len(line) - len(line.lstrip()) for line in lines}
    text = " ".join(line.strip() for line in lines)
    if len(indents) != 1 or "::=" in text or ">>>" in text or text.startswith("..."):
        return False
    return (text[:1].isupper() or text[:1] in "\"'(“") and text.endswith(_ENDS)


def convert(block: str) -> str | None:
    """A block (text between blank lines) as it goes into the sample, or None to leave it out."""
    lines = block.rstrip().split("\n")
    if len(lines) == 2 and _UNDERLINE.match(lines[1].strip()):
        return "# " + lines[0].strip()
    first = lines[0].strip()
    if not (_is_prose(lines) or (_BULLET.match(first) and " ".join(lines).rstrip().endswith(_ENDS))):
        return None
    out: list[str] = []
    for line in lines:
        text = line.strip()
        if out and not _BULLET.match(text):
            out[-1] += " " + text
        else:
            out.append(text)
    return "\n".join(out)


def main() -> None:
    version = ".".join(map(str, sys.version_info[:3]))
    parts = [
        (
            "Python documentation topics\n\n"
            f"The prose of the language reference topics shipped with Python {version} (pydoc_data.topics). "
            "Copyright (c) 2001-2023 Python Software Foundation; All Rights Reserved. Distributed under "
            "the PSF License Agreement Version 2 (samples/LICENSE-PSF.txt). Changes: code examples, "
            "grammar rules, tables and repeated paragraphs were left out and wrapped lines were joined."
        )
    ]
    seen: set[str] = set()  # several topics repeat sections of others ("specialnames")
    for name in sorted(topics):
        blocks = []
        for block in re.split(r"\n{2,}", topics[name].strip("\n")):
            text = convert(block)
            if text and (text.startswith("# ") or text not in seen):
                seen.add(text)
                blocks.append(text)
        if any(not b.startswith("# ") for b in blocks):
            parts.append("\n\n".join(blocks))
    OUT.write_text("\n\n".join(parts) + "\n", encoding="utf-8")
    print(f"wrote {OUT} ({OUT.stat().st_size:,} bytes, {len(topics)} topics)", file=sys.stderr)


if __name__ == "__main__":
    main()
