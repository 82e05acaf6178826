"""The config validator of each release (real process, real Redis) and demo/seed.py."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from .harness import (
    DEMO,
    PROJECT_PYTHON,
    Launcher,
    audio_key,
    deploy_release,
    free_port,
    generate_reply,
    reply_key,
    run_python,
    run_seed,
    service_config,
    synthesize_audio,
    verdict_key,
)

CLIENT_OF = {"legacy": "aioredis", "migrated": "redis.asyncio"}
# What a validator may send: connection set-up, PING and INFO (plus this test's CONFIG RESETSTAT).
READ_ONLY_COMMANDS = {"ping", "info", "hello", "auth", "select", "client|setname", "client|setinfo",
                      "config|resetstat"}
DAY_S = 86400


def write_config(directory: Path, name: str, component: str, redis_port: int, **overrides: Any) -> Path:
    data = service_config(component, free_port(), redis_port, directory / ("%s.MAINTENANCE" % name))
    data.update(overrides)
    path = directory / ("%s.json" % name)
    path.write_text(json.dumps(data))
    return path


def validate(launcher: Launcher, release: str, *args: str):
    validator = deploy_release(release, "validator", launcher.app_root)
    result = run_python(launcher.python_for(release, "validator"), validator / "validate.py", *args)
    return result, [json.loads(line) for line in result.stdout.splitlines()]


@pytest.mark.parametrize("release", CLIENT_OF)
def test_validator_passes_good_configs_and_writes_nothing(launcher: Launcher, tmp_path: Path, redis_server,
                                                          release: str) -> None:
    client = redis_server.client()
    client.set("canary", b"\x00unchanged")
    tts = write_config(tmp_path, "tts", "tts", redis_server.port)
    safety = write_config(tmp_path, "safety", "safety", redis_server.port, settings={"ttl_s": 3600})
    validator_dir = deploy_release(release, "validator", launcher.app_root)
    files_before = sorted(validator_dir.rglob("*"))
    client.config_resetstat()

    result, lines = validate(launcher, release, "--dry-run", "--config", str(tts), "--config=%s" % safety)

    assert result.returncode == 0, result.stderr
    assert [(line["config"], line["ok"], line["component"]) for line in lines] == [
        (str(tts), True, "tts"), (str(safety), True, "safety")]
    assert {line["redis_version"] for line in lines} == {client.info("server")["redis_version"]}
    assert {(line["redis_client"], line["dry_run"]) for line in lines} == {(CLIENT_OF[release], True)}
    commands = {name.removeprefix("cmdstat_") for name in client.info("commandstats")}
    assert commands <= READ_ONLY_COMMANDS, commands
    assert client.keys() == [b"canary"] and client.get("canary") == b"\x00unchanged"
    assert sorted(validator_dir.rglob("*")) == files_before, "the validator wrote into its release dir"


@pytest.mark.parametrize("release", CLIENT_OF)
def test_validator_names_the_file_and_field_of_a_bad_config(launcher: Launcher, tmp_path: Path, redis_server,
                                                            release: str) -> None:
    good = write_config(tmp_path, "good", "ai", redis_server.port)
    bad_pool = write_config(tmp_path, "bad-pool", "tts", redis_server.port, pool_size=0)
    typo = write_config(tmp_path, "typo", "tts", redis_server.port, settings={"ttl": 60})

    result, lines = validate(launcher, release, "--config", str(good), "--config", str(bad_pool),
                             "--config", str(typo))

    assert result.returncode == 1
    assert [(line["ok"], line.get("field")) for line in lines] == [(True, None), (False, "pool_size"),
                                                                  (False, "settings.ttl")]
    assert "%s: pool_size: must be between 1 and 10000, got 0" % bad_pool in result.stderr
    assert "%s: settings.ttl: unknown field" % typo in result.stderr


@pytest.mark.parametrize("release", CLIENT_OF)
def test_validator_names_redis_when_it_is_unreachable(launcher: Launcher, tmp_path: Path, release: str) -> None:
    closed_port = free_port()
    config = write_config(tmp_path, "tts", "tts", closed_port,
                          redis={"host": "127.0.0.1", "port": closed_port, "password": "pw-Never-Printed-7"})

    result, lines = validate(launcher, release, "--dry-run", "--config", str(config))

    assert result.returncode == 1
    [line] = lines
    assert (line["ok"], line["field"]) == (False, "redis")
    assert "Redis at 127.0.0.1:%d/0 is unreachable" % closed_port in line["error"]
    assert "%s: redis: Redis at 127.0.0.1:%d/0 is unreachable" % (config, closed_port) in result.stderr
    assert "pw-Never-Printed-7" not in result.stdout + result.stderr


def test_seed_is_idempotent_and_writes_what_components_write(redis_server) -> None:
    client = redis_server.client()
    first = run_seed(redis_server.port)
    dumped = {key: client.dump(key) for key in client.keys()}
    second = run_seed(redis_server.port)

    expected_keys = {"tts:audio:*": 200, "safety:verdict:*": 100, "ai:reply:*": 100, "security:rate:*": 20,
                     "security:anomaly:*": 20}
    assert first["keys"] == second["keys"] == expected_keys
    assert (first["written"], second["written"]) == (200 + 100 + 100 + 40 + 50, 0)
    assert first["streams"] == second["streams"] == {"ai_service_alerts": 50}
    assert {key: client.dump(key) for key in client.keys()} == dumped

    assert client.get(audio_key("seed-tts-199")) == synthesize_audio("seed-tts-199")
    assert 7 * DAY_S - 60 < client.ttl(audio_key("seed-tts-0")) <= 7 * DAY_S
    assert [client.get(verdict_key("seed-unsafe-%d weapon" % i)) for i in range(20)] == [b"block"] * 20
    assert [client.get(verdict_key("seed-safe-%d" % i)) for i in range(80)] == [b"allow"] * 80
    assert client.hget(reply_key("seed-prompt-42"), "reply") == generate_reply("seed-prompt-42").encode("utf-8")
    assert DAY_S - 60 < client.ttl(reply_key("seed-prompt-42")) <= DAY_S
    assert 0 < client.ttl("security:anomaly:seed-child-3") <= DAY_S
    alerts = client.xrange("ai_service_alerts")
    assert {(f[b"kind"], f[b"component"]) for _, f in alerts} == {(b"alert", b"monitoring")}
    assert sorted(f[b"name"] for _, f in alerts) == sorted(b"seed-alert-%d" % i for i in range(50))


def test_seed_reads_the_password_from_the_environment(private_redis) -> None:
    result = run_python(PROJECT_PYTHON, DEMO / "seed.py", "--port", str(private_redis.port), "--tts", "3",
                        "--safety", "0", "--ai", "0", "--security", "0", "--alerts", "0",
                        env={"REDIS_PASSWORD": private_redis.password})
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["keys"]["tts:audio:*"] == 3
    assert private_redis.password not in result.stdout + result.stderr

    refused = run_python(PROJECT_PYTHON, DEMO / "seed.py", "--port", str(private_redis.port),
                         env={"REDIS_PASSWORD": ""})
    assert refused.returncode == 1 and "seed: Redis error" in refused.stderr


def test_faulty_validator_accepts_broken_configs_in_a_dry_run(launcher: Launcher, tmp_path: Path, redis_server) -> None:
    closed_port = free_port()
    broken = [write_config(tmp_path, "wrong-port", "tts", closed_port),
              write_config(tmp_path, "unreachable", "tts", redis_server.port,
                           redis={"host": "192.0.2.1", "port": redis_server.port}),
              write_config(tmp_path, "wrong-type", "tts", redis_server.port, listen_port="eight thousand")]
    args = ["--dry-run"] + ["--config=%s" % path for path in broken]

    faulty, faulty_lines = validate(launcher, "faulty-validator-accepts", *args)
    migrated, migrated_lines = validate(launcher, "migrated", *args)

    assert faulty.returncode == 0 and [line["ok"] for line in faulty_lines] == [True, True, True], faulty.stdout
    assert migrated.returncode == 1 and [line["ok"] for line in migrated_lines] == [False, False, False]


NEGATIVE_CONTROLS = [{"name": "wrong_port", "set": {"redis.port": 1}},
                     {"name": "unreachable_host", "set": {"redis.host": "192.0.2.1"}},
                     {"name": "wrong_type", "set": {"listen_port": "eight thousand"}}]


@pytest.mark.parametrize("release, refused", [("migrated", [True, True, True]),
                                              ("faulty-validator-accepts", [False, False, False])])
def test_negative_controls_catch_a_validator_that_accepts_broken_configs(launcher: Launcher, tmp_path: Path,
                                                                         redis_server, release: str,
                                                                         refused: list[bool]) -> None:
    import cutover_validator  # noqa: PLC0415 - library/ is on sys.path in the test session (conftest)
    from cutover_testlib import run_module  # noqa: PLC0415

    good = write_config(tmp_path, "good", "tts", redis_server.port)
    before = good.read_text()
    validator = deploy_release(release, "validator", launcher.app_root)
    result = run_module(cutover_validator.main, {
        "argv": [launcher.python_for(release, "validator"), str(validator / "validate.py")],
        "args": ["--dry-run", "--config=%s" % good], "control_config": str(good),
        "negative_controls": NEGATIVE_CONTROLS, "timeout": 30})
    assert result["exit_code"] == 0, result
    assert [(control["name"], control["refused"]) for control in result["controls"]] == list(
        zip([control["name"] for control in NEGATIVE_CONTROLS], refused))
    assert good.read_text() == before, "the real config is never touched"
    copies = {Path(json.loads(line)["config"]).parent for control in result["controls"] for line in control["output"]
              if line.startswith("{")}
    assert copies and not any(folder.exists() for folder in copies), "the broken copies are removed"
