"""The package's structure (``docs/ARCHITECTURE.md``, "Layers"): no circular imports between modules,
no import from a lower layer to a higher one (guidance wraps denoisers and knows no LightningModule;
entry points sit on top, shared helpers below), and no module over ~450 lines. Imports inside
functions count too: they are dependencies all the same."""

import ast
from pathlib import Path

import diffzoo

ROOT = Path(diffzoo.__file__).parent
# The layers, lowest first; a module may import its own layer and the ones below.
LAYERS = [
    ["errors", "utils", "config", "checkpoints", "csv_logger"],
    ["schedules", "networks", "parameterization", "data", "optim", "toys"],
    ["denoisers"],
    ["samplers", "guidance", "objectives", "likelihood"],
    ["lit"],
    ["metrics", "callbacks"],
    ["validation", "runtime", "sampler_tables", "pipelines"],
    ["train", "sample", "evaluate", "edit", "ddim_table", "nfe_table", "guidance_sweep", "reproduce", "sweep"],
    ["claims"],
]
ENTRY_MODULES = {"diffzoo.metrics.train_classifier", "diffzoo.metrics.inception"}  # `python -m` tools inside a package
MAX_LINES = 450


def _modules() -> dict[str, Path]:
    mods = {}
    for path in ROOT.rglob("*.py"):
        name = ".".join(("diffzoo", *path.relative_to(ROOT).with_suffix("").parts))
        mods[name.removesuffix(".__init__")] = path
    return mods


def _imports(name: str, path: Path, mods: dict[str, Path]) -> set[str]:
    """The diffzoo modules ``name`` imports (anywhere in the file)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        targets = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
                base = ".".join(package[: len(package) - node.level + 1] + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base for a in node.names]
        for target in targets:
            parts = target.split(".")
            while parts and ".".join(parts) not in mods:
                parts.pop()
            if parts and parts[0] == "diffzoo" and ".".join(parts) != name:
                found.add(".".join(parts))
    return found


def _layer(module: str) -> int:
    if module in ENTRY_MODULES:
        return len(LAYERS) - 1
    top = module.split(".")[1] if module.count(".") else ""
    for i, names in enumerate(LAYERS):
        if top in names:
            return i
    raise AssertionError(f"{module} is in no layer: add its package to LAYERS (and to docs/ARCHITECTURE.md)")


def test_no_import_goes_up_a_layer():
    mods = _modules()
    edges = {m: _imports(m, p, mods) for m, p in mods.items() if m != "diffzoo"}
    upward = [f"{a} -> {b}" for a, bs in edges.items() for b in bs
              if b != "diffzoo" and a.split(".")[1] != b.split(".")[1] and _layer(b) > _layer(a)]
    assert not upward, upward


def test_no_circular_imports():
    mods = _modules()
    edges = {m: _imports(m, p, mods) - {"diffzoo"} for m, p in mods.items()}
    state: dict[str, int] = {}
    cycles = []

    def visit(node, trail):
        state[node] = 1
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append(trail[trail.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, trail + [nxt])
        state[node] = 2

    for m in sorted(edges):
        if m not in state:
            visit(m, [m])
    # a package __init__ re-exporting its submodules, which import siblings, is not a cycle of modules
    real = [c for c in cycles if not any(mods[m].name == "__init__.py" for m in c)]
    assert not real, real


def test_no_module_is_over_the_length_limit():
    long = {str(p.relative_to(ROOT)): n for p in ROOT.rglob("*.py") if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, long
