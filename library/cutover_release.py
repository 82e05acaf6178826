#!/usr/bin/python
# -*- coding: utf-8 -*-
from __future__ import annotations

DOCUMENTATION = r"""
module: cutover_release
short_description: Install a component release, switch C(current) to it, mark it failed, prune old ones
description:
  - Manages the releases of one component under O(root) (C(<app_root>/<component>)), as laid out in
    C(docs/ARCHITECTURE.md).
  - B(Install) copies O(src) (symlinks inside followed, so the copy is self-contained) to
    C(<root>/releases/.tmp-<release>-<random>), attaches the Python environment, writes
    C(.cutover/release.json), then renames the copy to C(<root>/releases/<release>). A half-installed release
    is never visible; leftovers of an interrupted run are removed by the next run.
  - Releases are immutable. The content checksum (sha256 over sorted relative paths, modes and file bytes) is
    recorded; installing a release name again with other content is refused unless O(force=true).
  - B(Environments) are shared. When the release has O(requirements), its env is
    C(<env_root>/<hash>), the hash covering the requirements bytes, the interpreter (real path and version) and
    O(pip_args). A complete env (its marker file, written last, exists) is reused; otherwise it is built with
    C(python -m venv) and C(pip install -r). The release gets a C(venv) symlink to it.
  - Envs are built in place under a lock on O(env_root), not in a temp dir then renamed, because a venv writes
    its absolute path into C(bin/activate) and every console script's shebang (C(bin/pip)...), which a rename
    would leave pointing at the temp dir. A half-built env lacks the marker and is rebuilt.
  - B(Switch) (O(state=current)) points C(<root>/current) at C(releases/<release>) atomically (a new symlink
    renamed over the old one) and records in the registry C(<root>/releases.json) the release that was current
    before this switch as C(previous), so a rollback never guesses it from modification times.
  - B(Prune) runs after an install or switch. It removes the oldest successful releases beyond O(keep) in
    recorded install order, and failed releases beyond O(keep_failed) (they do not count in O(keep)); never the
    current nor the previous release. Then it removes the envs in O(env_root) of the pruned releases that no
    release of any component in C(<root>/..) links to, nor any release dir recorded in the env's
    C(.cutover-users/) (one symlink per release dir using it, written at install), so an O(env_root) shared by
    several app roots keeps the envs each one still uses.
version_added: "1.0.0"
author: cutover maintainers
extends_documentation_fragment: [action_common_attributes]
attributes:
  check_mode:
    support: full
    details: Reports the install, env build or reuse, switch and prune lists without writing anything.
  diff_mode:
    support: full
    details: The diff holds C(current) and C(previous) before and after.
  platform:
    platforms: posix
options:
  root:
    description: The component's directory, C(<app_root>/<component>). Created when missing.
    type: path
    required: true
  component:
    description:
      - Name of the component; lower-case letters, digits, C(_) and C(-), starting with a letter.
      - Must match the component recorded in an existing registry.
    type: str
    required: true
  release:
    description: Release name; letters, digits, C(.), C(_) and C(-), starting with a letter or digit.
    type: str
    required: true
  state:
    description:
      - V(present) installs the release if it is absent (needs O(src)) and does not switch.
      - V(current) installs it if absent (needs O(src)) and switches C(current) to it. Switching to the release
        that is already current changes nothing. A release marked failed is refused unless O(force=true).
      - V(failed) marks an installed release failed with O(reason); its directory stays. The current release may
        be marked failed too.
    type: str
    choices: [present, current, failed]
    default: present
  src:
    description:
      - Directory on the managed host holding the release source, or a tarball of it (C(.tar.gz), C(.tgz), C(.tar)),
        which is unpacked into a scratch folder first (only plain files and folders are accepted).
        Symlinks inside are followed; C(__pycache__) folders are left out (bytecode is derived).
      - When the release is installed already, its content must equal O(src) (see O(force)).
      - Must not contain top-level C(.cutover) or C(venv) entries, which the module writes.
      - Ignored with O(state=failed).
    type: path
  env_root:
    description:
      - Where the shared Python environments live. Default C(<root>/../venvs).
      - Should not be shared with other app roots, since envs are pruned when no release under C(<root>/..) links to them.
    type: path
  python:
    description:
      - Interpreter that creates envs. Default the interpreter running this module.
      - When it is a venv's interpreter, its base interpreter is used (it is what C(python -m venv) uses anyway),
        and the env hash names that base.
    type: path
  requirements:
    description:
      - Requirements file, relative to the release. A release without it gets no env.
      - Only its bytes are hashed; files it includes with C(-r)/C(-c) are not.
    type: str
    default: requirements.txt
  pip_args:
    description:
      - Extra arguments for C(pip install), e.g. C([--find-links, /opt/wheels]) or C([--index-url, URL]).
      - Part of the env hash.
      - Credentials in URLs (C(https://user:token@host/simple)) are masked in the task result and in error
        messages, but like any module argument they reach the managed host's syslog when Ansible logs the
        invocation; prefer giving an authenticated index through pip's configuration or environment.
    type: list
    elements: str
    default: []
  keep:
    description: Successful releases kept besides the current and the previous one (at least 1).
    type: int
    default: 5
  keep_failed:
    description: Failed releases kept (besides the current and the previous one), outside the O(keep) count.
    type: int
    default: 3
  reason:
    description: Why the release failed. Required with O(state=failed).
    type: str
  force:
    description:
      - Allow re-installing a release whose installed content differs from O(src) (or a directory under
        C(releases/) that this module did not install). The current release cannot be re-installed.
      - Allow switching to a release marked failed; it then counts as a good release again, its failure kept
        under C(failures) in the registry.
    type: bool
    default: false
  timeout:
    description: Seconds allowed for each env build step (C(venv), C(pip install)) and for waiting on a lock.
    type: int
    default: 1800
notes:
  - Concurrent tasks on one component, or envs of one O(env_root), are serialised with C(flock) on
    C(<root>/.cutover-release.lock) and C(<env_root>/.cutover-env.lock).
seealso:
  - module: cutover_release_info
"""

EXAMPLES = r"""
- name: Install the release without switching to it
  cutover_release:
    root: /opt/toy/tts
    component: tts
    release: migrated
    src: /srv/cutover/releases/migrated/tts
    pip_args: [--find-links, /opt/wheels]

- name: Switch tts to the migrated release (installed from src when absent)
  cutover_release:
    root: /opt/toy/tts
    component: tts
    release: migrated
    src: /srv/cutover/releases/migrated/tts
    state: current
  register: tts_release

- name: Roll back to the release recorded as previous, then mark the faulty one failed
  block:
    - name: Switch back
      cutover_release:
        root: /opt/toy/tts
        component: tts
        release: "{{ tts_release.previous }}"
        state: current
    - name: Mark the faulty release failed (kept, outside keep-N)
      cutover_release:
        root: /opt/toy/tts
        component: tts
        release: "{{ tts_release.release }}"
        state: failed
        reason: "probe tts_latency_p95: 1840ms vs baseline 190ms"
"""

RETURN = r"""
journal:
  description: The C(component.switched) journal entry when O(state=current) switched (or completed an interrupted
    switch), for cutover_journal O(entries); empty otherwise and in check mode.
  returned: always
  type: list
  elements: dict
component:
  description: The component.
  returned: always
  type: str
  sample: tts
release:
  description: The release the task acted on.
  returned: always
  type: str
  sample: migrated
path:
  description: The release directory.
  returned: always
  type: str
  sample: /opt/toy/tts/releases/migrated
current:
  description: The current release after the task (as recorded in the registry).
  returned: always
  type: str
  sample: migrated
previous:
  description: The release that was current before the last switch, as recorded.
  returned: always
  type: str
  sample: legacy
env:
  description: The release's Python environment, null when it has no requirements file.
  returned: always
  type: str
  sample: /opt/toy/venvs/3f1c0a9e5d7b42c1a8e6f0b2d4c6e8a0
env_reused:
  description:
    - True when an existing complete env was reused, false when it was (or would be) built.
    - Null when this task needed no env (nothing installed, or the release has no requirements file).
  returned: always
  type: bool
installed:
  description: Whether the release was (or would be) installed by this task.
  returned: always
  type: bool
switched:
  description: Whether a switch of C(current) was (or would be) recorded by this task.
  returned: always
  type: bool
switched_from:
  description: The release C(current) pointed at before the switch.
  returned: when switched
  type: str
pruned:
  description: Release names removed (or that would be) by keep-N pruning.
  returned: always
  type: list
  elements: str
pruned_envs:
  description: Env directories removed (or that would be) because no release links to them.
  returned: always
  type: list
  elements: str
removed_leftovers:
  description: Temp and trash paths of interrupted runs removed (or that would be).
  returned: always
  type: list
  elements: str
msg:
  description: What was done, in one line.
  returned: always
  type: str
diff:
  description: C(current) and C(previous) before and after.
  returned: always
  type: dict
  sample: {before: {current: legacy, previous: null}, after: {current: migrated, previous: legacy}}
"""

import os
import sys
import traceback

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.cutover_events import new_entry
from ansible.module_utils.cutover_release import (
    Plan, ReleaseError, ReleaseRequest, default_env_root, run_request, unpacked_source, url_secrets,
)


def describe(req: ReleaseRequest, plan: Plan, check_mode: bool) -> str:
    """One line saying what was (or in check mode, would be) done."""
    would = "would " if check_mode else ""
    parts = []
    if plan.leftovers:
        parts.append("%sremove %d leftovers of interrupted runs" % (would, len(plan.leftovers)) if check_mode
                     else "removed %d leftovers of interrupted runs" % len(plan.leftovers))
    if req.state == "failed":
        entry = plan.registry_after["releases"][req.release]
        if plan.registry_changed:
            parts.append("%smark release %s failed: %s" % (would, req.release, req.reason) if check_mode
                         else "marked release %s failed: %s" % (req.release, req.reason))
        else:
            parts.append("release %s is already marked failed: %s" % (req.release, entry.get("failed_reason")))
        return "; ".join(parts)
    if plan.install:
        env_note = ""
        if plan.env:
            env_note = " with env %s (%s)" % (plan.env.path, "reused" if plan.env_reused else "built")
        parts.append("%s release %s%s" % ("would install" if check_mode else "installed", req.release, env_note))
    elif plan.env:
        parts.append("%s missing env %s" % ("would rebuild" if check_mode else "rebuilt", plan.env.path))
    if plan.switched:
        origin = "from %s" % plan.switch_from if plan.switch_from else "(nothing was current)"
        if plan.link_switch:
            parts.append("%s current %s to %s" % ("would switch" if check_mode else "switched", origin, req.release))
        else:
            parts.append("%s the interrupted switch %s to %s" % (would + "record" if check_mode else "recorded",
                                                                 origin, req.release))
    elif req.state == "current":
        parts.append("release %s is already current" % req.release)
    elif not plan.install:
        parts.append("release %s is already installed" % req.release)
    if plan.prune:
        parts.append("%s releases %s" % ("would prune" if check_mode else "pruned", ", ".join(plan.prune)))
    if plan.prune_envs:
        parts.append("%s %d unused envs" % ("would prune" if check_mode else "pruned", len(plan.prune_envs)))
    return "; ".join(parts)


def result_of(req: ReleaseRequest, plan: Plan, check_mode: bool) -> dict:
    before = {"current": plan.view.registry.get("current"), "previous": plan.view.registry.get("previous")}
    after = {"current": plan.registry_after.get("current"), "previous": plan.registry_after.get("previous")}
    result = {
        "changed": plan.changed,
        "component": req.component,
        "release": req.release,
        "path": os.path.join(req.root, "releases", req.release),
        "current": after["current"],
        "previous": after["previous"],
        "env": plan.env_path,
        "env_reused": plan.env_reused,
        "installed": plan.install,
        "switched": plan.switched,
        "pruned": list(plan.prune),
        "pruned_envs": list(plan.prune_envs),
        "removed_leftovers": list(plan.leftovers),
        "msg": describe(req, plan, check_mode),
        "diff": {"before": before, "after": after},
    }
    if plan.switched:
        result["switched_from"] = plan.switch_from
    result["journal"] = ([new_entry("component.switched", component=req.component, from_release=plan.switch_from,
                                    to_release=req.release, changed=plan.link_switch)]
                         if plan.switched and not check_mode else [])
    return result


def build_request(params: dict, src: str | None) -> ReleaseRequest:
    root = os.path.normpath(os.path.abspath(params["root"]))
    return ReleaseRequest(
        root=root,
        component=params["component"],
        release=params["release"],
        state=params["state"],
        src=src,
        env_root=os.path.normpath(os.path.abspath(params["env_root"] or default_env_root(root))),
        python=params["python"] or sys.executable,
        requirements=params["requirements"],
        pip_args=list(params["pip_args"] or []),
        keep=params["keep"],
        keep_failed=params["keep_failed"],
        reason=params["reason"],
        force=params["force"],
        timeout=params["timeout"],
    )


def main() -> None:
    module = AnsibleModule(
        argument_spec=dict(
            root=dict(type="path", required=True),
            component=dict(type="str", required=True),
            release=dict(type="str", required=True),
            state=dict(type="str", default="present", choices=["present", "current", "failed"]),
            src=dict(type="path"),
            env_root=dict(type="path"),
            python=dict(type="path"),
            requirements=dict(type="str", default="requirements.txt"),
            pip_args=dict(type="list", elements="str", default=[]),
            keep=dict(type="int", default=5),
            keep_failed=dict(type="int", default=3),
            reason=dict(type="str"),
            force=dict(type="bool", default=False),
            timeout=dict(type="int", default=1800),
        ),
        required_if=[("state", "failed", ["reason"])],
        supports_check_mode=True,
    )
    # Index URLs may carry credentials: keep them out of the result, including the echoed arguments.
    for arg in module.params["pip_args"] or []:
        module.no_log_values.update(url_secrets(arg))
    src = os.path.abspath(module.params["src"]) if module.params["src"] else None
    req = build_request(module.params, src)
    try:
        with unpacked_source(src) as source_dir:
            req.src = source_dir
            plan = run_request(req, module.check_mode)
    except ReleaseError as exc:
        module.fail_json(msg=str(exc), component=req.component, release=req.release)
    except OSError as exc:
        module.fail_json(msg="cannot complete the task under root %s (env_root %s): %s" % (req.root, req.env_root, exc),
                         component=req.component, release=req.release, exception=traceback.format_exc())
    for warning in plan.view.warnings:
        module.warn(warning)
    module.exit_json(**result_of(req, plan, module.check_mode))


if __name__ == "__main__":
    main()
