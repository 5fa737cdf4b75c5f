"""Line plots whose series stay visible when they overlap.

Not a Xen concept: a rule for the book's matplotlib figures. Two series drawn with the same line
style and marker cannot be told apart where their values coincide, and the one drawn later hides
the other (a chapter once drew "strided, 256 buckets" exactly on top of "strided, one tree").
Every chapter figure with lines goes through :func:`check_figure`; :func:`style` hands out
styles that pass it.

Rules :func:`check_figure` enforces, per axes (a *series* is a line with a legend label; lines
whose label starts with ``_`` are decorations, such as a second line that shares a legend entry):

1. No two series share both line style and marker.
2. Any two lines of three or more points that coincide on at least half of their common x values
   (within 0.5 % of the y range) have different, visible markers, so both remain visible where
   one lies on the other. Hollow markers (:func:`style` draws them) show the one underneath.

>>> import matplotlib; matplotlib.use("Agg")
>>> import matplotlib.pyplot as plt
>>> fig, ax = plt.subplots()
>>> _ = ax.plot([1, 2, 3], [1, 2, 3], "-", label="one tree")
>>> _ = ax.plot([1, 2, 3], [1, 2, 3], "--", label="256 buckets")
>>> check_figure(fig)
Traceback (most recent call last):
...
ValueError: axes 0: 'one tree' and '256 buckets' coincide on 3 of 3 points but their markers ('', '') do not tell them apart
>>> for i, line in enumerate(ax.lines):
...     _ = line.set(**style(i))
>>> check_figure(fig) is fig
True
>>> plt.close(fig)
"""
from __future__ import annotations

import numpy as np

#: (line style, marker) pairs handed out by :func:`style`, all distinct.
STYLES = (("-", "o"), ("--", "s"), (":", "^"), ("-.", "D"), ("-", "v"), ("--", "P"),
          (":", "X"), ("-.", "*"), ("-", "h"), ("--", "<"), (":", ">"), ("-.", "p"))

_NO_MARKER = ("", "None", "none", " ", None)


def style(i: int, *, points: int | None = None) -> dict:
    """Keyword arguments for ``ax.plot`` / ``Line2D.set`` giving series ``i`` the ``i``-th
    distinct (line style, hollow marker) pair. With ``points`` (the series' length) markers are
    thinned to about a dozen, offset per series so coinciding series do not stack them. O(1).

    >>> style(1)["linestyle"], style(1)["marker"], style(13)["marker"]
    ('--', 's', 's')
    """
    if i < 0:
        raise ValueError("style index must be >= 0")
    linestyle, marker = STYLES[i % len(STYLES)]
    kw = {"linestyle": linestyle, "marker": marker, "markerfacecolor": "none",
          "markersize": 6 + (i % 3)}
    if points is not None and points > 14:
        step = max(2, points // 12)
        kw["markevery"] = ((i * max(1, step // 3)) % step, step)
    return kw


def _key(line) -> tuple:
    marker = line.get_marker()
    return (line.get_linestyle(), "" if marker in _NO_MARKER else str(marker))


def _coincide(a, b, tol: float) -> tuple[int, int]:
    """(points where a and b are equal within tol, common x values)."""
    xa, ya = (np.asarray(v, dtype=float) for v in a.get_data())
    xb, yb = (np.asarray(v, dtype=float) for v in b.get_data())
    common, ia, ib = np.intersect1d(xa, xb, return_indices=True)
    if common.size == 0:
        return 0, 0
    same = np.abs(ya[ia] - yb[ib]) <= tol
    return int(same.sum()), int(common.size)


def check_figure(fig):
    """Raise ``ValueError`` naming the first pair of lines in any axes of ``fig`` that breaks a
    rule of the module docstring; return ``fig`` otherwise. O(lines² × points) per axes."""
    for n, ax in enumerate(fig.axes):
        lines = [ln for ln in ax.get_lines() if len(ln.get_xdata()) > 0]
        series = [ln for ln in lines if not ln.get_label().startswith("_")]
        seen = {}
        for ln in series:
            k = _key(ln)
            if k in seen:
                raise ValueError(f"axes {n}: {seen[k]!r} and {ln.get_label()!r} share line style "
                                 f"and marker {k}")
            seen[k] = ln.get_label()
        ys = [np.asarray(ln.get_ydata(), dtype=float) for ln in lines]
        finite = np.concatenate([y[np.isfinite(y)] for y in ys]) if ys else np.array([])
        tol = 0.005 * (np.ptp(finite) if finite.size else 0.0) + 1e-12
        for i, a in enumerate(lines):
            for b in lines[i + 1:]:
                if min(len(a.get_xdata()), len(b.get_xdata())) < 3:
                    continue
                same, common = _coincide(a, b, tol)
                if common < 3 or 2 * same < common:
                    continue
                ma, mb = _key(a)[1], _key(b)[1]
                if not ma or not mb or ma == mb:
                    raise ValueError(
                        f"axes {n}: {a.get_label()!r} and {b.get_label()!r} coincide on {same} of "
                        f"{common} points but their markers ({ma!r}, {mb!r}) do not tell them "
                        "apart")
    return fig
