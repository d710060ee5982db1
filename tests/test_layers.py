"""The package layering of olmap: low layers never import stages, and no package cycles."""

import ast
from pathlib import Path

import olmap

ROOT = Path(olmap.__file__).parent
#: Packages of the 2D and CT pipelines' stages; a stage borrows generic code only from below.
STAGES = {
    "composition",
    "crystals",
    "ct",
    "dataset",
    "masks",
    "mosaic",
    "segment",
    "synth",
    "tiles",
}
LOW = {
    "core": {"errors"},
    "io": {"core", "errors", "parallel"},
    "stream": {"core", "errors", "io", "parallel"},
}
#: Stage -> stage imports that are data flow, not borrowed helpers (synth writes mosaic tiles).
ALLOWED = {("synth", "mosaic"), ("ct", "segment")}


def package_imports() -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {}
    for path in ROOT.rglob("*.py"):
        pkg = path.relative_to(ROOT).parts[0].removesuffix(".py")
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("olmap."):
                target = node.module.split(".")[1]
                if target != pkg:
                    edges.setdefault(pkg, set()).add(target)
    return edges


def test_low_layers_import_no_stage():
    edges = package_imports()
    for low, allowed in LOW.items():
        assert edges.get(low, set()) <= allowed, (low, edges.get(low))


def test_stages_borrow_only_from_low_layers():
    edges = package_imports()
    for stage in STAGES:
        borrowed = {t for t in edges.get(stage, set()) & STAGES if (stage, t) not in ALLOWED}
        assert not borrowed, f"{stage} imports the stages {sorted(borrowed)}"


def test_no_package_cycles():
    edges = package_imports()

    def reach(start: str) -> set[str]:
        seen: set[str] = set()
        todo = [start]
        while todo:
            for nxt in edges.get(todo.pop(), ()):
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        return seen

    assert [p for p in edges if p in reach(p)] == []
