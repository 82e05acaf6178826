"""cutover_release and cutover_release_info against real files, real venv builds and real pip."""
from __future__ import annotations

import hashlib
import json
import os
import re
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import cutover_release
import cutover_release_info
import pytest
from ansible.module_utils.cutover_release import (
    ENV_MARKER, ENV_USERS_DIR, env_spec, probe_interpreter, switch_link, tree_checksum,
)
from cutover_testlib import ModuleFailed, run_module

# What `python -m venv` run from this test's venv interpreter really uses: the venv's base interpreter.
BASE_PYTHON = os.path.realpath(sys._base_executable)
SIX_REQUIREMENTS = b"six==1.16.0\n"


# ------------------------------------------------------------------------------------------------------ helpers

def make_source(path: Path, content: str = "", requirements: bytes | None = None) -> Path:
    """A small release source dir: service.py (with ``content``), a package dir, an executable script."""
    (path / "pkg").mkdir(parents=True)
    (path / "service.py").write_text("RELEASE = %r\n" % (content or path.name))
    (path / "pkg" / "__init__.py").write_text("")
    (path / "run.sh").write_text("#!/bin/sh\necho run\n")
    (path / "run.sh").chmod(0o755)
    if requirements is not None:
        (path / "requirements.txt").write_bytes(requirements)
    return path


def release(root: Path, name: str, src: Path | None = None, check_mode: bool = False, **options: Any) -> dict:
    args: dict[str, Any] = {"root": str(root), "component": root.name, "release": name}
    if src is not None:
        args["src"] = str(src)
    args.update(options)
    return run_module(cutover_release.main, args, check_mode=check_mode)


def info(root: Path, **options: Any) -> dict:
    return run_module(cutover_release_info.main, dict({"root": str(root)}, **options), check_mode=True)


def warnings_of(result: dict) -> list[str]:
    """Warning texts of a module result (ansible-core 2.19 returns them as WarningSummary dicts)."""
    return [w["event"]["msg"] if isinstance(w, dict) else w for w in result.get("warnings", [])]


def registry(root: Path) -> dict:
    return json.loads((root / "releases.json").read_text())


def link_target(root: Path) -> str:
    return os.readlink(root / "current")


def tree_listing(top: Path, dir_mtimes: bool = True) -> dict[str, tuple]:
    """Every path under ``top`` with type, mode, size, mtime, link target and content hash (nothing followed).

    Without ``dir_mtimes``, directories' mtimes are left out (they move when a temp entry came and went).
    """
    listing: dict[str, tuple] = {}
    for dirpath, dirnames, filenames in os.walk(top):
        for name in [""] + dirnames + filenames:
            path = os.path.join(dirpath, name) if name else dirpath
            st = os.lstat(path)
            content = None
            if stat.S_ISREG(st.st_mode):
                content = hashlib.sha256(Path(path).read_bytes()).hexdigest()
            target = os.readlink(path) if stat.S_ISLNK(st.st_mode) else None
            mtime = st.st_mtime_ns if dir_mtimes or not stat.S_ISDIR(st.st_mode) else None
            listing[os.path.relpath(path, top)] = (st.st_mode, st.st_size, mtime, target, content)
    return listing


def env_python(release_dir: Path, code: str) -> str:
    """Run ``code`` with the release's own env interpreter (through its venv link)."""
    proc = subprocess.run([str(release_dir / "venv" / "bin" / "python"), "-c", code], capture_output=True, text=True,
                          timeout=60, env={"PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


# ----------------------------------------------------------------------------------------------------- fixtures

@pytest.fixture(scope="session")
def app(tmp_path_factory) -> Path:
    """One app root for the whole session, so envs in <app>/venvs are shared between tests."""
    return tmp_path_factory.mktemp("app")


@pytest.fixture(scope="session")
def six_env(app: Path, tmp_path_factory) -> dict:
    """Build the env most tests share (six from PyPI) once; the `keeper` component keeps it linked."""
    started = time.monotonic()
    result = release(app / "keeper", "six", make_source(tmp_path_factory.mktemp("keeper-src") / "six",
                                                        requirements=SIX_REQUIREMENTS))
    return dict(result, seconds=time.monotonic() - started)


@pytest.fixture
def root(app: Path, request) -> Path:
    """A component dir of its own for each test, inside the shared app root."""
    return app / re.sub(r"[^a-z0-9_-]", "-", request.node.name.lower())


# -------------------------------------------------------------------------------------------------------- tests

def test_install_copies_dereferenced_and_records_release(root: Path, tmp_path: Path, six_env):
    shared = tmp_path / "toyservice"
    shared.mkdir()
    (shared / "store.py").write_text("STORE = 1\n")
    src = make_source(tmp_path / "legacy", requirements=SIX_REQUIREMENTS)
    (src / "toyservice").symlink_to("../toyservice")
    (src / "service-link.py").symlink_to("service.py")

    result = release(root, "legacy", src)

    path = root / "releases" / "legacy"
    assert result["path"] == str(path) and result["installed"] is True and result["changed"] is True
    assert not (path / "toyservice").is_symlink() and (path / "toyservice" / "store.py").read_text() == "STORE = 1\n"
    assert not (path / "service-link.py").is_symlink()
    assert stat.S_IMODE((path / "run.sh").stat().st_mode) == 0o755
    assert stat.S_IMODE((path / "service.py").stat().st_mode) == 0o644
    # The env built by the session fixture for the same requirements is shared, not rebuilt.
    assert result["env"] == six_env["env"] and result["env_reused"] is True
    assert os.readlink(path / "venv") == result["env"]
    meta = json.loads((path / ".cutover" / "release.json").read_text())
    assert meta["release"] == "legacy" and meta["component"] == root.name
    assert meta["source_sha256"] == tree_checksum(str(src))
    assert meta["requirements_sha256"] == hashlib.sha256(SIX_REQUIREMENTS).hexdigest()
    assert meta["env"] == result["env"]
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$", meta["installed_at"])
    stored = registry(root)
    assert stored["component"] == root.name and stored["current"] is None and stored["previous"] is None
    assert stored["releases"]["legacy"]["status"] == "ok"
    assert stored["releases"]["legacy"]["installed_at"] == meta["installed_at"]
    assert stored["releases"]["legacy"]["source_sha256"] == meta["source_sha256"]
    # present never switches, and nothing temporary is left behind.
    assert not os.path.lexists(root / "current")
    assert sorted(os.listdir(root / "releases")) == ["legacy"]
    # Installing the same content again changes nothing.
    again = release(root, "legacy", src)
    assert again["changed"] is False and again["installed"] is False
    assert registry(root) == stored


def test_env_is_built_from_the_base_interpreter_and_works(app: Path, six_env):
    built = six_env
    env = Path(built["env"])
    assert built["env_reused"] is False and env.parent == app / "venvs"
    # The module ran under a venv interpreter; the env must be built by (and hashed on) its base interpreter.
    assert f"home = {os.path.dirname(BASE_PYTHON)}" in (env / "pyvenv.cfg").read_text()
    marker = json.loads((env / ENV_MARKER).read_text())
    assert marker["python"] == BASE_PYTHON
    assert marker["requirements_sha256"] == hashlib.sha256(SIX_REQUIREMENTS).hexdigest()
    release_dir = app / "keeper" / "releases" / "six"
    version, prefix = env_python(release_dir, "import six, sys; print(six.__version__); print(sys.prefix)").split()
    assert version == "1.16.0" and os.path.realpath(prefix) == str(env)
    # Console scripts carry an absolute shebang: it names the final env path (the env is built in place).
    assert (env / "bin" / "pip").read_text().splitlines()[0] == f"#!{env}/bin/python3.{sys.version_info[1]}"
    pip = subprocess.run([str(release_dir / "venv" / "bin" / "pip"), "--version"], capture_output=True, text=True,
                         timeout=60)
    assert pip.returncode == 0 and str(env) in pip.stdout


def test_env_reused_when_requirements_unchanged(root: Path, tmp_path: Path, six_env):
    env = Path(six_env["env"])
    marker_before = (env / ENV_MARKER).stat()
    started = time.monotonic()
    first = release(root, "r1", make_source(tmp_path / "r1", requirements=SIX_REQUIREMENTS))
    elapsed = time.monotonic() - started
    # The same env is reached from the venv interpreter and from its base interpreter given explicitly.
    second = release(root, "r2", make_source(tmp_path / "r2", requirements=SIX_REQUIREMENTS),
                     python=str(Path(sys.prefix) / "bin" / "python"))
    third = release(root, "r3", make_source(tmp_path / "r3", requirements=SIX_REQUIREMENTS), python=BASE_PYTHON)
    for result in (first, second, third):
        assert result["env"] == str(env) and result["env_reused"] is True
        assert os.readlink(root / "releases" / result["release"] / "venv") == str(env)
    marker_after = (env / ENV_MARKER).stat()
    assert (marker_after.st_ino, marker_after.st_mtime_ns) == (marker_before.st_ino, marker_before.st_mtime_ns)
    assert elapsed < min(2.0, six_env["seconds"] / 2), (elapsed, six_env["seconds"])
    assert env_python(root / "releases" / "r3", "import six; print(six.__version__)") == "1.16.0"
    # Other pip arguments make another env (not built in check mode).
    other = release(root, "r4", make_source(tmp_path / "r4", requirements=SIX_REQUIREMENTS), check_mode=True,
                    pip_args=["--no-deps"])
    assert other["env"] != str(env) and other["env_reused"] is False and not os.path.exists(other["env"])


def test_previous_is_recorded_across_switches(root: Path, tmp_path: Path):
    sources = {name: make_source(tmp_path / name) for name in ("legacy", "migrated", "faulty")}
    steps = [("legacy", None, None), ("migrated", "legacy", "legacy"), ("faulty", "migrated", "migrated"),
             ("migrated", "faulty", "faulty")]
    for target, expected_from, expected_previous in steps:
        result = release(root, target, sources[target], state="current")
        assert result["switched"] is True and result["switched_from"] == expected_from
        assert result["current"] == target and result["previous"] == expected_previous
        assert link_target(root) == f"releases/{target}"
        assert os.path.realpath(root / "current") == str(root / "releases" / target)
        stored = registry(root)
        assert (stored["current"], stored["previous"]) == (target, expected_previous)
        assert stored["history"][-1]["from"] == expected_from and stored["history"][-1]["to"] == target
        assert result["diff"]["after"] == {"current": target, "previous": expected_previous}
        assert result["env"] is None  # these releases have no requirements file
    stored = registry(root)
    assert [(h["from"], h["to"]) for h in stored["history"]] == [(None, "legacy"), ("legacy", "migrated"),
                                                                  ("migrated", "faulty"), ("faulty", "migrated")]
    assert len(stored["releases"]["migrated"]["activated_at"]) == 2
    assert stored["releases"]["migrated"]["activated_at"] == [stored["history"][1]["at"], stored["history"][3]["at"]]

    # The rollback marks the release it left failed; the directory stays.
    failed = release(root, "faulty", state="failed", reason="probe tts_latency_p95 1840ms vs 190ms")
    assert failed["changed"] is True
    entry = registry(root)["releases"]["faulty"]
    assert entry["status"] == "failed" and entry["failed_reason"] == "probe tts_latency_p95 1840ms vs 190ms"
    assert entry["failed_at"] and (root / "releases" / "faulty" / "service.py").exists()
    assert release(root, "faulty", state="failed", reason="again")["changed"] is False

    # Switching to what is already current changes nothing, not even the registry file.
    before = (root / "releases.json").stat()
    same = release(root, "migrated", state="current")
    assert same["changed"] is False and same["switched"] is False
    after = (root / "releases.json").stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)

    # A failed release is refused as a switch target unless forced.
    with pytest.raises(ModuleFailed, match="release: faulty is marked failed"):
        release(root, "faulty", state="current")
    assert link_target(root) == "releases/migrated"
    forced = release(root, "faulty", state="current", force=True)
    assert forced["previous"] == "migrated" and link_target(root) == "releases/faulty"
    entry = registry(root)["releases"]["faulty"]
    # Deploying it again by force makes it a good release again; its failure is kept in its record.
    assert entry["status"] == "ok" and "failed_reason" not in entry
    assert [failure["reason"] for failure in entry["failures"]] == ["probe tts_latency_p95 1840ms vs 190ms"]

    listing = info(root)
    assert listing["exists"] is True and listing["current"] == "faulty" and listing["previous"] == "migrated"
    assert listing["current_link"] == "faulty" and listing["current_path"] == str(root / "releases" / "faulty")
    assert [r["name"] for r in listing["releases"]] == ["legacy", "migrated", "faulty"]
    assert listing["releases"][2]["status"] == "ok" and listing["releases"][2]["failed_reason"] is None
    assert listing["history"] == registry(root)["history"] and warnings_of(listing) == []


def test_marking_the_current_release_failed_is_recorded(root: Path, tmp_path: Path):
    release(root, "a", make_source(tmp_path / "a"), state="current")
    result = release(root, "a", state="failed", reason="crashed at start")
    assert result["current"] == "a" and link_target(root) == "releases/a"
    assert registry(root)["releases"]["a"]["status"] == "failed"


def test_keep_n_counts_successful_releases_only_and_never_prunes_previous(root: Path, tmp_path: Path):
    keep = {"keep": 2, "keep_failed": 1}

    def switch(name: str) -> dict:
        src = tmp_path / name
        return release(root, name, src if src.exists() else make_source(src), state="current", **keep)

    def fail_and_roll_back(bad: str, good: str) -> dict:
        switch(bad)
        switch(good)
        return release(root, bad, state="failed", reason=f"{bad} failed its probe")

    switch("a")
    switch("b")
    fail_and_roll_back("bad1", "b")
    assert registry(root)["previous"] == "bad1"
    for name in ("c", "d"):
        assert switch(name)["pruned"] == []
    # Release dir mtimes say nothing: make the newest look oldest; pruning follows the registry.
    for name in ("c", "d"):
        os.utime(root / "releases" / name, (0, 0))
    result = switch("e")
    assert result["pruned"] == ["a"]  # ok beyond keep=2 besides current e and previous d: a, b, c -> a goes
    fail_and_roll_back("bad2", "e")
    # While bad2 was current (previous e), d lost its protection: ok b, c, d -> b went.
    assert sorted(os.listdir(root / "releases")) == ["bad1", "bad2", "c", "d", "e"]
    result = switch("f")
    # current f, previous e; ok c, d (= keep); failed bad1, bad2 beyond keep_failed=1 -> the older failure goes.
    assert result["pruned"] == ["bad1"]
    assert sorted(os.listdir(root / "releases")) == ["bad2", "c", "d", "e", "f"]
    stored = registry(root)
    assert sorted(stored["releases"]) == ["bad2", "c", "d", "e", "f"]
    assert (stored["current"], stored["previous"]) == ("f", "e")
    assert stored["releases"]["bad2"]["status"] == "failed"
    # A failed previous release stays whatever keep_failed says.
    switch("g")
    fail_and_roll_back("bad3", "g")
    assert sorted(os.listdir(root / "releases")) == ["bad2", "bad3", "e", "f", "g"]
    result = release(root, "g", state="current", keep=1, keep_failed=0)
    assert result["changed"] is True and result["switched"] is False and result["pruned"] == ["e", "bad2"]
    assert sorted(os.listdir(root / "releases")) == ["bad3", "f", "g"]
    assert registry(root)["previous"] == "bad3" and sorted(registry(root)["releases"]) == ["bad3", "f", "g"]


def test_release_names_are_immutable(root: Path, tmp_path: Path):
    src = make_source(tmp_path / "r1", content="first")
    release(root, "r1", src, state="current")
    release(root, "r2", make_source(tmp_path / "r2"))
    installed = (root / "releases" / "r1" / "service.py").read_text()
    (src / "service.py").write_text("RELEASE = 'changed'\n")
    with pytest.raises(ModuleFailed, match="releases are immutable; pick a new release name") as refused:
        release(root, "r1", src)
    assert "release: r1" in str(refused.value)
    assert (root / "releases" / "r1" / "service.py").read_text() == installed
    # force cannot replace the release that is running...
    with pytest.raises(ModuleFailed, match="release: r1 is current"):
        release(root, "r1", src, force=True)
    # ...but replaces another one, keeping the old record.
    release(root, "r2", state="current")
    old_sha = registry(root)["releases"]["r1"]["source_sha256"]
    result = release(root, "r1", src, force=True)
    assert result["installed"] is True
    assert (root / "releases" / "r1" / "service.py").read_text() == "RELEASE = 'changed'\n"
    entry = registry(root)["releases"]["r1"]
    assert entry["source_sha256"] == tree_checksum(str(src)) != old_sha
    assert entry["replaced"][0]["source_sha256"] == old_sha and len(entry["activated_at"]) == 1
    assert sorted(os.listdir(root / "releases")) == ["r1", "r2"]


def test_leftovers_of_a_crash_are_cleaned_and_a_half_built_env_is_rebuilt(app: Path, root: Path, tmp_path: Path,
                                                                          six_env):
    release(root, "r1", make_source(tmp_path / "r1"), state="current")
    # A crash mid-install, mid-switch and mid-registry-write.
    (root / "releases" / ".tmp-r2-k3j4h5").mkdir()
    (root / "releases" / ".tmp-r2-k3j4h5" / "service.py").write_text("half")
    (root / "current.tmp-1a2b3c4d").symlink_to("releases/r1")
    (root / ".releases.json.tmp-xyz").write_text("{")
    # A crash mid-env-build: the env dir exists without its marker.
    requirements = b"# no packages: an env with pip only\n"
    spec = env_spec(str(app / "venvs"), "requirements.txt", requirements,
                    probe_interpreter(sys.executable, 60), [])
    os.makedirs(os.path.join(spec.path, "bin"))
    Path(spec.path, "half-built").write_text("")
    warned = info(root)
    assert any("leftovers" in warning for warning in warnings_of(warned))

    result = release(root, "r2", make_source(tmp_path / "r2", requirements=requirements), state="current")

    assert sorted(result["removed_leftovers"]) == sorted([str(root / "releases" / ".tmp-r2-k3j4h5"),
                                                          str(root / "current.tmp-1a2b3c4d"),
                                                          str(root / ".releases.json.tmp-xyz")])
    assert sorted(os.listdir(root / "releases")) == ["r1", "r2"]
    assert not any(name.startswith(("current.tmp-", ".releases.json.tmp-")) for name in os.listdir(root))
    assert result["env"] == spec.path and result["env_reused"] is False
    assert not Path(spec.path, "half-built").exists() and Path(spec.path, ENV_MARKER).exists()
    assert env_python(root / "releases" / "r2", "import importlib.util as u; print(u.find_spec('six'))") == "None"
    assert os.path.realpath(env_python(root / "releases" / "r2", "import pip, sys; print(sys.prefix)")) == spec.path

    # Once no release links to that env any more, it is pruned; the shared envs stay.
    assert release(root, "r3", make_source(tmp_path / "r3"), state="current", keep=1)["pruned"] == []
    result = release(root, "r4", make_source(tmp_path / "r4"), state="current", keep=1)
    assert result["pruned"] == ["r1"] and result["pruned_envs"] == [] and os.path.exists(spec.path)
    result = release(root, "r5", make_source(tmp_path / "r5"), state="current", keep=1)
    assert result["pruned"] == ["r2"] and result["pruned_envs"] == [spec.path]
    assert not os.path.exists(spec.path) and not (root / "releases" / "r2").exists()
    assert os.path.exists(six_env["env"])


def test_release_installed_but_missing_from_registry_is_adopted(root: Path, tmp_path: Path):
    release(root, "r1", make_source(tmp_path / "r1"), state="current")
    release(root, "r2", make_source(tmp_path / "r2"))
    stored = registry(root)
    del stored["releases"]["r2"]  # as if the run died between the rename and the registry write
    (root / "releases.json").write_text(json.dumps(stored))
    listing = info(root)
    assert [r["name"] for r in listing["releases"]] == ["r1", "r2"]
    assert any("r2 is installed but was missing from the registry" in w for w in warnings_of(listing))
    result = release(root, "r2")
    assert result["changed"] is True and "r2" in registry(root)["releases"]


def test_interrupted_switch_is_recorded_with_the_right_previous(root: Path, tmp_path: Path):
    release(root, "a", make_source(tmp_path / "a"), state="current")
    release(root, "b", make_source(tmp_path / "b"), state="current")
    release(root, "c", make_source(tmp_path / "c"))
    switch_link(str(root), "c")  # the link moved, then the run died before writing the registry
    listing = info(root)
    assert (listing["current"], listing["current_link"]) == ("b", "c")
    assert any("current link points at c but the registry records b" in w for w in warnings_of(listing))
    link_inode = os.lstat(root / "current").st_ino
    result = release(root, "c", state="current")
    assert result["changed"] is True and result["switched_from"] == "b" and result["previous"] == "b"
    assert os.lstat(root / "current").st_ino == link_inode
    assert registry(root)["history"][-1]["from"] == "b"
    assert warnings_of(info(root)) == []


def test_prune_spares_what_current_really_points_at_and_the_requested_release(root: Path, tmp_path: Path):
    for name in ("a", "b", "c", "d"):
        release(root, name, make_source(tmp_path / name), state="current")
    switch_link(str(root), "a")  # an interrupted switch: the registry still says current d, previous c
    assert release(root, "e", make_source(tmp_path / "e"), keep=1)["pruned"] == []
    result = release(root, "f", make_source(tmp_path / "f"), keep=1)
    assert result["pruned"] == ["b"]  # a is older, but it is what `current` serves
    assert (root / "releases" / "a" / "service.py").exists()
    # The release a task names is not pruned by that same task (e is older than f, beyond keep=1).
    result = release(root, "e", keep=1)
    assert result["pruned"] == [] and result["changed"] is False
    assert sorted(os.listdir(root / "releases")) == ["a", "c", "d", "e", "f"]


def test_check_mode_writes_nothing_and_predicts_the_real_run(app: Path, root: Path, tmp_path: Path, six_env):
    for name in ("a", "b", "c"):
        release(root, name, make_source(tmp_path / name, requirements=SIX_REQUIREMENTS), state="current")
    (root / "releases" / ".tmp-d-zzzzzz").mkdir()
    new_env_src = make_source(tmp_path / "d", requirements=b"# only in check mode\n")
    before = tree_listing(app)

    predicted = release(root, "d", new_env_src, check_mode=True, state="current", keep=1)
    failed = release(root, "b", check_mode=True, state="failed", reason="check")
    switched = release(root, "a", check_mode=True, state="current", keep=1)

    assert tree_listing(app) == before
    assert predicted["changed"] is True and predicted["installed"] is True and predicted["env_reused"] is False
    assert predicted["switched_from"] == "c" and predicted["diff"] == {
        "before": {"current": "c", "previous": "b"}, "after": {"current": "d", "previous": "c"}}
    assert predicted["pruned"] == ["a"] and predicted["pruned_envs"] == []
    assert predicted["removed_leftovers"] == [str(root / "releases" / ".tmp-d-zzzzzz")]
    assert predicted["msg"].startswith("would remove 1 leftovers") and "would install release d" in predicted["msg"]
    assert failed["changed"] is True and "would mark release b failed" in failed["msg"]
    assert switched["pruned"] == [] and switched["diff"]["after"] == {"current": "a", "previous": "c"}

    # The real run does what check mode said (with an env already there, to stay fast).
    real = release(root, "d", make_source(tmp_path / "d2", requirements=SIX_REQUIREMENTS), state="current", keep=1)
    assert (real["pruned"], real["switched_from"], real["removed_leftovers"]) == (
        predicted["pruned"], predicted["switched_from"], predicted["removed_leftovers"])


READER = r"""
import json, os, sys
link, stop = sys.argv[1], sys.argv[2]
seen, missing, reads = set(), 0, 0
open(stop + ".ready", "w").close()
while not os.path.exists(stop):
    reads += 1
    try:
        seen.add(os.path.basename(os.readlink(link)))
        os.stat(link)
    except FileNotFoundError:
        missing += 1
print(json.dumps({"seen": sorted(seen), "missing": missing, "reads": reads}))
"""


def _read_while(root: Path, tmp_path: Path, switch) -> dict:
    """Run ``switch()`` while another process resolves `current` in a tight loop; return what it saw."""
    stop = tmp_path / f"stop-{time.monotonic_ns()}"
    reader = subprocess.Popen([sys.executable, "-c", READER, str(root / "current"), str(stop)],
                              stdout=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 10
        while not Path(str(stop) + ".ready").exists():
            assert time.monotonic() < deadline, "reader did not start"
            time.sleep(0.01)
        switch()
    finally:
        stop.touch()
        output, _ = reader.communicate(timeout=10)
    return json.loads(output)


def test_switch_is_atomic_for_a_concurrent_reader(root: Path, tmp_path: Path):
    release(root, "blue", make_source(tmp_path / "blue"), state="current")
    release(root, "green", make_source(tmp_path / "green"))

    def switch_back_and_forth() -> None:
        for turn in range(40):
            release(root, "green" if turn % 2 == 0 else "blue", state="current")

    seen = _read_while(root, tmp_path, switch_back_and_forth)
    assert seen["missing"] == 0 and seen["seen"] == ["blue", "green"] and seen["reads"] > 100
    assert len(registry(root)["history"]) == 41

    # Control: the same reader does catch a non-atomic switch (unlink, then symlink), so it can see a gap.
    def naive_switches() -> None:
        deadline = time.monotonic() + 0.5
        while time.monotonic() < deadline:
            for name in ("green", "blue"):
                os.unlink(root / "current")
                os.symlink(f"releases/{name}", root / "current")

    assert _read_while(root, tmp_path, naive_switches)["missing"] > 0


@pytest.mark.parametrize("options, message", [
    ({"src": "/nonexistent/src"}, "src: /nonexistent/src does not exist"),
    ({"src": "/etc/hostname"}, "src: /etc/hostname is not a directory"),
    ({}, "src: release r1 is not installed under"),
    ({"state": "failed", "reason": "x"}, "release: r1 is not installed under"),
    ({"component": "Bad"}, "component: 'Bad' is not allowed"),
    ({"release": "../r1"}, "release: '../r1' is not allowed"),
    ({"keep": 0}, "keep: must be >= 1"),
    ({"keep_failed": -1}, "keep_failed: must be >= 0"),
    ({"requirements": "../requirements.txt"}, "requirements: '../requirements.txt' must be a relative path"),
    ({"python": "/nonexistent/python"}, "python: /nonexistent/python is not an executable file"),
    ({"state": "failed"}, "reason"),
])
def test_bad_input_is_refused_naming_the_option_before_any_change(root: Path, options: dict, message: str):
    args = dict({"root": str(root), "component": root.name, "release": "r1"}, **options)
    with pytest.raises(ModuleFailed) as refused:
        run_module(cutover_release.main, args)
    assert message in str(refused.value)
    assert not root.exists()


def test_src_with_reserved_names_loops_or_root_that_is_a_file_is_refused(app: Path, root: Path, tmp_path: Path):
    looping = make_source(tmp_path / "looping")
    (looping / "pkg" / "again").symlink_to("..")
    with pytest.raises(ModuleFailed, match="src: .*again is a symlink loop"):
        release(root, "r1", looping)
    reserved = make_source(tmp_path / "reserved")
    (reserved / ".cutover").mkdir()
    with pytest.raises(ModuleFailed, match="src: .* contains '.cutover'"):
        release(root, "r1", reserved)
    assert not root.exists()
    not_a_dir = tmp_path / "file-root"
    not_a_dir.write_text("")
    with pytest.raises(ModuleFailed, match="root: .* is not a directory"):
        run_module(cutover_release.main, {"root": str(not_a_dir), "component": "x", "release": "r1",
                                          "src": str(make_source(tmp_path / "ok"))})


def test_info_on_a_missing_component(root: Path):
    result = info(root)
    assert result["exists"] is False and result["current"] is None and result["releases"] == []
    assert result["changed"] is False and not root.exists()


def test_a_failed_env_build_leaves_nothing_half_done_and_no_secret(app: Path, root: Path, tmp_path: Path,
                                                                 six_env):
    from cutover_testlib import free_port
    release(root, "good", make_source(tmp_path / "good", requirements=SIX_REQUIREMENTS), state="current")
    before = tree_listing(root, dir_mtimes=False)
    envs_before = sorted(os.listdir(app / "venvs"))
    index = f"http://cutover:s3cret-token@127.0.0.1:{free_port()}/simple"
    src = make_source(tmp_path / "broken", requirements=b"cutover-no-such-package==0.0.1\n")
    with pytest.raises(ModuleFailed) as refused:
        release(root, "broken", src, state="current", pip_args=["--index-url", index, "--retries", "0"])
    message = str(refused.value)
    assert message.startswith("requirements: pip install -r requirements.txt into ") and "failed (exit 1)" in message
    assert "cutover-no-such-package" in message
    assert "s3cret-token" not in json.dumps(refused.value.result)
    # No release dir, no temp copy, no half-built env, the registry and `current` untouched.
    assert tree_listing(root, dir_mtimes=False) == before
    assert sorted(os.listdir(app / "venvs")) == envs_before
    # An interpreter that cannot even report its version is refused before anything changes.
    with pytest.raises(ModuleFailed, match="python: probing interpreter /bin/false failed"):
        release(root, "broken", src, python="/bin/false")
    assert tree_listing(root, dir_mtimes=False) == before


def test_prune_never_removes_an_env_it_did_not_orphan(tmp_path: Path):
    """An env_root shared with another app root (a test run, a second checkout) keeps that app root's envs."""
    shared_envs = tmp_path / "shared-envs"
    mine, theirs = tmp_path / "mine", tmp_path / "theirs"
    requirements = b"# no packages\n"
    release(theirs / "tts", "legacy", make_source(tmp_path / "their-src", requirements=requirements),
            state="current", env_root=str(shared_envs))
    their_env = os.path.realpath(theirs / "tts" / "releases" / "legacy" / "venv")
    for name in ("r1", "r2", "r3", "r4"):
        result = release(mine / "tts", name, make_source(tmp_path / name), state="current",
                         env_root=str(shared_envs), keep=1)
    assert result["pruned"] == ["r1"]
    assert result["pruned_envs"] == []
    assert os.path.isdir(their_env) and os.path.exists(os.path.join(their_env, ENV_MARKER))


NO_PACKAGES = b"# no packages\n"


def env_users(env: str) -> dict[str, str]:
    """The env's recorded users: link name -> release dir."""
    users = Path(env, ENV_USERS_DIR)
    return {link.name: os.readlink(link) for link in users.iterdir()} if users.is_dir() else {}


def user_link_name(release_dir: Path) -> str:
    return hashlib.sha256(os.fsencode(os.path.realpath(release_dir))).hexdigest()[:32]


def shared_env_setup(tmp_path: Path) -> tuple[Path, Path, Path, str]:
    """Two app roots on one env_root, each with a release of the same requirements: (env_root, a, b, env)."""
    env_root = tmp_path / "venvs"
    theirs, mine = tmp_path / "app-a" / "tts", tmp_path / "app-b" / "tts"
    release(theirs, "legacy", make_source(tmp_path / "legacy", requirements=NO_PACKAGES), state="current",
            env_root=str(env_root))
    release(mine, "r1", make_source(tmp_path / "r1", requirements=NO_PACKAGES), state="current",
            env_root=str(env_root))
    env = os.path.realpath(theirs / "releases" / "legacy" / "venv")
    assert os.path.realpath(mine / "releases" / "r1" / "venv") == env
    return env_root, theirs, mine, env


def test_a_prune_keeps_an_env_another_app_root_uses_and_check_mode_predicts_it(tmp_path: Path):
    """env_root shared by two app roots: a prune in one removes only the envs no release of either uses."""
    env_root, theirs, mine, env = shared_env_setup(tmp_path)
    for name, requirements in (("r2", b"# no packages 2\n"), ("r3", b"# no packages 3\n"),
                               ("r4", b"# no packages 3\n")):
        release(mine, name, make_source(tmp_path / name, requirements=requirements), state="current",
                env_root=str(env_root))
    second_env = os.path.realpath(mine / "releases" / "r2" / "venv")
    # r5 reuses r3's env; keep=1 prunes r1 (the shared env stays) and r2 (its env goes).
    src = make_source(tmp_path / "r5", requirements=b"# no packages 3\n")
    before = tree_listing(env_root)
    predicted = release(mine, "r5", src, check_mode=True, state="current", env_root=str(env_root), keep=1)
    assert tree_listing(env_root) == before
    real = release(mine, "r5", src, state="current", env_root=str(env_root), keep=1)
    assert (predicted["pruned"], predicted["pruned_envs"]) == (real["pruned"], real["pruned_envs"])
    assert real["pruned"] == ["r1", "r2"] and real["pruned_envs"] == [second_env]
    assert os.path.exists(os.path.join(env, ENV_MARKER)) and not os.path.exists(second_env)
    their_release = theirs / "releases" / "legacy"
    assert os.path.realpath(env_python(their_release, "import sys; print(sys.prefix)")) == env
    # The pruned release's record is gone from the shared env; the other app root's stays.
    assert env_users(env) == {user_link_name(their_release): os.path.realpath(their_release)}


def test_bytecode_caches_are_not_part_of_a_release(root: Path, tmp_path: Path):
    src = make_source(tmp_path / "src")
    first = release(root, "r1", src)
    (src / "pkg" / "__pycache__").mkdir()
    (src / "pkg" / "__pycache__" / "mod.cpython-311.pyc").write_bytes(b"\x00bytecode")
    again = release(root, "r1", src)
    assert again["changed"] is False, "a bytecode cache must not make the same release look different"
    assert not (root / "releases" / "r1" / "pkg" / "__pycache__").exists()
    assert first["path"] == again["path"]


def test_a_release_tarball_installs_like_its_folder_and_bad_archives_are_refused(root: Path, tmp_path: Path,
                                                                                monkeypatch: pytest.MonkeyPatch):
    import tarfile
    import tempfile
    # A temp dir of this test's own: deploys running beside the tests unpack their tarballs in the system one.
    unpack_dir = tmp_path / "tmp"
    unpack_dir.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(unpack_dir))
    src = make_source(tmp_path / "src")
    (tmp_path / "link-target.txt").write_text("shared\n")
    (src / "shared.txt").symlink_to(tmp_path / "link-target.txt")
    tarball = tmp_path / "r1.tar.gz"
    subprocess.run(["tar", "--create", "--gzip", "--dereference", "--file", str(tarball), "--directory", str(src), "."],
                   check=True)
    from_tarball = release(root, "r1", tarball)
    assert from_tarball["changed"] is True and (root / "releases" / "r1" / "shared.txt").read_text() == "shared\n"
    # The same content given as a folder is the same release (same checksum): nothing to do.
    assert release(root, "r1", src)["changed"] is False
    assert os.listdir(unpack_dir) == [], "the unpacked tarball must be removed"

    evil = tmp_path / "evil.tar.gz"
    with tarfile.open(evil, "w:gz") as archive:
        info_entry = tarfile.TarInfo("../outside.txt")
        archive.addfile(info_entry)
    with pytest.raises(ModuleFailed, match="not a plain file or folder inside the release"):
        release(root, "r2", evil)
    assert not (root / "releases" / "r2").exists() and not (root.parent / "outside.txt").exists()
    (tmp_path / "junk.tar.gz").write_bytes(b"not a tarball")
    with pytest.raises(ModuleFailed, match="is not a readable release tarball"):
        release(root, "r3", tmp_path / "junk.tar.gz")
    assert os.listdir(unpack_dir) == [], "a refused tarball must leave nothing unpacked"
