# -*- coding: utf-8 -*-
# Mirrors module_utils/cutover_redis.py REDIS_CONNECTION_SPEC: change both together.
from __future__ import annotations


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  redis:
    description:
      - How to reach the Redis server. Shared by every cutover module that talks to Redis.
      - Give either O(redis.url) or the separate host options.
    type: dict
    default: {}
    suboptions:
      url:
        description:
          - A redis:// or rediss:// URL, e.g. C(rediss://svc:secret@redis.internal:6380/0).
          - When set, O(redis.host), O(redis.port), O(redis.db), O(redis.user) and O(redis.password) are ignored.
          - Never logged, since it may contain a password.
        type: str
      host:
        description: Redis host name or address.
        type: str
        default: 127.0.0.1
      port:
        description: Redis TCP port.
        type: int
        default: 6379
      db:
        description: Database number.
        type: int
        default: 0
      user:
        description: ACL user name (Redis 6+). Omit for the C(default) user.
        type: str
      password:
        description: Password of O(redis.user) (or C(requirepass)). Never logged.
        type: str
      tls:
        description: Connect with TLS.
        type: bool
        default: false
      ca_cert:
        description: CA bundle that signed the server certificate (with O(redis.tls=true)).
        type: path
      client_cert:
        description: Client certificate for mutual TLS.
        type: path
      client_key:
        description: Private key of O(redis.client_cert).
        type: path
      validate_certs:
        description: Verify the server certificate and host name. Turn off only for throw-away test servers.
        type: bool
        default: true
      socket_timeout:
        description: Seconds to wait for a connection or a reply.
        type: float
        default: 10.0
requirements:
  - redis (redis-py) >= 5 on the managed host, under the interpreter Ansible uses there
"""
