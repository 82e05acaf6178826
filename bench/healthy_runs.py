"""make healthy-runs: 10 healthy migrates of the local demo in a row, the last one under make load.

Brings the local demo up (playbooks/demo_up.yml: legacy release, seeded caches) in a temp dir on free loopback
ports of its own, as make bench-rollback does (bench/bench_rollback.py's Demo), with every component of the
local inventory in the plan, as make migrate. Then --runs times (default 10) playbooks/migrate.yml to
migrated with the inventory's own watch window; between two migrates the operator's rollback
(playbooks/rollback.yml, the report must say rolled_back) takes the demo back to legacy, and every migrate after
the first passes -e cutover_allow_failed_release=true (a rollback marks migrated failed). A migrate that rolls
itself back leaves the demo on legacy already: no operator rollback follows it. The last migrate runs under
bench/load.py (same demo, base URLs from the same -e values), started just before it and stopped (SIGINT)
right after it.

Per migrate it prints the run id, exit code, report outcome, whether a rollback was triggered (report rollback
not null; then the trigger and every failing probe with value, baseline and threshold), the wall time and the
keys lost (report data.lost); at the end
HEALTHY runs=R migrated=N auto_rollbacks=K lost_keys=L load_failed_requests=F
It exits 0 only when every migrate ended migrated with no key lost and the load run saw no failed request;
1 otherwise, or when a rollback or the load misbehaved (the series stops there). The demo is taken down
(demo_down.yml, same -e values) at the end, also on failure, Ctrl-C or SIGTERM, and no process of the temp dir
is left; the temp dir (logs/, run/state/journal/, reports/, load.json) is kept when a run was not healthy, removed
otherwise (--keep leaves the demo up and the dir).
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_rollback  # noqa: E402
import load as load_tool  # noqa: E402
from bench_rollback import ROOT, Demo, Misbehaved, PlaybookRun, exit_on_signal, finish, stop_child  # noqa: E402

HEALTHY_RELEASE = "migrated"
LOAD_START_TIMEOUT_S = 60
# The load stops itself if this script dies without stopping it.
LOAD_DURATION_CAP_S = 1800
PASSING_VERDICTS = ("pass", "recorded")


@dataclass
class MigrateResult:
    number: int
    run_id: str
    rc: int
    outcome: str
    rollback: dict[str, Any] | None
    seconds: float
    lost_keys: int | None
    failing_probes: list[dict[str, Any]]

    @property
    def healthy(self) -> bool:
        return self.rc == 0 and self.outcome == "migrated" and self.rollback is None and self.lost_keys == 0


def migrate_result(number: int, run: PlaybookRun, report: dict[str, Any]) -> MigrateResult:
    lost = (report.get("data") or {}).get("lost")
    failing = [probe for probe in report.get("probes") or [] if probe.get("verdict") not in PASSING_VERDICTS]
    return MigrateResult(number, str(report.get("run_id")), run.rc, str(report.get("outcome")), report.get("rollback"),
                         run.seconds, lost if isinstance(lost, int) else None, failing)


def migrate_lines(result: MigrateResult, runs: int) -> list[str]:
    """The printed lines of one migrate: its figures, and for an unhealthy one the trigger and failing probes."""
    lines = ["migrate %d/%d run %s rc=%d outcome=%s rollback_triggered=%s wall_s=%.2f lost_keys=%s" % (
        result.number, runs, result.run_id, result.rc, result.outcome, "yes" if result.rollback else "no",
        result.seconds, "?" if result.lost_keys is None else result.lost_keys)]
    trigger = (result.rollback or {}).get("trigger")
    if trigger:
        lines.append("  trigger: %s/%s on %s phase %s value=%s baseline=%s threshold=%s: %s" % (
            trigger.get("component"), trigger.get("probe"), trigger.get("host"), trigger.get("phase"),
            json.dumps(trigger.get("value")), json.dumps(trigger.get("baseline")), trigger.get("threshold"),
            trigger.get("detail")))
    for probe in result.failing_probes:
        lines.append("  probe %s/%s phase %s verdict %s value=%s baseline=%s threshold=%s" % (
            probe.get("component"), probe.get("probe"), probe.get("phase"), probe.get("verdict"),
            json.dumps(probe.get("value")), json.dumps(probe.get("baseline")), probe.get("threshold")))
    return lines


def healthy_line(results: list[MigrateResult], load_failed: int | None) -> str:
    lost = sum(result.lost_keys or 0 for result in results)
    return "HEALTHY runs=%d migrated=%d auto_rollbacks=%d lost_keys=%d%s load_failed_requests=%s" % (
        len(results), sum(result.outcome == "migrated" for result in results),
        sum(result.rollback is not None for result in results), lost,
        "+?" if any(result.lost_keys is None for result in results) else "",
        "?" if load_failed is None else load_failed)


def all_healthy(results: list[MigrateResult], runs: int, load_failed: int | None) -> bool:
    """Every planned migrate ran and was healthy (migrated, no rollback, 0 keys lost); the load saw 0 failures."""
    return len(results) == runs and all(result.healthy for result in results) and load_failed == 0


# ---- the load -------------------------------------------------------------------------------------------

class BackgroundLoad:
    """bench/load.py against the demo, in a session of its own; its summary in <work>/load.json."""

    def __init__(self, demo: Demo):
        self.demo = demo
        self.out = demo.work / "load.json"
        self.log_path = demo.logs / "load.log"
        self.process: subprocess.Popen | None = None
        self.log: TextIO | None = None

    def start(self) -> None:
        argv = [sys.executable, str(ROOT / "bench" / "load.py"), "-e", "@%s" % self.demo.vars_file,
                "--duration", str(LOAD_DURATION_CAP_S), "--out", str(self.out)]
        self.log = self.log_path.open("w", encoding="utf-8")
        self.process = subprocess.Popen(argv, cwd=ROOT, env=self.demo.env, stdin=subprocess.DEVNULL, stdout=self.log,
                                        stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + LOAD_START_TIMEOUT_S
        while load_tool.STARTED_MARK not in self.log_path.read_text(errors="replace"):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise Misbehaved("bench/load.py did not start sending (exit code %s); %s:\n%s" % (
                    self.process.poll(), self.log_path, self.log_path.read_text(errors="replace")[-2000:]))
            time.sleep(0.2)
        print("load: started (%s)" % self.log_path.read_text(errors="replace").splitlines()[0], flush=True)

    def stop(self) -> dict[str, Any]:
        """SIGINT, as Ctrl-C: the load ends its requests in flight and writes its summary; returns that summary."""
        assert self.process is not None
        stop_child(self.process)
        self.close()
        if self.process.returncode != 0:
            raise Misbehaved("bench/load.py ended with exit code %d; %s:\n%s" % (
                self.process.returncode, self.log_path, self.log_path.read_text(errors="replace")[-2000:]))
        try:
            return json.loads(self.out.read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            raise Misbehaved("cannot read the load summary %s: %s" % (self.out, error)) from None

    def close(self) -> None:
        if self.process is not None and self.process.poll() is None:
            stop_child(self.process)
        if self.log is not None:
            self.log.close()
            self.log = None


# ---- the series -----------------------------------------------------------------------------------------

@dataclass
class Series:
    runs: int
    results: list[MigrateResult]
    load_failed: int | None = None


def read_report(demo: Demo, run: PlaybookRun) -> dict[str, Any]:
    """reports/latest/report.json after a run; a missing one fails with the end of the run's log."""
    try:
        return demo.report()
    except Misbehaved as error:
        demo.fail(run, str(error))


def migrate(demo: Demo, series: Series, number: int, previous_run_id: str | None) -> MigrateResult:
    extra = ["cutover_target_release=%s" % HEALTHY_RELEASE]
    if number > 1:
        extra.append("cutover_allow_failed_release=true")
    run = demo.playbook("migrate-%d" % number, "playbooks/migrate.yml", *extra)
    report = read_report(demo, run)
    demo.expect(run, report.get("run_id") != previous_run_id and report.get("playbook") == "migrate",
                "wrote no migrate report (reports/latest is %s run %s)" % (report.get("playbook"),
                                                                           report.get("run_id")))
    result = migrate_result(number, run, report)
    series.results.append(result)
    print("\n".join(migrate_lines(result, series.runs)), flush=True)
    # A rolled-back migrate leaves the demo on legacy; anything else but migrated leaves it unknown.
    demo.expect(run, result.outcome in ("migrated", "rolled_back"),
                "outcome %s: the demo is in no known state, the series stops" % result.outcome)
    return result


def operator_rollback(demo: Demo, number: int, migrate_run_id: str) -> None:
    run = demo.playbook("rollback-%d" % number, "playbooks/rollback.yml")
    report = read_report(demo, run)
    demo.expect(run, run.rc == 0 and report.get("playbook") == "rollback" and report.get("outcome") == "rolled_back"
                and report.get("target_run_id") == migrate_run_id,
                "rollback of run %s: report %s run %s outcome %s for run %s" % (
                    migrate_run_id, report.get("playbook"), report.get("run_id"), report.get("outcome"),
                    report.get("target_run_id")))
    print("rollback %d: run %s rc=%d outcome=%s wall_s=%.2f" % (number, report.get("run_id"), run.rc,
                                                               report.get("outcome"), run.seconds), flush=True)


def run_series(demo: Demo, series: Series, load: BackgroundLoad) -> None:
    up = demo.playbook("demo_up", "playbooks/demo_up.yml")
    demo.expect(up, up.rc == 0, "the demo did not come up")
    print("demo_up_s: %.2f" % up.seconds, flush=True)
    previous: MigrateResult | None = None
    for number in range(1, series.runs + 1):
        if previous is not None and previous.outcome == "migrated":
            operator_rollback(demo, number - 1, previous.run_id)
        if number == series.runs:
            load.start()
            try:
                previous = migrate(demo, series, number, previous and previous.run_id)
            except BaseException:
                load.close()
                raise
            summary = load.stop()
            series.load_failed = summary["totals"]["failed"]
            print("load: requests=%d failed=%d by component %s; windows %s; summary %s" % (
                summary["totals"]["requests"], series.load_failed,
                {label: counts["failed"] for label, counts in summary["components"].items()},
                json.dumps(summary["failed_windows"]), load.out), flush=True)
            print(load_tool.load_line(summary), flush=True)
        else:
            previous = migrate(demo, series, number, previous and previous.run_id)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10, help="healthy migrates in a row, the last under load "
                                                             "(default 10)")
    parser.add_argument("--keep", action="store_true", help="leave the demo up and its temp dir for inspection")
    args = parser.parse_args()
    if args.runs < 1:
        parser.error("--runs must be >= 1 (got %d)" % args.runs)
    started = time.monotonic()
    signal.signal(signal.SIGTERM, exit_on_signal)
    signal.signal(signal.SIGHUP, exit_on_signal)
    work = Path(tempfile.mkdtemp(prefix="cutover-healthy-runs-"))
    demo = Demo(work)
    # Every component, the validator included, as make migrate plans them.
    plan_vars = json.loads(demo.vars_file.read_text())
    del plan_vars["cutover_plan"]
    demo.vars_file.write_text(json.dumps(plan_vars))
    print("machine: %s, %d cores, %s" % (os.uname().nodename, os.cpu_count() or 0,
                                          time.strftime("%Y-%m-%d %H:%M:%S %Z")), flush=True)
    print("work dir: %s (redis on 127.0.0.1:%d, components on %d-%d)" % (
        work, demo.redis_port, demo.port_base + 1, demo.port_base + len(bench_rollback.PLAN)), flush=True)
    series = Series(args.runs, [])
    load = BackgroundLoad(demo)
    problems: list[str] = []
    exit_code, interrupted = 1, False
    try:
        run_series(demo, series, load)
    except Misbehaved as error:
        problems.append(str(error))
    except KeyboardInterrupt:
        problems.append("interrupted (Ctrl-C)")
        exit_code, interrupted = 130, True
    except SystemExit as stop:
        problems.append("stopped by a signal")
        exit_code, interrupted = (stop.code if isinstance(stop.code, int) else 1), True
    finally:
        load.close()
        healthy = not problems and all_healthy(series.results, args.runs, series.load_failed)
        problems += finish(demo, args.keep, not healthy, interrupted)
    print("total_s: %.2f" % (time.monotonic() - started), flush=True)
    if problems:
        print("\n".join(problems))
        print("ERROR the series did not complete: %s" % problems[0].splitlines()[0], flush=True)
    print(healthy_line(series.results, series.load_failed), flush=True)
    if problems:
        return exit_code
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main())
