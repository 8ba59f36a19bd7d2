"""The import graph of ``edgeupdate/``: cycles, layer rules and module sizes, from the source alone.

    python tools/import_graph.py            # print the report; exit 1 when a rule is broken
    python tools/import_graph.py --edges    # also list every import edge

Every ``import`` / ``from ... import`` statement counts, wherever it stands (module level, inside a
function, under ``if TYPE_CHECKING``): a lazy import hides a dependency, it does not remove it.
``from edgeupdate.a import b`` points at ``edgeupdate.a.b`` when that is a module, else at
``edgeupdate.a``. Importing a submodule also runs its package's ``__init__``, but that edge is left
out (it would put every re-exporting ``__init__`` on a cycle with its own submodules).

Rules (the README's Layout section):

* no import cycle between modules;
* no module longer than :data:`MAX_LINES` lines;
* the Flower-free layers (:data:`FLOWER_FREE`) import neither ``flwr`` nor ``ray``;
* ``edgeupdate.configs`` imports nothing from ``edgeupdate.strategies``.
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "edgeupdate"
MAX_LINES = 400
FLOWER_FREE = ("updates", "algorithms", "fleet", "models", "datasets", "configs")
FORBIDDEN_EXTERNAL = ("flwr", "ray")
#: (importer package, imported package) pairs that must not appear.
FORBIDDEN_INTERNAL = (("configs", "strategies"),)


@dataclass
class ImportGraph:
    """Modules of the package, their line counts and the imports between them."""

    modules: dict[str, Path] = field(default_factory=dict)
    lines: dict[str, int] = field(default_factory=dict)
    internal: dict[str, set[str]] = field(default_factory=dict)  # module -> package modules it imports
    external: dict[str, set[str]] = field(default_factory=dict)  # module -> top-level outside names


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imported_names(tree: ast.AST, current: str, is_package: bool) -> Iterable[str]:
    """Fully qualified names each import statement of ``tree`` reaches: ``import a.b`` gives
    ``a.b``; ``from a import b`` gives ``a.b`` (resolved later to the module ``a.b`` if there is one,
    else to ``a``)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against the current package
                base = current.split(".") if is_package else current.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            for alias in node.names:
                yield f"{module}.{alias.name}" if alias.name != "*" else module


def build_graph(root: Path = ROOT) -> ImportGraph:
    graph = ImportGraph()
    for path in sorted((root / PACKAGE).rglob("*.py")):
        name = module_name(path, root)
        graph.modules[name] = path
        graph.lines[name] = len(path.read_text(encoding="utf-8").splitlines())
    for name, path in graph.modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        internal, external = set(), set()
        for target in _imported_names(tree, name, path.name == "__init__.py"):
            top = target.split(".")[0]
            if top != PACKAGE:
                if top:
                    external.add(top)
                continue
            # the longest prefix of ``target`` that is a module of the package
            parts = target.split(".")
            while parts and ".".join(parts) not in graph.modules:
                parts.pop()
            if parts and ".".join(parts) != name:
                internal.add(".".join(parts))
        graph.internal[name], graph.external[name] = internal, external
    return graph


def cycles(graph: ImportGraph) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0

    def visit(v: str) -> None:
        nonlocal counter
        index[v] = low[v] = counter
        counter += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.internal.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(max(10_000, sys.getrecursionlimit()))
    for v in sorted(graph.modules):
        if v not in index:
            visit(v)
    return sorted(found)


def _layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def layer_violations(graph: ImportGraph) -> list[str]:
    """One line per forbidden import (Flower/Ray below the strategy layer; configs → strategies)."""
    problems = []
    for module in sorted(graph.modules):
        layer = _layer(module)
        if layer in FLOWER_FREE:
            for ext in sorted(graph.external[module] & set(FORBIDDEN_EXTERNAL)):
                problems.append(f"{module} imports {ext} (the {layer}/ layer never imports Flower or Ray)")
        for importer, imported in FORBIDDEN_INTERNAL:
            if layer == importer:
                for target in sorted(graph.internal[module]):
                    if _layer(target) == imported:
                        problems.append(f"{module} imports {target} ({importer}/ never imports {imported}/)")
    return problems


def oversized(graph: ImportGraph, limit: int = MAX_LINES) -> list[str]:
    return [f"{m} has {n} lines (limit {limit})" for m, n in sorted(graph.lines.items()) if n > limit]


def report(graph: ImportGraph) -> tuple[list[str], bool]:
    """The report's lines, and whether every rule holds."""
    found = cycles(graph)
    layers = layer_violations(graph)
    big = oversized(graph)
    lines = [f"{len(graph.modules)} modules, {sum(len(v) for v in graph.internal.values())} internal imports",
             f"import cycles: {len(found)}"]
    lines += [f"  cycle of {len(c)}: {' <-> '.join(c)}" for c in found]
    lines.append(f"layer violations: {len(layers)}")
    lines += [f"  {p}" for p in layers]
    lines.append(f"modules over {MAX_LINES} lines: {len(big)}")
    lines += [f"  {p}" for p in big]
    return lines, not (found or layers or big)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--edges", action="store_true", help="also print every internal import edge")
    parser.add_argument("--root", type=Path, default=ROOT, help="repository root (default: this checkout)")
    args = parser.parse_args(argv)
    graph = build_graph(args.root)
    lines, ok = report(graph)
    if args.edges:
        for module in sorted(graph.internal):
            for target in sorted(graph.internal[module]):
                lines.append(f"{module} -> {target}")
    print("\n".join(lines))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
