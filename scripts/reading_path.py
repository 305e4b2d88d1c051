"""How much a reader must read: the core files the README links, and everything they import.

    python scripts/reading_path.py [REPO_ROOT]        # default: the checkout this script is in

The README's "## Read the code" section links the core files, ``(icsnn_np/<name>.py)``. A
reader who opens them meets their imports of the package, at module level or inside a
function; this follows every such import (parsed with ``ast``, never executed) until nothing
new turns up. It prints one line per module (lines, docstring lines and their share; ``*``
marks a file the README links) and a summary: how many modules and lines the reading path
holds, the docstring share, and which modules on it belong to the fast engine, the benchmark,
the testing aids or the command lines (``fast/``, ``bench/``, ``testing/``, ``cli/``, or a
module that parses arguments). A core that reads as the paper and nothing else ends with
"... on it: none". It measures and does not judge: exit code 0, or 2 with one line when the
root holds no README with that section.
"""
from __future__ import annotations

import argparse
import ast
import re
import sys
from pathlib import Path

SECTION = "## Read the code"
LINK = re.compile(r"\(icsnn_np/([\w/]+)\.py\)")
WINGS = ("fast", "bench", "testing", "cli")          # folders that are not the paper
PARSES_ARGS = re.compile(r"^\s*(?:import argparse|from argparse import)|ArgumentParser\(|^def main\(",
                         re.M)


def linked_modules(readme: str) -> list[str]:
    """Dotted names (below icsnn_np) of the files the "Read the code" section links."""
    section = readme.split(SECTION, 1)[1].split("\n## ", 1)[0]
    return sorted({rel.replace("/", ".").removesuffix(".__init__") for rel in LINK.findall(section)})


def source_of(pkg: Path, module: str) -> Path | None:
    """The file that defines ``icsnn_np.<module>``: a .py file or a package's __init__.py."""
    base = pkg.joinpath(*module.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def package_imports(pkg: Path, module: str, tree: ast.AST, is_package: bool) -> set[str]:
    """Every icsnn_np module that ``tree`` imports, anywhere in the file (functions included).

    ``from .a import b`` names ``a``, and ``a.b`` too when b is a module itself."""
    here = module.split(".") if is_package else module.split(".")[:-1]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name.removeprefix("icsnn_np.") for a in node.names
                      if a.name.startswith("icsnn_np.")}
        elif isinstance(node, ast.ImportFrom):
            if node.level:                                   # relative: from the file's package
                parts = here[:len(here) - node.level + 1] + (node.module.split(".") if node.module else [])
            elif node.module == "icsnn_np" or (node.module or "").startswith("icsnn_np."):
                parts = node.module.split(".")[1:]
            else:
                continue                                     # numpy, the standard library, ...
            base = ".".join(parts)
            if base:
                found.add(base)
            found |= {f"{base}.{a.name}" if base else a.name for a in node.names}
    return {m for m in found if source_of(pkg, m)}


def docstring_lines(tree: ast.AST) -> int:
    """Lines taken by the docstrings of the module, its classes and its functions."""
    n = 0
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) \
                and ast.get_docstring(node, clean=False) is not None:
            first = node.body[0]
            n += first.end_lineno - first.lineno + 1
    return n


def kind_of(module: str, text: str) -> str:
    """'fast', 'bench', 'testing' or 'cli' for a module outside the paper, else ''."""
    if module.split(".")[0] in WINGS:
        return module.split(".")[0]
    return "cli" if PARSES_ARGS.search(text) else ""


def reading_path(root: Path) -> tuple[list[str], dict[str, tuple[int, int, str]]]:
    """The linked modules, and {module: (lines, docstring lines, kind)} for the whole path."""
    pkg = root / "icsnn_np"
    start = linked_modules((root / "README.md").read_text(encoding="utf-8"))
    found: dict[str, tuple[int, int, str]] = {}
    todo = [m for m in start if source_of(pkg, m)]
    while todo:
        module = todo.pop()
        if module in found:
            continue
        path = source_of(pkg, module)
        text = path.read_text(encoding="utf-8")
        tree = ast.parse(text, filename=str(path))
        found[module] = (len(text.splitlines()), docstring_lines(tree), kind_of(module, text))
        todo += sorted(package_imports(pkg, module, tree, path.name == "__init__.py") - found.keys())
    return start, found


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("root", nargs="?", default=str(Path(__file__).resolve().parents[1]),
                   help="the repository root (default: the checkout holding this script)")
    root = Path(p.parse_args(argv).root)
    readme = root / "README.md"
    if not readme.is_file() or SECTION not in readme.read_text(encoding="utf-8"):
        print(f"error: {readme} has no '{SECTION}' section to start from", file=sys.stderr)
        return 2
    start, found = reading_path(root)
    for module in sorted(found):
        lines, docs, kind = found[module]
        mark = "*" if module in start else " "
        print(f"{mark} {module:24s} {lines:5d} lines  {docs:4d} docstring lines "
              f"({100 * docs / max(lines, 1):3.0f} %)  {kind}".rstrip())
    total = sum(v[0] for v in found.values())
    docs = sum(v[1] for v in found.values())
    wings = [f"{m} ({k})" for m, (_, _, k) in sorted(found.items()) if k]
    print(f"reading path: {len(found)} modules ({len(start)} linked from the README), {total} lines, "
          f"docstrings {100 * docs / max(total, 1):.0f} %; fast/bench/testing/cli modules on it: "
          f"{', '.join(wings) if wings else 'none'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
