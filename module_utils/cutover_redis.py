# -*- coding: utf-8 -*-
# Shared Redis connection options for every cutover module.
# The doc fragment plugins/doc_fragments/cutover_redis.py mirrors REDIS_CONNECTION_SPEC.
from __future__ import annotations

import traceback
from typing import Any

try:
    import redis
    from redis.exceptions import AuthenticationError, ConnectionError as RedisConnectionError, RedisError, ResponseError
    HAS_REDIS = True
    REDIS_IMPORT_ERROR = None
except ImportError:  # pragma: no cover - exercised on hosts without redis-py
    redis = None
    AuthenticationError = RedisConnectionError = RedisError = ResponseError = Exception
    HAS_REDIS = False
    REDIS_IMPORT_ERROR = traceback.format_exc()

REDIS_CONNECTION_SUBOPTIONS: dict[str, dict[str, Any]] = {
    "url": {"type": "str", "no_log": True},
    "host": {"type": "str", "default": "127.0.0.1"},
    "port": {"type": "int", "default": 6379},
    "db": {"type": "int", "default": 0},
    "user": {"type": "str"},
    "password": {"type": "str", "no_log": True},
    "tls": {"type": "bool", "default": False},
    "ca_cert": {"type": "path"},
    "client_cert": {"type": "path"},
    "client_key": {"type": "path", "no_log": False},
    "validate_certs": {"type": "bool", "default": True},
    "socket_timeout": {"type": "float", "default": 10.0},
}

REDIS_CONNECTION_SPEC: dict[str, dict[str, Any]] = {
    "redis": {
        "type": "dict",
        "default": {},
        "options": REDIS_CONNECTION_SUBOPTIONS,
    },
}


def redis_connection_argument_spec() -> dict[str, dict[str, Any]]:
    """Return a copy of the connection argument spec, to be merged into a module's own spec."""
    return {name: dict(spec) for name, spec in REDIS_CONNECTION_SPEC.items()}


def require_redis(module) -> None:
    """Fail with an actionable message when redis-py is not importable on the managed host."""
    if not HAS_REDIS:
        from ansible.module_utils.basic import missing_required_lib
        module.fail_json(
            msg=missing_required_lib("redis", reason="to talk to Redis (install it with playbooks/bootstrap.yml)"),
            exception=REDIS_IMPORT_ERROR,
        )


def redis_client_kwargs(options: dict[str, Any]) -> dict[str, Any]:
    """Translate the module's ``redis`` option into keyword arguments for ``redis.Redis``."""
    kwargs: dict[str, Any] = {
        "socket_timeout": options.get("socket_timeout") or 10.0,
        "socket_connect_timeout": options.get("socket_timeout") or 10.0,
        "decode_responses": False,
        "client_name": "cutover",
    }
    if options.get("url"):
        return {"url": options["url"], **kwargs}
    kwargs.update(
        host=options.get("host") or "127.0.0.1",
        port=options.get("port") or 6379,
        db=options.get("db") or 0,
        username=options.get("user"),
        password=options.get("password"),
    )
    if options.get("tls"):
        kwargs.update(
            ssl=True,
            ssl_ca_certs=options.get("ca_cert"),
            ssl_certfile=options.get("client_cert"),
            ssl_keyfile=options.get("client_key"),
            ssl_cert_reqs="required" if options.get("validate_certs", True) else "none",
            ssl_check_hostname=bool(options.get("validate_certs", True)),
        )
    return kwargs


def redis_client(options: dict[str, Any]) -> "redis.Redis":
    """Build a redis-py client (bytes in, bytes out) from the module's ``redis`` option."""
    kwargs = redis_client_kwargs(options)
    url = kwargs.pop("url", None)
    if url:
        return redis.Redis.from_url(url, **kwargs)
    return redis.Redis(**kwargs)


def describe_endpoint(options: dict[str, Any]) -> str:
    """A printable name for the server, never containing credentials."""
    if options.get("url"):
        from urllib.parse import urlsplit
        parts = urlsplit(options["url"])
        return "%s://%s:%s/%s" % (parts.scheme, parts.hostname, parts.port or 6379, parts.path.lstrip("/") or "0")
    scheme = "rediss" if options.get("tls") else "redis"
    return "%s://%s:%s/%s" % (scheme, options.get("host"), options.get("port"), options.get("db") or 0)


def connect_or_fail(module, options: dict[str, Any]) -> "redis.Redis":
    """Connect and PING; on failure fail_json naming the endpoint (never the password)."""
    require_redis(module)
    client = redis_client(options)
    try:
        client.ping()
    except AuthenticationError as exc:
        module.fail_json(msg="Redis at %s refused the credentials in option 'redis': %s" % (describe_endpoint(options), exc))
    except RedisError as exc:
        module.fail_json(msg="Redis at %s is unreachable (option 'redis'): %s" % (describe_endpoint(options), exc))
    return client
