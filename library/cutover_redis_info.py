#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: cutover developers
# Apache License 2.0
from __future__ import annotations

DOCUMENTATION = r"""
---
module: cutover_redis_info
short_description: Read a Redis server's health, version, memory and per-namespace key counts
description:
  - Reads C(INFO) and counts the keys of each namespace pattern with C(SCAN MATCH). Never writes.
  - Judges the server's own health (loading, failing persistence, a replica's link down, memory near
    C(maxmemory)) so preflight can refuse a migration and rollback step 4 can decide whether Redis
    needs a restart.
version_added: "1.0.0"
author: cutover developers
extends_documentation_fragment: [cutover_redis]
options:
  namespaces:
    description: Redis glob patterns whose keys are counted (a key is counted under the first pattern it matches).
    type: list
    elements: str
    default: []
  min_version:
    description: Oldest Redis version accepted; an older server is reported in RV(problems).
    type: str
    default: "6.2.0"
  memory_high_water:
    description: Fraction of C(maxmemory) above which the server is reported as short of memory.
    type: float
    default: 0.9
notes:
  - Supports check mode; the module never changes anything.
"""

EXAMPLES = r"""
- name: Read the health of the demo Redis
  cutover_redis_info:
    redis:
      host: 127.0.0.1
      port: 16379
      password: "{{ redis_password }}"
    namespaces: ["tts:*", "safety:*"]
  register: redis_info

- name: Refuse an unhealthy server
  ansible.builtin.assert:
    that: redis_info.healthy
    fail_msg: "{{ redis_info.problems | join('; ') }}"
"""

RETURN = r"""
version:
  description: Redis server version.
  returned: always
  type: str
  sample: "7.0.15"
role:
  description: Replication role (master or slave).
  returned: always
  type: str
used_memory_mb:
  description: Memory used by Redis, in MiB.
  returned: always
  type: float
maxmemory_mb:
  description: Configured C(maxmemory) in MiB, 0 when unlimited.
  returned: always
  type: float
headroom_mb:
  description: C(maxmemory) minus used memory in MiB; null when maxmemory is unlimited.
  returned: always
  type: float
keys:
  description: Keys in the selected database (DBSIZE).
  returned: always
  type: int
namespaces:
  description: Key count per namespace pattern.
  returned: always
  type: dict
  sample: {"tts:*": 200, "safety:*": 100}
healthy:
  description: True when RV(problems) is empty.
  returned: always
  type: bool
problems:
  description: What is wrong with the server, one sentence each.
  returned: always
  type: list
  elements: str
"""

from typing import Any

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.cutover_redis import connect_or_fail, redis_connection_argument_spec
from ansible.module_utils.cutover_snapshot import belongs_filter

MIB = 1024.0 * 1024.0


def version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(".") if part.isdigit())


def count_namespaces(client, patterns: list[str], batch_size: int = 1000) -> dict[str, int]:
    """Count keys per pattern; a key matched by several patterns counts under the first one only."""
    counts = {pattern: 0 for pattern in patterns}
    for position, pattern in enumerate(patterns):
        belongs = belongs_filter(patterns, position)
        counts[pattern] = sum(1 for key in client.scan_iter(match=pattern, count=batch_size) if belongs(key))
    return counts


def health_problems(info: dict[str, Any], min_version: str, high_water: float) -> list[str]:
    problems = []
    version = str(info.get("redis_version", "0"))
    if version_tuple(version) < version_tuple(min_version):
        problems.append("Redis %s is older than the required %s" % (version, min_version))
    if int(info.get("loading", 0)):
        problems.append("Redis is still loading its dataset")
    if info.get("rdb_last_bgsave_status", "ok") != "ok":
        problems.append("the last RDB save failed (rdb_last_bgsave_status=%s)" % info["rdb_last_bgsave_status"])
    if info.get("aof_last_write_status", "ok") != "ok":
        problems.append("AOF writes are failing (aof_last_write_status=%s)" % info["aof_last_write_status"])
    if info.get("role") == "slave" and info.get("master_link_status") != "up":
        problems.append("this replica's link to its master is down")
    maxmemory = int(info.get("maxmemory", 0))
    if maxmemory and int(info.get("used_memory", 0)) > maxmemory * high_water:
        problems.append("used memory is above %d%% of maxmemory" % round(high_water * 100))
    return problems


def read_info(client, patterns: list[str], min_version: str, high_water: float) -> dict[str, Any]:
    info = client.info()
    maxmemory = int(info.get("maxmemory", 0))
    used = int(info.get("used_memory", 0))
    problems = health_problems(info, min_version, high_water)
    return {
        "changed": False,
        "version": str(info.get("redis_version")),
        "role": info.get("role"),
        "used_memory_mb": round(used / MIB, 2),
        "maxmemory_mb": round(maxmemory / MIB, 2),
        "headroom_mb": round((maxmemory - used) / MIB, 2) if maxmemory else None,
        "connected_clients": int(info.get("connected_clients", 0)),
        "keys": int(client.dbsize()),
        "namespaces": count_namespaces(client, patterns),
        "healthy": not problems,
        "problems": problems,
    }


def main() -> None:
    argument_spec = redis_connection_argument_spec()
    argument_spec.update(
        namespaces=dict(type="list", elements="str", default=[]),
        min_version=dict(type="str", default="6.2.0"),
        memory_high_water=dict(type="float", default=0.9),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    if not 0 < module.params["memory_high_water"] <= 1:
        module.fail_json(msg="memory_high_water must be a fraction in (0, 1], got %s" % module.params["memory_high_water"])
    client = connect_or_fail(module, module.params["redis"])
    module.exit_json(**read_info(client, module.params["namespaces"], module.params["min_version"],
                                 module.params["memory_high_water"]))


if __name__ == "__main__":
    main()
