"""make bench-rollback: how fast a failed migrate of the local demo is rolled back, against a floor.

On the local demo with five service components (cutover_plan monitoring, ai, tts, security, safety; the validator
CLI left out), in a run dir of its own (a temp dir) on free loopback ports, the release environments shared
with the checkout (.cache/venvs):

  demo_up            ansible-playbook playbooks/demo_up.yml (legacy release, seeded caches)
  floor_s            wall time of one ansible-playbook run of bench/floor.yml: supervisorctl stop, then start, of
                     the five services (one supervisorctl each, all at once), then one /healthz answer from each
  migrate_s          playbooks/migrate.yml to faulty-safety-fail-open (safety, the last of the plan, fails its
                     probe safety/unsafe_blocked_ratio): must exit non-zero with outcome rolled_back. From that
                     run's journal (<toy_run_dir>/state/journal/<run_id>.jsonl):
    mttr_s           last ok rollback step 6 ended_at - the failing verdict (the first critical probe.result
                     fail/error in phase canary/verify)
    exposure_s       the failing component's component.stopped on that host after the verdict - the verdict
    outage_s         last ok rollback step 6 ended_at - the first component.stopped at or after the verdict
                     (the stops of the rollout's own restarts, before it, are no part of the rollback)
  watch_mttr_s       playbooks/migrate.yml to faulty-late-fail-open (safety turns unsafe 60 s after it started)
                     with an inline watch of 120 s at 5 s: a watch round must catch it and roll back (outcome
                     rolled_back); last ok rollback step 6 ended_at - the failing verdict of phase watch. Most of
                     the window's rounds are still to come then: a watch that let them run (or skip one by one)
                     before the rollback shows here.
  healthy_migrate_s  playbooks/migrate.yml to migrated with cutover_watch_duration_s=0: must exit 0, migrated

floor_s and the faulty migrate run --runs times, alternating (so a load change on this shared machine hits both
alike); the medians go into the last line:
RESULT mttr_s=A exposure_s=B outage_s=C floor_s=D mttr_vs_floor=E
Goals (A <= 8, B <= 2, C <= 6, E <= 3, healthy_migrate_s <= 60) are printed met or missed (watch_mttr_s, one run,
is printed on its own line before, without a goal); a missed goal does not
fail the script. It exits 1 when a run misbehaves (exit code, report outcome) or a figure cannot be computed from
the journal (the last line then names the missing event). The demo is taken down (demo_down.yml, same -e values)
at the end, also on failure, Ctrl-C or SIGTERM, and the temp dir removed - kept (its logs/ and journal) when a run
misbehaved or a figure failed; --keep leaves the demo up and the temp dir for inspection.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Iterable, NoReturn

ROOT = Path(__file__).resolve().parents[1]
ANSIBLE_PLAYBOOK = str(Path(sys.executable).parent / "ansible-playbook")
PLAN = ["monitoring", "ai", "tts", "security", "safety"]
FAULTY_RELEASE = "faulty-safety-fail-open"
LATE_FAULTY_RELEASE = "faulty-late-fail-open"
WATCH_WINDOW = ("cutover_watch_duration_s=120", "cutover_watch_interval_s=5")
HEALTHY_RELEASE = "migrated"
GOALS = {"mttr_s": 8.0, "exposure_s": 2.0, "outage_s": 6.0, "mttr_vs_floor": 3.0, "healthy_migrate_s": 60.0}
RESULT_FIGURES = ("mttr_s", "exposure_s", "outage_s", "floor_s", "mttr_vs_floor")
FAILING_VERDICTS = ("fail", "error")
JUDGED_PHASES = ("canary", "verify")
CHILD_STOP_TIMEOUT_S = 30


# ---- figures from the journal (pure) -------------------------------------------------------------------

class JournalFigureError(ValueError):
    """A rollback figure cannot be computed: the journal lacks (or garbles) the event it comes from."""


def parse_time(value: Any, what: str) -> datetime:
    """A journal time (UTC ISO 8601 with Z) as an aware datetime; ``what`` names it in the error."""
    try:
        parsed = datetime.fromisoformat(value)
    except (TypeError, ValueError):
        raise JournalFigureError("%s is not an ISO 8601 time: %r" % (what, value)) from None
    if parsed.tzinfo is None:
        raise JournalFigureError("%s has no time zone (expected UTC with Z): %r" % (what, value))
    return parsed


def entry_time(entry: dict[str, Any]) -> datetime:
    return parse_time(entry.get("ts"), "ts of %s seq %s" % (entry.get("event"), entry.get("seq")))


def earliest(entries: Iterable[dict[str, Any]]) -> dict[str, Any] | None:
    """The entry with the smallest ts (then seq), or None."""
    return min(entries, key=lambda entry: (entry_time(entry), entry.get("seq", 0)), default=None)


def failing_verdict(entries: list[dict[str, Any]], phases: tuple[str, ...] = JUDGED_PHASES) -> dict[str, Any]:
    """The first (by ts) critical probe.result with verdict fail/error in one of ``phases``."""
    verdict = earliest(entry for entry in entries if entry.get("event") == "probe.result"
                       and (entry.get("data") or {}).get("verdict") in FAILING_VERDICTS
                       and (entry.get("data") or {}).get("critical") is True
                       and (entry.get("data") or {}).get("phase") in phases)
    if verdict is None:
        raise JournalFigureError("no failing verdict: no probe.result entry with data.verdict in (fail, error), "
                                 "data.critical true and data.phase in (%s)" % ", ".join(phases))
    if not verdict.get("component") or not verdict.get("host"):
        raise JournalFigureError("the failing verdict (probe.result seq %s) names no component or host"
                                 % verdict.get("seq"))
    return verdict


def rollback_figures(entries: list[dict[str, Any]], phases: tuple[str, ...] = JUDGED_PHASES) -> dict[str, float]:
    """mttr_s, exposure_s and outage_s (seconds) of one rolled-back run, from its journal entries (the verdict
    counted from is the first failing one of ``phases``)."""
    verdict = failing_verdict(entries, phases)
    verdict_at = entry_time(verdict)
    # The rollout restarts (and journals the stops of) every component before the verdict: not the rollback's.
    stopped = [entry for entry in entries if entry.get("event") == "component.stopped"
               and entry_time(entry) >= verdict_at]
    first_stopped = earliest(stopped)
    if first_stopped is None:
        raise JournalFigureError("no component.stopped entry at or after the failing verdict (%s) (needed for "
                                 "outage_s and exposure_s)" % verdict["ts"])
    process_gone = earliest(entry for entry in stopped
                            if entry.get("component") == verdict["component"] and entry.get("host") == verdict["host"])
    if process_gone is None:
        raise JournalFigureError("no component.stopped entry of %s on %s at or after its failing verdict (%s)"
                                 % (verdict["component"], verdict["host"], verdict["ts"]))
    resumed = [parse_time((entry["data"]).get("ended_at"), "data.ended_at of rollback.step 6 seq %s" % entry.get("seq"))
               for entry in entries if entry.get("event") == "rollback.step"
               and (entry.get("data") or {}).get("step") == 6 and (entry.get("data") or {}).get("status") == "ok"]
    if not resumed:
        raise JournalFigureError("no rollback.step entry with data.step 6 and data.status ok (service never resumed)")
    step6_done = max(resumed)
    if step6_done < verdict_at:
        raise JournalFigureError("rollback step 6 ended (%s) before the failing verdict (%s)"
                                 % (step6_done.isoformat(), verdict["ts"]))
    return {
        "mttr_s": (step6_done - verdict_at).total_seconds(),
        "exposure_s": (entry_time(process_gone) - verdict_at).total_seconds(),
        "outage_s": (step6_done - entry_time(first_stopped)).total_seconds(),
    }


def summarize(runs: list[dict[str, float]]) -> dict[str, float]:
    """Medians of the per-run figures (mttr_s, exposure_s, outage_s, floor_s) and mttr_vs_floor from them."""
    if not runs:
        raise ValueError("no runs to summarize")
    medians = {name: statistics.median(run[name] for run in runs) for name in ("mttr_s", "exposure_s", "outage_s",
                                                                            "floor_s")}
    if medians["floor_s"] <= 0:
        raise ValueError("floor_s must be positive (got %s)" % medians["floor_s"])
    medians["mttr_vs_floor"] = medians["mttr_s"] / medians["floor_s"]
    return medians


def goal_lines(figures: dict[str, float]) -> list[str]:
    """One `goal name <= limit: met|MISSED (value)` line per goal whose figure is known."""
    return ["goal %s <= %g: %s (%.2f)" % (name, limit, "met" if figures[name] <= limit else "MISSED", figures[name])
            for name, limit in GOALS.items() if name in figures]


def result_line(figures: dict[str, float]) -> str:
    return "RESULT " + " ".join("%s=%.2f" % (name, figures[name]) for name in RESULT_FIGURES)


def read_journal(path: Path) -> list[dict[str, Any]]:
    entries = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            try:
                entries.append(json.loads(line))
            except ValueError as error:
                raise JournalFigureError("%s line %d is not JSON: %s" % (path, number, error)) from None
    return entries


# ---- running the playbooks -------------------------------------------------------------------------------

class Misbehaved(RuntimeError):
    """A playbook run ended otherwise than the benchmark needs (exit code or report outcome)."""


@dataclass
class PlaybookRun:
    step: str
    rc: int
    seconds: float
    log: Path


def load_free_ports() -> Any:
    """molecule/shared/free_ports.py: ports below the ephemeral range, so make test's servers cannot take them."""
    spec = importlib.util.spec_from_file_location("cutover_free_ports", ROOT / "molecule" / "shared" / "free_ports.py")
    assert spec and spec.loader
    free_ports = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(free_ports)
    return free_ports


def stop_child(process: subprocess.Popen) -> None:
    """Interrupt an ansible-playbook we started (its own process group: it and its workers) as Ctrl-C would."""
    for sig, wait_s in ((signal.SIGINT, CHILD_STOP_TIMEOUT_S), (signal.SIGKILL, 10)):
        if process.poll() is not None:
            return
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=wait_s)
        except subprocess.TimeoutExpired:
            pass


class Demo:
    """The demo in a temp dir of its own, driven by ansible-playbook with the same -e values every time."""

    def __init__(self, work: Path):
        self.work = work
        self.run_dir = work / "run"
        self.reports_dir = work / "reports"
        self.logs = work / "logs"
        self.logs.mkdir()
        free_ports = load_free_ports()
        self.port_base = free_ports.pick(len(PLAN) + 1)
        self.redis_port = free_ports.pick(1) + 1
        while self.port_base < self.redis_port <= self.port_base + len(PLAN) + 1:
            self.redis_port = free_ports.pick(1) + 1
        self.vars_file = work / "vars.json"
        self.vars_file.write_text(json.dumps({
            "toy_run_dir": str(self.run_dir), "toy_reports_dir": str(self.reports_dir),
            "toy_port_base": self.port_base, "toy_redis_port": self.redis_port, "cutover_plan": PLAN}))
        self.env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"),
                        PATH=str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", ""))

    @property
    def ports(self) -> list[int]:
        return [self.redis_port] + [self.port_base + offset for offset in range(1, len(PLAN) + 1)]

    def playbook(self, step: str, playbook: str, *extra_vars: str) -> PlaybookRun:
        """Run one ansible-playbook to its end (output to logs/<step>.log); wall time of the whole process."""
        argv = [ANSIBLE_PLAYBOOK, str(ROOT / playbook), "-e", "@%s" % self.vars_file]
        for extra in extra_vars:
            argv += ["-e", extra]
        log = self.logs / ("%s.log" % step)
        with log.open("w", encoding="utf-8") as output:
            started = time.monotonic()
            # A session of its own: a terminal's Ctrl-C reaches only this script, which then stops the child.
            process = subprocess.Popen(argv, cwd=ROOT, env=self.env, stdin=subprocess.DEVNULL, stdout=output,
                                       stderr=subprocess.STDOUT, start_new_session=True)
            try:
                rc = process.wait()
            except BaseException:
                stop_child(process)
                raise
            seconds = time.monotonic() - started
        return PlaybookRun(step, rc, seconds, log)

    def fail(self, run: PlaybookRun, what: str) -> NoReturn:
        tail = run.log.read_text(errors="replace").splitlines()[-40:]
        raise Misbehaved("%s: %s (exit code %d); last lines of %s:\n%s"
                         % (run.step, what, run.rc, run.log, "\n".join(tail)))

    def expect(self, run: PlaybookRun, ok: bool, what: str) -> None:
        if not ok:
            self.fail(run, what)

    def report(self) -> dict[str, Any]:
        latest = self.reports_dir / "latest" / "report.json"
        try:
            return json.loads(latest.read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            raise Misbehaved("cannot read %s: %s" % (latest, error)) from None

    def journal(self, run_id: str) -> list[dict[str, Any]]:
        return read_journal(self.run_dir / "state" / "journal" / ("%s.jsonl" % run_id))

    def migrate(self, step: str, release: str, expect_outcome: str, previous_run_id: str | None,
                *extra_vars: str) -> tuple[PlaybookRun, dict[str, Any]]:
        run = self.playbook(step, "playbooks/migrate.yml", "cutover_target_release=%s" % release, *extra_vars)
        try:
            report = self.report()
        except Misbehaved as error:
            self.fail(run, str(error))
        self.expect(run, report.get("run_id") != previous_run_id,
                    "wrote no new report (reports/latest is still run %s)" % previous_run_id)
        self.expect(run, report.get("outcome") == expect_outcome and (run.rc == 0) == (expect_outcome == "migrated"),
                    "outcome %s, expected %s" % (report.get("outcome"), expect_outcome))
        return run, report

    def leftovers(self) -> tuple[list[int], list[int]]:
        """Pids of processes whose command line names the work dir, and demo ports still accepting connections."""
        pids = []
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                cmdline = Path("/proc", pid, "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if str(self.work) in cmdline and int(pid) != os.getpid():
                pids.append(int(pid))
        open_ports = []
        for port in self.ports:
            with socket.socket() as sock:
                sock.settimeout(1)
                if sock.connect_ex(("127.0.0.1", port)) == 0:
                    open_ports.append(port)
        return pids, open_ports


# ---- the benchmark ---------------------------------------------------------------------------------------

def journal_figures(demo: Demo, run_id: str, label: str, phases: tuple[str, ...] = JUDGED_PHASES) -> dict[str, float]:
    """The rollback figures of one run from its journal, printed with the verdict they count from."""
    entries = demo.journal(run_id)
    verdict = failing_verdict(entries, phases)
    figures = rollback_figures(entries, phases)
    print("%s failing: %s/%s on %s (%s); mttr_s=%.2f exposure_s=%.2f outage_s=%.2f" % (
        label, verdict["component"], verdict["data"].get("probe"), verdict["host"], verdict["ts"],
        figures["mttr_s"], figures["exposure_s"], figures["outage_s"]), flush=True)
    return figures


def measure(demo: Demo, runs: int) -> tuple[list[dict[str, float]], list[str], dict[str, float]]:
    """Demo up, then ``runs`` times floor + faulty migrate, then the late fault caught by the watch, then the
    healthy migrate.

    Returns the per-run figures, the journal errors (runs whose figures cannot be computed) and the single-run
    figures (watch_mttr_s, healthy_migrate_s). Raises Misbehaved when a run ends otherwise than expected."""
    up = demo.playbook("demo_up", "playbooks/demo_up.yml")
    demo.expect(up, up.rc == 0, "the demo did not come up")
    print("demo_up_s: %.2f" % up.seconds, flush=True)
    figures: list[dict[str, float]] = []
    errors: list[str] = []
    run_id = None
    for number in range(1, runs + 1):
        label = "run %d/%d" % (number, runs)
        floor = demo.playbook("floor-%d" % number, "bench/floor.yml")
        demo.expect(floor, floor.rc == 0, "the floor play failed")
        print("%s floor_s: %.2f" % (label, floor.seconds), flush=True)
        migrate, report = demo.migrate("faulty-%d" % number, FAULTY_RELEASE, "rolled_back", run_id,
                                       "cutover_allow_failed_release=true")
        run_id = report["run_id"]
        print("%s migrate_s: %.2f (rc=%d outcome=%s run %s)" % (label, migrate.seconds, migrate.rc,
                                                                report["outcome"], run_id), flush=True)
        try:
            figures.append(dict(journal_figures(demo, run_id, label), floor_s=floor.seconds))
        except (OSError, JournalFigureError) as error:
            errors.append("run %d (%s): %s" % (number, run_id, error))
            print("%s figures: %s" % (label, error), flush=True)
    single = {}
    late, report = demo.migrate("late-fault", LATE_FAULTY_RELEASE, "rolled_back", run_id,
                                "cutover_allow_failed_release=true", *WATCH_WINDOW)
    run_id = report["run_id"]
    print("watch run migrate_s: %.2f (rc=%d outcome=%s run %s)" % (late.seconds, late.rc, report["outcome"], run_id),
          flush=True)
    try:
        single["watch_mttr_s"] = journal_figures(demo, run_id, "watch run", ("watch",))["mttr_s"]
    except (OSError, JournalFigureError) as error:
        errors.append("watch run (%s): %s" % (run_id, error))
        print("watch run figures: %s" % error, flush=True)
    healthy, report = demo.migrate("healthy", HEALTHY_RELEASE, "migrated", run_id, "cutover_watch_duration_s=0")
    print("healthy_migrate_s: %.2f (rc=%d outcome=%s run %s)" % (healthy.seconds, healthy.rc, report["outcome"],
                                                                report["run_id"]), flush=True)
    single["healthy_migrate_s"] = healthy.seconds
    return figures, errors, single


def teardown(demo: Demo) -> list[str]:
    """demo_down with the same -e values; returns what is left behind (nothing, when all went well)."""
    problems = []
    down = demo.playbook("demo_down", "playbooks/demo_down.yml")
    print("demo_down_s: %.2f" % down.seconds, flush=True)
    if down.rc != 0:
        problems.append("demo_down failed (exit code %d); last lines of %s:\n%s" % (
            down.rc, down.log, "\n".join(down.log.read_text(errors="replace").splitlines()[-20:])))
    pids, open_ports = demo.leftovers()
    for pid in pids:  # only ever processes started for this work dir
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    if pids:
        problems.append("processes left behind (sent SIGTERM): %s" % ", ".join(map(str, pids)))
    if open_ports:
        problems.append("ports still accepting connections after demo_down: %s" % ", ".join(map(str, open_ports)))
    return problems


def keep_going_on_signal(signum: int, _frame: Any) -> None:
    print("signal %d: still taking the demo down, please wait" % signum, file=sys.stderr, flush=True)


def exit_on_signal(signum: int, _frame: Any) -> None:
    sys.exit(128 + signum)


def finish(demo: Demo, keep: bool, failed: bool, interrupted: bool) -> list[str]:
    """Take the demo down (unless --keep) and remove the work dir unless a failure left something to look at;
    returns what teardown left behind."""
    if keep:
        print("--keep: the demo stays up; take it down with: cd %s && %s playbooks/demo_down.yml -e @%s && rm -rf %s"
              % (ROOT, ANSIBLE_PLAYBOOK, demo.vars_file, demo.work), flush=True)
        return []
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, keep_going_on_signal)
    left_behind = teardown(demo)
    if left_behind or (failed and not interrupted):
        print("kept %s (logs/, run/state/journal/) for a look" % demo.work, flush=True)
    else:
        shutil.rmtree(demo.work, ignore_errors=True)
    return left_behind


def print_result(figures: list[dict[str, float]], single: dict[str, float]) -> None:
    result = dict(summarize(figures), **single)
    if len(figures) > 1:
        print("medians: " + ", ".join("%s %.2f" % (name, result[name]) for name in RESULT_FIGURES))
    if "watch_mttr_s" in result:
        print("watch_mttr_s: %.2f (a late fault caught by a watch round; one run, no goal)" % result["watch_mttr_s"])
    print("\n".join(goal_lines(result)))
    print(result_line(result), flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3,
                        help="faulty migrates (and floor runs), medians kept (default 3)")
    parser.add_argument("--keep", action="store_true", help="leave the demo up and its temp dir for inspection")
    args = parser.parse_args()
    if args.runs < 1:
        parser.error("--runs must be >= 1 (got %d)" % args.runs)
    started = time.monotonic()
    # SIGTERM and SIGHUP must still take the demo down and remove the temp dir (finish below).
    signal.signal(signal.SIGTERM, exit_on_signal)
    signal.signal(signal.SIGHUP, exit_on_signal)
    work = Path(tempfile.mkdtemp(prefix="cutover-bench-rollback-"))
    try:
        demo = Demo(work)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    print("machine: %s, %d cores, %s" % (os.uname().nodename, os.cpu_count() or 0,
                                          time.strftime("%Y-%m-%d %H:%M:%S %Z")), flush=True)
    print("work dir: %s (redis on 127.0.0.1:%d, components on %d-%d), plan %s" % (
        work, demo.redis_port, demo.port_base + 1, demo.port_base + len(PLAN), ", ".join(PLAN)), flush=True)
    problems: list[str] = []
    journal_errors: list[str] = []
    exit_code, interrupted = 1, False
    try:
        figures, journal_errors, single = measure(demo, args.runs)
    except Misbehaved as error:
        problems.append(str(error))
    except KeyboardInterrupt:
        problems.append("interrupted (Ctrl-C)")
        exit_code, interrupted = 130, True
    except SystemExit as stop:
        problems.append("stopped by a signal")
        exit_code, interrupted = (stop.code if isinstance(stop.code, int) else 1), True
    finally:
        problems += finish(demo, args.keep, bool(problems or journal_errors), interrupted)
    print("total_s: %.2f" % (time.monotonic() - started), flush=True)
    if problems:
        print("\n".join(problems))
        print("ERROR the benchmark did not complete: %s" % problems[0].splitlines()[0], flush=True)
        return exit_code
    if journal_errors:
        print("ERROR figures cannot be computed from the journal: %s" % "; ".join(journal_errors), flush=True)
        return 1
    print_result(figures, single)
    return 0


if __name__ == "__main__":
    sys.exit(main())
