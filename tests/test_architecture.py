"""The layout shows the data's way, and the imports agree with it: sources -> segmentation ->
mask filters -> compositing -> the frame processor -> outputs -> the live pipeline -> commands.
No module imports one that comes later on that way; only the pipeline starts threads."""

from __future__ import annotations

import ast
from pathlib import Path

import vbg

PACKAGE = Path(vbg.__file__).parent

# The stages in the order the data takes; a module may import its own stage and earlier ones.
ORDER = (
    ("vbg", "vbg.errors", "vbg.log", "vbg.images", "vbg.stats"),  # shared by every stage
    ("vbg.sources",),
    ("vbg.segmentation",),
    ("vbg.mask_filters",),
    ("vbg.compositing",),
    ("vbg.processor",),
    ("vbg.outputs",),
    ("vbg.pipeline",),
    ("vbg.config", "vbg.commands", "vbg.__main__"),
)


def _stage(module: str) -> int:
    best = None
    for index, names in enumerate(ORDER):
        for name in names:
            if (module == name or module.startswith(name + ".")) and (
                best is None or len(name) > len(best[1])
            ):
                best = (index, name)
    assert best is not None, f"{module} is in no stage of ORDER: add it where the data passes it"
    return best[0]


def _modules() -> dict[str, ast.Module]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = ast.parse(path.read_text(), str(path))
    return found


def _imports(tree: ast.Module) -> set[str]:
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return {name for name in names if name == "vbg" or name.startswith("vbg.")}


def test_no_module_imports_a_later_stage() -> None:
    backwards = [
        f"{module} imports {imported}"
        for module, tree in _modules().items()
        for imported in sorted(_imports(tree))
        if _stage(imported) > _stage(module)
    ]
    assert backwards == []


def test_the_folders_name_the_stages() -> None:
    top = {path.name for path in PACKAGE.iterdir() if not path.name.startswith("__")}
    assert {"sources", "segmentation", "mask_filters.py", "compositing", "processor.py",
            "outputs", "pipeline.py", "commands"} <= top  # fmt: skip


def test_only_the_pipeline_starts_threads() -> None:
    starters = sorted(
        {
            module
            for module, tree in _modules().items()
            for node in ast.walk(tree)
            if isinstance(node, ast.Attribute) and node.attr == "Thread"
        }
    )
    assert starters == ["vbg.pipeline"]
