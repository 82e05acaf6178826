"""molecule/shared/free_ports.py: a scenario never picks a port a scenario beside it picked (make test runs two
streams at once; a component restarted by a deploy leaves its port unbound for a moment)."""
from __future__ import annotations

import importlib.util
import json
import random
from pathlib import Path

FREE_PORTS = Path(__file__).resolve().parents[2] / "molecule" / "shared" / "free_ports.py"
spec = importlib.util.spec_from_file_location("free_ports", FREE_PORTS)
free_ports = importlib.util.module_from_spec(spec)
spec.loader.exec_module(free_ports)


def test_ports_of_a_live_scenario_beside_are_never_picked_even_when_unbound(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "molecule.e2e").mkdir()
    (tmp_path / "molecule.e2e" / "ports.json").write_text(json.dumps({"redis": 21000, "base": 21100}))
    (tmp_path / "molecule.fleet").mkdir()
    (tmp_path / "molecule.fleet" / "ports.json").write_text("{half writ")
    # the first draws land on the other scenario's ports (nothing listens on them now), then on a port bound by
    # something else, then on free ones
    draws = iter([21100, 21097, 20999, 22000, 23000, 21500])
    monkeypatch.setattr(random, "randrange", lambda low, high: next(draws))
    monkeypatch.setattr(free_ports, "is_free", lambda port: port != 22003)
    (tmp_path / "molecule.cutover").mkdir()

    free_ports.main(str(tmp_path / "molecule.cutover" / "ports.json"))

    picked = json.loads((tmp_path / "molecule.cutover" / "ports.json").read_text())
    assert picked == {"base": 23000, "redis": 21501}
