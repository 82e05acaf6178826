"""Least-privilege ACL users per mode and policy (the exact rules docs/SNAPSHOTS.md documents), TLS with a
CA and client certificates made here with openssl, and passwords that never reach results or files."""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any, Iterator

import pytest
import redis

from cutover_testlib import ModuleFailed, RedisServer, free_port, run_module, start_redis_server, wait_for_port
from test_redis_snapshot import LONG_TTL_MS, logical_state, populate_every_type

import cutover_redis_restore
import cutover_redis_snapshot

# What every cutover connection runs: PING, INFO, and CLIENT SETNAME (redis-py names its connections).
CONNECT = "+ping +info +client|setname"
NAMESPACE_READ = "%R~tts:* %R~ai:*"
NAMESPACE_WRITE = "~tts:* ~ai:*"
# The exact least-privilege ACL of each mode and policy; docs/SNAPSHOTS.md shows the same rules.
ACLS = {
    "logical_snapshot": CONNECT + " +eval +scan +dump +pexpiretime " + NAMESPACE_READ,
    "logical_snapshot_no_lua": CONNECT + " +scan +dump +pexpiretime " + NAMESPACE_READ,
    "rdb_snapshot": CONNECT + " +time +bgsave +config|get",
    "rdb_snapshot_with_rdb_path": CONNECT + " +time +bgsave",
    "replica_snapshot": CONNECT + " +time +replconf +sync",
    "replica_snapshot_delay_override": CONNECT + " +time +replconf +sync +config|get +config|set",
    "restore": CONNECT + " +time +exists +restore " + NAMESPACE_WRITE,
    "restore_replace_all": CONNECT + " +time +exists +restore +scan +unlink " + NAMESPACE_WRITE,
    "restore_check_mode": CONNECT + " +time +exists " + NAMESPACE_READ,
    "verify_full": CONNECT + " +time +eval +scan +dump +pexpiretime " + NAMESPACE_READ,
}


def acl_user(server: RedisServer, name: str, rules: str) -> dict[str, Any]:
    """A real ACL user with exactly ``rules`` (after a reset); returns the module's redis option for it."""
    server.client().execute_command("ACL", "SETUSER", name, "reset", "on", ">pw-" + name, "resetchannels", "-@all",
                                    *rules.split())
    return dict(server.options, user=name, password="pw-" + name)


@pytest.fixture
def source(tmp_path) -> Iterator[RedisServer]:
    server = start_redis_server(tmp_path / "source")
    try:
        populate_every_type(server.client(), "tts:")
        populate_every_type(server.client(), "ai:", ttl_ms=LONG_TTL_MS)
        server.client().set("secret:other", "not for the snapshot user")
        yield server
    finally:
        server.stop()


def snapshot(options: dict[str, Any], dest: Path, snapshot_id: str, **extra: Any) -> dict[str, Any]:
    return run_module(cutover_redis_snapshot.main, dict(redis=options, dest=str(dest), snapshot_id=snapshot_id,
                                                        namespaces=["tts:*", "ai:*"], **extra))


@pytest.mark.parametrize("acl, mode, extra", [
    ("logical_snapshot", "logical", {}),
    ("logical_snapshot_no_lua", "logical", {}),
    ("rdb_snapshot", "rdb", {}),
    ("rdb_snapshot_with_rdb_path", "rdb", {"rdb_path": "{dir}/dump.rdb"}),
    ("replica_snapshot", "replica", {}),
    ("replica_snapshot_delay_override", "replica", {"replica_sync_delay": 0}),
    ("verify_full", "logical", {"verify": "full"}),
])
def test_each_mode_works_with_its_least_privilege_user(source, tmp_path, acl, mode, extra):
    options = acl_user(source, "snap", ACLS[acl])
    extra = {name: value.format(dir=source.directory) if isinstance(value, str) else value
             for name, value in extra.items()}
    if acl == "replica_snapshot":
        source.client().config_set("repl-diskless-sync-delay", 0)

    result = snapshot(options, tmp_path / "snaps", "run1", mode=mode, **extra)

    assert result["snapshot"]["namespaces"] == {"tts:*": 12, "ai:*": 12}
    if acl == "verify_full":
        assert result["verification"]["same"] == 24


@pytest.mark.parametrize("acl, policy, check_mode", [
    ("restore", "missing_only", False),
    ("restore", "overwrite", False),
    ("restore_replace_all", "replace_all", False),
    ("restore_check_mode", "missing_only", True),
])
@pytest.mark.parametrize("snapshot_mode", ["logical", "rdb"])
def test_each_restore_policy_works_with_its_least_privilege_user(source, tmp_path, acl, policy, check_mode,
                                                                 snapshot_mode):
    shot = snapshot(source.options, tmp_path / "snaps", "run1", mode=snapshot_mode)["snapshot"]
    expected = logical_state(source.client(), "[ta][ti]*:*")
    source.client().delete("tts:str", "ai:hash")
    options = acl_user(source, "restorer", ACLS[acl])

    result = run_module(cutover_redis_restore.main, dict(redis=options, src=shot["path"], policy=policy),
                        check_mode=check_mode)

    assert result["missing_before"] == 2
    if not check_mode:
        assert logical_state(source.client(), "[ta][ti]*:*") == expected


@pytest.mark.parametrize("acl, mode, missing, message", [
    ("rdb_snapshot", "rdb", "+bgsave", "Redis refused BGSAVE: .*NOPERM|permission"),
    ("rdb_snapshot", "rdb", "+config|get", "give option rdb_path"),
    ("replica_snapshot", "replica", "+sync", "NOPERM|permission"),
    ("logical_snapshot", "logical", "%R~ai:*", "can.t access at least one of the keys"),
    ("replica_snapshot_delay_override", "replica", "+config|set", "replica_sync_delay needs CONFIG GET and CONFIG SET"),
])
def test_a_missing_permission_fails_clearly_and_writes_nothing(source, tmp_path, acl, mode, missing, message):
    rules = " ".join(rule for rule in ACLS[acl].split() if rule != missing)
    options = acl_user(source, "weak", rules)
    extra = {"replica_sync_delay": 0} if acl == "replica_snapshot_delay_override" else {}

    with pytest.raises(ModuleFailed, match=message):
        snapshot(options, tmp_path / "snaps", "run1", mode=mode, **extra)

    assert not (tmp_path / "snaps" / "run1").exists()
    assert [path.name for path in (tmp_path / "snaps").iterdir()] == [] if (tmp_path / "snaps").exists() else True


def test_restore_without_write_permission_is_refused_by_redis_and_reported(source, tmp_path):
    shot = snapshot(source.options, tmp_path / "snaps", "run1")["snapshot"]
    source.client().delete("tts:str")
    options = acl_user(source, "reader", ACLS["restore_check_mode"] + " +restore")

    with pytest.raises(ModuleFailed, match="restore into .* stopped: .*(NOPERM|No permissions)"):
        run_module(cutover_redis_restore.main, dict(redis=options, src=shot["path"]))
    assert source.client().exists("tts:str") == 0


# --- TLS -------------------------------------------------------------------------------------------------

def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def certificates(tmp_path_factory) -> dict[str, str]:
    """A throw-away CA, a server certificate for 127.0.0.1 and a client certificate."""
    if not shutil.which("openssl"):
        pytest.skip("openssl is not installed")
    directory = tmp_path_factory.mktemp("tls")
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=cutover test CA",
            "-keyout", "ca.key", "-out", "ca.crt", cwd=directory)
    (directory / "san.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    for name in ("server", "client"):
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=%s" % name, "-keyout", name + ".key",
                "-out", name + ".csr", cwd=directory)
        openssl("x509", "-req", "-in", name + ".csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
                "-days", "2", "-extfile", "san.cnf", "-out", name + ".crt", cwd=directory)
    return {name: str(directory / name) for name in ("ca.crt", "server.crt", "server.key", "client.crt", "client.key")}


@pytest.fixture
def tls_server(tmp_path, certificates) -> Iterator[tuple[int, dict[str, Any]]]:
    directory = tmp_path / "tls-redis"
    directory.mkdir()
    port = free_port()
    process = subprocess.Popen(["/usr/bin/redis-server", "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1",
                                "--tls-cert-file", certificates["server.crt"], "--tls-key-file", certificates["server.key"],
                                "--tls-ca-cert-file", certificates["ca.crt"], "--tls-auth-clients", "yes",
                                "--tls-replication", "yes", "--dir", str(directory), "--save", "",
                                "--appendonly", "no", "--requirepass", "tls-Secret-9"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port)
        options = {"host": "127.0.0.1", "port": port, "password": "tls-Secret-9", "tls": True,
                   "ca_cert": certificates["ca.crt"], "client_cert": certificates["client.crt"],
                   "client_key": certificates["client.key"]}
        yield port, options
    finally:
        process.terminate()
        process.wait(timeout=10)


def tls_client(options: dict[str, Any]) -> redis.Redis:
    return redis.Redis(host="127.0.0.1", port=options["port"], password=options["password"], ssl=True,
                       ssl_ca_certs=options["ca_cert"], ssl_certfile=options["client_cert"],
                       ssl_keyfile=options["client_key"])


@pytest.mark.parametrize("mode, extra", [("logical", {"verify": "full"}), ("rdb", {}),
                                         ("replica", {"replica_sync_delay": 0})])
def test_every_mode_snapshots_and_restores_over_tls(tls_server, tmp_path, mode, extra):
    _port, options = tls_server
    client = tls_client(options)
    populate_every_type(client, "tts:", ttl_ms=LONG_TTL_MS)
    expected = logical_state(client)

    shot = snapshot(options, tmp_path / "snaps", "tls", mode=mode, **extra)["snapshot"]
    client.flushall()
    result = run_module(cutover_redis_restore.main, dict(redis=options, src=shot["path"]))

    assert shot["namespaces"]["tts:*"] == 12 and result["restored"] == 12
    assert logical_state(client) == expected


def test_a_plain_connection_to_a_tls_port_fails_and_writes_nothing(tls_server, tmp_path):
    _port, options = tls_server
    with pytest.raises(ModuleFailed, match="unreachable"):
        snapshot(dict(options, tls=False, socket_timeout=1.0), tmp_path / "snaps", "plain", mode="replica")
    assert not (tmp_path / "snaps").exists()


# --- secrets -------------------------------------------------------------------------------------------

def test_passwords_never_reach_results_manifests_or_failures(tmp_path):
    password = "Sn4pshot-Secret-77"
    server = start_redis_server(tmp_path / "redis", password=password)
    texts: list[str] = []
    try:
        populate_every_type(server.client(), "tts:")
        url = "redis://:%s@127.0.0.1:%d/0" % (password, server.port)
        for mode, extra in [("rdb", {}), ("replica", {"replica_sync_delay": 0}), ("logical", {"verify": "full"})]:
            result = snapshot({"url": url}, tmp_path / "snaps", mode, mode=mode, **extra)
            texts.append(json.dumps(result))
            texts.append((Path(result["snapshot"]["manifest"])).read_text())
            server.client().delete("tts:str")
            texts.append(json.dumps(run_module(cutover_redis_restore.main, {"redis": {"url": url},
                                                                            "src": result["snapshot"]["path"]})))
        with pytest.raises(ModuleFailed) as refused:
            snapshot({"url": url.replace(password, password + "x")}, tmp_path / "snaps", "bad", mode="replica")
        texts.append(json.dumps(refused.value.result))
    finally:
        server.stop()
    assert len(texts) == 10
    for text in texts:
        assert password not in text
