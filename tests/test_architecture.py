"""The package's architecture, checked: the core is the paper and imports nothing else; no
import circle anywhere; every wing imports only what it builds on.

Imports are read from the source (every ``import`` and ``from`` statement, at module level
or inside a function), not by importing, so a lazy import inside a function counts.

    core (the package's top level)  <-  io, beyond, fast  <-  runs  <-  cli, bench
"""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "icsnn_np"
# `python -m icsnn_np.demo` shims, `python -m icsnn_np`, the version: the package's doors
ENTRY_POINTS = {"demo", "train", "reproduce", "compare", "__main__", "_version", "_moved"}
# what each part may import, besides itself and the core: files know layers, not methods (io
# imports no beyond); the testing aids are plugged in from outside (nothing imports testing)
ALLOWED = {"io": set(), "beyond": set(), "fast": set(), "runs": {"io", "beyond", "fast"},
           "cli": {"io", "beyond", "fast", "runs"},
           "bench": {"io", "fast", "runs", "cli"}, "testing": set()}


def modules() -> dict:
    """{dotted name below icsnn_np: path} for every module of the package."""
    out = {}
    for p in PKG.rglob("*.py"):
        rel = p.relative_to(PKG).with_suffix("")
        parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
        out[".".join(parts)] = p
    return out


MODULES = modules()


def imports_of(name: str) -> set:
    """The package modules ``name`` imports anywhere in its source (absolute and relative)."""
    path = MODULES[name]
    here = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = here[:len(here) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            elif node.module and node.module.split(".")[0] == "icsnn_np":
                mod = node.module[len("icsnn_np"):].lstrip(".")
            else:
                continue
            for a in node.names:
                full = f"{mod}.{a.name}" if mod else a.name
                found.add(full if full in MODULES else mod)
        elif isinstance(node, ast.Import):
            found |= {a.name[len("icsnn_np."):] for a in node.names if a.name.startswith("icsnn_np.")}
    return {m for m in found if m in MODULES and m != name}


def part(name: str) -> str:
    top = name.split(".")[0]
    return "core" if "." not in name and top not in ALLOWED and top not in ENTRY_POINTS else top


CORE = sorted(m for m in MODULES if part(m) == "core" and m != "")


def test_the_core_is_the_expected_set_of_files():
    assert CORE == ["backend", "checks", "convert", "init_mem", "layers", "models", "module",
                    "neurons", "optim", "simulate", "variants"]


@pytest.mark.parametrize("name", CORE)
def test_the_core_imports_only_the_core(name):
    outside = {m for m in imports_of(name) if part(m) != "core" and m != ""}
    assert not outside, f"{name} imports {sorted(outside)}"


@pytest.mark.parametrize("name", sorted(m for m in MODULES if part(m) in ALLOWED))
def test_each_wing_imports_only_what_it_builds_on(name):
    mine = part(name)
    bad = {m for m in imports_of(name)
           if part(m) not in {"core", mine} | ALLOWED[mine] and m != ""}
    assert not bad, f"{name} ({mine}) imports {sorted(bad)}"


def test_no_import_circle():
    """Depth-first search over the import graph (module- and function-level imports)."""
    graph = {m: imports_of(m) for m in MODULES}
    state, stack = {}, []

    def visit(m):
        state[m] = "open"
        stack.append(m)
        for n in sorted(graph[m]):
            if state.get(n) == "open":
                raise AssertionError("import circle: " + " -> ".join(stack[stack.index(n):] + [n]))
            if n not in state:
                visit(n)
        stack.pop()
        state[m] = "done"

    for m in sorted(graph):
        if m not in state:
            visit(m)


def test_the_neuron_and_the_simulation_carry_no_pre_run_machinery():
    for f in ("neurons.py", "simulate.py"):
        text = (PKG / f).read_text()
        assert not re.search(r"prerun|reseed|gate|pending", text), f


def test_the_core_is_short_and_its_docstrings_concise():
    lines = docs = 0
    for name in CORE:
        src = MODULES[name].read_text()
        lines += len(src.splitlines())
        for node in ast.walk(ast.parse(src)):
            if isinstance(node, (ast.Module, ast.FunctionDef, ast.ClassDef)) and \
                    ast.get_docstring(node, clean=False) is not None:
                docs += node.body[0].end_lineno - node.body[0].lineno + 1
    assert lines <= 1200 and docs <= 0.25 * lines, (lines, docs)


def test_no_module_is_over_400_lines():
    long = {m: n for m, p in MODULES.items() if (n := len(p.read_text().splitlines())) > 400}
    assert not long, long


def test_the_readme_table_gives_the_core_as_it_is():
    """The README's "Read the code" table lists every core file with its true line count,
    and the total it states is their sum (the number a reader can check)."""
    readme = (PKG.parent / "README.md").read_text()
    section = readme.split("## Read the code", 1)[1].split("\n## ", 1)[0]
    rows = dict(re.findall(r"\| \[`(\w+)\.py`\]\(icsnn_np/\w+\.py\) \| (\d+) \|", section))
    assert sorted(rows) == CORE
    actual = {m: len(MODULES[m].read_text().splitlines()) for m in CORE}
    assert {m: int(n) for m, n in rows.items()} == actual
    total = int(re.search(r"it is \*\*([\d,]+) lines\*\*", section).group(1).replace(",", ""))
    assert total == sum(actual.values())


def test_importing_the_package_loads_no_wing():
    """``import icsnn_np`` (its front door: the version, the lazy API) loads nothing of the
    engine, the commands, the benchmarks or the testing aids; a name of the API loads its own
    module on first use."""
    import subprocess
    import sys
    code = ("import icsnn_np, sys; v = icsnn_np.__version__; "
            "bad = [m for m in sys.modules if m.startswith(('icsnn_np.fast', 'icsnn_np.cli', "
            "'icsnn_np.bench', 'icsnn_np.testing', 'icsnn_np.runs'))]; "
            "assert not bad, bad; icsnn_np.convert; assert 'icsnn_np.convert' in sys.modules; "
            "print(v)")
    out = subprocess.run([sys.executable, "-c", code], cwd=PKG.parent, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert re.fullmatch(r"\d+\.\d+\.\d+\S*\n", out.stdout)


def test_the_command_lines_are_thin():
    """Each command line parses, calls runs/, prints: at most 150 lines; nothing but the
    command lines imports them (tutorials and runs/ neither)."""
    for p in sorted((PKG / "cli").glob("*.py")):
        assert len(p.read_text().splitlines()) <= 150, p.name
    for folder in (PKG / "runs", PKG.parent / "tutorials"):
        for p in folder.rglob("*.py"):
            assert not re.search(r"from icsnn_np\.cli|from \.+cli\b|import icsnn_np\.cli", p.read_text()), p


def test_the_core_takes_no_engine_arguments_and_dispatches_plainly():
    """The core's functions take no sim / sim_kw / t0 / Tc (the engine is an object the SNN
    carries), and the variants are plain functions (no table of lambdas)."""
    for name in CORE:
        text = MODULES[name].read_text()
        assert not re.search(r"sim_kw|\*\*sim|\bsim=|\bt0\b|\bTc\b", text), name
    assert "lambda" not in MODULES["variants"].read_text()
