"""Every module's DOCUMENTATION / EXAMPLES / RETURN renders with ansible-doc and matches its argument spec."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MODULES = sorted(path.stem for path in (ROOT / "library").glob("cutover_*.py"))


def test_every_module_renders_with_ansible_doc():
    ansible_doc = Path(sys.executable).with_name("ansible-doc")
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"))
    proc = subprocess.run([str(ansible_doc), "--json", "-M", "library"] + MODULES, cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    docs = json.loads(proc.stdout)
    assert sorted(docs) == MODULES
    for name, doc in docs.items():
        assert doc["doc"]["short_description"], name
        assert doc["examples"].strip(), name
        assert doc["return"], name
        # the shared connection option comes from the doc fragment, with its secrets documented
        if "redis" in doc["doc"]["options"]:
            assert {"password", "url", "tls", "ca_cert"} <= set(doc["doc"]["options"]["redis"]["suboptions"]), name
