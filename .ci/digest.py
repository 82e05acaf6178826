"""Print what failed in a `make test` log, last, where a CI tail shows it: each failed Ansible task (its result
lines, and for a command that ran a playbook, the failures in that playbook's output), each failed pytest test and
Molecule's error lines. Colours are stripped; each block is cut short.

    digest.py LOG"""
from __future__ import annotations

import re
import sys

ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
BOX = re.compile(r"^\s*[│└┌─]+\s?")
START = re.compile(r"^(fatal: \[|failed: \[|FAILED tests/|ERROR\s|E\s{3})")
BLOCK_LINES = 14
INNER_LINES = 12
INNER_TOTAL = 60
TOTAL_LINES = 150
LINE_CHARS = 600


def failure_blocks(lines: list[str]) -> list[tuple[int, list[str]]]:
    """(line number, lines) of each failure line with the indented lines of its result; an Ansible failure that was
    ignored is left out."""
    blocks: list[tuple[int, list[str]]] = []
    index, task = 0, ""
    while index < len(lines):
        if lines[index].startswith("TASK ["):
            task = lines[index]
        if not START.search(lines[index]):
            index += 1
            continue
        start, block = index, ([task] if lines[index].startswith(("fatal:", "failed:")) and task else []) + [lines[index]]
        index += 1
        result: list[str] = []
        while index < len(lines) and (lines[index][:1] in (" ", "") and not START.search(lines[index])):
            if lines[index].strip():
                result.append(lines[index])
            index += 1
        block += result[:BLOCK_LINES - len(block)] + inner_failures(result[BLOCK_LINES - len(block):])
        if index >= len(lines) or not lines[index].startswith("...ignoring"):
            blocks.append((start, block))
    return blocks


def inner_failures(result: list[str]) -> list[str]:
    """The failures printed by a playbook a failed task ran (its stdout, indented in the task's result): each
    inner failed task's TASK line and result lines, ignored ones left out."""
    shown: list[str] = []
    index, task = 0, ""
    while index < len(result) and len(shown) < INNER_TOTAL:
        text = result[index].strip()
        if text.startswith("TASK ["):
            task = result[index]
        if not text.startswith(("fatal: [", "failed: [")):
            index += 1
            continue
        indent = len(result[index]) - len(result[index].lstrip())
        failure = ([task] if task else []) + [result[index]]
        index += 1
        while index < len(result) and len(result[index]) - len(result[index].lstrip()) > indent:
            failure.append(result[index])
            index += 1
        if index >= len(result) or not result[index].strip().startswith("...ignoring"):
            shown += failure[:INNER_LINES]
    return shown[:INNER_TOTAL]


def decisive(blocks: list[tuple[int, list[str]]], lines: list[str]) -> list[list[str]]:
    """The failures that failed the run: pytest's FAILED lines, and for each Molecule step that failed, the last
    Ansible failure before it (scenarios that expect failures print many that failed nothing); else the last ones."""
    failed_tests = [block for _, block in blocks if block[0].startswith("FAILED tests/")]
    ansible = [(start, block) for start, block in blocks if any(line.startswith(("fatal:", "failed:")) for line in block)]
    chosen: list[list[str]] = []
    for number, line in enumerate(lines):
        if "Executed: Failed" in line:
            before = [block for start, block in ansible if start < number]
            if before and before[-1] not in chosen:
                chosen.append(before[-1])
            chosen.append([line.strip()])
    return failed_tests + (chosen or [block for _, block in ansible[-5:]])


def main(path: str) -> int:
    with open(path, encoding="utf-8", errors="replace") as handle:
        lines = [BOX.sub("", ANSI.sub("", line.rstrip("\n")))[:LINE_CHARS] for line in handle]
    blocks = decisive(failure_blocks(lines), lines)
    print("\n==== what failed (from %s) ====" % path)
    printed = 0
    for block in blocks:
        if printed + len(block) > TOTAL_LINES:
            print("... more in %s" % path)
            break
        print("\n".join(block))
        print("--")
        printed += len(block)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
