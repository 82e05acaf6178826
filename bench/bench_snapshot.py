"""make bench-snapshot: cutover's Redis snapshot modes against the baselines, on a 1,000,000-key dataset.

Starts two scratch redis-servers on free loopback ports (source and target, in a temp dir), builds the
dataset on the source - 700,000 strings of 100 bytes (half with a TTL), 100,000 hashes of 10 fields,
100,000 lists of 10 items, 100,000 sets of 10 members - and measures in the same run:

  bgsave                 BGSAVE until Redis reports it done
  redis_cli_rdb          redis-cli --rdb (repl-diskless-sync-delay 0)
  naive_dump             redis-py SCAN COUNT 1000 + pipelined DUMP/PTTL to a file       (bench/naive.py)
  naive_restore          redis-py pipelined RESTORE from that file into an empty target  (bench/naive.py)
  restart_on_dump        copy the BGSAVE file over the target's, SHUTDOWN NOSAVE, start redis-server,
                         wait until it has loaded
  rdb_snapshot, replica_snapshot (delay 0), replica_snapshot_default_delay, logical_snapshot,
  rdb_restore (policy whole_rdb), logical_restore (policy overwrite into an empty target)
                         the project's modules, each run as Ansible runs it (bench/run_module.py)

Each ratio's pair (bgsave / rdb_snapshot, restart_on_dump / rdb_restore, naive_dump / logical_snapshot,
naive_restore / logical_restore) runs --repeats times, alternating, and the medians go into the ratios.
Each figure is printed as `name: seconds`; the last line is
RESULT rdb_vs_bgsave=R1 rdb_restore_vs_restart=R2 logical_dump_vs_naive=R3 logical_restore_vs_naive=R4 logical_peak_rss_mb=M
Both servers are stopped and the temp dir removed at the end, also on failure or Ctrl-C. `--keys N` builds a
smaller dataset of the same shape, for a smoke run (tests/modules/test_bench_smoke.py).
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
REDIS_CLI = shutil.which("redis-cli") or "/usr/bin/redis-cli"
GOALS = {"rdb_vs_bgsave": 1.25, "rdb_restore_vs_restart": 1.3, "logical_dump_vs_naive": 0.4,
         "logical_restore_vs_naive": 0.55, "logical_peak_rss_mb": 200}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """A scratch redis-server (daemonized, so a whole_rdb restore can stop and start it like a service)."""

    def __init__(self, directory: Path, name: str):
        self.directory = directory / name
        self.directory.mkdir(parents=True)
        self.port = free_port()
        self.config = self.directory / "redis.conf"
        self.config.write_text("\n".join([
            "port %d" % self.port, "bind 127.0.0.1", "dir %s" % self.directory, "dbfilename dump.rdb",
            'save ""', "appendonly no", "daemonize yes", "pidfile %s" % (self.directory / "redis.pid"),
            "logfile %s" % (self.directory / "redis.log"), ""]))

    @property
    def start_command(self) -> list[str]:
        return [REDIS_SERVER, str(self.config)]

    @property
    def stop_command(self) -> list[str]:
        return [REDIS_CLI, "-p", str(self.port), "shutdown", "nosave"]

    def start(self) -> None:
        subprocess.run(self.start_command, check=True, stdout=subprocess.DEVNULL)
        self.wait_loaded()

    def cli(self, *args: str) -> str:
        return subprocess.run([REDIS_CLI, "-p", str(self.port), *args], check=True, capture_output=True,
                              text=True).stdout.strip()

    def info(self, section: str) -> dict[str, str]:
        return dict(line.split(":", 1) for line in self.cli("info", section).splitlines() if ":" in line)

    def wait_loaded(self, timeout: float = 600) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                    sock.sendall(b"INFO persistence\r\n")
                    data = b""
                    while b"\r\nloading:" not in data or not data.endswith(b"\r\n"):
                        chunk = sock.recv(65536)
                        if not chunk:
                            break
                        data += chunk
                    if b"\r\nloading:0\r\n" in data:
                        return
            except OSError:
                pass
            time.sleep(0.01)
        raise TimeoutError("redis-server on port %d did not load in time" % self.port)

    def stop(self) -> None:
        pid_file = self.directory / "redis.pid"
        subprocess.run(self.stop_command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
        deadline = time.monotonic() + 30
        while pid_file.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        if pid_file.exists():
            try:
                os.kill(int(pid_file.read_text()), 9)
            except (ValueError, OSError):
                pass


def resp(*args: bytes) -> bytes:
    return b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%b\r\n" % (len(arg), arg) for arg in args)


def build_dataset(port: int, keys: int, seed: int = 7) -> int:
    """Write ``keys`` keys (70% strings, 10% each hashes, lists, sets) with raw RESP under CLIENT REPLY OFF
    (seconds, not minutes); returns DBSIZE."""
    rnd = random.Random(seed)
    now_ms = int(time.time() * 1000)
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(resp(b"CLIENT", b"REPLY", b"OFF"))
        parts: list[bytes] = []

        def flush() -> None:
            sock.sendall(b"".join(parts))
            parts.clear()

        for i in range(keys * 7 // 10):
            value = rnd.randbytes(50).hex().encode()
            if i % 2:
                parts.append(resp(b"SET", b"tts:audio:%d" % i, value, b"PXAT", b"%d" % (now_ms + rnd.randrange(3_600_000, 86_400_000))))
            else:
                parts.append(resp(b"SET", b"ai:reply:%d" % i, value))
            if len(parts) >= 5000:
                flush()
        for i in range(keys // 10):
            hash_args = [b"HSET", b"safety:verdict:%d" % i]
            for field in range(10):
                hash_args += [b"f%d" % field, b"v-%d-%s" % (field, rnd.randbytes(4).hex().encode())]
            parts.append(resp(*hash_args))
            parts.append(resp(b"RPUSH", b"security:events:%d" % i, *[b"e-%d-%d" % (i, item) for item in range(10)]))
            parts.append(resp(b"SADD", b"monitoring:members:%d" % i, *[b"m-%d-%d" % (i, item) for item in range(10)]))
            if len(parts) >= 3000:
                flush()
        flush()
        sock.sendall(resp(b"CLIENT", b"REPLY", b"ON") + resp(b"DBSIZE"))
        reply = b""
        while not reply.endswith(b"\r\n") or b":" not in reply:
            reply += sock.recv(4096)
    return int(reply.split(b":")[-1].split(b"\r\n")[0])


def run(argv: list[str]) -> dict[str, Any]:
    completed = subprocess.run(argv, check=False, capture_output=True, text=True)
    if completed.returncode != 0:
        raise RuntimeError("%s failed: %s %s" % (argv[1:3], completed.stdout[-2000:], completed.stderr[-2000:]))
    return json.loads(completed.stdout.strip().splitlines()[-1])


def module(name: str, args: dict[str, Any]) -> dict[str, Any]:
    report = run([PYTHON, str(ROOT / "bench" / "run_module.py"), name, json.dumps(args)])
    if report["result"].get("failed"):
        raise RuntimeError("%s failed: %s" % (name, report["result"].get("msg")))
    return report


def timed(action: Any) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def median(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[len(ordered) // 2]


def measure(work: Path, keys: int, repeats: int) -> tuple[dict[str, float], float]:
    """Every ratio's two sides run back to back (``repeats`` times, alternating, median kept),
    so a load change on this shared machine hits both sides alike."""
    source, target = Server(work, "source"), Server(work, "target")
    figures: dict[str, float] = {}
    try:
        source.start()
        target.start()
        built = timed(lambda: print("dataset: %d keys" % build_dataset(source.port, keys), flush=True))
        print("dataset_build: %.2f" % built, flush=True)
        redis_source = {"host": "127.0.0.1", "port": source.port}
        redis_target = {"host": "127.0.0.1", "port": target.port}
        snapshots = work / "snapshots"
        runs: dict[str, list[float]] = {}

        def figure(name: str, seconds: float) -> None:
            runs.setdefault(name, []).append(seconds)
            print("%s: %.2f" % (name, seconds), flush=True)

        def snapshot(snapshot_id: str, **options: Any) -> dict[str, Any]:
            shutil.rmtree(snapshots / snapshot_id, ignore_errors=True)
            return module("cutover_redis_snapshot", dict({"redis": redis_source, "dest": str(snapshots),
                                                          "snapshot_id": snapshot_id, "min_free_mb": 0}, **options))

        def bgsave() -> None:
            source.cli("bgsave")
            while source.info("persistence").get("rdb_bgsave_in_progress") != "0":
                time.sleep(0.01)

        bgsave()  # the first fork of a freshly filled server is slower than any later one: warm it up
        for _ in range(repeats):
            figure("bgsave", timed(bgsave))
            figure("rdb_snapshot", snapshot("rdb", mode="rdb")["seconds"])

        source.cli("config", "set", "repl-diskless-sync-delay", "0")
        figure("redis_cli_rdb", timed(lambda: subprocess.run(
            [REDIS_CLI, "-p", str(source.port), "--rdb", str(work / "cli.rdb")], check=True, capture_output=True)))
        source.cli("config", "set", "repl-diskless-sync-delay", "5")
        figure("replica_snapshot", snapshot("replica", mode="replica", replica_sync_delay=0)["seconds"])
        figure("replica_snapshot_default_delay", snapshot("replica", mode="replica")["seconds"])
        (work / "cli.rdb").unlink()

        peaks: list[float] = []
        for _ in range(repeats):
            figure("naive_dump", run([PYTHON, str(ROOT / "bench" / "naive.py"), "dump", str(source.port),
                                      str(work / "naive.dump")])["seconds"])
            logical = snapshot("logical", mode="logical")
            figure("logical_snapshot", logical["seconds"])
            peaks.append(logical["peak_rss_mb"])

        for _ in range(repeats):
            target.cli("flushall")
            figure("naive_restore", run([PYTHON, str(ROOT / "bench" / "naive.py"), "restore", str(target.port),
                                         str(work / "naive.dump")])["seconds"])
            target.cli("flushall")
            logical_restore = module("cutover_redis_restore", {"redis": redis_target, "policy": "overwrite",
                                                               "src": str(snapshots / "logical")})
            figure("logical_restore", logical_restore["seconds"])
            peaks.append(logical_restore["peak_rss_mb"])
            restored = int(target.cli("dbsize"))
            if restored != keys or logical_restore["result"]["restored"] != keys:
                raise RuntimeError("logical restore holds %d keys, not %d" % (restored, keys))
        (work / "naive.dump").unlink()

        def restart_on_dump() -> None:
            shutil.copyfile(snapshots / "rdb" / "dump.rdb", target.directory / "dump.rdb.new")
            subprocess.run(target.stop_command, check=True, stdout=subprocess.DEVNULL)
            while (target.directory / "redis.pid").exists():
                time.sleep(0.005)
            os.rename(target.directory / "dump.rdb.new", target.directory / "dump.rdb")
            subprocess.run(target.start_command, check=True, stdout=subprocess.DEVNULL)
            target.wait_loaded()

        for _ in range(repeats):
            target.cli("flushall")
            figure("restart_on_dump", timed(restart_on_dump))
            target.cli("flushall")
            whole = module("cutover_redis_restore", {"redis": redis_target, "src": str(snapshots / "rdb"),
                                                     "policy": "whole_rdb", "stop_command": target.stop_command,
                                                     "start_command": target.start_command})
            figure("rdb_restore", whole["seconds"])
            for previous in whole["result"]["whole_rdb"]["previous"]:
                os.unlink(previous)
            if int(target.cli("dbsize")) != keys:
                raise RuntimeError("whole_rdb restore left %s keys, not %d" % (target.cli("dbsize"), keys))

        print("logical_peak_rss_mb (snapshots, then restores): %s" % " ".join("%.1f" % peak for peak in peaks))
        figures = {name: median(values) for name, values in runs.items()}
        if repeats > 1:
            print("medians: " + ", ".join("%s %.2f" % (name, figures[name]) for name in runs if len(runs[name]) > 1))
        return figures, max(peaks)
    finally:
        source.stop()
        target.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", help="where the scratch servers and snapshots go (default: a temp dir)")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each pair, median kept (default 3)")
    parser.add_argument("--keys", type=int, default=1_000_000,
                        help="dataset size, a multiple of 10 (default 1000000, the benchmark; less for a smoke run)")
    args = parser.parse_args()
    if args.keys < 10 or args.keys % 10:
        parser.error("--keys must be a positive multiple of 10 (got %d)" % args.keys)
    if args.repeats < 1:
        parser.error("--repeats must be >= 1 (got %d)" % args.repeats)
    # A SIGTERM must still stop the scratch servers and remove the temp dir (the finally blocks below).
    signal.signal(signal.SIGTERM, lambda _signal, _frame: sys.exit(143))
    work = Path(tempfile.mkdtemp(prefix="cutover-bench-", dir=args.workdir))
    print("machine: %s, %d cores, %s; %s" % (os.uname().nodename, os.cpu_count() or 0,
                                              subprocess.run([REDIS_SERVER, "--version"], capture_output=True,
                                                             text=True).stdout.split()[2],
                                              time.strftime("%Y-%m-%d %H:%M:%S %Z")), flush=True)
    try:
        figures, peak = measure(work, args.keys, args.repeats)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    ratios = {
        "rdb_vs_bgsave": figures["rdb_snapshot"] / figures["bgsave"],
        "rdb_restore_vs_restart": figures["rdb_restore"] / figures["restart_on_dump"],
        "logical_dump_vs_naive": figures["logical_snapshot"] / figures["naive_dump"],
        "logical_restore_vs_naive": figures["logical_restore"] / figures["naive_restore"],
        "logical_peak_rss_mb": peak,
    }
    missed = [name for name, value in ratios.items() if value > GOALS[name]]
    print("RESULT " + " ".join("%s=%.2f" % (name, value) if name != "logical_peak_rss_mb" else "%s=%.0f" % (name, value)
                               for name, value in ratios.items()))
    if missed:
        print("goals missed: %s" % ", ".join("%s > %s" % (name, GOALS[name]) for name in missed), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
