"""cutover_release_info option `target` on a real component tree whose releases and env cutover_release installed:
whether the release is installed, its status, and which env its install would use and whether that env exists.

Every call also asserts that nothing under the app root (envs included) changed: same paths, modes, sizes, mtimes,
link targets and contents.
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import cutover_release
import cutover_release_info
from cutover_testlib import ModuleFailed, run_module
from test_release import BASE_PYTHON, make_source, tree_listing

COMPONENT = "tts"
REQUIREMENTS = "# release_info target test env: pip only\n"
OTHER_REQUIREMENTS = "# a different env, never built\n"
FAILED_REASON = "probe tts/latency_p95_ms on app-1: value 1840, baseline 190"


@dataclass
class Tree:
    """An app root whose tts has legacy (current), migrated (installed, env built) and broken (marked failed)."""

    app: Path
    sources: Path
    built_env: str

    @property
    def root(self) -> Path:
        return self.app / COMPONENT

    @property
    def env_root(self) -> Path:
        return self.app / "venvs"


def release(tree_root: Path, name: str, src: Path | None = None, check_mode: bool = False,
            **options: Any) -> dict[str, Any]:
    args: dict[str, Any] = {"root": str(tree_root), "component": COMPONENT, "release": name, **options}
    if src is not None:
        args["src"] = str(src)
    return run_module(cutover_release.main, args, check_mode=check_mode)


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Tree:
    base = tmp_path_factory.mktemp("release-info")
    app, sources = base / "app", base / "src"
    root = app / COMPONENT
    release(root, "legacy", make_source(sources / "legacy"), state="current")
    built = release(root, "migrated", make_source(sources / "migrated", requirements=REQUIREMENTS.encode()),
                    python=sys.executable)
    assert built["env_reused"] is False and Path(built["env"], ".cutover-env.json").is_file()
    release(root, "broken", make_source(sources / "broken"))
    release(root, "broken", state="failed", reason=FAILED_REASON)
    return Tree(app, sources, built["env"])


def target_info(tree: Tree, target_release: str, requirements: str = REQUIREMENTS, python: str = sys.executable,
                **target: Any) -> dict[str, Any]:
    """cutover_release_info with `target`, run for real (not in check mode); asserts it wrote nothing."""
    before = tree_listing(tree.app)
    result = run_module(cutover_release_info.main, {
        "root": str(tree.root), "component": COMPONENT,
        "target": {"release": target_release, "requirements": requirements, "python": python,
                   "env_root": str(tree.env_root), **target}})
    assert tree_listing(tree.app) == before, "release_info writes nothing"
    assert result["changed"] is False
    assert (result["current"], result["previous"]) == ("legacy", None), "the registry is reported as without target"
    return result


# -------------------------------------------------------------------------------------------------------- tests

def test_an_installed_release_with_its_env_built(tree):
    result = target_info(tree, "migrated")
    assert result["target"] == {"release": "migrated", "installed": True, "status": "ok", "env": tree.built_env,
                                "env_exists": True}


def test_a_release_not_installed_reuses_the_env_of_the_same_requirements(tree):
    result = target_info(tree, "next")
    assert result["target"] == {"release": "next", "installed": False, "status": None, "env": tree.built_env,
                                "env_exists": True}
    # the venv's interpreter and its base interpreter build the same env, as cutover_release says
    assert target_info(tree, "next", python=BASE_PYTHON)["target"] == result["target"]
    # and so does cutover_release itself (check mode writes nothing either)
    planned = release(tree.root, "next", make_source(tree.sources / "next",
                                                     requirements=REQUIREMENTS.encode()), check_mode=True)
    assert (planned["env"], planned["env_reused"]) == (tree.built_env, True)


def test_a_release_marked_failed_reports_its_status(tree):
    result = target_info(tree, "broken")
    assert result["target"]["installed"] is True
    assert result["target"]["status"] == "failed"
    broken = {entry["name"]: entry for entry in result["releases"]}["broken"]
    assert (broken["status"], broken["failed_reason"]) == ("failed", FAILED_REASON)


@pytest.mark.parametrize("change", [
    {"requirements": OTHER_REQUIREMENTS},
    {"pip_args": ["--no-deps"]},
], ids=["other-requirements", "other-pip-args"])
def test_other_requirements_or_pip_args_name_an_env_that_does_not_exist(tree, change):
    result = target_info(tree, "next", **change)
    env = result["target"]["env"]
    assert result["target"]["env_exists"] is False
    assert env != tree.built_env and Path(env).parent == tree.env_root
    assert not os.path.lexists(env)
    # the env cutover_release would build for the same requirements, python and pip_args
    requirements = change.get("requirements", REQUIREMENTS).encode()
    planned = release(tree.root, "next", make_source(tree.sources / ("next-%s" % len(change.get("pip_args", []))),
                                                     requirements=requirements),
                      check_mode=True, pip_args=change.get("pip_args", []))
    assert (planned["env"], planned["env_reused"]) == (env, False)


def test_without_target_no_target_is_returned(tree):
    before = tree_listing(tree.app)
    result = run_module(cutover_release_info.main, {"root": str(tree.root)})
    assert "target" not in result
    assert tree_listing(tree.app) == before


def test_an_interpreter_that_does_not_run_is_refused_naming_python(tree):
    before = tree_listing(tree.app)
    python = str(tree.app / "no-such-python")
    with pytest.raises(ModuleFailed) as failure:
        target_info(tree, "next", python=python)
    assert failure.value.result["msg"] == ("python: probing interpreter %s failed to start: No such file or directory"
                                           % python)
    assert tree_listing(tree.app) == before


def test_a_target_without_requirements_is_refused_naming_the_option(tree):
    with pytest.raises(ModuleFailed) as failure:
        run_module(cutover_release_info.main, {"root": str(tree.root), "target": {
            "release": "next", "python": sys.executable, "env_root": str(tree.env_root)}})
    assert "requirements" in failure.value.result["msg"] and "target" in failure.value.result["msg"]
