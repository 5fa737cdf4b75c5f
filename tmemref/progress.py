"""Progress bars for long runs (replays, experiment sweeps, benchmarks): on a terminal only.

:func:`progress` wraps an iterable in a ``tqdm`` bar when its output stream (stderr by default)
is a terminal and ``tqdm`` is installed; otherwise — in a pipe, a log, a test, a notebook cell
run by the book build — it returns the iterable itself, untouched and silent. The environment
variable ``TMEMREF_PROGRESS`` overrides the choice (``1``: always, ``0``: never).

>>> list(progress(range(3), desc="quiet here"))         # doctest output is not a terminal
[0, 1, 2]
"""
from __future__ import annotations

import os
import sys
from typing import Iterable, Optional, TextIO, TypeVar

T = TypeVar("T")


def wanted(file: Optional[TextIO] = None) -> bool:
    """Whether a bar would be shown on ``file`` (default stderr): ``TMEMREF_PROGRESS`` if set
    to 0 or 1, else whether ``file`` is a terminal. O(1)."""
    forced = os.environ.get("TMEMREF_PROGRESS", "")
    if forced in ("0", "1"):
        return forced == "1"
    file = sys.stderr if file is None else file
    isatty = getattr(file, "isatty", None)
    return bool(isatty and isatty())


def progress(iterable: Iterable[T], *, total: Optional[int] = None, desc: Optional[str] = None,
             unit: str = "it", file: Optional[TextIO] = None) -> Iterable[T]:
    """``iterable`` with a ``tqdm`` bar on ``file`` (default stderr) when :func:`wanted`, else
    ``iterable`` itself. ``tqdm`` is imported only then; without it there is no bar. O(1)
    per item on top of the iteration."""
    if not wanted(file):
        return iterable
    try:
        from tqdm import tqdm
    except ImportError:
        return iterable
    return tqdm(iterable, total=total, desc=desc, unit=unit, file=file or sys.stderr,
                leave=False, dynamic_ncols=True)
