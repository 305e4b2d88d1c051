"""The front door: a short README, docs whose links lead somewhere, no word of our own set-up,
a citation, and the reading-path check a user can run.

Every check reads the committed text, so each fails on the edit that breaks it: a README grown
past 250 lines, a link to a moved or ignored file, a folder beside the checkout named in a page,
a CITATION.cff without the DOI, a reading-path script that no longer follows an import.
"""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
DOI = "10.3390/math11010058"
# what only makes sense on the machines this project was built on (issue 32's grep, as words)
FORBIDDEN = re.compile(r"(?<![\w$])(?:\.\./shared|lent|\$OUT|64 MiB|device machine)(?!\w)")
FENCE = re.compile(r"^(`{3,}|~{3,}).*?^\1", re.M | re.S)
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
SUMMARY = re.compile(r"^reading path: (\d+) modules \((\d+) linked from the README\), (\d+) lines, "
                     r"docstrings (\d+) %; fast/bench/testing/cli modules on it: (.+)$", re.M)


def page_id(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def relative_links(text: str) -> list[str]:
    """The link targets of a Markdown page that point into the repository: fenced code blocks
    left out (they are commands, not links), web and mail links and #anchors alone skipped."""
    text = FENCE.sub("", text)
    targets = []
    for target in LINK.findall(text):
        if re.match(r"[a-z][a-z0-9+.-]*:", target, re.I) or target.startswith("#"):
            continue
        targets.append(target.split("#", 1)[0])
    return targets


def ignored_by_git(paths: list[Path]) -> set[Path]:
    """Those of ``paths`` git ignores (a link to runs/ works on one machine only); none where
    git or the checkout is missing."""
    if not paths:
        return set()
    try:
        out = subprocess.run(["git", "check-ignore", "--stdin"], cwd=ROOT, text=True,
                             input="\n".join(str(p) for p in paths), capture_output=True).stdout
    except OSError:
        return set()
    return {Path(line) for line in out.splitlines() if line}


def broken_links(page: Path) -> list[str]:
    found = []
    resolved = []
    for target in relative_links(page.read_text(encoding="utf-8")):
        path = (page.parent / target).resolve()
        if not path.is_relative_to(ROOT):
            found.append(f"{target} (outside the repository)")
        elif not path.exists():
            found.append(f"{target} (no such file)")
        else:
            resolved.append(path)
    found += [f"{p.relative_to(ROOT)} (ignored by git: not in a clone)" for p in ignored_by_git(resolved)]
    return found


def test_the_readme_is_read_in_five_minutes():
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 250, f"README.md has {len(lines)} lines; move detail to docs/"


def test_there_are_pages_to_check():
    names = {p.name for p in PAGES}
    assert {"README.md", "index.md", "results.md", "readings.md", "performance.md",
            "reliability.md", "gpu.md", "import.md", "data.md"} <= names, sorted(names)


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_every_relative_link_leads_to_a_file_of_the_repository(page):
    assert not broken_links(page), f"{page_id(page)}: {broken_links(page)}"


def test_the_link_reader_sees_the_readme_links_and_skips_the_rest():
    links = relative_links((ROOT / "README.md").read_text(encoding="utf-8"))
    assert {"icsnn_np/backend.py", "docs/index.md", "tutorials/README.md", "CITATION.cff"} <= set(links)
    text = "[a](x.md#s) [b](#top) [c](https://e.org/y) ![d](fig.png)\n```\n[e](in_code.md)\n```\n"
    assert relative_links(text) == ["x.md", "fig.png"]


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_no_page_speaks_of_our_own_machines(page):
    hits = [f"{i}: {line.strip()}" for i, line in
            enumerate(page.read_text(encoding="utf-8").splitlines(), 1) if FORBIDDEN.search(line)]
    assert not hits, f"{page_id(page)}: {hits}"


def test_every_docs_page_is_listed_in_the_index():
    index = (ROOT / "docs" / "index.md").read_text(encoding="utf-8")
    missing = [p.name for p in PAGES if p.parent.name == "docs" and p.name != "index.md"
               and f"]({p.name})" not in index]
    assert not missing, f"docs/index.md does not list {missing}"


def test_the_citation_names_the_paper():
    cff = (ROOT / "CITATION.cff").read_text(encoding="utf-8")
    assert re.search(r"^cff-version: 1\.2\.0$", cff, re.M)
    assert re.search(rf"^\s+doi: {re.escape(DOI)}$", cff, re.M), "CITATION.cff lacks the paper's DOI"
    assert re.search(r"^preferred-citation:$", cff, re.M)
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert re.search(rf"doi\s*=\s*\{{{re.escape(DOI)}\}}", readme), "README has no BibTeX with the DOI"


def run_reading_path(root: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "scripts" / "reading_path.py"), str(root)],
                          capture_output=True, text=True, timeout=60)


def test_the_reading_path_script_measures_the_core_the_readme_states():
    run = run_reading_path(ROOT)
    assert run.returncode == 0, run.stderr
    summary = SUMMARY.search(run.stdout)
    assert summary, run.stdout
    section = (ROOT / "README.md").read_text(encoding="utf-8").split("## Read the code", 1)[1]
    stated = int(re.search(r"it is \*\*([\d,]+) lines\*\*", section).group(1).replace(",", ""))
    assert int(summary.group(3)) == stated, (summary.group(0), stated)
    assert summary.group(5) == "none", summary.group(0)


def test_the_reading_path_script_follows_imports_inside_functions(tmp_path):
    """A linked module that imports another only inside a function, which imports the fast
    engine at module level: all three are on the path, and the engine is named."""
    pkg = tmp_path / "icsnn_np"
    (pkg / "fast").mkdir(parents=True)
    (pkg / "a.py").write_text('"""A."""\n\n\ndef f():\n    from .b import g\n    return g\n')
    (pkg / "b.py").write_text("from icsnn_np.fast import engine\n\ng = engine\n")
    (pkg / "fast" / "__init__.py").write_text("")
    (pkg / "fast" / "engine.py").write_text("x = 1\n")
    (tmp_path / "README.md").write_text("# t\n\n## Read the code\n\n[`a.py`](icsnn_np/a.py)\n\n## Next\n")
    run = run_reading_path(tmp_path)
    assert run.returncode == 0, run.stderr
    summary = SUMMARY.search(run.stdout)
    assert summary, run.stdout
    assert summary.group(1, 2, 3) == ("4", "1", "10"), summary.group(0)   # a 6, b 3, fast 0, fast.engine 1
    assert summary.group(5) == "fast (fast), fast.engine (fast)", summary.group(0)


def test_the_reading_path_script_refuses_a_root_without_the_section(tmp_path):
    (tmp_path / "README.md").write_text("# nothing to read\n")
    run = run_reading_path(tmp_path)
    assert run.returncode == 2 and run.stderr.count("\n") == 1 and "Read the code" in run.stderr
