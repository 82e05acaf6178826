# -*- coding: utf-8 -*-
# The journal's vocabulary: every event, its fields and their types, in one place. The journal refuses an entry
# that does not fit (module_utils/cutover_journal.py), modules build their entries with new_entry(), the run state
# and the report read the same names, and docs/ARCHITECTURE.md's event table is rendered from EVENTS.
# Stdlib only: runs on every managed host.
from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import Any

TIMESTAMP_PATTERN = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?Z$")

PHASES = ("baseline", "canary", "verify", "watch", "rollback")
# "error" is only in journals written before probes were judged over measurements (now: "inconclusive").
VERDICTS = ("pass", "fail", "inconclusive", "recorded", "error")
OUTCOMES = ("migrated", "rolled_back", "failed", "paused")
SCHEDULERS = ("supervisor", "systemd", "none")
# How a watch window ended: its time ran out, a round failed, an operator stopped it, or rollback.yml took over.
WATCH_ENDINGS = ("window", "round", "stop", "rollback")
COMPONENT_STATES = ("migrated", "failed", "rolled_back", "unchanged")
STEP_STATUSES = ("ok", "failed")
ROLLBACK_STEP_NAMES = {1: "detect", 2: "stop_application", 3: "restore_code", 4: "restart_redis_restore_data",
                       5: "quick_test", 6: "resume_service"}

# A field type is a tuple of accepted Python types (bool is kept apart from int) or a tuple of allowed strings.
STR = (str,)
OPT_STR = (str, type(None))
INT = (int,)
NUMBER = (int, float)
BOOL = (bool,)
LIST = (list,)
DICT = (dict,)
ANY = None


class Field:
    def __init__(self, kind: Any, doc: str, required: bool = True, choices: tuple[Any, ...] | None = None) -> None:
        self.kind = kind
        self.doc = doc
        self.required = required
        self.choices = choices


def optional(kind: Any, doc: str, choices: tuple[Any, ...] | None = None) -> Field:
    return Field(kind, doc, required=False, choices=choices)


EVENTS: dict[str, dict[str, Field]] = {
    "run.started": {
        "playbook": Field(STR, "`migrate` or `rollback`", choices=("migrate", "rollback")),
        "components": Field(LIST, "component names in plan order"),
        "controller": Field(STR, "host name of the controller"),
        "user": Field(STR, "user who ran the playbook"),
        "target_release": optional(OPT_STR, "release the run moves to (migrate)"),
        "target_run_id": optional(STR, "rollback: the migrate run it rolls back"),
        "hosts": optional(DICT, "component -> its hosts, in rollout order"),
        "batches": optional(DICT, "component -> host batches, canary first"),
        "redis_host": optional(STR, "host that snapshots and restores Redis"),
        "journal_host": optional(STR, "host keeping the lock and this journal"),
        "pid": optional(INT, "process id of the controller's ansible-playbook"),
        "settings": optional(DICT, "rollback settings of the run, `{restore_policy, restart_redis}`: a rollback "
                                   "resumed or run by the scheduled watcher uses them"),
    },
    "run.aborted": {
        "stage": Field(STR, "`preflight`, `snapshot`, `baseline`: where the run stopped before changing anything"),
        "message": Field(STR, "why"),
        "task": optional(STR, "the task that failed"),
    },
    "preflight.checked": {
        "checks": Field(LIST, "`{name, ok, detail}` per check on this host"),
        "releases": optional(DICT, "component -> its current release on this host (what a rollback returns to)"),
    },
    "snapshot.created": {
        "id": Field(STR, "snapshot id"),
        "path": Field(STR, "snapshot folder on the Redis host"),
        "keys": Field(INT, "keys in the snapshot"),
        "namespaces": Field(DICT, "pattern -> key count"),
        "sha256": Field(STR, "checksum of the data file"),
        "verified": Field(BOOL, "whether verification passed"),
        "mode": Field(STR, "`logical`, `rdb` or `replica`"),
        "bytes": optional(INT, "size of the data file"),
    },
    "component.deploying": {
        "from_release": Field(OPT_STR, "release before the deploy"),
        "to_release": Field(STR, "release being deployed"),
    },
    "component.switched": {
        "from_release": Field(OPT_STR, "release `current` pointed at"),
        "to_release": Field(STR, "release `current` points at now"),
        "changed": optional(BOOL, "false when the link already pointed there"),
    },
    "component.state": {
        "state": Field(STR, "`migrated`, `failed`, `rolled_back`, `unchanged`", choices=COMPONENT_STATES),
        "release": Field(OPT_STR, "release the component is on"),
        "step": optional(STR, "deploy step that failed"),
        "reason": optional(STR, "why it failed"),
    },
    "component.stopped": {
        "service": Field(STR, "systemd unit / supervisor program"),
        "pid": Field((int, type(None)), "process that ran (null when it was not running)"),
        "reason": Field(STR, "why it was stopped"),
    },
    "component.started": {
        "service": Field(STR, "systemd unit / supervisor program"),
        "pid": Field((int, type(None)), "process now serving (the process manager's; a reload keeps the master's)"),
        "ready_s": Field(NUMBER, "seconds from start to a healthy answer"),
        "worker_pid": optional(INT, "reload: the new worker the master started"),
    },
    "probe.result": {
        "probe": Field(STR, "probe name"),
        "phase": Field(STR, "`baseline`, `canary`, `verify`, `watch`, `rollback`", choices=PHASES),
        "verdict": Field(STR, "`pass`, `fail`, `inconclusive`, `recorded` (`error` in journals of older runs)",
                         choices=VERDICTS),
        "value": Field(ANY, "measured value"),
        "baseline": Field(ANY, "baseline value judged against"),
        "threshold": Field(ANY, "the rules that were applied"),
        "critical": Field(BOOL, "whether the probe gates the rollout"),
        "metric": optional(OPT_STR, "metric name"),
        "detail": optional(OPT_STR, "what was measured, or the error"),
        "measurements": optional(LIST, "every measurement in order: `{at, value, verdict (pass, fail, error), "
                                       "detail}`; `value` is their median (numbers) or the last one"),
        "failures": optional(INT, "measurements that broke the rules"),
        "errors": optional(INT, "measurements that could not be taken or judged"),
        "spec": optional(DICT, "the probe as run: placeholders filled, defaults and judgement settings in (`count`, "
                               "`interval`, `initial_delay`, `failure_limit`, `consecutive_error_limit`, "
                               "`inconclusive`), secrets masked"),
    },
    "watch.started": {
        "duration_s": Field(INT, "length of the watch window"),
        "interval_s": Field(INT, "time between probe rounds"),
        "rounds": Field(INT, "rounds planned"),
        "scheduled": optional(BOOL, "true when a scheduled watcher runs the rounds (playbooks/watch.yml), not the migrate"),
    },
    "watch.scheduled": {
        "scheduler": Field(STR, "`supervisor` program, `systemd` timer, or `none` (an external schedule, e.g. AWX)",
                           choices=SCHEDULERS),
        "name": Field(STR, "the watcher's program / unit name"),
        "host": Field(STR, "host the watcher runs on (the journal host by default)"),
        "ends_at": Field(STR, "when the window ends (UTC)"),
        "interval_s": Field(INT, "time between rounds"),
    },
    "watch.retired": {
        "name": Field(STR, "the watcher's program / unit name"),
        "reason": Field(STR, "why it was removed"),
    },
    "watch.round": {
        "round": Field(INT, "round number from 1"),
        "passed": Field(BOOL, "whether every probe of this host passed"),
    },
    "watch.finished": {
        "rounds": Field(INT, "rounds run"),
        "reason": Field(STR, "`window ended`, or `halted in round N: ...` when a round failed"),
        "ended_by": optional(STR, "`window`, `round` (a failed round), `stop` (cutover_watch_stop) or `rollback` "
                                  "(rollback.yml by hand)", choices=WATCH_ENDINGS),
        "by": optional(STR, "who stopped it: a user, or the rollback run"),
    },
    "run.paused": {
        "reason": Field(STR, "why the rollout stopped and waits for a human (an inconclusive probe whose policy is pause)"),
        "probe": optional(DICT, "the inconclusive result: `{component, host, probe, phase, value, baseline, threshold}`"),
    },
    "rollback.triggered": {
        "trigger": Field(DICT, "`{component, host, probe, phase, value, baseline, threshold}` or `{reason}`"),
    },
    "rollback.step": {
        "step": Field(INT, "1-6"),
        "name": Field(STR, "step name", choices=tuple(ROLLBACK_STEP_NAMES.values())),
        "status": Field(STR, "`ok` or `failed`", choices=STEP_STATUSES),
        "started_at": Field(STR, "when the step started on this host"),
        "ended_at": Field(STR, "when it ended"),
        "detail": Field(STR, "what the step did on this host"),
    },
    "data.audited": {
        "snapshot_id": Field(STR, "snapshot compared with"),
        "keys_before": Field(INT, "keys in the snapshot"),
        "keys_after": Field(INT, "keys of those namespaces now"),
        "lost": Field(INT, "snapshot keys missing now"),
        "namespaces": Field(DICT, "pattern -> key count now"),
        "snapshot": optional(DICT, "`{id, keys, sha256, verified}`"),
    },
    "run.finished": {
        "outcome": Field(STR, "`migrated`, `rolled_back`, `failed`, `paused`", choices=OUTCOMES),
        "message": Field(STR, "one line for the person on call"),
    },
    "run.unlocked": {
        "by": Field(STR, "user who broke the lock of a dead run"),
    },
}


class EventError(ValueError):
    """An entry that does not fit the schema; the message names the event and the field."""


def utc_timestamp(moment: datetime | None = None) -> str:
    """UTC ISO 8601 with milliseconds and Z, e.g. 2026-11-25T22:21:14.123Z."""
    moment = (moment or datetime.now(timezone.utc)).astimezone(timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + "%03dZ" % (moment.microsecond // 1000)


def parse_timestamp(text: str) -> datetime:
    """Inverse of utc_timestamp (also accepts seconds without fraction)."""
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _type_name(kind: Any) -> str:
    names = {str: "string", int: "integer", float: "number", bool: "boolean", list: "list", dict: "mapping",
             type(None): "null"}
    return " or ".join(names[item] for item in kind)


def _fits(value: Any, kind: Any) -> bool:
    if kind is ANY:
        return True
    if isinstance(value, bool):
        return bool in kind
    return isinstance(value, kind)


def event_problems(event: str, data: Any) -> list[str]:
    """Every way data does not fit event (empty when it fits)."""
    fields = EVENTS.get(event)
    if fields is None:
        return ["unknown event %r; known events: %s" % (event, ", ".join(sorted(EVENTS)))]
    if not isinstance(data, dict):
        return ["event %s: data must be a mapping, got %s" % (event, type(data).__name__)]
    problems = ["event %s: unknown field %r (fields: %s)" % (event, name, ", ".join(fields))
                for name in data if name not in fields]
    for name, field in fields.items():
        if name not in data:
            if field.required:
                problems.append("event %s: missing field %r (%s)" % (event, name, field.doc))
            continue
        value = data[name]
        if not _fits(value, field.kind):
            problems.append("event %s: field %r must be %s, got %s %r"
                            % (event, name, _type_name(field.kind), type(value).__name__, value))
        elif field.choices and value not in field.choices:
            problems.append("event %s: field %r must be one of %s, got %r"
                            % (event, name, ", ".join(map(str, field.choices)), value))
    return problems


def check_event(event: str, data: Any, ts: Any = None) -> None:
    """Raise EventError naming the event and field when the entry does not fit the schema."""
    problems = event_problems(event, data)
    if ts is not None and not (isinstance(ts, str) and TIMESTAMP_PATTERN.match(ts)):
        problems.append("event %s: ts must be a UTC time like 2026-11-25T22:21:14.123Z, got %r" % (event, ts))
    if problems:
        raise EventError("; ".join(problems))


def new_entry(event: str, component: str | None = None, host: str | None = None, ts: str | None = None,
              **data: Any) -> dict[str, Any]:
    """A journal entry as modules return it for the journal host to append (checked here, where it is made)."""
    stamped = ts or utc_timestamp()
    check_event(event, data, stamped)
    return {"event": event, "component": component, "host": host, "ts": stamped, "data": data}


def step_entry(step: int, started_at: str, status: str, detail: str, host: str | None = None) -> dict[str, Any]:
    """The rollback.step entry of one host's step, ended now."""
    return new_entry("rollback.step", host=host, step=step, name=ROLLBACK_STEP_NAMES[step], status=status,
                     started_at=started_at, ended_at=utc_timestamp(), detail=detail)


def render_markdown_table() -> str:
    """The event table of docs/ARCHITECTURE.md (a test keeps the two equal)."""
    lines = ["| event | field | type | meaning |", "|---|---|---|---|"]
    for event, fields in EVENTS.items():
        for index, (name, field) in enumerate(fields.items()):
            kind = "any" if field.kind is ANY else _type_name(field.kind)
            suffix = "" if field.required else " (optional)"
            lines.append("| %s | `%s` | %s%s | %s |" % ("`%s`" % event if index == 0 else "", name, kind, suffix,
                                                       field.doc.replace("|", "\\|")))
    return "\n".join(lines)
