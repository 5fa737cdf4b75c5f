"""Real data for experiments: the pages of files on this machine, as a page cache holds them.

A file of ``n`` bytes is ``ceil(n / 4096)`` pages, the last one zero-padded (what a guest's
page cache holds, and so what cleancache hands tmem). Files are visited in sorted path order
(in each directory its files, then its subdirectories), so the same trees give the same pages
in the same order on every run.

* :func:`file_pages` — the pages of the first files of some trees;
* :func:`spread_pages` — a sample spread over whole trees: every k-th file of each tree, so
  that text, documents, programs and libraries all appear.

>>> pages = list(file_pages(["/usr/lib/python3*"], limit=3))
>>> len(pages), {len(p) for p in pages}
(3, {4096})
>>> s = spread_pages(["/usr/lib/python3*"], files_per_root=5, per_file=2)
>>> 5 <= len(s) <= 10, s == spread_pages(["/usr/lib/python3*"], files_per_root=5, per_file=2)
(True, True)
"""
from __future__ import annotations

import glob
import os

from ..host.frames import PAGE_SIZE

#: Trees with a mix of text and binary files on any Debian-like system.
DEFAULT_ROOTS = ("/usr/lib/python3*", "/usr/share")
#: :func:`spread_pages`'s trees: Python's library (text), documents and data, programs, and
#: shared libraries.
SPREAD_ROOTS = ("/usr/lib/python3*", "/usr/share", "/usr/bin", "/usr/lib/x86_64-linux-gnu")


def _walk(top):
    """Regular files under directory ``top`` (no symbolic links followed or listed), sorted:
    a directory's files first, then its subdirectories."""
    try:
        entries = sorted(os.scandir(top), key=lambda e: e.name)
    except OSError:
        return
    subdirs = []
    for e in entries:
        try:
            if e.is_dir(follow_symlinks=False):
                subdirs.append(e.path)
            elif e.is_file(follow_symlinks=False):
                yield e.path
        except OSError:
            continue
    for d in subdirs:
        yield from _walk(d)


def _files(roots):
    for pattern in roots:
        for root in sorted(glob.glob(pattern)):
            if os.path.isfile(root) and not os.path.islink(root):
                yield root
            elif not os.path.islink(root):
                yield from _walk(root)


def _read_pages(path, per_file):
    """Yield up to ``per_file`` (None: all) zero-padded pages from the start of ``path``,
    stopping quietly where it cannot be read."""
    try:
        with open(path, "rb") as fh:
            taken = 0
            while per_file is None or taken < per_file:
                page = fh.read(PAGE_SIZE)
                if not page:
                    break
                yield page.ljust(PAGE_SIZE, b"\0")
                taken += 1
    except OSError:
        return


def file_page_handles(roots=DEFAULT_ROOTS, *, limit: int, per_file: int | None = None):
    """Yield up to ``limit`` triples ``(file number, page index, page)`` of the regular files
    under ``roots``, as :func:`file_pages` does, with where each page came from: files are
    numbered 0, 1, ... in the order their first page is yielded, and a page's index is its
    place in its file — the object and index a cleancache put names it by. O(pages).

    >>> [(f, i) for f, i, _ in file_page_handles(["/usr/lib/python3*"], limit=3, per_file=2)]
    [(0, 0), (0, 1), (1, 0)]
    """
    if limit <= 0:
        return
    n = files = 0
    for path in _files(roots):
        taken = 0
        for page in _read_pages(path, per_file):
            yield files, taken, page
            taken += 1
            n += 1
            if n >= limit:
                return
        files += taken > 0


def file_pages(roots=DEFAULT_ROOTS, *, limit: int, per_file: int | None = None):
    """Yield up to ``limit`` pages (``bytes`` of 4096) of the regular files under ``roots``
    (glob patterns; symbolic links and unreadable files skipped), at most ``per_file`` from
    each file (its first ones). O(pages)."""
    for _, _, page in file_page_handles(roots, limit=limit, per_file=per_file):
        yield page


def spread_pages(roots=SPREAD_ROOTS, *, files_per_root: int, per_file: int) -> list:
    """A deterministic sample spread over whole trees: for each root (a glob pattern), the
    regular files under it in sorted order are listed, every k-th is taken (k chosen so that
    about ``files_per_root`` are taken, starting with the first), and up to ``per_file`` pages
    are read from the start of each (empty or unreadable files give none). Returns the pages,
    root by root. O(files listed + pages read)."""
    if files_per_root <= 0 or per_file <= 0:
        raise ValueError("files_per_root and per_file must be positive")
    pages = []
    for root in roots:
        paths = list(_files([root]))
        step = max(1, len(paths) // files_per_root)
        for path in paths[::step][:files_per_root]:
            pages.extend(_read_pages(path, per_file))
    return pages
