#!/usr/bin/python
# -*- coding: utf-8 -*-
from __future__ import annotations

DOCUMENTATION = r"""
module: cutover_validator
short_description: Run a release's config validator on the real configs, and on configs broken on purpose
description:
  - Runs the target release's config validator (O(argv) plus O(args), e.g. a dry run over every component's
    config) and reports its exit code and output - it must accept the real configs.
  - Then, for each of O(negative_controls), writes a copy of O(control_config) with the given fields changed (a
    port nothing listens on, a host nobody answers, a value of the wrong type) into a private temporary folder and
    runs the validator on that copy alone; a validator that accepts one is a false negative.
  - Nothing outside its temporary folder is written, and that folder is removed before the module returns, in
    check mode too (a validator dry run is read-only).
version_added: "1.2.0"
author: cutover maintainers
options:
  argv:
    description: The validator command, e.g. C([/usr/bin/python3, /tmp/x/release/validate.py]).
    type: list
    elements: str
    required: true
  args:
    description: Arguments of the run over the real configs, e.g. C([--dry-run, --config=/opt/toy/tts/config.json]).
    type: list
    elements: str
    default: []
  chdir:
    description: Working directory of the validator.
    type: path
  control_config:
    description: The config (JSON) the negative controls break. Required with O(negative_controls).
    type: path
  config_arg:
    description: How the validator is given a config; a control's run replaces every argument starting with it.
    type: str
    default: --config=
  negative_controls:
    description:
      - Configs the validator must refuse, each C({name, set}) where C(set) maps a dotted path of the config
        (C(redis.port)) to the value it gets.
    type: list
    elements: dict
    default: []
  timeout:
    description: Seconds each validator run may take.
    type: float
    default: 60
"""

EXAMPLES = r"""
- name: The validator must pass the real configs and refuse broken ones
  cutover_validator:
    argv: [/usr/bin/python3, "{{ scratch }}/release/validate.py"]
    args: [--dry-run, --config=/opt/toy/tts/config.json]
    control_config: /opt/toy/tts/config.json
    negative_controls:
      - {name: wrong_port, set: {redis.port: 1}}
      - {name: unreachable_host, set: {redis.host: 192.0.2.1}}
      - {name: wrong_type, set: {listen_port: "eight thousand"}}
  register: validator
"""

RETURN = r"""
exit_code:
  description:
    - Exit code of the run over the real configs (not C(rc), which Ansible would take for the task's own failure -
      a validator refusing the configs is a finding for M(cutover_preflight), not an error of this module).
  returned: always
  type: int
stdout_lines:
  description: Its standard output, last 20 lines.
  returned: always
  type: list
  elements: str
stderr_lines:
  description: Its standard error, last 20 lines.
  returned: always
  type: list
  elements: str
controls:
  description: One result per negative control - C({name, refused, rc, output}) (output is the last lines).
  returned: always
  type: list
  elements: dict
"""

import copy
import json
import os
import shutil
import subprocess
import tempfile
from typing import Any

from ansible.module_utils.basic import AnsibleModule

TAIL = 20


def run(argv: list[str], chdir: str | None, timeout: float) -> dict[str, Any]:
    try:
        done = subprocess.run(argv, cwd=chdir, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return {"exit_code": -1, "stdout_lines": [], "stderr_lines": ["timed out after %g s" % timeout]}
    except OSError as exc:
        return {"exit_code": -1, "stdout_lines": [], "stderr_lines": [str(exc)]}
    return {"exit_code": done.returncode, "stdout_lines": done.stdout.splitlines()[-TAIL:],
            "stderr_lines": done.stderr.splitlines()[-TAIL:]}


def broken_copy(config: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """The config with each dotted path set to its new value (missing mappings on the way are created)."""
    broken = copy.deepcopy(config)
    for path, value in changes.items():
        target = broken
        *parents, leaf = str(path).split(".")
        for name in parents:
            target = target.setdefault(name, {})
        target[leaf] = value
    return broken


def control_problems(controls: list[dict[str, Any]]) -> list[str]:
    problems = []
    for index, control in enumerate(controls):
        if not isinstance(control.get("name"), str) or not control.get("name"):
            problems.append("negative_controls[%d].name must be a non-empty string" % index)
        if not isinstance(control.get("set"), dict) or not control.get("set"):
            problems.append("negative_controls[%d].set must map a dotted config path to a value" % index)
        unknown = sorted(set(control) - {"name", "set"})
        if unknown:
            problems.append("negative_controls[%d] has unknown field(s) %s; allowed: name, set"
                            % (index, ", ".join(unknown)))
    return problems


def run_controls(params: dict[str, Any], config: dict[str, Any]) -> list[dict[str, Any]]:
    kept_args = [arg for arg in params["args"] if not arg.startswith(params["config_arg"])]
    folder = tempfile.mkdtemp(prefix="cutover-validator-controls-")
    results = []
    try:
        for control in params["negative_controls"]:
            path = os.path.join(folder, "%s.json" % control["name"])
            with open(path, "w", encoding="utf-8") as handle:
                json.dump(broken_copy(config, control["set"]), handle)
            done = run(params["argv"] + kept_args + [params["config_arg"] + path], params["chdir"], params["timeout"])
            results.append({"name": control["name"], "refused": done["exit_code"] != 0, "rc": done["exit_code"],
                            "output": (done["stdout_lines"] + done["stderr_lines"])[-3:]})
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return results


def main() -> None:
    module = AnsibleModule(
        argument_spec=dict(
            argv=dict(type="list", elements="str", required=True),
            args=dict(type="list", elements="str", default=[]),
            chdir=dict(type="path"),
            control_config=dict(type="path"),
            config_arg=dict(type="str", default="--config="),
            negative_controls=dict(type="list", elements="dict", default=[]),
            timeout=dict(type="float", default=60.0),
        ),
        supports_check_mode=True,
    )
    params = module.params
    problems = control_problems(params["negative_controls"])
    if params["negative_controls"] and not params["control_config"]:
        problems.append("control_config is required with negative_controls: the config they break")
    if problems:
        module.fail_json(msg="; ".join(problems))
    result = run(params["argv"] + params["args"], params["chdir"], params["timeout"])
    controls: list[dict[str, Any]] = []
    if params["negative_controls"]:
        try:
            with open(params["control_config"], encoding="utf-8") as handle:
                config = json.load(handle)
        except (OSError, ValueError) as exc:
            module.fail_json(msg="control_config %s cannot be read as JSON: %s" % (params["control_config"], exc))
        controls = run_controls(params, config)
    module.exit_json(changed=False, controls=controls, **result)


if __name__ == "__main__":
    main()
