"""Load and validate a component's JSON config file; every problem names the field at fault."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from toyservice import ALERTS_STREAM_DEFAULT
from toyservice.stores.base import RedisTarget

DAY_S = 86400


@dataclass(frozen=True)
class SettingSpec:
    """One component setting: its type ("int", "number" or "str"), default and lower bound."""

    kind: str
    default: int | float | str
    minimum: float | None = None


COMPONENT_SETTINGS: dict[str, dict[str, SettingSpec]] = {
    "tts": {
        "ttl_s": SettingSpec("int", 7 * DAY_S, 1),
        "synthesis_ms": SettingSpec("number", 40, 0),
    },
    "safety": {
        "ttl_s": SettingSpec("int", 30 * DAY_S, 1),
        "classifier_ms": SettingSpec("number", 15, 0),
    },
    "security": {
        "rate_limit": SettingSpec("int", 30, 1),
        "window_ttl_s": SettingSpec("int", 120, 60),
        "anomaly_ttl_s": SettingSpec("int", DAY_S, 1),
    },
    "ai": {
        "ttl_s": SettingSpec("int", DAY_S, 1),
        "generation_ms": SettingSpec("number", 30, 0),
    },
    "monitoring": {
        "group": SettingSpec("str", "monitoring"),
        "consumer": SettingSpec("str", "monitor-1"),
        "poll_interval_s": SettingSpec("number", 0.2, 0.01),
        "batch": SettingSpec("int", 100, 1),
    },
}
COMPONENTS = tuple(COMPONENT_SETTINGS)
TOP_LEVEL_FIELDS = (
    "component", "listen_host", "listen_port", "redis", "pool_size", "maintenance_file",
    "alerts_stream", "metrics_interval_s", "settings",
)
REDIS_FIELDS = ("host", "port", "db", "username", "password")
_REQUIRED = object()


class ConfigError(Exception):
    """A config problem: ``field`` is the dotted path of the offending field."""

    def __init__(self, path: str, field: str, message: str):
        super().__init__("%s: %s: %s" % (path, field, message))
        self.path = path
        self.field = field
        self.message = message


@dataclass(frozen=True)
class ServiceConfig:
    path: str
    component: str
    listen_host: str
    listen_port: int
    redis: RedisTarget
    pool_size: int
    maintenance_file: Path
    alerts_stream: str
    metrics_interval_s: float
    settings: dict[str, Any]

    def summary(self) -> dict[str, Any]:
        """What the config says, without the password."""
        return {
            "component": self.component,
            "listen": "%s:%d" % (self.listen_host, self.listen_port),
            "redis": self.redis.describe(),
            "pool_size": self.pool_size,
            "alerts_stream": self.alerts_stream,
            "settings": self.settings,
        }


class _Fields:
    """Typed access to one JSON object, raising ConfigError with the dotted field name."""

    def __init__(self, path: str, data: dict[str, Any], prefix: str, allowed: tuple[str, ...]):
        self.path = path
        self.data = data
        self.prefix = prefix
        unknown = sorted(set(data) - set(allowed))
        if unknown:
            raise ConfigError(path, prefix + unknown[0], "unknown field; allowed: %s" % ", ".join(allowed))

    def _fail(self, name: str, message: str) -> ConfigError:
        return ConfigError(self.path, self.prefix + name, message)

    def _value(self, name: str, default: Any) -> Any:
        if name not in self.data:
            if default is _REQUIRED:
                raise self._fail(name, "required field is missing")
            return default
        return self.data[name]

    def text(self, name: str, default: Any = None, optional: bool = False) -> Any:
        value = self._value(name, default)
        if value is None and optional:
            return None
        if not isinstance(value, str) or not value:
            raise self._fail(name, "must be a non-empty string, got %s" % _shown(value))
        return value

    def integer(self, name: str, default: Any, minimum: int, maximum: int | None = None) -> int:
        value = self._value(name, default)
        # bool is an int subclass; true/false is never a valid count or port.
        if not isinstance(value, int) or isinstance(value, bool):
            raise self._fail(name, "must be an integer, got %s" % _shown(value))
        if value < minimum or (maximum is not None and value > maximum):
            bounds = ">= %d" % minimum if maximum is None else "between %d and %d" % (minimum, maximum)
            raise self._fail(name, "must be %s, got %d" % (bounds, value))
        return value

    def number(self, name: str, default: Any, minimum: float, exclusive: bool = False) -> float:
        value = self._value(name, default)
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise self._fail(name, "must be a number, got %s" % _shown(value))
        if value < minimum or (exclusive and value == minimum):
            raise self._fail(name, "must be %s %s, got %s" % (">" if exclusive else ">=", minimum, value))
        return float(value)

    def mapping(self, name: str, default: Any) -> dict[str, Any]:
        value = self._value(name, default)
        if not isinstance(value, dict):
            raise self._fail(name, "must be an object, got %s" % _shown(value))
        return value


def _shown(value: Any) -> str:
    """Describe a bad value by type only: the field might hold a secret."""
    return "null" if value is None else type(value).__name__


def load_config(path: str | Path) -> ServiceConfig:
    """Read and validate ``path``; raise ConfigError naming the file and the field."""
    path = str(path)
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except OSError as exc:
        raise ConfigError(path, "config", "cannot read file: %s" % exc.strerror) from None
    except ValueError as exc:
        raise ConfigError(path, "config", "not valid JSON: %s" % exc) from None
    if not isinstance(data, dict):
        raise ConfigError(path, "config", "must be a JSON object")
    return parse_config(path, data)


def parse_config(path: str, data: dict[str, Any]) -> ServiceConfig:
    top = _Fields(path, data, "", TOP_LEVEL_FIELDS)
    component = top.text("component", _REQUIRED)
    if component not in COMPONENT_SETTINGS:
        raise ConfigError(path, "component", "unknown component %r; allowed: %s" % (component, ", ".join(COMPONENTS)))
    return ServiceConfig(
        path=path,
        component=component,
        listen_host=top.text("listen_host", "127.0.0.1"),
        listen_port=top.integer("listen_port", _REQUIRED, 1, 65535),
        redis=_parse_redis(path, top.mapping("redis", _REQUIRED)),
        pool_size=top.integer("pool_size", 20, 1, 10000),
        maintenance_file=Path(top.text("maintenance_file", _REQUIRED)),
        alerts_stream=top.text("alerts_stream", ALERTS_STREAM_DEFAULT),
        metrics_interval_s=top.number("metrics_interval_s", 2.0, 0.0, exclusive=True),
        settings=_parse_settings(path, component, top.mapping("settings", {})),
    )


def _parse_redis(path: str, data: dict[str, Any]) -> RedisTarget:
    fields = _Fields(path, data, "redis.", REDIS_FIELDS)
    return RedisTarget(
        host=fields.text("host", "127.0.0.1"),
        port=fields.integer("port", 6379, 1, 65535),
        db=fields.integer("db", 0, 0, 15),
        username=fields.text("username", None, optional=True),
        password=fields.text("password", None, optional=True),
    )


def _parse_settings(path: str, component: str, data: dict[str, Any]) -> dict[str, Any]:
    specs = COMPONENT_SETTINGS[component]
    fields = _Fields(path, data, "settings.", tuple(specs))
    settings: dict[str, Any] = {}
    for name, spec in specs.items():
        if spec.kind == "int":
            settings[name] = fields.integer(name, spec.default, int(spec.minimum or 0))
        elif spec.kind == "number":
            settings[name] = fields.number(name, spec.default, spec.minimum or 0.0)
        else:
            settings[name] = fields.text(name, spec.default)
    return settings


def default_settings(component: str) -> dict[str, Any]:
    """The settings a component runs with when its config sets none (used by seed.py)."""
    return {name: spec.default for name, spec in COMPONENT_SETTINGS[component].items()}
