#!/usr/bin/python
# -*- coding: utf-8 -*-
from __future__ import annotations

DOCUMENTATION = r"""
module: cutover_release_info
short_description: Read a component's release registry (current, previous, releases, history)
description:
  - Reads C(<root>/releases.json), the release directories and the C(current) symlink written by
    M(cutover_release), and reports them. Changes nothing.
  - When the C(current) symlink disagrees with the registry, both are reported (RV(current) and
    RV(current_link)) with a warning.
  - Releases installed but missing from the registry (an install interrupted after its rename) are listed as
    successful, with a warning; leftovers of interrupted runs are warned about too.
version_added: "1.0.0"
author: cutover maintainers
extends_documentation_fragment: [action_common_attributes]
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
  platform:
    platforms: posix
options:
  root:
    description: The component's directory, C(<app_root>/<component>).
    type: path
    required: true
  component:
    description: Name of the component. Default the last part of O(root). A registry of another component is reported with a warning.
    type: str
  target:
    description:
      - A release about to be deployed; RV(target) then says whether it is installed (and its status) and which
        Python environment its install would use, and whether that environment exists (reused) or would be built.
        Nothing is written; the interpreter is asked its version.
    type: dict
    suboptions:
      release:
        description: The release name.
        type: str
        required: true
      requirements:
        description: Content of the release's requirements file.
        type: str
        required: true
      python:
        description: Interpreter that builds the environment (as cutover_release O(python)).
        type: path
        required: true
      pip_args:
        description: Extra pip arguments (as cutover_release O(pip_args)).
        type: list
        elements: str
        default: []
      env_root:
        description: Folder of the shared environments (as cutover_release O(env_root)).
        type: path
        required: true
seealso:
  - module: cutover_release
"""

EXAMPLES = r"""
- name: Read the tts release registry
  cutover_release_info:
    root: /opt/toy/tts
    component: tts
  register: tts_releases

- name: The release to roll back to must be known before anything changes
  ansible.builtin.assert:
    that: tts_releases.previous is not none or tts_releases.current is none
    fail_msg: "tts has no recorded previous release to roll back to"
"""

RETURN = r"""
exists:
  description: Whether the component has a registry or an installed release.
  returned: always
  type: bool
component:
  description: The component.
  returned: always
  type: str
current:
  description: The current release recorded in the registry (the C(current) symlink's release when there is no registry).
  returned: always
  type: str
  sample: migrated
current_link:
  description: The release the C(current) symlink points at; null when there is no link.
  returned: always
  type: str
  sample: migrated
current_path:
  description: The resolved path of the C(current) symlink; null when there is none or it is dangling.
  returned: always
  type: str
  sample: /opt/toy/tts/releases/migrated
previous:
  description: The release that was current before the last switch, as recorded.
  returned: always
  type: str
  sample: legacy
releases:
  description: Known releases, oldest install first.
  returned: always
  type: list
  elements: dict
  contains:
    name: {description: Release name., type: str}
    status: {description: "V(ok) or V(failed).", type: str}
    installed_at: {description: When it was installed (UTC)., type: str}
    activated_at: {description: "When it became current (every time, oldest first).", type: list, elements: str}
    failed_reason: {description: Why it was marked failed., type: str}
    failed_at: {description: When it was marked failed., type: str}
    env: {description: Its Python environment., type: str}
    source_sha256: {description: Checksum of its content., type: str}
    present: {description: Whether its directory is installed., type: bool}
  sample:
    - {name: legacy, status: ok, installed_at: "2026-11-25T22:21:14.123Z", activated_at: ["2026-11-25T22:21:15.001Z"],
       failed_reason: null, failed_at: null, env: /opt/toy/venvs/3f1c0a9e5d7b42c1a8e6f0b2d4c6e8a0,
       source_sha256: 9b4e..., present: true}
target:
  description: With O(target), what deploying that release here would do.
  returned: when O(target) is given
  type: dict
  sample: {release: migrated, installed: false, status: null, env: /opt/toy/venvs/3f1c0a9e5d7b42c1a8e6f0b2d4c6e8a0,
           env_exists: true}
history:
  description: Every recorded switch, oldest first.
  returned: always
  type: list
  elements: dict
  sample: [{at: "2026-11-25T22:21:15.001Z", from: null, to: legacy}, {at: "2026-11-25T22:40:02.310Z", from: legacy, to: migrated}]
"""

import os

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.cutover_release import (
    COMPONENT_PATTERN, CURRENT_LINK, ComponentView, ReleaseError, env_is_complete, env_spec, inspect_component,
    ordered_releases, probe_interpreter,
)

RELEASE_FIELDS = ("status", "installed_at", "activated_at", "failed_reason", "failed_at", "env", "source_sha256")


def release_list(view: ComponentView) -> list[dict]:
    entries = view.registry["releases"]
    return [dict({"name": name}, **{key: entries[name].get(key) for key in RELEASE_FIELDS},
                 present=name in view.installed)
            for name in ordered_releases(view.registry)]


def describe_view(view: ComponentView, component: str) -> dict:
    stored = view.stored_registry
    link = os.path.join(view.root, CURRENT_LINK)
    current_path = os.path.realpath(link) if view.link_release and os.path.exists(link) else None
    return {
        "changed": False,
        "exists": stored is not None or bool(view.installed),
        "component": component,
        "current": view.registry.get("current") if stored is not None else view.link_release,
        "previous": view.registry.get("previous"),
        "current_link": view.link_release,
        "current_path": current_path,
        "releases": release_list(view),
        "history": list(view.registry.get("history") or []),
    }


def target_plan(view: ComponentView, target: dict) -> dict:
    """What deploying target["release"] would do here: installed already, or which env it would use or build."""
    spec = env_spec(os.path.abspath(target["env_root"]), "requirements.txt", target["requirements"].encode("utf-8"),
                    probe_interpreter(target["python"], 60), target["pip_args"] or [])
    entry = view.registry["releases"].get(target["release"]) or {}
    return {"release": target["release"], "installed": target["release"] in view.installed,
            "status": entry.get("status"), "env": spec.path, "env_exists": env_is_complete(spec.path)}


def view_warnings(view: ComponentView, component: str) -> list[str]:
    warnings = list(view.warnings)
    if view.registry.get("component") != component:
        warnings.append("%s holds component %s, not %s" % (view.root, view.registry.get("component"), component))
    if view.link_release and not os.path.exists(os.path.join(view.root, CURRENT_LINK)):
        warnings.append("the current link points at release %s, which is not installed" % view.link_release)
    if view.leftovers:
        warnings.append("leftovers of an interrupted (or running) task: %s" % ", ".join(view.leftovers))
    if view.foreign:
        warnings.append("directories under releases/ not installed by cutover_release: %s" % ", ".join(view.foreign))
    return warnings


def main() -> None:
    module = AnsibleModule(
        argument_spec=dict(
            root=dict(type="path", required=True),
            component=dict(type="str"),
            target=dict(type="dict", options=dict(
                release=dict(type="str", required=True),
                requirements=dict(type="str", required=True),
                python=dict(type="path", required=True),
                pip_args=dict(type="list", elements="str", default=[]),
                env_root=dict(type="path", required=True),
            )),
        ),
        supports_check_mode=True,
    )
    root = os.path.normpath(os.path.abspath(module.params["root"]))
    component = module.params["component"] or os.path.basename(root)
    if not COMPONENT_PATTERN.match(component):
        module.fail_json(msg="component: %r is not allowed; use lower-case letters, digits, '_' and '-', starting "
                             "with a letter" % component)
    try:
        view = inspect_component(root, component)
        result = describe_view(view, component)
        if module.params["target"]:
            result["target"] = target_plan(view, module.params["target"])
    except ReleaseError as exc:
        module.fail_json(msg=str(exc), component=component)
    for warning in view_warnings(view, component):
        module.warn(warning)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
