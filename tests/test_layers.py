"""The package's shape: models/ is the bottom layer, there is no import cycle, the command line's
static method tables match the registries, and importing artshield or asking for help loads no
heavy library."""
import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "artshield"
METHOD_PACKAGES = ("protect", "purify", "mimic", "erase", "audit", "bench")


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """Every artshield module `path` imports, at any depth of its code (function bodies included)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("artshield")}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            elif node.module and node.module.startswith("artshield"):
                target = node.module
            else:
                continue
            named = [f"{target}.{a.name}" for a in node.names]
            submodules = [m for m in named if (PACKAGE.parent / Path(*m.split("."))).with_suffix(".py").exists()
                          or (PACKAGE.parent / Path(*m.split("."))).is_dir()]
            found |= set(submodules)
            if len(submodules) < len(named):      # some names are attributes of the module itself
                found.add(target)
    return found


def graph() -> dict[str, set[str]]:
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {name: {m for m in imports(path) if m in modules and m != name} for name, path in modules.items()}


def test_models_is_the_bottom_layer():
    for name, targets in graph().items():
        if name.startswith("artshield.models"):
            bad = sorted(t for t in targets if t.split(".")[1] in METHOD_PACKAGES)
            assert not bad, f"{name} imports the method package(s) {bad}"


def test_no_import_cycle():
    edges = graph()
    state, stack = {}, []

    def visit(m):
        state[m] = "open"
        stack.append(m)
        for t in sorted(edges[m]):
            if state.get(t) == "open":
                cycle = stack[stack.index(t):] + [t]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if t not in state:
                visit(t)
        stack.pop()
        state[m] = "done"

    for m in sorted(edges):
        if m not in state:
            visit(m)


def test_the_graph_sees_real_imports():
    """The two checks above would pass on an empty graph: make sure it holds edges it must hold."""
    g = graph()
    assert "artshield.models.diffusion" in g["artshield.protect.advdm"]
    assert "artshield.models.weights" in g["artshield.models.loader"]
    assert "artshield.mimic" in g["artshield.erase.attacks"]
    assert "artshield.erase.attacks" in g["artshield.erase.evaluate"]


@pytest.mark.parametrize("family", ["protect", "purify", "mimic", "erase", "audit"])
def test_static_method_tables_match_the_registries(family):
    from artshield import names
    from artshield.options import registry

    assert set(names.FAMILIES[family]) == set(registry(family))


def test_every_method_has_the_one_call_shape(tiny_bundle, tmp_path):
    import inspect

    from artshield.models.tiny import make_tiny_upscaler
    from artshield.options import make_method, registry

    required = {"noisy-upscale": {"upscaler": str(make_tiny_upscaler(tmp_path / "upscaler"))}}
    for family in ("protect", "purify", "mimic", "erase", "audit"):
        for name in registry(family):
            method = make_method(family, name, tiny_bundle, **required.get(name, {}))
            assert method.bundle is tiny_bundle and method.config is not None, (family, name)
            params = inspect.signature(method.run).parameters
            assert "generator" in params and "progress" in params, (family, name)
            assert method.total_steps(3) >= 1, (family, name)


def test_bench_presets_are_listed_for_the_parser():
    from artshield import names
    from artshield.bench.experiment import PRESETS

    assert set(names.BENCH_PRESETS) == {"model-quality", *PRESETS}


@pytest.mark.parametrize("code", [
    "import artshield",
    "import artshield.cli as c; c.build_parser()",
    "import artshield.cli as c\ntry:\n    c.main(['protect', '--help'])\nexcept SystemExit:\n    pass",
])
def test_importing_and_help_load_no_heavy_library(code):
    check = "import sys\nheavy = [m for m in ('torch', 'diffusers', 'transformers', 'peft') if m in sys.modules]\n" \
            "assert not heavy, heavy"
    p = subprocess.run([sys.executable, "-c", code + "\n" + check], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr[-2000:]


def test_public_names_stay_functions_after_their_subpackages_load():
    import artshield
    import artshield.protect.base  # noqa: F401  (binds the subpackage on the package, were it not guarded)
    from artshield.purify import PURIFIERS  # noqa: F401

    assert callable(artshield.protect) and callable(artshield.purify) and callable(artshield.generate)
    assert artshield.protect.__module__ == "artshield.protect"
