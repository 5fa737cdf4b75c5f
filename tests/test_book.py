"""The book: every chapter in _toc.yml executes, and _toc.yml and book/ list the same pages.

Chapters are MyST Markdown notebooks. Each is read with myst-nb's own reader (the one the book
build uses) and executed with plain nbclient, with the chapter's folder as the working directory
and the same per-cell timeout and gates as ``_config.yml``: a cell that raises fails the test, and
so does a cell that writes to stderr (the build turns stderr into a warning, and builds with -W).
This is the fast check; ``tests/test_browser.py`` builds the real HTML and opens it in a browser.
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest
import yaml
from myst_nb.core.read import is_myst_markdown_notebook, read_myst_markdown_notebook
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

ROOT = Path(__file__).resolve().parent.parent
TOC = ROOT / "_toc.yml"
BOOK = ROOT / "book"
CELL_TIMEOUT = 120  # seconds, as execute.timeout in _config.yml
SUFFIXES = (".md", ".ipynb")


def toc_entries(toc_path: Path = TOC) -> list[str]:
    """Every page of the toc, as written there (a path from the root, usually without suffix).

    The root comes first, then parts, chapters and sections in reading order.
    """
    toc = yaml.safe_load(toc_path.read_text())
    entries = [toc["root"]]

    def walk(node):
        if isinstance(node, dict):
            if "file" in node:
                entries.append(node["file"])
            for key in ("parts", "chapters", "sections"):
                for child in node.get(key) or []:
                    walk(child)

    walk(toc)
    return entries


def entry_path(entry: str) -> Path | None:
    """The source file of a toc entry, or None if there is none."""
    given = ROOT / entry
    if given.suffix in SUFFIXES:
        return given if given.is_file() else None
    for suffix in SUFFIXES:
        candidate = given.with_name(given.name + suffix)
        if candidate.is_file():
            return candidate
    return None


def book_sources() -> list[Path]:
    """Every page source under book/, except in folders named with a leading _ or . (assets)."""
    found = []
    for path in sorted(BOOK.rglob("*")):
        rel = path.relative_to(BOOK)
        if path.suffix not in SUFFIXES or not path.is_file():
            continue
        if any(part.startswith(("_", ".")) for part in rel.parts[:-1]):
            continue
        found.append(path)
    return found


def load_notebook(path: Path) -> nbformat.NotebookNode | None:
    """The page as a notebook, or None if it is plain Markdown (no jupytext/mystnb header)."""
    if path.suffix == ".ipynb":
        return nbformat.read(path, as_version=4)
    text = path.read_text()
    if not is_myst_markdown_notebook(text):
        return None
    return read_myst_markdown_notebook(text, path=path)


# -- (b) the toc and book/ agree ---------------------------------------------------------------


def test_every_toc_entry_exists():
    missing = [entry for entry in toc_entries() if entry_path(entry) is None]
    assert not missing, f"_toc.yml lists pages with no .md/.ipynb file: {missing}"


def test_every_book_page_is_in_the_toc():
    listed = {entry_path(entry) for entry in toc_entries()} - {None}
    orphans = [str(p.relative_to(ROOT)) for p in book_sources() if p not in listed]
    assert not orphans, (
        f"pages under book/ missing from _toc.yml (the build skips them): {orphans}"
    )


def test_toc_lists_no_page_twice():
    entries = [entry_path(e) or e for e in toc_entries()]
    duplicates = sorted({str(e) for e in entries if entries.count(e) > 1})
    assert not duplicates, f"_toc.yml lists a page more than once: {duplicates}"


# -- (a) every chapter executes ------------------------------------------------------------------


@pytest.mark.parametrize("entry", toc_entries())
def test_chapter_executes(entry):
    path = entry_path(entry)
    assert path is not None, f"{entry}: listed in _toc.yml but no file"
    nb = load_notebook(path)
    if nb is None:
        # Plain Markdown page: nothing to run, but a code cell here would silently never run.
        text = path.read_text()
        assert "{code-cell}" not in text, (
            f"{path.name} has code cells but no jupytext/kernelspec header, so they never run"
        )
        return
    kernel = nb.metadata.get("kernelspec", {}).get("name")
    assert kernel == "python3", f"{path.name}: kernelspec name is {kernel!r}, expected 'python3'"
    client = NotebookClient(
        nb,
        timeout=CELL_TIMEOUT,
        kernel_name=kernel,
        allow_errors=False,
        resources={"metadata": {"path": str(path.parent)}},  # cwd = the chapter's folder
    )
    try:
        client.execute()
    except CellExecutionError as exc:
        pytest.fail(f"{path.relative_to(ROOT)} failed to execute:\n{exc}", pytrace=False)
    stderr = [
        (i, "".join(out.get("text", "")))
        for i, cell in enumerate(nb.cells)
        if cell.cell_type == "code"
        for out in cell.get("outputs", [])
        if out.get("output_type") == "stream" and out.get("name") == "stderr"
    ]
    assert not stderr, (
        f"{path.relative_to(ROOT)}: cells wrote to stderr (a warning in the -W build): {stderr}"
    )


# -- (c) every chapter has the same shape, and speaks only to readers ----------------------------

#: Pages that teach: each opens with its question, ends with a summary and its references, and
#: has an exercise that asks the reader to build or change something.
TEACHING_PAGES = ("book/ch01_why_tmem", "book/ch02_guest_view", "book/ch03_web",
                  "book/ch04_trees", "book/ch05_eviction", "book/ch06_control",
                  "book/ch07_locks", "book/ch08_dedup", "book/ch12_context", "book/oracle",
                  "book/architecture", "book/fidelity")
#: Words that belong to how the project is run, not to the book.
PROJECT_LANGUAGE = re.compile(r"\bthe seed\b|\bseed's\b|house style|facts §|§\s*\d|DESIGN\.md"
                              r"|starting map|not a cage", re.I)


def _prose(path: Path) -> str:
    """A page without its code cells."""
    return re.sub(r"^```\{code-cell\}.*?^```\s*$", "", path.read_text(), flags=re.S | re.M)


@pytest.mark.parametrize("entry", TEACHING_PAGES)
def test_chapter_shape(entry):
    path = entry_path(entry)
    assert entry in toc_entries(), f"{entry} is not in the toc"
    text = path.read_text()
    body = text.split("\n# ", 1)[1]                     # after the title
    first_block = body.split("\n", 2)[2].lstrip()
    assert first_block.startswith(":::{admonition} The question"), (
        f"{path.name}: the first thing after the title must be its question (its crux)")
    headings = re.findall(r"^## (.+)$", _prose(path), re.M)
    assert headings[-2:] == ["Summary", "References"], f"{path.name}: ends with {headings[-2:]}"
    assert "{bibliography}\n:filter: docname in docnames" in text.rsplit("## References", 1)[1]
    assert re.search(r"\{cite:[pt]\}`", text), f"{path.name} cites nothing"
    build = re.search(r"^\*\*(\d+)\. (Build|Change) it\.\*\*", text, re.M)
    assert build, f"{path.name}: no exercise asks the reader to build or change something"
    after = text[build.end():]
    solution = re.search(r"```\{code-cell\} ipython3\n:tags: \[hide-cell\]\n(.*?)```", after,
                         re.S)
    assert solution and "tmemref.sim.solutions" in solution.group(1), (
        f"{path.name}: the build exercise needs a hidden cell using tmemref.sim.solutions")


@pytest.mark.parametrize("entry", toc_entries())
def test_pages_speak_only_to_readers(entry):
    path = entry_path(entry)
    found = PROJECT_LANGUAGE.findall(_prose(path))
    assert not found, f"{path.name} talks about how the project is run: {found}"


def test_every_glossary_term_used_in_a_chapter_exists():
    glossary = (BOOK / "glossary.md").read_text()
    terms = {t.strip().lower() for t in re.findall(r"^(\S[^\n]*)\n  \S", glossary.split(
        ":::{glossary}", 1)[1].split("\n:::", 1)[0], re.M)}
    used = set()
    for path in book_sources():
        for m in re.finditer(r"\{term\}`([^`]+)`", path.read_text()):
            inner = m.group(1)
            target = re.search(r"<([^>]+)>$", inner)
            used.add((target.group(1) if target else inner).strip().lower())
    assert len(used) >= 25, f"only {len(used)} glossary terms are linked from the chapters"
    assert used <= terms, f"{{term}} roles without a glossary entry: {sorted(used - terms)}"
