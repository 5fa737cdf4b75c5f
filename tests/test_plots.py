"""tmemref.viz.plots: overlapping plot lines are caught, and every chapter figure is checked."""

from __future__ import annotations

import re

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from test_book import entry_path, load_notebook, toc_entries  # noqa: E402
from tmemref.viz.plots import STYLES, check_figure, style  # noqa: E402


@pytest.fixture
def ax():
    fig, ax = plt.subplots()
    yield ax
    plt.close(fig)


def test_the_hidden_strided_curve_is_caught(ax):
    """The defect the helper was written for: 'strided, 256 buckets' drawn exactly on
    'strided, one tree', solid and dashed, same colour, no markers."""
    x = [64, 128, 256, 512]
    ax.plot(x, [10, 12, 14, 16], "-", color="C2", label="strided, one tree")
    ax.plot(x, [10, 12, 14, 16], "--", color="C2", label="strided, 256 buckets")
    with pytest.raises(ValueError, match="coincide on 4 of 4 points"):
        check_figure(ax.figure)


def test_distinct_markers_make_coinciding_lines_pass(ax):
    x = [64, 128, 256, 512]
    for i, label in enumerate(("one tree", "256 buckets")):
        ax.plot(x, [10, 12, 14, 16], label=label, **style(i))
    assert check_figure(ax.figure) is ax.figure


def test_same_marker_on_coinciding_lines_is_caught(ax):
    ax.plot([1, 2, 3], [1, 2, 3], "-o", label="a")
    ax.plot([1, 2, 3], [1, 2, 3.001], "--o", label="b")
    with pytest.raises(ValueError, match="markers"):
        check_figure(ax.figure)


def test_same_style_and_marker_is_caught_even_apart(ax):
    ax.plot([1, 2, 3], [1, 2, 3], "-o", label="a")
    ax.plot([1, 2, 3], [7, 8, 9], "-o", label="b")
    with pytest.raises(ValueError, match="share line style and marker"):
        check_figure(ax.figure)


def test_separate_lines_and_reference_lines_pass(ax):
    ax.plot([1, 2, 3], [1, 2, 3], "-", label="a")
    ax.plot([1, 2, 3], [7, 8, 9], "--", label="b")
    ax.axhline(5, ls=":", label="a bound")
    check_figure(ax.figure)


def test_styles_are_distinct_and_thinned():
    assert len(set(STYLES)) == len(STYLES)
    kw = style(3, points=100)
    assert kw["markevery"][1] >= 2 and kw["markerfacecolor"] == "none"
    with pytest.raises(ValueError):
        style(-1)


def _code_cells():
    for entry in toc_entries():
        nb = load_notebook(entry_path(entry))
        if nb is None:
            continue
        for cell in nb.cells:
            if cell.cell_type == "code":
                yield entry, cell.source


def test_every_chapter_figure_goes_through_the_check():
    """A cell that makes a matplotlib figure with lines must pass it to check_figure (directly,
    or through a chapter helper that does)."""
    makes_lines = re.compile(r"\.(plot|step)\(")
    unchecked = [(entry, src.splitlines()[0]) for entry, src in _code_cells()
                 if "plt.subplots(" in src and makes_lines.search(src)
                 and "check_figure(" not in src]
    assert not unchecked, f"figures drawn without check_figure: {unchecked}"
