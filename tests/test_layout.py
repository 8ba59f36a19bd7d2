"""The package's shape: no import cycles, no module over 400 lines, Flower only where it belongs."""

import subprocess
import sys
import textwrap
from pathlib import Path

from tools.import_graph import MAX_LINES, build_graph, cycles, layer_violations, oversized

REPO = Path(__file__).resolve().parents[1]


def test_the_package_has_no_import_cycle():
    assert cycles(build_graph(REPO)) == []


def test_lower_layers_import_neither_flower_nor_ray_and_configs_no_strategy():
    assert layer_violations(build_graph(REPO)) == []


def test_no_module_is_longer_than_the_limit():
    assert oversized(build_graph(REPO)) == [], f"split modules over {MAX_LINES} lines"


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = tmp_path / "edgeupdate" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return tmp_path


def test_the_checker_finds_a_cycle_through_a_lazy_import_and_a_flower_import_below_strategies(tmp_path):
    root = _tree(tmp_path, {
        "__init__.py": "",
        "fleet/__init__.py": "",
        "fleet/a.py": "from edgeupdate.fleet import b\n",
        "fleet/b.py": "def f():\n    from edgeupdate.fleet.a import x\n",
        "configs/__init__.py": "",
        "configs/c.py": "import flwr\nfrom edgeupdate.strategies.s import S\n",
        "strategies/__init__.py": "",
        "strategies/s.py": "S = 1\n",
    })
    graph = build_graph(root)
    assert cycles(graph) == [["edgeupdate.fleet.a", "edgeupdate.fleet.b"]]
    problems = layer_violations(graph)
    assert any("configs.c imports flwr" in p for p in problems)
    assert any("configs.c imports edgeupdate.strategies.s" in p for p in problems)


def test_the_script_exits_non_zero_on_a_broken_rule(tmp_path):
    root = _tree(tmp_path, {"__init__.py": "", "updates/__init__.py": "", "updates/u.py": "import ray\n"})
    done = subprocess.run([sys.executable, str(REPO / "tools" / "import_graph.py"), "--root", str(root)],
                          capture_output=True, text=True)
    assert done.returncode == 1 and "edgeupdate.updates.u imports ray" in done.stdout
