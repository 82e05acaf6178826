"""The legacy release's reader (demo/toyservice/reader.py): which cache entries the old code can read - the
cross-release readability probe and the post-rollback check run it against keys a newer release wrote."""
from __future__ import annotations

import json
from pathlib import Path

from .harness import RELEASES, Launcher, audio_key, deploy_release, run_python, service_config, synthesize_audio


def read(launcher: Launcher, app_root: Path, redis_port: int, component: str, lines: list[str],
         template: str | None = None) -> dict[str, bool]:
    release = deploy_release("legacy", component, app_root)
    config = launcher.work_dir / ("%s-reader.json" % component)
    config.write_text(json.dumps(service_config(component, 1, redis_port, launcher.work_dir / "MAINTENANCE")))
    args = ["--config", str(config)] + (["--template", template] if template else [])
    done = run_python(launcher.python_for("legacy", component), release / "reader.py", *args,
                      env={"PYTHONDONTWRITEBYTECODE": "1"}, timeout=30, input_text="\n".join(lines))
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_legacy_reads_its_own_entries_and_not_a_json_string_reply(launcher: Launcher, app_root: Path,
                                                                    redis_server) -> None:
    client = redis_server.client()
    client.hset("ai:reply:" + "a" * 32, mapping={"reply": "Hi \u2728", "model": "toy-llm-1", "created_at": "x"})
    client.set("ai:reply:" + "b" * 32, json.dumps({"reply": "Hi", "model": "toy-llm-1"}))  # faulty-reply-format's
    assert read(launcher, app_root, redis_server.port, "ai", ["ai:reply:" + "a" * 32, "ai:reply:" + "b" * 32,
                                                             "ai:reply:" + "c" * 32]) == {
        "ai:reply:" + "a" * 32: True, "ai:reply:" + "b" * 32: False, "ai:reply:" + "c" * 32: False}


def test_nonces_become_the_components_keys(launcher: Launcher, app_root: Path, redis_server) -> None:
    client = redis_server.client()
    client.set(audio_key("readable-n1"), synthesize_audio("readable-n1"))
    client.set(audio_key("readable-n2"), b"not audio")
    assert read(launcher, app_root, redis_server.port, "tts", ["n1", "n2"], template="readable-{nonce}") == {
        "n1": True, "n2": False}


def test_every_reader_is_in_the_legacy_release() -> None:
    assert sorted(path.parent.name for path in RELEASES.glob("legacy/*/reader.py")) == [
        "ai", "monitoring", "safety", "security", "tts"]
