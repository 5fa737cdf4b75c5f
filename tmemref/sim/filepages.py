"""Real data for experiments: the pages of files on this machine, as a page cache holds them.

A file of ``n`` bytes is ``ceil(n / 4096)`` pages, the last one zero-padded (what a guest's
page cache holds, and so what cleancache hands tmem). Files are visited in sorted path order,
so the same trees give the same pages in the same order on every run.

>>> pages = list(file_pages(["/usr/lib/python3*"], limit=3))
>>> len(pages), {len(p) for p in pages}
(3, {4096})
"""
from __future__ import annotations

import glob
import os

from ..host.frames import PAGE_SIZE

#: Trees with a mix of text and binary files on any Debian-like system.
DEFAULT_ROOTS = ("/usr/lib/python3*", "/usr/share")


def _files(roots):
    for pattern in roots:
        for root in sorted(glob.glob(pattern)):
            if os.path.isfile(root) and not os.path.islink(root):
                yield root
                continue
            for dirpath, dirnames, filenames in os.walk(root):
                dirnames.sort()
                for name in sorted(filenames):
                    path = os.path.join(dirpath, name)
                    if os.path.isfile(path) and not os.path.islink(path):
                        yield path


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
        try:
            with open(path, "rb") as fh:
                while per_file is None or taken < per_file:
                    page = fh.read(PAGE_SIZE)
                    if not page:
                        break
                    yield files, taken, page.ljust(PAGE_SIZE, b"\0")
                    taken += 1
                    n += 1
                    if n >= limit:
                        return
        except OSError:
            pass
        files += taken > 0


def file_pages(roots=DEFAULT_ROOTS, *, limit: int, per_file: int | None = None):
    """Yield up to ``limit`` pages (``bytes`` of 4096) of the regular files under ``roots``
    (glob patterns; symbolic links and unreadable files skipped), at most ``per_file`` from
    each file (its first ones). O(pages)."""
    for _, _, page in file_page_handles(roots, limit=limit, per_file=per_file):
        yield page
