#!/usr/bin/python
# -*- coding: utf-8 -*-
from __future__ import annotations

DOCUMENTATION = r"""
module: cutover_lock
short_description: Take or release the cutover run lock
description:
  - Makes sure only one cutover run (migrate or rollback) changes a system at a time.
  - The lock is one JSON file (C({"run_id", "owner", "pid", "started_at"})) on the journal host, normally
    C(<cutover_state_dir>/lock). It is created atomically and exclusively (written to a temporary file, C(fsync)ed,
    then hard-linked into place, which fails if the lock exists), so it is never seen half-written.
  - Taking the lock again with the same O(run_id) changes nothing, so a run can re-enter after a retry.
  - A lock held by another run is never taken or removed silently; the error names the holder and how to release the
    lock of a run that died.
version_added: "1.0.0"
author: cutover maintainers
options:
  path:
    description: Lock file, normally C(<cutover_state_dir>/lock). Missing parent directories are created with mode C(0700).
    type: path
    required: true
  run_id:
    description: The run taking or releasing the lock, e.g. C(20261125T222114Z) (see M(cutover_journal)).
    type: str
    required: true
  state:
    description:
      - V(present) takes the lock for O(run_id); V(absent) releases it; V(read) returns it (RV(lock)) and changes
        nothing (playbooks/resume.yml reads who held a run's lock before taking it over).
      - V(absent) removes only a lock of O(run_id), unless O(force=true); a missing lock is already released.
    type: str
    choices: [present, absent, read]
    default: present
  owner:
    description:
      - "Printable facts about who takes the lock, shown to anyone the lock refuses, e.g.
        C({controller: ops1, user: alice, playbook: migrate})."
      - Values must be strings, numbers or booleans. Secret-looking values are masked.
    type: dict
    default: {}
  force:
    description:
      - Break a lock held by another run (with O(state=present) take it over, with O(state=absent) remove it).
      - Only for a run known to be dead; C(playbooks/unlock.yml) is the operator's way to do it.
    type: bool
    default: false
  stale_after:
    description:
      - Age in seconds after which a lock of another run counts as stale. When set, O(force=true) breaks only a stale
        lock and refuses a younger one; when unset, O(force=true) breaks any lock.
    type: int
notes:
  - Check mode is supported and reports what would change without touching the lock.
"""

EXAMPLES = r"""
- name: Take the run lock
  cutover_lock:
    path: "{{ cutover_state_dir }}/lock"
    run_id: "{{ cutover_run_id }}"
    owner:
      controller: "{{ lookup('pipe', 'hostname') }}"
      user: "{{ lookup('env', 'USER') }}"
      playbook: migrate
  delegate_to: "{{ cutover_journal_host }}"

- name: Release the run lock at the end of the run
  cutover_lock:
    path: "{{ cutover_state_dir }}/lock"
    run_id: "{{ cutover_run_id }}"
    state: absent
  delegate_to: "{{ cutover_journal_host }}"

- name: Release the lock of a run that died, naming that run (playbooks/unlock.yml)
  cutover_lock:
    path: "{{ cutover_state_dir }}/lock"
    run_id: "{{ cutover_unlock_run_id }}"
    state: absent

- name: Take over a lock whatever run holds it, but only once it is an hour old
  cutover_lock:
    path: "{{ cutover_state_dir }}/lock"
    run_id: "{{ cutover_run_id }}"
    force: true
    stale_after: 3600
"""

RETURN = r"""
lock_path:
  description: The lock file (not C(path), so the file's own owner and mode are not mixed into the result).
  returned: always
  type: str
  sample: /var/lib/cutover/lock
lock:
  description: The lock as it is on disk after the task (in check mode, as it would be); null when released.
  returned: success
  type: dict
  sample:
    run_id: 20261125T222114Z
    owner: {controller: ops1, user: alice, playbook: migrate}
    pid: 4242
    started_at: "2026-11-25T22:21:14.123Z"
holder:
  description:
    - The lock of another run, when the task refused because of it (also on failure) or broke it with O(force).
    - An unreadable lock file is shown with C(run_id=null) and C(unreadable=true).
  returned: when another run holds or held the lock
  type: dict
diff:
  description: The lock before and after.
  returned: changed
  type: dict
"""

import json
import os
import tempfile
import traceback
from datetime import datetime, timezone
from typing import Any

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.cutover_journal import (
    FILE_MODE, RUN_ID_PATTERN, ensure_dir, fsync_dir, parse_timestamp, redact, utc_timestamp,
)

PRINTABLE_TYPES = (str, int, float, bool, type(None))


class LockRefused(Exception):
    def __init__(self, message: str, holder: dict[str, Any]):
        super().__init__(message)
        self.holder = holder


def load_holder(path: str) -> dict[str, Any] | None:
    """The lock on disk, None when there is none; an unreadable lock is returned marked as such."""
    try:
        with open(path, "rb") as handle:
            raw = handle.read()
    except FileNotFoundError:
        return None
    try:
        holder = json.loads(raw)
    except ValueError:
        holder = None
    if not isinstance(holder, dict) or not isinstance(holder.get("run_id"), str):
        started = datetime.fromtimestamp(os.stat(path).st_mtime, timezone.utc)
        return {"run_id": None, "owner": {}, "pid": None, "started_at": utc_timestamp(started), "unreadable": True}
    return holder


def describe_holder(holder: dict[str, Any]) -> str:
    if holder.get("unreadable"):
        return "an unreadable lock file (last written %s)" % holder["started_at"]
    owner = holder.get("owner") or {}
    return "run %s started %s by %s@%s (playbook %s)" % (
        holder["run_id"], holder.get("started_at", "?"), owner.get("user", "?"), owner.get("controller", "?"),
        owner.get("playbook", "?"))


def unlock_hint(holder: dict[str, Any]) -> str:
    return "if it died run playbooks/unlock.yml -e cutover_unlock_run_id=%s" % (holder["run_id"] or "<run id>")


def lock_age(holder: dict[str, Any], now: datetime) -> float:
    try:
        return (now - parse_timestamp(holder["started_at"])).total_seconds()
    except (KeyError, TypeError, ValueError):
        return float("inf")  # a lock without a readable start time is as stale as it gets


def check_breakable(holder: dict[str, Any], stale_after: int | None, now: datetime) -> None:
    """Raise LockRefused when force may not break this lock because it is younger than stale_after."""
    if stale_after is None:
        return
    age = lock_age(holder, now)
    if age < stale_after:
        raise LockRefused(
            "refusing to break the lock of %s even with force: it is %d s old and stale_after is %d s; wait for that "
            "run to finish or for its lock to become stale" % (describe_holder(holder), age, stale_after), holder)


def new_lock(run_id: str, owner: dict[str, Any], now: datetime) -> dict[str, Any]:
    return {"run_id": run_id, "owner": owner, "pid": os.getpid(), "started_at": utc_timestamp(now)}


def create_exclusive(path: str, content: dict[str, Any]) -> bool:
    """Publish the lock atomically; return False when a lock already exists."""
    directory = os.path.dirname(path) or "."
    ensure_dir(directory)
    fd, temp_path = tempfile.mkstemp(prefix=".lock-", dir=directory)
    try:
        os.fchmod(fd, FILE_MODE)
        os.write(fd, (json.dumps(content, indent=2) + "\n").encode("utf-8"))
        os.fsync(fd)
        os.close(fd)
        fd = -1
        # link() fails with EEXIST exactly like O_CREAT|O_EXCL, but publishes a complete, fsynced file.
        os.link(temp_path, path)
    except FileExistsError:
        return False
    finally:
        if fd >= 0:
            os.close(fd)
        os.unlink(temp_path)
    fsync_dir(directory)
    return True


def remove_lock(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        return
    fsync_dir(os.path.dirname(path) or ".")


def take(path: str, run_id: str, owner: dict[str, Any], force: bool, stale_after: int | None, check_mode: bool,
         now: datetime) -> dict[str, Any]:
    holder = load_holder(path)
    if holder is not None and holder["run_id"] == run_id:
        return {"changed": False, "lock": holder}
    result: dict[str, Any] = {"changed": True}
    if holder is not None:
        if not force:
            raise LockRefused("another cutover run holds the lock: %s; wait for it, or %s"
                              % (describe_holder(holder), unlock_hint(holder)), holder)
        check_breakable(holder, stale_after, now)
        result["holder"] = holder
    lock = new_lock(run_id, owner, now)
    result.update(lock=lock, diff={"before": holder or {}, "after": lock})
    if check_mode:
        return result
    if holder is not None:
        remove_lock(path)
    if not create_exclusive(path, lock):
        winner = load_holder(path) or {"run_id": None, "started_at": "?"}
        raise LockRefused("another cutover run took the lock at the same moment: %s; wait for it, or %s"
                          % (describe_holder(winner), unlock_hint(winner)), winner)
    return result


def release(path: str, run_id: str, force: bool, stale_after: int | None, check_mode: bool,
            now: datetime) -> dict[str, Any]:
    holder = load_holder(path)
    if holder is None:
        return {"changed": False, "lock": None}
    result: dict[str, Any] = {"changed": True, "lock": None, "diff": {"before": holder, "after": {}}}
    if holder["run_id"] != run_id:
        if not force:
            raise LockRefused("the lock belongs to another cutover run: %s; only that run releases it, or %s"
                              % (describe_holder(holder), unlock_hint(holder)), holder)
        check_breakable(holder, stale_after, now)
        result["holder"] = holder
    if not check_mode:
        remove_lock(path)
    return result


def validate(module: AnsibleModule) -> None:
    params = module.params
    if not RUN_ID_PATTERN.match(params["run_id"]):
        module.fail_json(msg="run_id %r is not a run id: expected a UTC timestamp like 20261125T222114Z, optionally "
                             "followed by -<lower-case letters/digits>" % params["run_id"])
    for key, value in params["owner"].items():
        if not isinstance(value, PRINTABLE_TYPES):
            module.fail_json(msg="owner.%s must be a string, number or boolean, got %s" % (key, type(value).__name__))
    if params["stale_after"] is not None and params["stale_after"] < 0:
        module.fail_json(msg="stale_after must be a number of seconds >= 0, got %d" % params["stale_after"])
    if os.path.isdir(params["path"]):
        module.fail_json(msg="path %s is a directory: it must be the lock file, e.g. <cutover_state_dir>/lock"
                             % params["path"])


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "path": {"type": "path", "required": True},
            "run_id": {"type": "str", "required": True},
            "state": {"type": "str", "choices": ["present", "absent", "read"], "default": "present"},
            "owner": {"type": "dict", "default": {}},
            "force": {"type": "bool", "default": False},
            "stale_after": {"type": "int"},
        },
        supports_check_mode=True,
    )
    validate(module)
    params = module.params
    secrets: set[str] = set()
    owner = redact(params["owner"], secrets)
    module.no_log_values.update(secrets)
    now = datetime.now(timezone.utc)
    try:
        if params["state"] == "read":
            module.exit_json(changed=False, lock_path=params["path"], lock=load_holder(params["path"]))
        if params["state"] == "present":
            result = take(params["path"], params["run_id"], owner, params["force"], params["stale_after"],
                          module.check_mode, now)
        else:
            result = release(params["path"], params["run_id"], params["force"], params["stale_after"],
                             module.check_mode, now)
    except LockRefused as exc:
        module.fail_json(msg=str(exc), lock_path=params["path"], holder=exc.holder)
    except OSError as exc:
        module.fail_json(msg="lock %s: %s" % (params["path"], exc), exception=traceback.format_exc())
    module.exit_json(lock_path=params["path"], **result)


if __name__ == "__main__":
    main()
