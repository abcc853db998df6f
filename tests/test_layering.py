"""The one-way import rule: common <- envs, datasets <- world_model <- planners <- recipes (benchmarks, tests on top).

Each package may import only the packages below it; `common` imports none of them, and nothing heavy
(torch, mujoco) at import time, so the command-line front door stays fast.
"""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OURS = {"common", "envs", "datasets", "world_model", "planners", "recipes"}
ALLOWED = {
    "common": set(),
    "envs": {"common"},
    "datasets": {"common"},
    "world_model": {"common", "datasets"},
    "planners": {"common", "envs", "datasets", "world_model"},
    "recipes": OURS,
}


def _imports(path: Path, top_level_only: bool = False) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), str(path))
    nodes = tree.body if top_level_only else ast.walk(tree)
    found = []
    for node in nodes:
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name.split(".")[0]) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module.split(".")[0]))
    return found


def test_packages_import_only_what_lies_below_them():
    bad = []
    for package, allowed in ALLOWED.items():
        for path in sorted((ROOT / package).rglob("*.py")):
            for line, name in _imports(path):
                if name in OURS and name != package and name not in allowed:
                    bad.append(f"{path.relative_to(ROOT)}:{line} imports {name}")
    assert not bad, "imports against the one-way rule:\n" + "\n".join(bad)


def test_the_ground_floor_imports_nothing_heavy_at_import_time():
    heavy = {"torch", "mujoco", "timm", "h5py"}
    bad = [f"{p.relative_to(ROOT)}:{line} imports {name}" for p in sorted((ROOT / "common").rglob("*.py"))
           for line, name in _imports(p, top_level_only=True) if name in heavy]
    assert not bad, "\n".join(bad)
