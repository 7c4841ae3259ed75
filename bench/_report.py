"""What every benchmark shares: replacing its own section of docs/benchmarks.md."""

from __future__ import annotations

import re
from pathlib import Path

DOC = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"


def write_section(section: str, text: str, doc_path: Path = DOC) -> None:
    """Replace the section headed ``section`` (up to the next ``## ``) with ``text``, or
    append it; the other sections stay exactly as they are."""
    if doc_path.exists():
        doc = doc_path.read_text()
        pattern = re.compile(rf"^{re.escape(section)}[ \t]*\n.*?(?=^## |\Z)", re.M | re.S)
        if pattern.search(doc):
            doc = pattern.sub(lambda _m: text.rstrip("\n") + "\n\n", doc, count=1)
        else:
            doc = doc.rstrip("\n") + "\n\n" + text
    else:
        doc = "# Benchmarks\n\nFigures measured on one machine, with how to reproduce them.\n\n"
        doc += text
    doc_path.parent.mkdir(parents=True, exist_ok=True)
    doc_path.write_text(doc.rstrip("\n") + "\n")
