"""make bench-snapshot on a small dataset: every figure is measured, the RESULT ratios are the figures'
ratios, and the scratch servers and temp dir are gone afterwards (the 1M-key run is `make bench-snapshot`)."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from cutover_testlib import ROOT

FIGURES = ("bgsave", "rdb_snapshot", "redis_cli_rdb", "replica_snapshot", "replica_snapshot_default_delay",
           "naive_dump", "logical_snapshot", "naive_restore", "logical_restore", "restart_on_dump", "rdb_restore")


def processes_mentioning(text: str) -> list[str]:
    """Command lines of running processes that contain ``text``."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path("/proc", pid, "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmdline and pid != str(os.getpid()):
            found.append(cmdline)
    return found


def ratio_bounds(numerator: float, denominator: float) -> tuple[float, float]:
    """The range of numerator / denominator for two figures printed to 0.01 s."""
    return (max(numerator - 0.005, 0.0) / (denominator + 0.005),
            (numerator + 0.005) / (denominator - 0.005) if denominator > 0.005 else float("inf"))


def test_bench_snapshot_measures_every_figure_and_cleans_up(tmp_path: Path):
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "bench_snapshot.py"), "--keys", "2000",
                           "--repeats", "1", "--workdir", str(tmp_path)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    figures = {name: float(value) for name, value in re.findall(r"^(\w+): ([0-9.]+)$", proc.stdout, re.M)}
    assert set(FIGURES) <= set(figures), proc.stdout
    assert "dataset: 2000 keys" in proc.stdout
    result = re.search(r"^RESULT (.*)$", proc.stdout, re.M)
    assert result, proc.stdout
    ratios = dict(pair.split("=") for pair in result.group(1).split())
    pairs = {"rdb_vs_bgsave": ("rdb_snapshot", "bgsave"), "rdb_restore_vs_restart": ("rdb_restore", "restart_on_dump"),
             "logical_dump_vs_naive": ("logical_snapshot", "naive_dump"),
             "logical_restore_vs_naive": ("logical_restore", "naive_restore")}
    for name, (measured, baseline) in pairs.items():
        low, high = ratio_bounds(figures[measured], figures[baseline])
        assert low - 0.005 <= float(ratios[name]) <= high + 0.005, (name, ratios[name], low, high)
    assert 0 < float(ratios["logical_peak_rss_mb"]) < 200
    assert list(tmp_path.iterdir()) == [], "the bench left files behind"
    assert processes_mentioning(str(tmp_path)) == [], "the bench left a redis-server running"
