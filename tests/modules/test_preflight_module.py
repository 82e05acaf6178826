"""cutover_preflight on a real app root (releases and one env installed by cutover_release) whose components run
under a real supervisord, judging a real cutover_redis_info result too.

The host is built once for the file (the env build is the slow part) and never changed by a test: every preflight
call also asserts that the app root, envs included, is byte for byte and mtime for mtime what it was.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import pytest
from ansible.modules import stat as stat_module

import cutover_preflight
import cutover_redis_info
import cutover_release
from ansible.module_utils.cutover_events import check_event
from cutover_testlib import free_port, run_module
from test_release import tree_listing
from test_service import Program, Supervisord, new_marker, running_supervisord, supervisor_dir, write_service

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "plugins" / "filter"))
import cutover as filters  # noqa: E402

HOST = "app-1"
TARGET = "migrated"
# Bytes of the target release's requirements file: no packages, so the env build needs no index.
REQUIREMENTS = "# preflight test env: pip only\n"
OTHER_REQUIREMENTS = "# another env, never built\n"
FAILED_REASON = "rolled back by run 20261204T101500Z-rollback: probe security/latency_p95_ms failed"
READY = ("tts", "safety")


@dataclass
class Host:
    """An app root and the supervisord running its components."""

    root: Path
    supervisor: Supervisord
    built_env: str  # the env cutover_release built for tts's target release

    @property
    def env_root(self) -> Path:
        return self.root / "venvs"


def install(root: Path, sources: Path, component: str, release: str, state: str = "present",
            requirements: str | None = None) -> dict[str, Any]:
    source = sources / component / release
    write_service(source / "service.py", release=release)
    if requirements is not None:
        (source / "requirements.txt").write_text(requirements)
    return run_module(cutover_release.main, {"root": str(root / component), "component": component,
                                             "release": release, "src": str(source), "state": state})


def service_program(root: Path, component: str, release_path: str = "current") -> Program:
    return Program("cutover-%s" % component, root / component / release_path / "service.py", free_port())


@pytest.fixture(scope="module")
def host(tmp_path_factory) -> Iterator[Host]:
    """tts: legacy current, migrated installed with an env; safety: legacy current; security: legacy current,
    migrated marked failed; ai: migrated installed, never current; monitoring: legacy current, no program."""
    base = tmp_path_factory.mktemp("preflight")
    root, sources = base / "app", base / "src"
    for component in ("tts", "safety", "security", "monitoring"):
        install(root, sources, component, "legacy", state="current")
    built_env = install(root, sources, "tts", TARGET, requirements=REQUIREMENTS)["env"]
    assert built_env and Path(built_env, ".cutover-env.json").is_file()
    install(root, sources, "security", TARGET)
    run_module(cutover_release.main, {"root": str(root / "security"), "component": "security", "release": TARGET,
                                      "state": "failed", "reason": FAILED_REASON})
    install(root, sources, "ai", TARGET)
    programs = [service_program(root, name) for name in ("tts", "safety", "security")]
    programs.append(service_program(root, "ai", "releases/%s" % TARGET))
    marker = new_marker()
    with running_supervisord(supervisor_dir(base, marker), programs, marker) as supervisor:
        yield Host(root, supervisor, built_env)


def preflight(host: Host, components: tuple[str, ...] = READY, **options: Any) -> dict[str, Any]:
    """Run cutover_preflight for these components; assert it changed nothing and journaled what it returned."""
    args = {"components": [{"name": name} for name in components], "app_root": str(host.root),
            "target_release": TARGET, "manager": "supervisor", "supervisor_config": str(host.supervisor.config),
            "host_label": HOST, **options}
    before = tree_listing(host.root)
    result = run_module(cutover_preflight.main, args)
    assert tree_listing(host.root) == before, "preflight writes nothing"
    assert result["changed"] is False
    [entry] = result["journal"]
    assert entry == {"event": "preflight.checked", "component": None, "host": HOST, "ts": entry["ts"],
                     "data": {"checks": result["checks"], "releases": result["releases"]}}
    check_event(entry["event"], entry["data"], entry["ts"])
    return result


def by_name(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    checks = {check["name"]: check for check in result["checks"]}
    assert len(checks) == len(result["checks"]), "check names are unique"
    return checks


def names(result: dict[str, Any]) -> list[str]:
    return [check["name"] for check in result["checks"]]


def failed(result: dict[str, Any]) -> list[str]:
    return [check["name"] for check in result["checks"] if not check["ok"]]


def refusal(*checks: dict[str, Any]) -> str:
    return "preflight refused the run on %s, nothing was changed: %s" % (
        HOST, " | ".join("%s: %s" % (check["name"], check["detail"]) for check in checks))


def release_ok(component: str, current: str = "legacy") -> list[dict[str, Any]]:
    return [{"name": "release/%s" % component, "ok": True,
             "detail": "current release %s; it is what a rollback returns to" % current},
            {"name": "target/%s" % component, "ok": True, "detail": "release %s may be deployed" % TARGET}]


PROCESS_MANAGER_OK = {"name": "process_manager", "ok": True, "detail": "supervisor knows every component"}


# -------------------------------------------------------------------------------------------------------- tests

def test_a_ready_host_passes_with_every_check_and_its_current_releases(host):
    result = preflight(host)

    assert result["checks"] == release_ok("tts") + release_ok("safety") + [PROCESS_MANAGER_OK]
    assert result["passed"] is True
    assert result["msg"] == "preflight passed on %s (5 checks)" % HOST
    assert result["releases"] == {"tts": "legacy", "safety": "legacy"}
    assert result["targets"] == {"tts": {"installed": True, "status": "ok"},
                                 "safety": {"installed": False, "status": None}}


def test_a_component_without_a_current_release_is_refused_naming_it(host):
    result = preflight(host, ("tts", "ai"))

    ai = by_name(result)["release/ai"]
    assert ai == {"name": "release/ai", "ok": False,
                  "detail": "component ai has no current release under %s, so there is nothing to roll back to"
                            % host.root}
    assert failed(result) == ["release/ai"]
    assert result["passed"] is False
    assert result["msg"] == refusal(ai)
    assert result["releases"] == {"tts": "legacy", "ai": None}
    assert result["targets"]["ai"] == {"installed": True, "status": "ok"}
    assert by_name(result)["process_manager"] == PROCESS_MANAGER_OK


def test_a_target_marked_failed_is_refused_unless_allowed(host):
    result = preflight(host, ("tts", "security"))

    target = by_name(result)["target/security"]
    assert target == {"name": "target/security", "ok": False,
                      "detail": "release %s of security is marked failed (%s); set cutover_allow_failed_release=true "
                                "to deploy it again" % (TARGET, FAILED_REASON)}
    assert failed(result) == ["target/security"]
    assert result["passed"] is False and result["msg"] == refusal(target)
    assert result["targets"]["security"] == {"installed": True, "status": "failed"}
    assert result["releases"] == {"tts": "legacy", "security": "legacy"}

    allowed = preflight(host, ("tts", "security"), allow_failed_release=True)

    assert allowed["checks"] == release_ok("tts") + release_ok("security") + [PROCESS_MANAGER_OK]
    assert allowed["passed"] is True
    assert allowed["targets"]["security"] == {"installed": True, "status": "failed"}, "the registry is only read"


def test_a_service_supervisord_does_not_know_fails_process_manager_naming_it(host):
    result = preflight(host, ("tts", "monitoring", "safety"))

    manager_check = by_name(result)["process_manager"]
    assert manager_check == {"name": "process_manager", "ok": False,
                             "detail": "supervisor has no service(s) cutover-monitoring"}
    assert failed(result) == ["process_manager"], "monitoring's releases are fine"
    assert result["passed"] is False and result["msg"] == refusal(manager_check)
    assert result["releases"] == {"tts": "legacy", "monitoring": "legacy", "safety": "legacy"}


def test_a_redis_info_result_of_a_real_redis_is_judged(host, redis_server):
    client = redis_server.client()
    client.mset({"tts:1": b"x", "tts:2": b"y", "safety:1": b"z"})
    info = run_module(cutover_redis_info.main, {"redis": redis_server.options, "namespaces": ["tts:*"]},
                      check_mode=True)
    assert info["healthy"] is True and info["keys"] == 3

    result = preflight(host, redis_info=info)

    assert names(result)[0] == "redis"
    assert by_name(result)["redis"] == {
        "name": "redis", "ok": True,
        "detail": "Redis %s answers, 3 keys, %s MiB used" % (info["version"], info["used_memory_mb"])}
    assert result["passed"] is True
    assert result["msg"] == "preflight passed on %s (6 checks)" % HOST

    too_old = run_module(cutover_redis_info.main, {"redis": redis_server.options, "min_version": "99.0.0"},
                         check_mode=True)
    refused = preflight(host, redis_info=too_old)

    redis_check = by_name(refused)["redis"]
    assert redis_check == {"name": "redis", "ok": False,
                           "detail": "Redis %s is older than the required 99.0.0" % info["version"]}
    assert failed(refused) == ["redis"]
    assert refused["passed"] is False and refused["msg"] == refusal(redis_check)


def test_a_failed_validator_dry_run_fails_with_its_output_tail(host):
    # what cutover_validator registers for `validate.py --config ... --dry-run` exiting 1
    validator = {"exit_code": 1, "changed": False,
                 "stdout_lines": ["checking /opt/toy/tts/config.json", "checking /opt/toy/safety/config.json",
                                  "tts: redis url ok", "safety: unknown option 'redis_pool'"],
                 "stderr_lines": ["1 config invalid"]}

    result = preflight(host, validator=validator)

    check = by_name(result)["validator/%s" % TARGET]
    assert check == {"name": "validator/%s" % TARGET, "ok": False,
                     "detail": "config validator of %s failed (rc 1): checking /opt/toy/safety/config.json / "
                               "tts: redis url ok / safety: unknown option 'redis_pool' / 1 config invalid" % TARGET}
    assert names(result)[-1] == "validator/%s" % TARGET
    assert failed(result) == ["validator/%s" % TARGET]
    assert result["passed"] is False and result["msg"] == refusal(check)

    passed = preflight(host, validator=dict(validator, exit_code=0, stderr_lines=[]))
    assert by_name(passed)["validator/%s" % TARGET] == {
        "name": "validator/%s" % TARGET, "ok": True, "detail": "config validator of %s passed (dry run)" % TARGET}
    assert passed["passed"] is True


def test_requirements_tell_whether_the_target_env_exists(host):
    result = preflight(host, requirements={"tts": REQUIREMENTS, "safety": OTHER_REQUIREMENTS},
                       python=sys.executable, env_root=str(host.env_root))

    tts, safety = result["targets"]["tts"], result["targets"]["safety"]
    assert tts == {"installed": True, "status": "ok", "env": host.built_env, "env_exists": True}
    assert safety["env_exists"] is False and safety["installed"] is False
    assert Path(safety["env"]).parent == host.env_root and safety["env"] != host.built_env
    assert not Path(safety["env"]).exists()
    assert not [name for name in names(result) if name.startswith("env/")]
    assert result["passed"] is True

    # the same requirements with other pip arguments would build another env
    other = preflight(host, ("tts",), requirements={"tts": REQUIREMENTS}, python=sys.executable,
                      env_root=str(host.env_root), pip_args=["--no-deps"])
    assert other["targets"]["tts"]["env"] != host.built_env
    assert other["targets"]["tts"]["env_exists"] is False


def test_a_python_that_does_not_exist_fails_env_of_every_component_and_every_other_check_still_runs(host,
                                                                                                   redis_server):
    python = str(host.root / "no-such-python")
    info = run_module(cutover_redis_info.main, {"redis": redis_server.options}, check_mode=True)

    result = preflight(host, ("tts", "safety", "monitoring"), python=python, env_root=str(host.env_root),
                       requirements={name: REQUIREMENTS for name in ("tts", "safety", "monitoring")},
                       redis_info=info, validator={"exit_code": 0, "stdout_lines": [], "stderr_lines": []})

    why = "python: probing interpreter %s failed to start: No such file or directory" % python
    assert names(result) == ["redis", "release/tts", "target/tts", "env/tts", "release/safety", "target/safety",
                             "env/safety", "release/monitoring", "target/monitoring", "env/monitoring",
                             "process_manager", "validator/%s" % TARGET]
    checks = by_name(result)
    for component in ("tts", "safety", "monitoring"):
        assert checks["env/%s" % component] == {"name": "env/%s" % component, "ok": False, "detail": why}
    assert failed(result) == ["env/tts", "env/safety", "env/monitoring", "process_manager"]
    assert checks["process_manager"]["detail"] == "supervisor has no service(s) cutover-monitoring"
    assert result["releases"] == {"tts": "legacy", "safety": "legacy", "monitoring": "legacy"}
    assert result["targets"] == {"tts": {}, "safety": {}, "monitoring": {}}
    assert result["passed"] is False
    assert result["msg"] == refusal(*(checks[name] for name in failed(result)))



def stat_results(needs: list[dict[str, str]]) -> list[dict[str, Any]]:
    """What a looped ansible.builtin.stat registers for these needs: ansible-core's stat module run on each path."""
    return [dict(run_module(stat_module.main, {"path": need["path"]}), item=need) for need in needs]


def test_what_a_scheduled_watcher_needs_is_looked_at_on_its_host_and_each_missing_piece_is_refused(host, tmp_path):
    station = tmp_path / "station"
    (station / "project" / "playbooks").mkdir(parents=True)
    (station / "project" / "playbooks" / "watch.yml").write_text("---\n")
    (station / "bin").mkdir()
    (station / "bin" / "ansible-playbook").write_text("#!/bin/sh\n")
    (station / "conf.d").mkdir()
    paths = {"cutover_watch_ansible_playbook": str(station / "bin" / "ansible-playbook"),
             "cutover_watch_project_dir": str(station / "project"),
             "cutover_watch_inventory": [str(station / "inventory")],
             "cutover_watch_supervisor_include_dir": str(station / "conf.d"), "cutover_watch_unit_dir": "/nowhere"}
    needs = [dict(need, host="journal-1") for need in filters.cutover_watcher_needs(paths, "supervisor")]

    refused = preflight(host, watcher=stat_results(needs))

    assert failed(refused) == ["watcher/cutover_watch_ansible_playbook", "watcher/cutover_watch_inventory"]
    checks = by_name(refused)
    assert checks["watcher/cutover_watch_ansible_playbook"]["detail"] == (
        "cutover_watch_ansible_playbook %s on journal-1 is not an executable file" % paths["cutover_watch_ansible_playbook"])
    assert checks["watcher/cutover_watch_inventory"]["detail"] == (
        "cutover_watch_inventory %s on journal-1 does not exist; the scheduled watcher needs it (there)"
        % paths["cutover_watch_inventory"][0])
    assert checks["watcher/cutover_watch_project_dir"]["ok"] and checks["watcher/cutover_watch_supervisor_include_dir"]["ok"]
    assert refused["passed"] is False and "watcher/cutover_watch_inventory" in refused["msg"]

    (station / "bin" / "ansible-playbook").chmod(0o755)
    (station / "inventory").write_text("all: {}\n")
    passed = preflight(host, watcher=stat_results(needs))
    assert [name for name in names(passed) if name.startswith("watcher/")] == [
        "watcher/cutover_watch_ansible_playbook", "watcher/cutover_watch_project_dir", "watcher/cutover_watch_inventory",
        "watcher/cutover_watch_supervisor_include_dir"]
    assert passed["passed"] is True

    unreachable = preflight(host, watcher=[{"item": needs[0], "unreachable": True, "msg": "ssh: connect refused"}])
    assert by_name(unreachable)["watcher/cutover_watch_ansible_playbook"]["detail"] == (
        "cutover_watch_ansible_playbook %s on journal-1 could not be looked at: ssh: connect refused"
        % paths["cutover_watch_ansible_playbook"])
