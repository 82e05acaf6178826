# -*- coding: utf-8 -*-
# Pure functions: report dict + journal entries -> report.html, one self-contained page (inline CSS and SVG, no
# script, no external resource) with the run's timeline and one plot per probe across the phases. Journal values
# are untrusted text (probe details, reasons): every one goes through esc(). The entries must be the redacted ones
# the report was built from. The markup is well-formed XML as well as HTML, so tests can parse it strictly.
from __future__ import annotations

import html
import json
import math
import re
from datetime import datetime, timezone
from typing import Any, Callable, NamedTuple

from ansible.module_utils.cutover_report import OUTCOME_HEADLINES
from ansible.module_utils.cutover_run import describe_trigger

Entry = dict[str, Any]

PHASES = ("baseline", "canary", "verify", "watch", "rollback")
VERDICTS = ("recorded", "pass", "fail", "inconclusive", "error")
BAD_VERDICTS = ("fail", "inconclusive", "error")
HOST_COLORS = ("#1f77b4", "#9467bd", "#17becf", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#ff7f0e")
MAX_CATEGORIES = 6
MAX_THRESHOLD_LINES = 3
COMPARISON = re.compile(r"\s*(?:<=|>=|==|<|>)\s*(?P<bound>.+?)\s*$")
RESOLVED_BOUND = re.compile(r"\((?P<number>[^()]+)\)$")
TICK_STEPS_S = (0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 21600, 86400)

# Timeline geometry (px): a label column, then the time axis.
LABEL_W, CHART_W, RIGHT_W, ROW_H, AXIS_H = 300, 680, 40, 20, 30
# Probe plot geometry (px).
PLOT_W, PLOT_H, PLOT_LEFT, PLOT_RIGHT, PLOT_TOP, PLOT_BOTTOM = 380, 200, 96, 14, 14, 34

CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src 'none'; base-uri 'none'; form-action 'none'"
STYLE = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:24px;color:#1b1b1b;background:#fff}
h1{font-size:22px;margin:0 0 6px}h2{font-size:18px;margin:28px 0 8px;border-bottom:1px solid #ddd}
.outcome{display:inline-block;padding:4px 10px;border-radius:4px;font-weight:600;color:#fff;background:#555}
.outcome-migrated{background:#2e7d32}.outcome-rolled_back{background:#e65100}.outcome-failed{background:#b71c1c}
dl.facts{display:grid;grid-template-columns:max-content auto;gap:2px 14px;margin:10px 0}
dl.facts dt{color:#555}dl.facts dd{margin:0;overflow-wrap:anywhere}
svg text{font:11px system-ui,sans-serif;fill:#333}svg .axis line,svg .grid{stroke:#ccc}
.bar.status-ok,.marker.status-ok{fill:#43a047}.bar.status-failed,.marker.status-failed{fill:#e53935}
.bar.status-none,.marker.status-none{fill:#1e88e5}.bar.open{fill-opacity:.45;stroke:#333;stroke-dasharray:3 2}
.marker.status-migrated{fill:#2e7d32}.marker.status-rolled_back{fill:#e65100}
.trigger-line{stroke:#e53935;stroke-dasharray:4 3}
.plots{display:flex;flex-wrap:wrap;gap:14px}
figure.probe-plot{margin:0;border:1px solid #ddd;border-radius:4px;padding:6px;background:#fafafa}
figure.probe-plot.has-failure{border-color:#e53935}
figcaption{font-weight:600}figcaption .meta{display:block;font-weight:400;color:#555;font-size:12px;max-width:380px;
overflow-wrap:anywhere}
.series{fill:none;stroke-width:1.5}.point{stroke-width:1.5}
.verdict-pass{fill:#43a047;background:#43a047}.verdict-recorded{fill:#90a4ae;background:#90a4ae}
.verdict-fail{fill:#e53935;background:#e53935}.verdict-error{fill:#fb8c00;background:#fb8c00}
.verdict-inconclusive{fill:#fdd835;background:#fdd835}.verdict-other{fill:#fff}
.threshold{stroke:#e53935;stroke-dasharray:6 3}.threshold-label{fill:#c62828}
.phase-band{fill:#f0f0f0}.legend span{margin-right:14px}.legend i{display:inline-block;width:12px;height:12px;
margin-right:4px;vertical-align:-1px;border-radius:6px}
table{border-collapse:collapse;font-size:12px}td,th{border:1px solid #ddd;padding:2px 6px;text-align:left;
vertical-align:top}td.label{max-width:520px;overflow-wrap:anywhere}.empty{color:#555}
"""


def esc(value: Any) -> str:
    """Any journal value as HTML text or attribute content (quotes escaped too)."""
    return html.escape(text_of(value), quote=True)


def text_of(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, str):
        return value
    if isinstance(value, bool) or is_number(value):
        return json.dumps(value)
    return json.dumps(value, sort_keys=True, default=str)


def token(value: Any) -> str:
    """A value reduced to a safe CSS class suffix (null: none)."""
    return "none" if value is None else re.sub(r"[^a-z0-9_-]", "-", text_of(value).lower())


def short(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit - 3] + "..."


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def number_text(value: float) -> str:
    if float(value).is_integer() and abs(value) < 1e15:
        return "%d" % value
    return "%.4g" % value if abs(value) < 1000 else "%.0f" % value


def parse_ts(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


# ---- page -------------------------------------------------------------------------------------------------

def render_html(report: dict[str, Any], entries: list[Entry]) -> str:
    """The whole page: header (outcome, trigger), timeline, probe plots."""
    title = "Cutover run %s: %s" % (text_of(report.get("run_id")), text_of(report.get("outcome")))
    return "".join([
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"/>",
        "<meta http-equiv=\"Content-Security-Policy\" content=\"%s\"/>" % esc(CSP),
        "<meta name=\"viewport\" content=\"width=device-width\"/>",
        "<title>%s</title><style>%s</style></head>\n<body>\n" % (esc(title), STYLE),
        header_html(report), timeline_html(report.get("timeline") or []), probes_html(entries),
        "<footer><p class=\"empty\">Built by cutover_report from the run journal; the summary is in "
        "<a href=\"report.md\">report.md</a>, the data in <a href=\"report.json\">report.json</a>.</p></footer>\n",
        "</body></html>\n",
    ])


def header_html(report: dict[str, Any]) -> str:
    outcome = report.get("outcome")
    facts = [("playbook", report.get("playbook")), ("target release", report.get("target_release")),
             ("started", report.get("started_at")), ("finished", report.get("finished_at") or "never finished"),
             ("message", report.get("message"))]
    if report.get("target_run_id"):
        facts.insert(1, ("rolls back run", report["target_run_id"]))
    trigger = (report.get("rollback") or {}).get("trigger")
    if trigger:
        facts.append(("rollback trigger", describe_trigger(trigger)))
        if trigger.get("detail"):
            facts.append(("trigger detail", trigger["detail"]))
    if report.get("abort"):
        abort = report["abort"]
        facts.append(("stopped", "at %s on %s: %s" % (text_of(abort.get("stage")), text_of(abort.get("host")),
                                                       text_of(abort.get("message")))))
    rows = "".join("<dt>%s</dt><dd>%s</dd>" % (esc(name), esc(value)) for name, value in facts)
    return ("<header id=\"summary\"><h1>Cutover run %s</h1><p class=\"outcome outcome-%s\">%s</p>"
            "<dl class=\"facts\">%s</dl></header>\n"
            % (esc(report.get("run_id")), token(outcome), esc(OUTCOME_HEADLINES.get(outcome, outcome)), rows))


# ---- timeline ---------------------------------------------------------------------------------------------

class Span(NamedTuple):
    item: dict[str, Any]
    start: datetime
    end: datetime | None  # None: the span never ended

    @property
    def row(self) -> tuple[str, Any]:
        return (text_of(self.item.get("lane")), self.item.get("host"))


def timeline_html(items: list[dict[str, Any]]) -> str:
    return ("<section id=\"timeline\"><h2>Timeline</h2>%s%s</section>\n"
            % (timeline_svg(items), timeline_table(items)))


def timed_spans(items: list[dict[str, Any]]) -> list[Span]:
    spans = []
    for item in items:
        start = parse_ts(item.get("started_at"))
        if start is not None:
            spans.append(Span(item, start, parse_ts(item.get("ended_at"))))
    return spans


def timeline_svg(items: list[dict[str, Any]]) -> str:
    """One row per (lane, host) in order of first appearance, on one time axis from the first to the last stamp."""
    spans = timed_spans(items)
    if not spans:
        return "<p class=\"empty\">No timed events in the journal.</p>"
    origin = min(span.start for span in spans)
    last = max(max(span.start, span.end or span.start) for span in spans)
    total_s = max((last - origin).total_seconds(), 1.0)
    rows = list(dict.fromkeys(span.row for span in spans))
    height = AXIS_H + len(rows) * ROW_H + 6
    parts = ["<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"timeline\" width=\"%d\" height=\"%d\" "
             "viewBox=\"0 0 %d %d\" role=\"img\" aria-label=\"timeline of the run\">"
             % (LABEL_W + CHART_W + RIGHT_W, height, LABEL_W + CHART_W + RIGHT_W, height)]
    parts.append(time_axis(origin, total_s, height))
    for index, row in enumerate(rows):
        row_spans = [span for span in spans if span.row == row]
        parts.append(timeline_row(index, row, row_spans, origin, total_s))
    parts += trigger_lines(spans, origin, total_s, height)
    parts.append("</svg>")
    return "".join(parts)


def time_x(moment: datetime, origin: datetime, total_s: float) -> float:
    return LABEL_W + (moment - origin).total_seconds() / total_s * CHART_W


def tick_step(total_s: float, max_ticks: int = 8) -> float:
    return next((step for step in TICK_STEPS_S if total_s / step <= max_ticks), total_s / max_ticks)


def duration_text(seconds: float) -> str:
    if seconds < 60:
        return "%gs" % round(seconds, 1)
    if seconds < 3600:
        return "%dm%02ds" % divmod(int(seconds), 60)
    return "%dh%02dm" % (int(seconds) // 3600, int(seconds) % 3600 // 60)


def time_axis(origin: datetime, total_s: float, height: int) -> str:
    step = tick_step(total_s)
    parts = ["<g class=\"axis\"><text x=\"4\" y=\"14\">from %s</text>"
             % esc(origin.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S") + "Z")]
    for index in range(int(total_s / step) + 1):
        x = LABEL_W + index * step / total_s * CHART_W
        parts.append("<line class=\"grid\" x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\"/>"
                     "<text class=\"tick\" x=\"%.1f\" y=\"14\" text-anchor=\"middle\">+%s</text>"
                     % (x, AXIS_H - 8, x, height, x, esc(duration_text(index * step))))
    parts.append("</g>")
    return "".join(parts)


def timeline_row(index: int, row: tuple[str, Any], spans: list[Span], origin: datetime, total_s: float) -> str:
    lane, host = row
    name = lane if host is None else "%s @ %s" % (lane, text_of(host))
    y = AXIS_H + index * ROW_H
    parts = ["<g class=\"timeline-row\" data-lane=\"%s\" data-host=\"%s\">" % (esc(lane), esc(host)),
             "<text class=\"row-label\" x=\"4\" y=\"%d\">%s<title>%s</title></text>"
             % (y + 14, esc(short(name, 46)), esc(name))]
    parts += [span_mark(span, y, origin, total_s) for span in spans]
    parts.append("</g>")
    return "".join(parts)


def span_mark(span: Span, y: int, origin: datetime, total_s: float) -> str:
    """A bar for a span, a diamond for a moment; its tooltip holds the item's label and times."""
    item = span.item
    status = "status-%s" % token(item.get("status"))
    tooltip = "<title>%s: %s (%s - %s, %s)</title>" % (
        esc(item.get("lane")), esc(item.get("label")), esc(item.get("started_at")),
        esc(item.get("ended_at") or "never ended"), esc(item.get("status")))
    x1 = time_x(span.start, origin, total_s)
    if span.end == span.start:
        cx, cy = x1, y + ROW_H / 2
        return ("<path class=\"marker %s\" d=\"M%.1f %.1fl6 6l-6 6l-6 -6z\">%s</path>"
                % (status, cx, cy - 6, tooltip))
    open_class = " open" if span.end is None else ""
    x2 = LABEL_W + CHART_W if span.end is None else time_x(span.end, origin, total_s)
    return ("<rect class=\"bar %s%s\" x=\"%.1f\" y=\"%d\" width=\"%.1f\" height=\"%d\" rx=\"2\">%s</rect>"
            % (status, open_class, x1, y + 3, max(x2 - x1, 3.0), ROW_H - 6, tooltip))


def trigger_lines(spans: list[Span], origin: datetime, total_s: float, height: int) -> list[str]:
    """A vertical line across every row where the rollback was triggered."""
    return ["<line class=\"trigger-line\" x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\"/>"
            % (time_x(span.start, origin, total_s), AXIS_H - 8, time_x(span.start, origin, total_s), height)
            for span in spans if span.item.get("lane") == "rollback triggered"]


def timeline_table(items: list[dict[str, Any]]) -> str:
    rows = "".join("<tr><td>%s</td><td>%s</td><td>%s</td><td>%s</td><td>%s</td><td class=\"label\">%s</td></tr>"
                   % tuple(esc(item.get(field)) for field in ("lane", "host", "started_at", "ended_at", "status",
                                                              "label"))
                   for item in items)
    return ("<details><summary>Every timeline item (%d)</summary><table class=\"timeline-items\"><tr><th>lane</th>"
            "<th>host</th><th>started</th><th>ended</th><th>status</th><th>what</th></tr>%s</table></details>"
            % (len(items), rows))


# ---- probe plots ------------------------------------------------------------------------------------------

def probe_points(entries: list[Entry]) -> dict[tuple[Any, Any], list[dict[str, Any]]]:
    """probe.result entries grouped per (component, probe) in order of first appearance, each in seq order."""
    plots: dict[tuple[Any, Any], list[dict[str, Any]]] = {}
    for entry in sorted(entries, key=lambda entry: entry["seq"]):
        if entry.get("event") != "probe.result":
            continue
        data = entry.get("data") or {}
        plots.setdefault((entry.get("component"), data.get("probe")), []).append(
            {"host": entry.get("host"), **data})
    return plots


def plot_phases(plots: dict[tuple[Any, Any], list[dict[str, Any]]]) -> list[str]:
    """The phases of the run in the order a run goes through them (unknown ones after), shared by every plot."""
    seen = list(dict.fromkeys(text_of(point.get("phase")) for points in plots.values() for point in points))
    return [phase for phase in PHASES if phase in seen] + [phase for phase in seen if phase not in PHASES]


def probes_html(entries: list[Entry]) -> str:
    plots = probe_points(entries)
    if not plots:
        return "<section id=\"probes\"><h2>Probes</h2><p class=\"empty\">No probe results recorded.</p></section>\n"
    phases = plot_phases(plots)
    hosts = list(dict.fromkeys(point["host"] for points in plots.values() for point in points))
    colors = {host: HOST_COLORS[index % len(HOST_COLORS)] for index, host in enumerate(hosts)}
    figures = "".join(probe_plot(component, probe, points, phases, colors)
                      for (component, probe), points in plots.items())
    return ("<section id=\"probes\"><h2>Probes</h2>%s<div class=\"plots\">%s</div></section>\n"
            % (probe_legend(colors), figures))


def probe_legend(colors: dict[Any, str]) -> str:
    hosts = "".join("<span><i style=\"background:%s\"></i>%s</span>" % (color, esc(host))
                    for host, color in colors.items())
    verdicts = "".join("<span><i class=\"verdict-%s\"></i>%s</span>" % (verdict, verdict)
                       for verdict in VERDICTS)
    return ("<p class=\"legend\">Hosts (lines): %s<br/>Verdicts (points): %s; a dashed red line is the threshold. "
            "Hover a point for its value, baseline, threshold and detail.</p>" % (hosts, verdicts))


def threshold_bounds(threshold: Any) -> list[float]:
    """The numbers a threshold compares with: a number, or per rule `OP number` or `OP ... baseline ... (number)`
    (the judge's resolved form, e.g. `<= baseline 5.6 + 30 (35.6)`); a `; at most n of m ...` note is ignored."""
    if is_number(threshold):
        return [float(threshold)]
    if not isinstance(threshold, str):
        return []
    bounds = []
    for clause in threshold.split(";", 1)[0].split(" and "):
        match = COMPARISON.match(clause)
        if match is None:
            continue
        bound = to_number(match["bound"])
        if bound is None:
            resolved = RESOLVED_BOUND.search(match["bound"])
            bound = to_number(resolved["number"]) if resolved else None
        if bound is not None:
            bounds.append(bound)
    return bounds


def to_number(text: str) -> float | None:
    try:
        number = float(text)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def plot_bounds(points: list[dict[str, Any]]) -> dict[float, str]:
    """The first few distinct threshold bounds of a probe, each with the threshold text it comes from."""
    bounds: dict[float, str] = {}
    for point in points:
        for bound in threshold_bounds(point.get("threshold")):
            if len(bounds) < MAX_THRESHOLD_LINES:
                bounds.setdefault(bound, text_of(point.get("threshold")))
    return bounds


def point_slots(points: list[dict[str, Any]]) -> tuple[list[int], dict[str, int]]:
    """Each point's slot inside its phase band (its rank among the host's points of that phase) and per phase the
    number of slots, so round n of every host sits at the same x."""
    counts: dict[tuple[str, Any], int] = {}
    slots = []
    for point in points:
        key = (text_of(point.get("phase")), point["host"])
        slots.append(counts.get(key, 0))
        counts[key] = slots[-1] + 1
    widths: dict[str, int] = {}
    for (phase, _), count in counts.items():
        widths[phase] = max(widths.get(phase, 0), count)
    return slots, widths


class Frame(NamedTuple):
    """Where a plot draws: x of every point, y as a function of a value, the y axis' markup."""
    xs: list[float]
    y_of: Callable[[Any], float]
    axis: str
    numeric: bool


def probe_plot(component: Any, probe: Any, points: list[dict[str, Any]], phases: list[str],
               colors: dict[Any, str]) -> str:
    frame = plot_frame(points, phases)
    failed = any(point.get("verdict") in BAD_VERDICTS for point in points)
    last = points[-1]
    meta = "metric %s, %s, threshold %s, %d values" % (
        text_of(last.get("metric")), "critical" if last.get("critical") else "not critical",
        text_of(last.get("threshold")), len(points))
    body = [phase_bands(phases), frame.axis, threshold_lines(points, frame), series_lines(points, frame, colors),
            "".join(point_mark(point, x, frame, colors) for point, x in zip(points, frame.xs))]
    return ("<figure class=\"probe-plot%s\" data-component=\"%s\" data-probe=\"%s\"><figcaption>%s / %s"
            "<span class=\"meta\">%s</span></figcaption><svg xmlns=\"http://www.w3.org/2000/svg\" class=\"plot\" "
            "width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" role=\"img\" aria-label=\"%s\">%s</svg></figure>"
            % (" has-failure" if failed else "", esc(component), esc(probe), esc(component), esc(probe), esc(meta),
               PLOT_W, PLOT_H, PLOT_W, PLOT_H, esc("%s / %s" % (text_of(component), text_of(probe))),
               "".join(body)))


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """About ``count`` round ticks (1, 2, 2.5 or 5 times a power of ten apart) covering low..high."""
    if high == low:
        low, high = low - (abs(low) * 0.1 or 1.0), high + (abs(high) * 0.1 or 1.0)
    raw_step = (high - low) / (count - 1)
    magnitude = 10 ** math.floor(math.log10(raw_step))
    step = next(factor * magnitude for factor in (1, 2, 2.5, 5, 10) if factor * magnitude >= raw_step)
    first, last = math.floor(low / step) * step, math.ceil(high / step) * step
    return [round(first + index * step, 12) for index in range(int(round((last - first) / step)) + 1)]


def plot_frame(points: list[dict[str, Any]], phases: list[str]) -> Frame:
    slots, widths = point_slots(points)
    band_w = (PLOT_W - PLOT_LEFT - PLOT_RIGHT) / len(phases)
    xs = []
    for point, slot in zip(points, slots):
        phase = text_of(point.get("phase"))
        band = phases.index(phase)
        xs.append(PLOT_LEFT + band * band_w + (slot + 0.5) * band_w / widths[phase])
    if any(is_number(point.get("value")) for point in points):
        return numeric_frame(points, xs)
    return category_frame(points, xs)


def numeric_frame(points: list[dict[str, Any]], xs: list[float]) -> Frame:
    values = [float(point["value"]) for point in points if is_number(point.get("value"))]
    values += list(plot_bounds(points))
    ticks = nice_ticks(min(values), max(values))
    low, high = ticks[0], ticks[-1]
    top, bottom = PLOT_TOP, PLOT_H - PLOT_BOTTOM

    def y_of(value: Any) -> float:
        if not is_number(value):
            return float(bottom)  # off the scale (an error without a value): drawn on the x axis
        return bottom - (float(value) - low) / (high - low) * (bottom - top)

    axis = "".join("<line class=\"grid\" x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\"/>"
                   "<text class=\"y-tick\" x=\"%d\" y=\"%.1f\" text-anchor=\"end\">%s</text>"
                   % (PLOT_LEFT, y_of(tick), PLOT_W - PLOT_RIGHT, y_of(tick), PLOT_LEFT - 4, y_of(tick) + 4,
                      esc(number_text(tick))) for tick in ticks)
    return Frame(xs, y_of, "<g class=\"axis numeric\">%s</g>" % axis, True)


def category_frame(points: list[dict[str, Any]], xs: list[float]) -> Frame:
    """Values that are not numbers (a release name, ok): one row per distinct value in order of appearance, those
    after the first few folded into `other`."""
    categories = list(dict.fromkeys(text_of(point.get("value")) for point in points))
    if len(categories) > MAX_CATEGORIES:
        categories = categories[:MAX_CATEGORIES - 1] + ["other"]
    top, bottom = PLOT_TOP + 10, PLOT_H - PLOT_BOTTOM - 10
    step = (bottom - top) / max(len(categories) - 1, 1)

    def y_of(value: Any) -> float:
        name = text_of(value)
        index = categories.index(name) if name in categories else len(categories) - 1
        return top + index * step if len(categories) > 1 else (top + bottom) / 2

    axis = "".join("<line class=\"grid\" x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\"/>"
                   "<text class=\"y-tick\" x=\"%d\" y=\"%.1f\" text-anchor=\"end\">%s<title>%s</title></text>"
                   % (PLOT_LEFT, y_of(name), PLOT_W - PLOT_RIGHT, y_of(name), PLOT_LEFT - 4, y_of(name) + 4,
                      esc(short(name, 14)), esc(name)) for name in categories)
    return Frame(xs, y_of, "<g class=\"axis categories\">%s</g>" % axis, False)


def phase_bands(phases: list[str]) -> str:
    band_w = (PLOT_W - PLOT_LEFT - PLOT_RIGHT) / len(phases)
    parts = []
    for index, phase in enumerate(phases):
        x = PLOT_LEFT + index * band_w
        if index % 2:
            parts.append("<rect class=\"phase-band\" x=\"%.1f\" y=\"%d\" width=\"%.1f\" height=\"%d\"/>"
                         % (x, PLOT_TOP, band_w, PLOT_H - PLOT_TOP - PLOT_BOTTOM))
        parts.append("<text class=\"phase-label\" x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">%s</text>"
                     % (x + band_w / 2, PLOT_H - PLOT_BOTTOM + 16, esc(phase)))
    return "<g class=\"phases\">%s</g>" % "".join(parts)


def threshold_lines(points: list[dict[str, Any]], frame: Frame) -> str:
    """A dashed line per distinct numeric bound, labelled with the threshold it comes from."""
    if not frame.numeric:
        return ""
    parts = []
    for bound, text in plot_bounds(points).items():
        y = frame.y_of(bound)
        parts.append("<line class=\"threshold\" data-bound=\"%s\" x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\">"
                     "<title>threshold %s</title></line><text class=\"threshold-label\" x=\"%d\" y=\"%.1f\" "
                     "text-anchor=\"end\">%s</text>"
                     % (esc(bound), PLOT_LEFT, y, PLOT_W - PLOT_RIGHT, y, esc(text), PLOT_W - PLOT_RIGHT - 2, y - 3,
                        esc(short(text, 40))))
    return "".join(parts)


def series_lines(points: list[dict[str, Any]], frame: Frame, colors: dict[Any, str]) -> str:
    """Per host, a line through its values in phase order."""
    by_host: dict[Any, list[tuple[float, float]]] = {}
    for point, x in zip(points, frame.xs):
        if not frame.numeric or is_number(point.get("value")):
            by_host.setdefault(point["host"], []).append((x, frame.y_of(point.get("value"))))
    return "".join("<polyline class=\"series\" data-host=\"%s\" stroke=\"%s\" points=\"%s\"/>"
                   % (esc(host), colors[host], " ".join("%.1f,%.1f" % xy for xy in sorted(coords)))
                   for host, coords in by_host.items() if len(coords) > 1)


def point_mark(point: dict[str, Any], x: float, frame: Frame, colors: dict[Any, str]) -> str:
    verdict = point.get("verdict")
    verdict_class = verdict if verdict in VERDICTS else "other"
    radius = 6 if verdict in BAD_VERDICTS else 4
    tooltip = "%s, %s: %s; value %s, baseline %s, threshold %s; %s" % tuple(
        text_of(point.get(field)) for field in ("host", "phase", "verdict", "value", "baseline", "threshold", "detail"))
    if isinstance(point.get("measurements"), list):
        tooltip += " (%d measurements, %s failed, %s errors)" % (
            len(point["measurements"]), text_of(point.get("failures")), text_of(point.get("errors")))
    return ("<circle class=\"point verdict-%s\" data-host=\"%s\" data-phase=\"%s\" data-value=\"%s\" cx=\"%.1f\" "
            "cy=\"%.1f\" r=\"%d\" stroke=\"%s\"><title>%s</title></circle>"
            % (verdict_class, esc(point["host"]), esc(point.get("phase")), esc(point.get("value")), x,
               frame.y_of(point.get("value")), radius, colors[point["host"]], esc(tooltip)))
