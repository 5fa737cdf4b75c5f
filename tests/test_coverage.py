"""The coverage map (tmemref.coverage): every section of the design document is mapped, and
every taught entry points at a real page, heading and module of this repository."""

from __future__ import annotations

from dataclasses import replace

import pytest

from tmemref import coverage
from tmemref.errors import InvariantError
from tmemref.coverage import ENTRIES, PLANNED, Entry


def test_the_map_of_the_real_book_is_sound():
    planned = coverage.planned()
    print(f"\n{len(planned)} planned entries (flip them to 'taught' when the chapter lands):")
    for chapter, title, section, item in planned:
        print(f"  {chapter} ({title}): {section} / {item or '(section)'}")
    landed = sorted({c for c, *_ in planned if (coverage.Path(__file__).parent.parent / c)
                     .is_file()})
    if landed:
        print(f"planned chapters that now exist (flip their entries): {landed}")
    assert coverage.problems() == []
    coverage.check()


def test_every_section_of_the_document_is_mapped():
    assert {e.section for e in ENTRIES} == set(coverage.DOC_SECTIONS)


def _taught(item="red-black trees (rbtree.c)"):
    return next(e for e in ENTRIES if e.item == item)


@pytest.mark.parametrize("broken, why", [
    (lambda e: replace(e, anchor="no-such-heading"), "has no heading"),
    (lambda e: replace(e, chapter="book/ch99_missing.md"), "is not a page of the book"),
    (lambda e: replace(e, module="tmemref.ds.rbtree:NoSuchTree"), "points at nothing"),
    (lambda e: replace(e, module="tmemref.no_such_module"), "points at nothing"),
    (lambda e: replace(e, module=None), "needs the module"),
    (lambda e: replace(e, section="Appendix Z"), "no such section"),
    (lambda e: replace(e, status=PLANNED, anchor=None, chapter="book/ch99.md"),
     "not a planned chapter"),
    (lambda e: replace(e, status=PLANNED, chapter="book/ch07_locks.md"), "names an anchor"),
    (lambda e: replace(e, status="maybe"), "unknown status"),
])
def test_a_wrong_entry_is_reported(broken, why):
    entries = [broken(e) if e == _taught() else e for e in ENTRIES]
    found = coverage.problems(entries)
    assert len(found) == 1 and why in found[0], found
    with pytest.raises(InvariantError, match=why):
        coverage.check(entries)


def test_an_unmapped_section_and_a_duplicate_are_reported():
    entries = [e for e in ENTRIES if e.section != "Known Issues"] + [_taught()]
    found = coverage.problems(entries)
    assert any("'Known Issues'" in p and "not mapped" in p for p in found)
    assert any("mapped twice" in p for p in found)


def test_rows_link_taught_entries_and_name_planned_chapters():
    rows = coverage.rows()
    assert len(rows) == len(ENTRIES)
    taught = [r for r, e in zip(rows, ENTRIES) if e.status == "taught"]
    assert all(r[2].startswith("[") and "](" in r[2] and "#" in r[2] for r in taught)
    planned = [r for r, e in zip(rows, ENTRIES) if e.status == PLANNED]
    assert all(r[2].startswith("planned: *") for r in planned)
    assert isinstance(ENTRIES[0], Entry)
