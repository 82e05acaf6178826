"""Rewrite the generated parts of docs/ARCHITECTURE.md from their one source (make docs)."""
from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "module_utils"))
from cutover_events import render_markdown_table  # noqa: E402  (the schema module is stdlib-only)

DOC = ROOT / "docs" / "ARCHITECTURE.md"
BLOCK = re.compile(r"(<!-- events:begin -->\n)(?:.*?\n)?(<!-- events:end -->)", re.S)


def main() -> None:
    text = DOC.read_text()
    if not BLOCK.search(text):
        raise SystemExit("%s has no <!-- events:begin --> ... <!-- events:end --> block" % DOC)
    DOC.write_text(BLOCK.sub(lambda match: match.group(1) + render_markdown_table() + "\n" + match.group(2), text))


if __name__ == "__main__":
    main()
