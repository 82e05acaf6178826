"""report.html, written by cutover_report from a real run's journal, opened in a real headless Chromium.

Needs Debian's chromium package (/usr/bin/chromium); the tests skip, saying so, only when it is absent.
"""
from __future__ import annotations

import contextlib
import json
import os
import signal
import struct
import subprocess
import zlib
from collections import Counter
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, Iterator

import pytest

import cutover_report
from cutover_testlib import run_module

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="/usr/bin/chromium is absent: install Debian's "
                                                              "chromium package (apt-get install -y chromium)")

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "journal-migrate-safety-fail-open-rolled-back.jsonl"
RUN_ID = "20261204T210232Z"
WINDOW = (1280, 1400)
# Scripts that would mark the document if the page let them run (it must show them as text).
INJECTION = ("<script>document.documentElement.setAttribute('data-pwned', 'script')</script>"
             "<img src=x onerror=\"document.documentElement.setAttribute('data-pwned', 'img')\">")
# Colours of the page's stylesheet a screenshot must show: the outcome banner, passed and failed marks.
ROLLED_BACK_ORANGE, OK_GREEN, FAILED_RED, WHITE = (0xE6, 0x51, 0x00), (0x43, 0xA0, 0x47), (0xE5, 0x39, 0x35), (
    255, 255, 255)
VOID_TAGS = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


@dataclass
class Node:
    tag: str
    attrs: dict[str, str]
    children: list[Node] = field(default_factory=list)
    text: str = ""

    def iter(self, tag: str | None = None, class_name: str | None = None) -> Iterator[Node]:
        if (tag is None or self.tag == tag) and (class_name is None or class_name in self.classes):
            yield self
        for child in self.children:
            yield from child.iter(tag, class_name)

    @property
    def classes(self) -> list[str]:
        return (self.attrs.get("class") or "").split()


class DomParser(HTMLParser):
    """The serialised DOM Chromium dumps, back into a tree."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Node("#document", {})
        self.stack = [self.root]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        node = Node(tag, {name: value or "" for name, value in attrs})
        self.stack[-1].children.append(node)
        if tag not in VOID_TAGS:
            self.stack.append(node)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.stack[-1].children.append(Node(tag, {name: value or "" for name, value in attrs}))

    def handle_endtag(self, tag: str) -> None:
        while len(self.stack) > 1 and self.stack.pop().tag != tag:
            pass

    def handle_data(self, data: str) -> None:
        self.stack[-1].text += data


def chromium(profile: Path, *args: str) -> subprocess.CompletedProcess:
    """Run headless Chromium once; kill its whole process group afterwards (zygote, renderers), even on a timeout."""
    command = [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               "--user-data-dir=%s" % profile, "--force-color-profile=srgb", "--hide-scrollbars", *args]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    try:
        stdout, stderr = process.communicate(timeout=60)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    assert process.returncode == 0, stderr.decode(errors="replace")[-2000:]
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


def read_png(path: Path) -> tuple[int, int, Counter]:
    """(width, height, pixel colour counts) of an 8-bit RGB(A) PNG, decoded with the stdlib only."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    position, chunks = 8, {}
    while position < len(data):
        length, kind = struct.unpack(">I4s", data[position:position + 8])
        chunks.setdefault(kind, []).append(data[position + 8:position + 8 + length])
        position += 12 + length
    width, height, depth, color_type, _, _, interlace = struct.unpack(">IIBBBBB", chunks[b"IHDR"][0])
    assert (depth, color_type, interlace) in ((8, 2, 0), (8, 6, 0)), "unexpected PNG format"
    channels = 3 if color_type == 2 else 4
    raw = zlib.decompress(b"".join(chunks[b"IDAT"]))
    colors: Counter = Counter()
    previous = bytearray(width * channels)
    for row in range(height):
        start = row * (width * channels + 1)
        line = unfilter(raw[start], bytearray(raw[start + 1:start + 1 + width * channels]), previous, channels)
        colors.update(zip(line[0::channels], line[1::channels], line[2::channels]))
        previous = line
    return width, height, colors


def unfilter(kind: int, line: bytearray, previous: bytearray, channels: int) -> bytearray:
    """Undo one scanline's PNG filter (None, Sub, Up, Average, Paeth)."""
    if kind == 0:
        return line
    if kind == 2:
        return bytearray((value + above) & 255 for value, above in zip(line, previous))
    for index in range(len(line)):
        left = line[index - channels] if index >= channels else 0
        above, upper_left = previous[index], previous[index - channels] if index >= channels else 0
        if kind == 1:
            predictor = left
        elif kind == 3:
            predictor = (left + above) // 2
        else:
            estimate = left + above - upper_left
            distances = (abs(estimate - left), abs(estimate - above), abs(estimate - upper_left))
            predictor = (left, above, upper_left)[distances.index(min(distances))]
        line[index] = (line[index] + predictor) & 255
    return line


@pytest.fixture(scope="module")
def page(tmp_path_factory) -> dict[str, Any]:
    """report.html of the rolled-back run, written by the module, with a script injected into a probe detail."""
    entries = [json.loads(line) for line in FIXTURE.read_text().splitlines()]
    failed = next(entry for entry in entries if entry["event"] == "probe.result" and entry["data"]["verdict"] == "fail")
    failed["data"]["detail"] = INJECTION
    dest = tmp_path_factory.mktemp("reports")
    result = run_module(cutover_report.main, {"entries": entries, "dest": str(dest), "run_id": RUN_ID})
    return {"path": Path(result["html_path"]), "report": result["report"], "entries": entries,
            "work": tmp_path_factory.mktemp("chromium")}


def test_chromium_builds_the_timeline_and_one_svg_plot_per_probe(page):
    dumped = chromium(page["work"] / "profile-dom", "--dump-dom", page["path"].as_uri()).stdout.decode()
    parser = DomParser()
    parser.feed(dumped)
    document = parser.root
    [html] = document.iter("html")
    assert "data-pwned" not in html.attrs, "no injected script ran"
    assert [node.tag for node in document.iter() if node.tag in ("script", "img", "iframe", "object")] == []
    assert next(document.iter("title")).text == "Cutover run %s: rolled_back" % RUN_ID

    [timeline] = [node for node in document.iter("section") if node.attrs.get("id") == "timeline"]
    [timeline_svg] = timeline.iter("svg", "timeline")
    rows = list(timeline_svg.iter("g", "timeline-row"))
    expected_rows = list(dict.fromkeys((item["lane"], item["host"] or "-") for item in page["report"]["timeline"]))
    assert [(row.attrs["data-lane"], row.attrs["data-host"]) for row in rows] == expected_rows
    assert all(list(row.iter("rect")) + list(row.iter("path")) for row in rows), "every row has a mark"
    assert len(list(timeline_svg.iter("line", "trigger-line"))) == 1

    figures = list(document.iter("figure", "probe-plot"))
    results = [entry for entry in page["entries"] if entry["event"] == "probe.result"]
    pairs = list(dict.fromkeys((entry["component"], entry["data"]["probe"]) for entry in results))
    assert [(figure.attrs["data-component"], figure.attrs["data-probe"]) for figure in figures] == pairs
    for figure in figures:
        [plot] = figure.iter("svg", "plot")
        circles = list(plot.iter("circle", "point"))
        assert len(circles) == sum(1 for entry in results if (entry["component"], entry["data"]["probe"]) == (
            figure.attrs["data-component"], figure.attrs["data-probe"]))
        assert [text.text for text in plot.iter("text", "phase-label")] == ["baseline", "verify", "rollback"]
    [failed_plot] = [figure for figure in figures if "has-failure" in figure.classes]
    assert failed_plot.attrs["data-probe"] == "unsafe_blocked_ratio"
    [failed_point] = failed_plot.iter("circle", "verdict-fail")
    assert next(failed_point.iter("title")).text.endswith("; " + INJECTION), "the injection is shown as text"
    assert len(list(failed_plot.iter("line", "threshold"))) == 1


def test_chromium_screenshot_shows_the_page(page):
    screenshot = page["work"] / "report.png"
    chromium(page["work"] / "profile-shot", "--window-size=%d,%d" % WINDOW, "--screenshot=%s" % screenshot,
             page["path"].as_uri())
    width, height, colors = read_png(screenshot)
    assert (width, height) == WINDOW
    pixels = width * height
    assert len(colors) > 100, "more than a blank page's few colours"
    assert 0.05 < 1 - colors[WHITE] / pixels < 0.9, "drawn on, not blank"
    assert colors[ROLLED_BACK_ORANGE] > 3000, "the outcome banner"
    assert colors[OK_GREEN] > 2000, "passed stages and probes"
    assert colors[FAILED_RED] > 300, "the failed deploy, trigger and probe"
