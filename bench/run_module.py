"""Run one cutover module the way Ansible runs it on a host - main() with its module arguments, in a
process of its own - and report its result, the wall time from process start, and the peak RSS.

Usage: run_module.py <module name> <json args>; prints one JSON line:
{"seconds": s, "peak_rss_mb": m, "result": {...}}
"""
from __future__ import annotations

import time

STARTED = time.perf_counter()

import contextlib  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def peak_rss_mb() -> float:
    """The kernel's peak resident set of this process (VmHWM), which a fork does not inherit."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    return 0.0


def main(name: str, args: dict) -> None:
    import ansible.module_utils
    ansible.module_utils.__path__.append(str(ROOT / "module_utils"))
    sys.path.insert(0, str(ROOT / "library"))
    from ansible.module_utils.testing import patch_module_args

    module = __import__(name)
    stdout = io.StringIO()
    with patch_module_args(args), contextlib.redirect_stdout(stdout):
        try:
            module.main()
        except SystemExit:
            pass
    seconds = time.perf_counter() - STARTED
    result = json.loads(stdout.getvalue())
    print(json.dumps({"seconds": seconds, "peak_rss_mb": peak_rss_mb(), "result": result}))


if __name__ == "__main__":
    main(sys.argv[1], json.loads(sys.argv[2]))
