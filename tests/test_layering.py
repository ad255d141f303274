"""The package's import graph has layers, and arrows only point down.

primitives (errors, io, boxes, spec, assets, version) -> operations (models, data, runtime, quantize, export, eval)
-> workflows (benchmarking, train) -> interface (cli, commands, the package's public API). Every import counts, also
the ones inside functions: a lazy import is still a dependency. Between the packages of one layer the arrows may
not form a cycle, and the device side (``runtime``) and the model zoo (``models``) stand alone on the primitives.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Dict, List, Set, Tuple

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "lite_deploy"

LAYERS = {
    "errors": 0, "io": 0, "boxes": 0, "spec": 0, "assets": 0, "version": 0,
    "models": 1, "data": 1, "runtime": 1, "quantize": 1, "export": 1, "eval": 1,
    "benchmarking": 2, "train": 2,
    "cli": 3, "commands": 3, "__init__": 3, "__main__": 3,
}
# What the device side and the model zoo may import besides the standard library and third-party packages.
ALONE = {
    "runtime": {"errors", "io", "boxes", "spec"},
    "models": {"errors", "io", "boxes", "spec"},
}
HOST_ONLY = ("torch", "torchvision")  # never imported by the device side, not even lazily

Edge = Tuple[str, str, str, int, bool]  # source unit, imported module (dotted), file, line, inside a function


def _unit(module: str) -> str:
    """The package (or top-level module) of ``lite_deploy`` a dotted module name belongs to."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _is_module(dotted: str) -> bool:
    path = PACKAGE.parent.joinpath(*dotted.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def _imports() -> List[Edge]:
    """Every ``import`` of every module of the package, at module level or inside functions."""
    edges: List[Edge] = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        package = ".".join(parts[:-1])  # relative imports start here (a package's __init__ included)
        module = package if path.name == "__init__.py" else ".".join(parts)
        tree = ast.parse(path.read_text(encoding="utf-8"))
        lazy = {id(n) for f in ast.walk(tree) if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))
                for n in ast.walk(f)}
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
                target = ".".join(base + ([node.module] if node.module else []))
                names = [f"{target}.{a.name}" if _is_module(f"{target}.{a.name}") else target for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            for name in names:
                edges.append((_unit(module), name, str(path.relative_to(PACKAGE.parent)), node.lineno,
                              id(node) in lazy))
    return edges


EDGES = _imports()
INTERNAL = [(src, _unit(dst), f, line) for src, dst, f, line, _ in EDGES
            if dst == "lite_deploy" or dst.startswith("lite_deploy.")]


def test_every_unit_has_a_layer() -> None:
    units = {p.stem if p.is_file() else p.name for p in PACKAGE.iterdir()
             if (p.is_file() and p.suffix == ".py") or (p / "__init__.py").is_file()}
    assert units <= set(LAYERS), f"give these a layer in LAYERS: {sorted(units - set(LAYERS))}"


def test_arrows_point_down() -> None:
    against = [f"{f}:{line} ({src}, layer {LAYERS[src]}) imports {dst} (layer {LAYERS[dst]})"
               for src, dst, f, line in INTERNAL if src != dst and LAYERS[dst] > LAYERS[src]]
    assert not against, "imports against the layering:\n" + "\n".join(against)


def test_no_cycles_between_packages() -> None:
    graph: Dict[str, Set[str]] = {}
    where: Dict[Tuple[str, str], str] = {}
    for src, dst, f, line in INTERNAL:
        if src != dst:
            graph.setdefault(src, set()).add(dst)
            where.setdefault((src, dst), f"{f}:{line}")

    def reaches(start: str, goal: str) -> List[str]:
        stack, seen = [(start, [start])], {start}
        while stack:
            node, trail = stack.pop()
            for nxt in sorted(graph.get(node, ())):
                if nxt == goal:
                    return trail + [nxt]
                if nxt not in seen:
                    seen.add(nxt)
                    stack.append((nxt, trail + [nxt]))
        return []

    cycles = []
    for src, dst in sorted(where):
        back = reaches(dst, src)
        if back:
            cycles.append(" -> ".join([src] + back) + f"  (first arrow at {where[(src, dst)]})")
    assert not cycles, "cycles between packages:\n" + "\n".join(cycles)


@pytest.mark.parametrize("unit", sorted(ALONE))
def test_device_side_and_zoo_stand_on_the_primitives_only(unit: str) -> None:
    wrong = [f"{f}:{line} imports lite_deploy.{dst}" for src, dst, f, line in INTERNAL
             if src == unit and dst != unit and dst not in ALONE[unit]]
    assert not wrong, f"lite_deploy.{unit} may import only {sorted(ALONE[unit])}:\n" + "\n".join(wrong)


def test_device_side_never_imports_torch() -> None:
    device = {"runtime"} | ALONE["runtime"]
    wrong = [f"{f}:{line} imports {dst}" for src, dst, f, line, _ in EDGES
             if src in device and dst.split(".")[0] in HOST_ONLY]
    assert not wrong, "the device side imports torch:\n" + "\n".join(wrong)


def test_the_walk_sees_lazy_imports() -> None:
    """Imports inside functions are walked too (a lazy import is how a cycle hides)."""
    lazy = [(src, dst) for src, dst, _, _, inside in EDGES if inside and dst.startswith("lite_deploy")]
    assert any(src == "commands" for src, _ in lazy), "the walk found no import inside a function"
