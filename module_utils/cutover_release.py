# -*- coding: utf-8 -*-
# Release registry, install, switch and prune logic shared by cutover_release and cutover_release_info.
#
# Layout of one component (docs/ARCHITECTURE.md, "Layout on a managed host"):
#   <root>/releases/<release>/            immutable copy of the release source
#   <root>/releases/<release>/.cutover/release.json
#   <root>/releases/<release>/venv -> <env_root>/<env-hash>
#   <env_root>/<env-hash>/.cutover-users/<hash> -> <release dir>   one link per release dir that uses the env
#   <root>/current -> releases/<release>
#   <root>/releases.json                  the registry: current, previous, per-release status, history
# Runs on managed hosts: stdlib only.
from __future__ import annotations

import contextlib
import copy
import fcntl
import hashlib
import json
import os
import re
import shutil
import stat
import subprocess
import tarfile
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Iterator

COMPONENT_PATTERN = re.compile(r"^[a-z][a-z0-9_-]*$")
RELEASE_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
ENV_NAME_PATTERN = re.compile(r"^[0-9a-f]{32}$")
URL_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<userinfo>[^/@\s]+)@")

REGISTRY_FILE = "releases.json"
REGISTRY_VERSION = 1
RELEASES_DIR = "releases"
CURRENT_LINK = "current"
META_DIR = ".cutover"
META_FILE = "release.json"
VENV_LINK = "venv"
ENV_MARKER = ".cutover-env.json"
ENV_USERS_DIR = ".cutover-users"
COMPONENT_LOCK = ".cutover-release.lock"
ENV_LOCK = ".cutover-env.lock"
TMP_PREFIX = ".tmp-"
TRASH_PREFIX = ".trash-"
CURRENT_TMP_PREFIX = CURRENT_LINK + ".tmp-"
REGISTRY_TMP_PREFIX = "." + REGISTRY_FILE + ".tmp-"
RESERVED_SRC_ENTRIES = (META_DIR, VENV_LINK)
COPY_CHUNK = 1024 * 1024
# Variables that would make the env's interpreter or pip look somewhere else than the env.
SCRUBBED_ENVIRONMENT = ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP", "__PYVENV_LAUNCHER__")

# Run by the chosen interpreter: the real (non-venv) interpreter behind it and its version.
# Inside a venv, `python -m venv` would create an env whose `home` is the venv's base anyway; resolving it here
# makes the env hash name the interpreter that really runs the code.
INTERPRETER_PROBE = r"""
import json, os, platform, sys
exe = sys.executable
if sys.prefix != sys.base_prefix:
    home = None
    try:
        with open(os.path.join(sys.prefix, "pyvenv.cfg")) as cfg:
            for line in cfg:
                key, sep, value = line.partition("=")
                if sep and key.strip() == "home":
                    home = value.strip()
    except OSError:
        pass
    names = ["python%d.%d" % sys.version_info[:2], os.path.basename(exe), "python3"]
    found = [os.path.join(home, name) for name in names if home and os.access(os.path.join(home, name), os.X_OK)]
    exe = found[0] if found else getattr(sys, "_base_executable", exe)
print(json.dumps({"path": os.path.realpath(exe),
                  "version": "%s %s" % (platform.python_implementation(), platform.python_version())}))
"""


class ReleaseError(Exception):
    """A refusal whose message names the option at fault and what is allowed."""


def utc_now() -> str:
    now = datetime.now(timezone.utc)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + "%03dZ" % (now.microsecond // 1000)


def redact(text: str) -> str:
    """Drop credentials from URLs (pip index URLs may carry them)."""
    return URL_USERINFO.sub(r"\g<scheme>***@", text)


def url_secrets(text: str) -> list[str]:
    """The secret part of each URL's credentials in ``text``: the password, or a lone token."""
    secrets = []
    for match in URL_USERINFO.finditer(text):
        user, _, password = match.group("userinfo").partition(":")
        secrets.append(password or user)
    return secrets


# --------------------------------------------------------------------------------------------------- file helpers

def fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_json_atomic(path: str, data: Any, mode: int = 0o644) -> None:
    """Write JSON to a temp file beside ``path``, fsync, rename over ``path``: never seen half-written."""
    directory = os.path.dirname(path)
    fd, tmp_path = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".tmp-", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=2)
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp_path, mode)
        os.replace(tmp_path, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_path)
        raise
    fsync_dir(directory)


def read_json(path: str, option: str) -> Any:
    """Parsed JSON at ``path``; None when missing. A corrupt file is an error, never silently replaced."""
    try:
        with open(path, "rb") as handle:
            raw = handle.read()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ReleaseError("%s: cannot read %s: %s" % (option, path, exc.strerror))
    try:
        return json.loads(raw.decode("utf-8"))
    except ValueError as exc:
        raise ReleaseError("%s: %s is not valid JSON (%s); repair it or move it away" % (option, path, exc))


def remove_tree(path: str) -> None:
    """Remove a file, symlink or directory tree, including read-only directories inside it."""
    if os.path.islink(path) or not os.path.isdir(path):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        return
    for dirpath, _dirnames, _filenames in os.walk(path):
        with contextlib.suppress(OSError):
            os.chmod(dirpath, 0o700)
    shutil.rmtree(path)


def discard(path: str) -> None:
    """Take ``path`` out of sight with one rename, then delete it: nobody sees it half-deleted."""
    trash = os.path.join(os.path.dirname(path), "%s%s-%s" % (TRASH_PREFIX, os.path.basename(path), os.urandom(4).hex()))
    os.rename(path, trash)
    remove_tree(trash)


@contextlib.contextmanager
def file_lock(path: str, timeout: float, what: str) -> Iterator[None]:
    """Hold an exclusive flock on ``path`` (created if missing), waiting at most ``timeout`` seconds."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise ReleaseError("timeout: %s is still locked by another task after %ss (%s)"
                                       % (what, timeout, path))
                time.sleep(0.1)
        yield
    finally:
        os.close(fd)


def writable_or_creatable(path: str) -> bool:
    """True when ``path`` is a writable directory or could be created as one."""
    probe = path
    while not os.path.exists(probe):
        parent = os.path.dirname(probe)
        if parent == probe:
            return False
        probe = parent
    return os.path.isdir(probe) and os.access(probe, os.W_OK | os.X_OK)


# ------------------------------------------------------------------------------------------- release content

@dataclass(frozen=True)
class TreeEntry:
    rel: str  # POSIX path relative to the tree root; "" is the root itself
    path: str  # absolute source path (may run through symlinks)
    is_dir: bool
    mode: int


ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar")


@contextlib.contextmanager
def unpacked_source(src: str | None) -> Iterator[str | None]:
    """The release source as a directory: ``src`` itself, or its tarball unpacked into a private scratch
    directory that is removed afterwards (also in check mode: nothing the module manages is written)."""
    if src is None or not src.endswith(ARCHIVE_SUFFIXES) or os.path.isdir(src):
        yield src
        return
    if not os.path.isfile(src):
        raise ReleaseError("src: %s does not exist" % src)
    scratch = tempfile.mkdtemp(prefix="cutover-release-src-")
    try:
        extract_release_archive(src, scratch)
        yield scratch
    finally:
        remove_tree(scratch)


def extract_release_archive(path: str, dest: str) -> None:
    """Unpack a release tarball, refusing anything but plain files and folders inside the release."""
    try:
        with tarfile.open(path) as archive:
            for member in archive.getmembers():
                parts = member.name.split("/")
                if not (member.isfile() or member.isdir()) or member.name.startswith("/") or ".." in parts:
                    raise ReleaseError("src: %s holds %r, which is not a plain file or folder inside the release"
                                       % (path, member.name))
            extra = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
            archive.extractall(dest, **extra)
            # The scratch folder is private (0700); the release's own top folder mode is the one packed.
            top = next((member for member in archive.getmembers() if member.name in (".", "./")), None)
            os.chmod(dest, (top.mode if top is not None else 0o755) & 0o755)
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise ReleaseError("src: %s is not a readable release tarball: %s" % (path, exc))


# Bytecode caches are derived from the sources and appear whenever something imported them: never part of a release.
SKIPPED_NAMES = frozenset({"__pycache__"})


def list_tree(src: str) -> list[TreeEntry]:
    """Every directory and file under ``src`` but bytecode caches, symlinks followed, sorted by relative path."""
    root_stat = os.stat(src)
    entries = [TreeEntry("", src, True, stat.S_IMODE(root_stat.st_mode))]

    def visit(directory: str, rel: str, ancestors: frozenset) -> None:
        try:
            names = sorted(os.listdir(directory))
        except OSError as exc:
            raise ReleaseError("src: cannot list %s: %s" % (directory, exc.strerror))
        for name in names:
            if name in SKIPPED_NAMES:
                continue
            path = os.path.join(directory, name)
            child_rel = name if not rel else rel + "/" + name
            try:
                st = os.stat(path)
            except FileNotFoundError:
                raise ReleaseError("src: %s is a dangling symlink" % path)
            if stat.S_ISDIR(st.st_mode):
                key = (st.st_dev, st.st_ino)
                if key in ancestors:
                    raise ReleaseError("src: %s is a symlink loop (it leads back to a directory above it)" % path)
                entries.append(TreeEntry(child_rel, path, True, stat.S_IMODE(st.st_mode)))
                visit(path, child_rel, ancestors | {key})
            elif stat.S_ISREG(st.st_mode):
                entries.append(TreeEntry(child_rel, path, False, stat.S_IMODE(st.st_mode)))
            else:
                raise ReleaseError("src: %s is neither a regular file nor a directory" % path)

    visit(src, "", frozenset({(root_stat.st_dev, root_stat.st_ino)}))
    entries.sort(key=lambda entry: entry.rel)
    return entries


def _entry_header(entry: TreeEntry) -> bytes:
    kind = b"D" if entry.is_dir else b"F"
    return kind + b"\0" + os.fsencode(entry.rel) + b"\0" + ("%o" % entry.mode).encode() + b"\0"


def _copy_tree(src: str, dest: str | None) -> str:
    """sha256 of the tree at ``src`` (relative paths, modes, file bytes); with ``dest``, copy it there too."""
    digest = hashlib.sha256()
    dir_modes: list[tuple[str, int]] = []
    for entry in list_tree(src):
        target = os.path.join(dest, entry.rel) if dest is not None else None
        digest.update(_entry_header(entry))
        if entry.is_dir:
            if target is not None:
                if entry.rel:
                    os.mkdir(target, 0o700)
                dir_modes.append((target, entry.mode))
            digest.update(b"\n")
            continue
        content = hashlib.sha256()
        try:
            source = open(entry.path, "rb")
        except OSError as exc:
            raise ReleaseError("src: cannot read %s: %s" % (entry.path, exc.strerror))
        with source:
            out = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600) if target is not None else None
            try:
                for chunk in iter(lambda: source.read(COPY_CHUNK), b""):
                    content.update(chunk)
                    if out is not None:
                        _write_all(out, chunk)
                if out is not None:
                    os.fsync(out)
                    os.fchmod(out, entry.mode)
            finally:
                if out is not None:
                    os.close(out)
        digest.update(content.hexdigest().encode() + b"\n")
    # Modes of directories last, deepest first, so a read-only directory does not block its own copy.
    for target, mode in reversed(dir_modes):
        os.chmod(target, mode)
    return digest.hexdigest()


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def tree_checksum(src: str) -> str:
    return _copy_tree(src, None)


def copy_tree(src: str, dest: str) -> str:
    """Copy ``src`` (symlinks dereferenced) into the existing empty directory ``dest``; return its checksum."""
    return _copy_tree(src, dest)


# ------------------------------------------------------------------------------------------------- environments

@dataclass(frozen=True)
class Interpreter:
    path: str  # realpath of the interpreter that creates envs (never a venv's own interpreter)
    version: str  # e.g. "CPython 3.11.7"


@dataclass(frozen=True)
class EnvSpec:
    path: str
    digest: str
    interpreter: Interpreter
    requirements: str  # relative to the release
    requirements_sha256: str
    pip_args: tuple


def clean_environment() -> dict[str, str]:
    return {key: value for key, value in os.environ.items() if key not in SCRUBBED_ENVIRONMENT}


def run_command(argv: list[str], what: str, option: str, timeout: float, cwd: str | None = None) -> str:
    """Run ``argv``; on failure raise naming ``option`` with the tail of its output (credentials redacted)."""
    try:
        proc = subprocess.run(argv, cwd=cwd, env=clean_environment(), stdin=subprocess.DEVNULL,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise ReleaseError("timeout: %s did not finish within %ss" % (what, timeout))
    except OSError as exc:
        raise ReleaseError("%s: %s failed to start: %s" % (option, what, exc.strerror))
    output = proc.stdout.decode("utf-8", "replace")
    if proc.returncode != 0:
        raise ReleaseError("%s: %s failed (exit %d): %s"
                           % (option, what, proc.returncode, redact(output[-2000:].strip())))
    return output


def probe_interpreter(python: str, timeout: float) -> Interpreter:
    output = run_command([python, "-c", INTERPRETER_PROBE], "probing interpreter %s" % python, "python", timeout)
    try:
        facts = json.loads(output.strip().splitlines()[-1])
        return Interpreter(path=facts["path"], version=facts["version"])
    except (ValueError, KeyError, IndexError):
        raise ReleaseError("python: %s did not report its version (output: %s)" % (python, output[-500:]))


def env_spec(env_root: str, requirements: str, requirements_bytes: bytes, interpreter: Interpreter,
             pip_args: list[str]) -> EnvSpec:
    digest = hashlib.sha256()
    digest.update(requirements_bytes)
    for part in [interpreter.path, interpreter.version] + list(pip_args):
        digest.update(b"\0" + part.encode("utf-8", "surrogateescape"))
    full = digest.hexdigest()
    return EnvSpec(path=os.path.join(env_root, full[:32]), digest=full, interpreter=interpreter,
                   requirements=requirements, requirements_sha256=hashlib.sha256(requirements_bytes).hexdigest(),
                   pip_args=tuple(pip_args))


def env_is_complete(path: str) -> bool:
    """The marker is written last, so its presence means the env was built to the end."""
    return os.path.isfile(os.path.join(path, ENV_MARKER)) and os.path.exists(os.path.join(path, "bin", "python"))


def build_env(spec: EnvSpec, release_dir: str, timeout: float) -> bool:
    """Make the env at ``spec.path`` complete; True when an existing complete env was reused.

    The caller holds the env lock. The env is built in place (not in a temp dir then renamed) because a venv
    records its absolute path in bin/activate and in every console script's shebang (bin/pip...), which a
    rename would leave pointing at the temp dir. The marker written last makes a half-built env detectable:
    it is deleted and built again.
    """
    if env_is_complete(spec.path):
        return True
    if os.path.lexists(spec.path):
        remove_tree(spec.path)
    os.makedirs(os.path.dirname(spec.path), exist_ok=True)
    env_python = os.path.join(spec.path, "bin", "python")
    try:
        run_command([spec.interpreter.path, "-m", "venv", spec.path], "creating env %s" % spec.path, "python", timeout)
        run_command([env_python, "-m", "pip", "install", "--disable-pip-version-check", "--no-input",
                     "-r", os.path.join(release_dir, spec.requirements)] + list(spec.pip_args),
                    "pip install -r %s into %s" % (spec.requirements, spec.path), "requirements", timeout,
                    cwd=release_dir)
        prefix = run_command([env_python, "-c", "import sys; print(sys.prefix)"], "checking env %s" % spec.path,
                             "python", timeout).strip()
        if os.path.realpath(prefix) != os.path.realpath(spec.path):
            raise ReleaseError("python: env %s reports prefix %s, not itself" % (spec.path, prefix))
        write_json_atomic(os.path.join(spec.path, ENV_MARKER), {
            "hash": spec.digest,
            "python": spec.interpreter.path,
            "python_version": spec.interpreter.version,
            "requirements_sha256": spec.requirements_sha256,
            "pip_args": [redact(arg) for arg in spec.pip_args],
            "built_at": utc_now(),
        })
    except BaseException:
        remove_tree(spec.path)
        raise
    return False


def release_env_refs(release_dir: str) -> set[str]:
    """Real paths of the env a release uses: its ``venv`` link and the env in its release.json (a broken link still counts)."""
    refs: set[str] = set()
    link = os.path.join(release_dir, VENV_LINK)
    if os.path.islink(link):
        refs.add(os.path.realpath(os.path.join(release_dir, os.readlink(link))))
    meta = _quiet_json(os.path.join(release_dir, META_DIR, META_FILE))
    if isinstance(meta, dict) and meta.get("env"):
        refs.add(os.path.realpath(meta["env"]))
    return refs


def env_references(app_root: str, skip_release_dirs: set[str]) -> set[str]:
    """Real paths of the envs linked by any release of any component under ``app_root``."""
    refs: set[str] = set()
    try:
        components = os.listdir(app_root)
    except FileNotFoundError:
        return refs
    for component in components:
        releases_dir = os.path.join(app_root, component, RELEASES_DIR)
        try:
            names = os.listdir(releases_dir)
        except (FileNotFoundError, NotADirectoryError):
            continue
        for name in names:
            release_dir = os.path.join(releases_dir, name)
            if os.path.realpath(release_dir) not in skip_release_dirs:
                refs.update(release_env_refs(release_dir))
    return refs


def _quiet_json(path: str) -> Any:
    try:
        with open(path, "rb") as handle:
            return json.loads(handle.read().decode("utf-8"))
    except (OSError, ValueError):
        return None


def _env_user_link(env: str, release_dir: str) -> str:
    """The link in ``env`` that records the release dir at real path ``release_dir`` as a user."""
    name = hashlib.sha256(os.fsencode(release_dir)).hexdigest()[:32]
    return os.path.join(env, ENV_USERS_DIR, name)


def add_env_user(env: str, release_dir: str) -> None:
    """Record ``release_dir`` as a user of the complete env ``env`` (idempotent); the caller holds the env lock."""
    target = os.path.realpath(release_dir)
    link = _env_user_link(env, target)
    if os.path.islink(link) and os.readlink(link) == target:
        return
    if os.path.lexists(link):
        remove_tree(link)
    os.makedirs(os.path.dirname(link), exist_ok=True)
    os.symlink(target, link)
    fsync_dir(os.path.dirname(link))
    fsync_dir(env)


def _recorded_env_users(env: str) -> dict[str, str]:
    """Link path -> real path of the release dir it names, for each user link in ``env``."""
    users_dir = os.path.join(env, ENV_USERS_DIR)
    try:
        names = os.listdir(users_dir)
    except (FileNotFoundError, NotADirectoryError):
        return {}
    links = (os.path.join(users_dir, name) for name in names)
    return {link: os.path.realpath(os.path.join(users_dir, os.readlink(link))) for link in links
            if os.path.islink(link)}


def _uses_env(release_dir: str, env: str) -> bool:
    return os.path.isdir(release_dir) and os.path.realpath(env) in release_env_refs(release_dir)


def env_users(env: str) -> set[str]:
    """Release dirs recorded in ``env`` that still exist and still link to it (a stale record does not count)."""
    return {target for target in _recorded_env_users(env).values() if _uses_env(target, env)}


def drop_stale_env_users(env: str) -> None:
    """Remove the user links of release dirs that are gone or link elsewhere; the caller holds the env lock."""
    for link, target in _recorded_env_users(env).items():
        if not _uses_env(target, env):
            os.unlink(link)


def envs_in_root(env_root: str, candidates: set[str]) -> list[str]:
    """The envs among ``candidates`` (real paths) that live in ``env_root``."""
    root = os.path.realpath(env_root)
    return sorted(path for path in candidates
                  if os.path.dirname(path) == root and ENV_NAME_PATTERN.match(os.path.basename(path))
                  and os.path.isdir(path))


def orphaned_envs(env_root: str, candidates: set[str], refs: set[str], pruned_dirs: set[str]) -> list[str]:
    """Envs of ``candidates`` (the envs of releases being pruned) in ``env_root`` that nothing uses any more.

    Only envs this prune orphans are ever removed. An env stays while ``refs`` (the envs linked under this app
    root) names it or a release dir recorded in its users dir, other than the ``pruned_dirs``, still links to it:
    the records cover the releases of other app roots that share env_root.
    """
    return [path for path in envs_in_root(env_root, candidates)
            if path not in refs and not env_users(path) - pruned_dirs]


def env_leftovers(env_root: str) -> list[str]:
    """Envs half-deleted by an interrupted prune."""
    try:
        names = sorted(os.listdir(env_root))
    except FileNotFoundError:
        return []
    return [os.path.join(env_root, name) for name in names if name.startswith(TRASH_PREFIX)]


# ---------------------------------------------------------------------------------------------- component state

@dataclass
class ComponentView:
    """What is on disk for one component, read without writing anything."""

    root: str
    registry: dict  # the stored registry, completed with releases installed but missing from it
    stored_registry: dict | None  # the registry exactly as on disk
    installed: dict = field(default_factory=dict)  # release name -> its .cutover/release.json
    foreign: list = field(default_factory=list)  # releases/<name> dirs without .cutover/release.json
    leftovers: list = field(default_factory=list)  # temp and trash paths of interrupted runs
    link_release: str | None = None  # the release `current` points at
    warnings: list = field(default_factory=list)

    @property
    def releases_dir(self) -> str:
        return os.path.join(self.root, RELEASES_DIR)

    def release_dir(self, name: str) -> str:
        return os.path.join(self.root, RELEASES_DIR, name)


def empty_registry(component: str) -> dict:
    return {"version": REGISTRY_VERSION, "component": component, "current": None, "previous": None,
            "releases": {}, "history": []}


def release_entry(meta: dict) -> dict:
    return {"status": "ok", "installed_at": meta.get("installed_at"), "activated_at": [], "failed_reason": None,
            "failed_at": None, "source_sha256": meta.get("source_sha256"),
            "requirements_sha256": meta.get("requirements_sha256"), "env": meta.get("env")}


def _read_link(root: str) -> tuple[str | None, str | None]:
    """(release the `current` link names, warning about the link)."""
    link = os.path.join(root, CURRENT_LINK)
    if not os.path.lexists(link):
        return None, None
    if not os.path.islink(link):
        return None, "%s is not a symlink" % link
    target = os.path.normpath(os.path.join(root, os.readlink(link)))
    if os.path.dirname(target) != os.path.join(root, RELEASES_DIR):
        return None, "%s points outside %s/: %s" % (link, RELEASES_DIR, target)
    return os.path.basename(target), None


def inspect_component(root: str, component: str) -> ComponentView:
    """Read the registry, the release dirs and the `current` link; reconcile them in memory only."""
    if os.path.exists(root) and not os.path.isdir(root):
        raise ReleaseError("root: %s exists and is not a directory" % root)
    registry_path = os.path.join(root, REGISTRY_FILE)
    registry = read_json(registry_path, "root")
    if registry is not None and not (isinstance(registry, dict) and isinstance(registry.get("releases"), dict)
                                     and isinstance(registry.get("history"), list)):
        raise ReleaseError("root: %s is not a cutover release registry; repair it or move it away" % registry_path)
    completed = copy.deepcopy(registry) if registry is not None else empty_registry(component)
    view = ComponentView(root=root, registry=completed, stored_registry=registry)
    view.registry.setdefault("component", component)
    releases_dir = view.releases_dir
    names = sorted(os.listdir(releases_dir)) if os.path.isdir(releases_dir) else []
    for name in names:
        path = os.path.join(releases_dir, name)
        if name.startswith(TMP_PREFIX) or name.startswith(TRASH_PREFIX):
            view.leftovers.append(path)
        elif os.path.isdir(path) and not os.path.islink(path):
            meta = _quiet_json(os.path.join(path, META_DIR, META_FILE))
            if isinstance(meta, dict) and meta.get("release") == name:
                view.installed[name] = meta
            else:
                view.foreign.append(name)
    if os.path.isdir(root):
        view.leftovers += [os.path.join(root, name) for name in sorted(os.listdir(root))
                           if name.startswith(CURRENT_TMP_PREFIX) or name.startswith(REGISTRY_TMP_PREFIX)]
    entries = view.registry["releases"]
    for name, meta in sorted(view.installed.items(), key=lambda item: item[1].get("installed_at") or ""):
        if name not in entries:
            entries[name] = release_entry(meta)
            view.warnings.append("release %s is installed but was missing from the registry (an interrupted "
                                 "install?); it is counted as a successful release" % name)
    view.link_release, link_warning = _read_link(root)
    if link_warning:
        view.warnings.append(link_warning)
    if registry is not None and view.link_release != view.registry.get("current"):
        view.warnings.append("the current link points at %s but the registry records %s as current"
                             % (view.link_release, view.registry.get("current")))
    return view


def ordered_releases(registry: dict) -> list[str]:
    """Release names by recorded install time (registry order breaks ties), oldest first."""
    entries = registry["releases"]
    return sorted(entries, key=lambda name: entries[name].get("installed_at") or "")


def select_prune(registry: dict, keep: int, keep_failed: int, spared: set[str]) -> list[str]:
    """Releases beyond keep-N (successful) and keep_failed (failed); never the current, the previous or ``spared``."""
    protected = {registry.get("current"), registry.get("previous")} | spared
    entries = registry["releases"]
    candidates = [name for name in ordered_releases(registry) if name not in protected]
    ok = [name for name in candidates if entries[name].get("status") != "failed"]
    failed = sorted((name for name in candidates if entries[name].get("status") == "failed"),
                    key=lambda name: entries[name].get("failed_at") or entries[name].get("installed_at") or "")
    doomed = ok[:max(len(ok) - keep, 0)] + failed[:max(len(failed) - keep_failed, 0)]
    return [name for name in candidates if name in doomed]


# ----------------------------------------------------------------------------------------------- the module logic

@dataclass
class ReleaseRequest:
    root: str
    component: str
    release: str
    state: str
    src: str | None
    env_root: str
    python: str
    requirements: str
    pip_args: list
    keep: int
    keep_failed: int
    reason: str | None
    force: bool
    timeout: float


@dataclass
class Plan:
    """What one call changes; in check mode only computed, otherwise carried out and completed with results."""

    view: ComponentView
    registry_after: dict
    leftovers: list = field(default_factory=list)
    install: bool = False
    replace: bool = False  # re-install over an existing release dir (force)
    source_sha256: str | None = None
    env: EnvSpec | None = None  # env to build or reuse in this call (for an install, or to repair a lost env)
    env_path: str | None = None  # env of the release after the call
    env_reused: bool | None = None
    link_switch: bool = False
    switched: bool = False  # a switch is recorded (the link switched now, or an interrupted switch completed)
    switch_from: str | None = None
    prune: list = field(default_factory=list)
    prune_envs: list = field(default_factory=list)
    prune_candidates: set = field(default_factory=set)

    @property
    def registry_changed(self) -> bool:
        return self.registry_after != self.view.stored_registry

    @property
    def changed(self) -> bool:
        return bool(self.leftovers or self.install or self.env or self.link_switch or self.registry_changed
                    or self.prune or self.prune_envs)


def default_env_root(root: str) -> str:
    return os.path.join(os.path.dirname(root), "venvs")


def validate_request(req: ReleaseRequest) -> None:
    """Refuse bad input before anything is read or written."""
    if not COMPONENT_PATTERN.match(req.component):
        raise ReleaseError("component: %r is not allowed; use lower-case letters, digits, '_' and '-', starting with "
                           "a letter" % req.component)
    if not RELEASE_PATTERN.match(req.release):
        raise ReleaseError("release: %r is not allowed; use letters, digits, '.', '_' and '-', starting with a letter "
                           "or digit" % req.release)
    if req.keep < 1:
        raise ReleaseError("keep: must be >= 1 (got %d)" % req.keep)
    if req.keep_failed < 0:
        raise ReleaseError("keep_failed: must be >= 0 (got %d)" % req.keep_failed)
    if req.timeout <= 0:
        raise ReleaseError("timeout: must be > 0 (got %s)" % req.timeout)
    if os.path.isabs(req.requirements) or os.path.normpath(req.requirements).split(os.sep)[0] in ("..", "."):
        raise ReleaseError("requirements: %r must be a relative path inside the release" % req.requirements)
    if req.state == "failed" and not (req.reason or "").strip():
        raise ReleaseError("reason: required with state=failed (why the release failed)")
    if req.state != "failed" and req.src is not None:
        if not os.path.isdir(req.src):
            raise ReleaseError("src: %s %s" % (req.src, "is not a directory" if os.path.exists(req.src)
                                               else "does not exist"))
        for name in RESERVED_SRC_ENTRIES:
            if os.path.lexists(os.path.join(req.src, name)):
                raise ReleaseError("src: %s contains %r, which cutover_release reserves inside a release"
                                   % (req.src, name))
    if not (os.path.isfile(req.python) and os.access(req.python, os.X_OK)):
        raise ReleaseError("python: %s is not an executable file" % req.python)
    if os.path.exists(req.root) and not os.path.isdir(req.root):
        raise ReleaseError("root: %s exists and is not a directory" % req.root)
    for path in (req.root, os.path.join(req.root, RELEASES_DIR)):
        if not writable_or_creatable(path):
            raise ReleaseError("root: %s is not writable (nor creatable) by uid %d" % (path, os.getuid()))


def _plan_env(req: ReleaseRequest, requirements_path: str) -> EnvSpec | None:
    if not os.path.isfile(requirements_path):
        return None
    if not writable_or_creatable(req.env_root):
        raise ReleaseError("env_root: %s is not writable (nor creatable) by uid %d" % (req.env_root, os.getuid()))
    with open(requirements_path, "rb") as handle:
        requirements_bytes = handle.read()
    return env_spec(req.env_root, req.requirements, requirements_bytes, probe_interpreter(req.python, req.timeout),
                    req.pip_args)


def _plan_install(req: ReleaseRequest, plan: Plan) -> None:
    view = plan.view
    installed_meta = view.installed.get(req.release)
    is_foreign = req.release in view.foreign
    if req.src is None:
        if installed_meta is None:
            raise ReleaseError("src: release %s is not installed under %s and no src was given"
                               % (req.release, view.releases_dir))
        return
    plan.source_sha256 = tree_checksum(req.src)
    recorded = (installed_meta or view.registry["releases"].get(req.release) or {}).get("source_sha256")
    if installed_meta is not None and recorded == plan.source_sha256:
        return
    if is_foreign or (recorded != plan.source_sha256 and (installed_meta is not None or recorded is not None)):
        what = ("exists in %s but was not installed by cutover_release" % view.releases_dir if is_foreign
                else "was installed with other content than src %s" % req.src)
        if not req.force:
            raise ReleaseError("release: %s %s; releases are immutable; pick a new release name (or force=true to "
                               "re-install it)" % (req.release, what))
        if req.release == view.link_release and (installed_meta is not None or is_foreign):
            raise ReleaseError("release: %s is current; switch current to another release before re-installing it "
                               "with force" % req.release)
    plan.install = True
    plan.replace = installed_meta is not None or is_foreign


def _plan_existing_env(req: ReleaseRequest, plan: Plan) -> None:
    """An installed release keeps its env; plan to rebuild that env if it has gone missing."""
    meta = plan.view.installed.get(req.release) or {}
    plan.env_path = meta.get("env")
    if not plan.env_path or env_is_complete(plan.env_path):
        return
    release_dir = plan.view.release_dir(req.release)
    spec = _plan_env(req, os.path.join(release_dir, meta.get("requirements") or req.requirements))
    if spec is None or os.path.realpath(spec.path) != os.path.realpath(plan.env_path):
        raise ReleaseError("python: env %s of release %s is missing and the given python, pip_args and requirements "
                           "would build a different one; restore them or install a new release name"
                           % (plan.env_path, req.release))
    plan.env, plan.env_reused = spec, False


def _plan_switch(req: ReleaseRequest, plan: Plan, now: str) -> None:
    view, registry = plan.view, plan.registry_after
    link = os.path.join(view.root, CURRENT_LINK)
    if os.path.lexists(link) and not os.path.islink(link):
        raise ReleaseError("root: %s is not a symlink; move it away before switching" % link)
    recorded_current = registry.get("current")
    if view.link_release == req.release and recorded_current == req.release:
        return
    entry = registry["releases"][req.release]
    if entry.get("status") == "failed":
        if not req.force:
            raise ReleaseError("release: %s is marked failed (%s); switching to it needs force=true"
                               % (req.release, entry.get("failed_reason")))
        # Deploying a failed release again is an operator's decision: it counts as good again, its failure kept.
        entry.setdefault("failures", []).append({"at": entry.pop("failed_at", None),
                                                 "reason": entry.pop("failed_reason", None)})
        entry["status"] = "ok"
    if view.link_release == req.release:
        # A run switched the link and died before recording it: record that switch now.
        plan.switch_from = recorded_current
    else:
        plan.link_switch = True
        plan.switch_from = view.link_release if view.link_release is not None else recorded_current
    plan.switched = True
    registry["current"] = req.release
    if plan.switch_from and plan.switch_from != req.release:
        registry["previous"] = plan.switch_from
    entry.setdefault("activated_at", []).append(now)
    registry["history"].append({"at": now, "from": plan.switch_from, "to": req.release})


def _plan_prune(req: ReleaseRequest, plan: Plan) -> None:
    # Also spared: the release this task is about, and whatever `current` really points at (a switch may have
    # been interrupted before the registry recorded it).
    plan.prune = select_prune(plan.registry_after, req.keep, req.keep_failed, {req.release, plan.view.link_release})
    for name in plan.prune:
        del plan.registry_after["releases"][name]
    pruned_dirs = {os.path.realpath(plan.view.release_dir(name)) for name in plan.prune}
    plan.prune_candidates = set().union(*(release_env_refs(path) for path in pruned_dirs))
    refs = env_references(os.path.dirname(req.root), pruned_dirs)
    if plan.env_path:
        refs.add(os.path.realpath(plan.env_path))
    plan.prune_envs = orphaned_envs(req.env_root, plan.prune_candidates, refs, pruned_dirs)


def _plan_mark_failed(req: ReleaseRequest, plan: Plan, now: str) -> None:
    releases = plan.registry_after["releases"]
    if req.release not in releases:
        raise ReleaseError("release: %s is not installed under %s (known: %s)"
                           % (req.release, plan.view.releases_dir,
                              ", ".join(ordered_releases(plan.registry_after)) or "none"))
    entry = releases[req.release]
    plan.env_path = entry.get("env")
    if entry.get("status") != "failed":
        entry.update(status="failed", failed_reason=req.reason, failed_at=now)


def _plan_record_install(req: ReleaseRequest, plan: Plan, now: str) -> None:
    releases = plan.registry_after["releases"]
    entry = {"status": "ok", "installed_at": now, "activated_at": [], "failed_reason": None, "failed_at": None,
             "source_sha256": plan.source_sha256,
             "requirements_sha256": plan.env.requirements_sha256 if plan.env else None, "env": plan.env_path}
    replaced_entry = releases.pop(req.release, None)
    if replaced_entry:
        # A forced re-install keeps the old record (status, failure, activations) under `replaced`.
        entry["activated_at"] = list(replaced_entry.get("activated_at") or [])
        entry["replaced"] = replaced_entry.pop("replaced", []) + [replaced_entry]
    releases[req.release] = entry


def plan_request(req: ReleaseRequest) -> Plan:
    """Everything this call would change, computed without writing."""
    view = inspect_component(req.root, req.component)
    if view.registry.get("component") != req.component:
        raise ReleaseError("component: %s holds component %s, not %s"
                           % (req.root, view.registry.get("component"), req.component))
    plan = Plan(view=view, registry_after=copy.deepcopy(view.registry), leftovers=list(view.leftovers))
    now = utc_now()
    if req.state == "failed":
        _plan_mark_failed(req, plan, now)
        return plan
    plan.leftovers += env_leftovers(req.env_root)
    _plan_install(req, plan)
    if plan.install:
        plan.env = _plan_env(req, os.path.join(req.src, req.requirements))
        plan.env_path = plan.env.path if plan.env else None
        plan.env_reused = env_is_complete(plan.env.path) if plan.env else None
        _plan_record_install(req, plan, now)
    else:
        _plan_existing_env(req, plan)
    if req.state == "current":
        _plan_switch(req, plan, now)
    _plan_prune(req, plan)
    return plan


def _release_meta(req: ReleaseRequest, plan: Plan) -> dict:
    entry = plan.registry_after["releases"][req.release]
    return {"release": req.release, "component": req.component, "source_sha256": plan.source_sha256,
            "requirements_sha256": entry.get("requirements_sha256"),
            "requirements": req.requirements if plan.env else None, "env": plan.env_path,
            "installed_at": entry["installed_at"]}


def _place_release(tmp: str, final: str, replace: bool) -> None:
    """Rename the finished copy into place; a replaced release is renamed away first and restored on failure."""
    if not replace:
        os.rename(tmp, final)
        return
    old = os.path.join(os.path.dirname(final), "%s%s-%s" % (TRASH_PREFIX, os.path.basename(final), os.urandom(4).hex()))
    os.rename(final, old)
    try:
        os.rename(tmp, final)
    except BaseException:
        os.rename(old, final)
        raise
    remove_tree(old)


def _restamp(req: ReleaseRequest, plan: Plan, now: str) -> None:
    """Date the install (and the switch that follows it) when the copy and env are ready, not when planned."""
    entry = plan.registry_after["releases"][req.release]
    entry["installed_at"] = now
    if plan.switched:
        entry["activated_at"][-1] = now
        plan.registry_after["history"][-1]["at"] = now


def _install(req: ReleaseRequest, plan: Plan) -> None:
    """Copy src to releases/.tmp-<release>-<random>, attach the env, then rename it to releases/<release>."""
    os.makedirs(plan.view.releases_dir, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix="%s%s-" % (TMP_PREFIX, req.release), dir=plan.view.releases_dir)
    try:
        if copy_tree(req.src, tmp) != plan.source_sha256:
            raise ReleaseError("src: %s changed while it was being copied; run again" % req.src)
        if plan.env:
            plan.env_reused = build_env(plan.env, tmp, req.timeout)
            os.symlink(plan.env.path, os.path.join(tmp, VENV_LINK))
            # Recorded before the release appears: a crash never leaves a release using an env that does not name it.
            add_env_user(plan.env.path, plan.view.release_dir(req.release))
        _restamp(req, plan, utc_now())
        os.mkdir(os.path.join(tmp, META_DIR), 0o755)
        write_json_atomic(os.path.join(tmp, META_DIR, META_FILE), _release_meta(req, plan))
        fsync_dir(tmp)
        _place_release(tmp, plan.view.release_dir(req.release), plan.replace)
        fsync_dir(plan.view.releases_dir)
    except BaseException:
        remove_tree(tmp)
        raise


def switch_link(root: str, release: str) -> None:
    """Point `current` at releases/<release> atomically: a new symlink renamed over the old one."""
    tmp_link = os.path.join(root, "%s%s" % (CURRENT_TMP_PREFIX, os.urandom(4).hex()))
    os.symlink(os.path.join(RELEASES_DIR, release), tmp_link)
    try:
        os.replace(tmp_link, os.path.join(root, CURRENT_LINK))
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_link)
        raise
    fsync_dir(root)


@contextlib.contextmanager
def _env_lock(req: ReleaseRequest, plan: Plan) -> Iterator[bool]:
    """Hold the env_root lock when envs are built or pruned; yields whether envs may be pruned."""
    if plan.env is None and not os.path.isdir(req.env_root):
        yield False
        return
    os.makedirs(req.env_root, exist_ok=True)
    with file_lock(os.path.join(req.env_root, ENV_LOCK), req.timeout, "env_root %s" % req.env_root):
        yield True


def _prune_envs(req: ReleaseRequest, candidates: set[str]) -> list[str]:
    """Delete the envs this prune orphaned, rechecked under the env lock (no other install is between build and link).

    The envs that stay drop the user links of release dirs that are gone (the pruned ones) or link elsewhere.
    """
    for path in env_leftovers(req.env_root):
        remove_tree(path)
    pruned = orphaned_envs(req.env_root, candidates, env_references(os.path.dirname(req.root), set()), set())
    for path in envs_in_root(req.env_root, candidates):
        if path in pruned:
            discard(path)
        else:
            drop_stale_env_users(path)
    return pruned


def execute_plan(req: ReleaseRequest, plan: Plan) -> None:
    """Carry out ``plan`` while the caller holds the component lock; record results (env reuse, pruned envs)."""
    registry_path = os.path.join(req.root, REGISTRY_FILE)
    for path in plan.view.leftovers:
        remove_tree(path)
    if req.state == "failed":
        if plan.registry_changed:
            write_json_atomic(registry_path, plan.registry_after)
        return
    with _env_lock(req, plan) as may_prune_envs:
        if plan.install:
            _install(req, plan)
        elif plan.env:
            plan.env_reused = build_env(plan.env, plan.view.release_dir(req.release), req.timeout)
            add_env_user(plan.env.path, plan.view.release_dir(req.release))
        if plan.link_switch:
            switch_link(req.root, req.release)
        # Record install and switch first; the pruned releases leave the registry once their dirs are gone.
        recorded = copy.deepcopy(plan.registry_after)
        recorded["releases"].update({name: plan.view.registry["releases"][name] for name in plan.prune})
        if recorded != plan.view.stored_registry:
            write_json_atomic(registry_path, recorded)
        for name in plan.prune:
            if os.path.lexists(plan.view.release_dir(name)):
                discard(plan.view.release_dir(name))
        if plan.prune:
            write_json_atomic(registry_path, plan.registry_after)
        plan.prune_envs = _prune_envs(req, plan.prune_candidates) if may_prune_envs else []


def run_request(req: ReleaseRequest, check_mode: bool) -> Plan:
    """Plan (and unless ``check_mode``, carry out) one cutover_release call."""
    validate_request(req)
    if check_mode:
        return plan_request(req)
    if not os.path.isdir(req.root):
        # Plan once before creating root (for the lock), so a refused call leaves no trace.
        plan_request(req)
        os.makedirs(req.root, exist_ok=True)
    with file_lock(os.path.join(req.root, COMPONENT_LOCK), req.timeout, "root %s" % req.root):
        plan = plan_request(req)
        if plan.changed:
            execute_plan(req, plan)
        return plan
