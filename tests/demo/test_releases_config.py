"""Release layout and metadata, and config validation (in-process: it needs no Redis client library)."""
from __future__ import annotations

import json
from typing import Any

import pytest

from .harness import COMPONENTS, DEMO, FAULTY_RELEASES, RELEASES, ConfigError, parse_config

PINS = {
    "aioredis": ["aioredis==1.3.1", "async-timeout==5.0.1", "hiredis==3.5.0"],
    "redis.asyncio": ["redis==8.1.0", "hiredis==3.5.0"],
}
ALL_RELEASES = ["legacy", "migrated", *FAULTY_RELEASES]


@pytest.mark.parametrize("release", ALL_RELEASES)
def test_release_has_every_component_with_pinned_requirements(release: str) -> None:
    for component in COMPONENTS + ("validator",):
        directory = RELEASES / release / component
        entry = directory / ("validate.py" if component == "validator" else "service.py")
        assert entry.is_file(), entry
        assert (directory / "toyservice").resolve() == (DEMO / "toyservice").resolve()
        metadata = json.loads((directory / "release.json").read_text())
        assert set(metadata) == {"description", "redis_client", "risk"} and metadata["description"]
        pins = [line for line in (directory / "requirements.txt").read_text().splitlines()
                if line and not line.startswith("#")]
        assert pins == PINS[metadata["redis_client"]], directory
        assert metadata["redis_client"] == ("aioredis" if release == "legacy" else "redis.asyncio")
        faulty_here = FAULTY_RELEASES.get(release) == component
        assert (metadata["risk"] is not None) == faulty_here, directory


@pytest.mark.parametrize("release,component", FAULTY_RELEASES.items())
def test_faulty_release_changes_exactly_one_component(release: str, component: str) -> None:
    for other in COMPONENTS + ("validator",):
        path = RELEASES / release / other
        if other == component:
            assert path.is_dir() and not path.is_symlink(), path
        else:
            assert path.is_symlink() and str(path.readlink()) == "../migrated/%s" % other, path


def good_config(component: str = "tts", **overrides: Any) -> dict[str, Any]:
    config = {"component": component, "listen_port": 18103, "redis": {"host": "127.0.0.1", "port": 16379},
              "maintenance_file": "/tmp/toy/tts/MAINTENANCE"}
    config.update(overrides)
    return config


def test_minimal_config_gets_documented_defaults() -> None:
    config = parse_config("tts.json", good_config())
    assert (config.listen_host, config.pool_size, config.alerts_stream, config.metrics_interval_s) == (
        "127.0.0.1", 20, "ai_service_alerts", 2.0)
    assert (config.redis.db, config.redis.username, config.redis.password) == (0, None, None)
    assert config.settings == {"ttl_s": 7 * 86400, "synthesis_ms": 40}
    assert parse_config("s.json", good_config("security")).settings["rate_limit"] == 30


@pytest.mark.parametrize("field,config", [
    ("component", good_config(component="validator")),
    ("listen_port", good_config(listen_port=70000)),
    ("listen_port", good_config(listen_port=True)),
    ("pool_size", good_config(pool_size=0)),
    ("pool_size", good_config(pool_size=2.5)),
    ("metrics_interval_s", good_config(metrics_interval_s=0)),
    ("maintenance_file", {k: v for k, v in good_config().items() if k != "maintenance_file"}),
    ("redis", good_config(redis="redis://127.0.0.1")),
    ("redis.db", good_config(redis={"db": -1})),
    ("redis.url", good_config(redis={"url": "redis://x"})),
    ("settings.ttl", good_config(settings={"ttl": 5})),
    ("settings.synthesis_ms", good_config(settings={"synthesis_ms": "fast"})),
    ("settings.rate_limit", good_config("security", settings={"rate_limit": 0})),
    ("pool_sise", good_config(pool_sise=5)),
])
def test_bad_config_names_the_field(field: str, config: dict[str, Any]) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config("x.json", config)
    assert caught.value.field == field
    assert str(caught.value).startswith("x.json: %s: " % field)


def test_config_error_never_echoes_a_password() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config("x.json", good_config(redis={"password": 271828182}))
    assert caught.value.field == "redis.password" and "271828182" not in str(caught.value)
