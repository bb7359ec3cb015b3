"""The package's imports point one way: core <- data <- models <- evaluation <- experiment <- engines <-
report <- api <- cli, and no module imports itself back through a cycle. Every import counts, those
inside functions included (they are read from the source with ``ast``, nothing is executed)."""

from __future__ import annotations

import ast
from pathlib import Path

import mfvsdnn

PACKAGE = Path(mfvsdnn.__file__).parent
LAYERS = ["core", "data", "models", "evaluation", "experiment", "engines", "report", "api", "cli"]
TOP = len(LAYERS)  # the package root (mfvsdnn/__init__.py, __main__.py) may import anything


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def layer(module: str) -> int:
    parts = module.split(".")
    if len(parts) == 1:
        return TOP
    name = parts[1]
    return LAYERS.index(name) if name in LAYERS else TOP


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """(line, absolute module) of every mfvsdnn import in the file, wherever it stands."""
    module = module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names if a.name.split(".")[0] == "mfvsdnn"]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "mfvsdnn":
                continue
            for alias in node.names:  # "from . import x" may import the module x
                sub = f"{target}.{alias.name}"
                is_module = (PACKAGE.parent / Path(*sub.split("."))).with_suffix(".py").exists() or \
                    (PACKAGE.parent / Path(*sub.split(".")) / "__init__.py").exists()
                out.append((node.lineno, sub if is_module else target))
    return out


def all_modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def test_every_module_belongs_to_a_layer():
    strays = [m for m in all_modules() if m.count(".") >= 1 and layer(m) == TOP and m.split(".")[1] != "__main__"]
    assert not strays, f"modules outside the layers {LAYERS}: {strays}"


def test_imports_point_down_only():
    upward = []
    for module, path in all_modules().items():
        for line, target in imported_modules(path):
            if layer(target) > layer(module):
                upward.append(f"{path.relative_to(PACKAGE.parent)}:{line} {module} imports {target}")
    assert not upward, "imports pointing up the layers:\n" + "\n".join(upward)


def test_no_import_cycles():
    modules = all_modules()
    graph = {m: sorted({t for _, t in imported_modules(p) if t in modules and t != m}) for m, p in modules.items()}
    # a package's __init__ re-exporting its own modules is not a cycle with them
    for m in graph:
        graph[m] = [t for t in graph[m] if not (m.startswith(t + ".") and t in modules)]
    state: dict[str, int] = {}
    cycles = []

    def visit(m: str, stack: list[str]) -> None:
        state[m] = 1
        for t in graph[m]:
            if state.get(t) == 1:
                cycles.append(" -> ".join(stack[stack.index(t):] + [t]) if t in stack else f"{m} -> {t}")
            elif state.get(t) is None:
                visit(t, stack + [t])
        state[m] = 2

    for m in graph:
        if m not in state:
            visit(m, [m])
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_models_never_import_the_evaluator():
    bad = [f"{m} imports {t}" for m, p in all_modules().items() if m.startswith("mfvsdnn.models")
           for _, t in imported_modules(p) if t.startswith("mfvsdnn.evaluation")]
    assert not bad, bad


def test_the_readme_tree_names_every_module_and_only_modules_that_exist():
    """README's Development tree is how a newcomer finds where each thing lives: one line per file."""
    text = (PACKAGE.parent / "README.md").read_text(encoding="utf-8")
    block = text[text.index("## Development"):]
    block = block[block.index("```\n") + 4:]
    block = block[:block.index("```")]
    listed, folder = set(), None
    for line in block.splitlines():
        name = line.strip().split(" ")[0]
        if not line.startswith("  ") or not name:
            continue
        if line.startswith("    "):  # a file inside the current sub-folder
            listed.add(f"{folder}/{name}")
        elif name.endswith("/"):
            folder = name.rstrip("/")
        else:
            listed.add(name)
    shipped = {str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*") if p.suffix in (".py", ".json")
               and p.name != "__init__.py" or p.relative_to(PACKAGE) == Path("__init__.py")}
    assert listed == shipped, {"listed but missing": sorted(listed - shipped), "not listed": sorted(shipped - listed)}
