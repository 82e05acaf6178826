"""Print what failed in a `make test` log, last, where a CI tail shows it: each failed Ansible task (its result
lines), each failed pytest test and Molecule's error lines. Colours are stripped; each block is cut short.

    digest.py LOG"""
from __future__ import annotations

import re
import sys

ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
BOX = re.compile(r"^\s*[│└┌─]+\s?")
START = re.compile(r"^(fatal: \[|failed: \[|FAILED tests/|ERROR\s|E\s{3})")
BLOCK_LINES = 14
TOTAL_LINES = 150
LINE_CHARS = 600


def failure_blocks(lines: list[str]) -> list[list[str]]:
    """Each failure line with the indented lines of its result; an Ansible failure that was ignored is left out."""
    blocks: list[list[str]] = []
    index = 0
    while index < len(lines):
        if not START.search(lines[index]):
            index += 1
            continue
        block = [lines[index]]
        index += 1
        while index < len(lines) and (lines[index][:1] in (" ", "") and not START.search(lines[index])):
            if len(block) < BLOCK_LINES and lines[index].strip():
                block.append(lines[index])
            index += 1
        if index >= len(lines) or not lines[index].startswith("...ignoring"):
            blocks.append(block)
    return blocks


def main(path: str) -> int:
    with open(path, encoding="utf-8", errors="replace") as handle:
        lines = [BOX.sub("", ANSI.sub("", line.rstrip("\n")))[:LINE_CHARS] for line in handle]
    blocks = failure_blocks(lines)
    print("\n==== what failed (%d blocks, from %s) ====" % (len(blocks), path))
    printed = 0
    for block in blocks:
        if printed + len(block) > TOTAL_LINES:
            print("... %d more lines in %s" % (sum(len(rest) for rest in blocks) - printed, path))
            break
        print("\n".join(block))
        print("--")
        printed += len(block)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
