"""Where every frame of host memory is: a free/used map.

Each frame is in exactly one state (:mod:`tmemref.host.frames`); this module splits tmem's
frames further by what they hold, from the structures:

========================================  ==================================================
``heap (free)``                           on the heap, scrubbed
``tmem page list (free)``                 freed by tmem, unscrubbed, reused by tmem only
``tmem ephemeral data``                   the frame of an ephemeral pgp (billed to nobody)
``tmem ephemeral metadata``               a frame of the global sub-page pool: objects, pgps,
                                          radix nodes, compressed ephemeral pages
``d1 own memory``                         domain 1's own memory
``d1 persistent tmem data``               the frame of a persistent pgp, billed to domain 1
``d1 persistent tmem metadata``           a frame of client 1's billed sub-page pool
========================================  ==================================================

:func:`frame_states` gives the per-frame codes (numpy), :func:`frame_counts` the totals,
:func:`frame_map` a compact graphviz grid, :func:`frame_map_figure` the same as a matplotlib
figure (better for thousands of frames).

>>> from tmemref import Host
>>> h = Host(pages=64, min_free_pages=16); _ = h.create_domain(1, pages=5)
>>> frame_counts(h)
{'heap (free)': 59, 'd1 own memory': 5}
"""
from __future__ import annotations

import colorsys

import numpy as np

from ._common import esc, html_label, new_digraph

FIXED = ("heap (free)", "tmem page list (free)", "tmem ephemeral data", "tmem ephemeral metadata")
FIXED_COLOURS = ("#ffffff", "#c8c8c8", "#f2c14e", "#a8741a")
_HUES = (0.58, 0.08, 0.33, 0.85, 0.0, 0.72, 0.47, 0.15)   # one per domain (cycled)


def _domain_colours(domid: int):
    """Light / medium / dark shades of a domain's hue: own, pers data, pers meta (the hue
    follows the domain id, like the client colours of the other pictures)."""
    h = _HUES[domid % len(_HUES)]
    out = []
    for light, sat in ((0.85, 0.55), (0.6, 0.6), (0.35, 0.65)):
        r, g, b = colorsys.hls_to_rgb(h, light, sat)
        out.append("#%02x%02x%02x" % (round(r * 255), round(g * 255), round(b * 255)))
    return out


def frame_states(host):
    """``(codes, names, colours)``: ``codes[f]`` indexes ``names``/``colours`` for frame ``f``.

    Names are the fixed four, then three per domain in domain-id order (see module docstring).
    O(frames + pages).
    """
    from ..host.frames import ANON, HEAP, PAGE_LIST
    mem = host.mem
    owner = mem.owner
    names, colours = list(FIXED), list(FIXED_COLOURS)
    codes = np.full(mem.nframes, 3, dtype=np.int32)       # ANON default: metadata
    codes[owner == HEAP] = 0
    codes[owner == PAGE_LIST] = 1
    dom_base = {}
    for domid in sorted(mem.domains):
        dom_base[domid] = len(names)
        names += [f"d{domid} own memory", f"d{domid} persistent tmem data",
                  f"d{domid} persistent tmem metadata"]
        colours += _domain_colours(domid)
        billed = owner == domid
        codes[billed] = dom_base[domid] + 2                # default: billed metadata
        own = mem.domains[domid].own_frames
        if own:
            codes[np.asarray(own, dtype=np.int64)] = dom_base[domid]
    for pool in host.every_pool():
        for obj in pool.objects():
            for _, pgp in obj.tree.items():
                if pgp.size == 0 and pgp.data is not None:
                    f = int(pgp.data)
                    o = int(owner[f])
                    if o == ANON:
                        codes[f] = 2
                    elif o in dom_base:
                        codes[f] = dom_base[o] + 1
    return codes, names, colours


def frame_counts(host) -> dict:
    """``{state name: frames}`` for the states that hold at least one frame, in legend order.
    O(frames + pages)."""
    codes, names, _ = frame_states(host)
    counts = np.bincount(codes, minlength=len(names))
    return {n: int(c) for n, c in zip(names, counts) if c}


def _groups(codes, per: int, ncat: int):
    """Majority code of each run of ``per`` frames (ties: the lower code)."""
    n = len(codes)
    ncell = -(-n // per)
    pad = np.full(ncell * per, -1, dtype=np.int64)
    pad[:n] = codes
    blocks = pad.reshape(ncell, per)
    counts = np.stack([(blocks == k).sum(axis=1) for k in range(ncat)], axis=1)
    return counts.argmax(axis=1)


def frame_map(host, *, cols: int = 64, max_cells: int = 2048, cell: int = 7,
              size: str | None = "7.5,10"):
    """A grid of every frame (row-major from frame 0), coloured by state, with a legend of
    counts. More than ``max_cells`` frames: each cell is a run of frames shown in the colour
    most of them have. In the SVG each cell's tooltip names its frame(s). O(frames)."""
    codes, names, colours = frame_states(host)
    n = len(codes)
    per = max(1, -(-n // max_cells))
    cells = codes if per == 1 else _groups(codes, per, len(names))
    counts = np.bincount(codes, minlength=len(names))
    rows = []
    for r in range(0, len(cells), cols):
        tds = []
        for i in range(r, min(r + cols, len(cells))):
            k = int(cells[i])
            first = i * per
            what = f"frame {first}" if per == 1 else f"frames {first}..{min(n, first + per) - 1}"
            tds.append(f'<TD BGCOLOR="{colours[k]}" WIDTH="{cell}" HEIGHT="{cell}" '
                       f'FIXEDSIZE="TRUE" TITLE="{esc(what)}: {esc(names[k])}"></TD>')
        rows.append("<TR>" + "".join(tds) + "</TR>")
    g = new_digraph("frames", size=size, ranksep="0.15")
    note = "one cell per frame" if per == 1 else f"one cell per {per} frames (majority state)"
    g.node("map", html_label(
        f'<TABLE BORDER="1" CELLBORDER="0" CELLSPACING="1" CELLPADDING="0" BGCOLOR="#e8e8e8" '
        f'COLOR="#888888">{"".join(rows)}</TABLE>'), shape="plaintext", margin="0")
    legend = "".join(
        f'<TR><TD BGCOLOR="{colours[k]}" WIDTH="10" HEIGHT="10" FIXEDSIZE="TRUE" '
        f'BORDER="1"></TD><TD ALIGN="LEFT">{esc(names[k])}</TD>'
        f'<TD ALIGN="RIGHT">{int(counts[k])}</TD></TR>'
        for k in range(len(names)) if counts[k])
    g.node("legend", html_label(
        f'<TABLE BORDER="0" CELLBORDER="0" CELLSPACING="2" CELLPADDING="1">'
        f'<TR><TD COLSPAN="3" ALIGN="LEFT"><B>{n} frames</B> · {esc(note)} · frame 0 top '
        f'left</TD></TR>{legend}</TABLE>'), shape="plaintext", fontsize="9")
    g.edge("map", "legend", style="invis")
    return g


def frame_map_figure(host, *, cols: int | None = None, width: float = 7.0):
    """The frame map as a matplotlib ``Figure`` (one pixel-square per frame; any host size):
    row-major from frame 0, coloured by state, legend with counts. Made without pyplot, so it
    leaves no global figure behind. ``cols`` defaults to 64 (128 above 4096 frames, 256 above
    16384). O(frames)."""
    from matplotlib.colors import ListedColormap
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch
    codes, names, colours = frame_states(host)
    n = len(codes)
    if cols is None:
        cols = 64 if n <= 4096 else 128 if n <= 16384 else 256
    nrows = -(-n // cols)
    grid = np.full(nrows * cols, np.nan)
    grid[:n] = codes
    grid = grid.reshape(nrows, cols)
    counts = np.bincount(codes, minlength=len(names))
    used = [k for k in range(len(names)) if counts[k]]
    legend_rows = -(-len(used) // 2)
    height = min(12.0, max(1.5, 0.9 * width * nrows / cols + 0.2 * legend_rows + 0.6))
    fig = Figure(figsize=(width, height), layout="constrained")
    ax = fig.add_subplot()
    cmap = ListedColormap(colours).with_extremes(bad="#f4f4f4")
    ax.imshow(np.ma.masked_invalid(grid), cmap=cmap, vmin=-0.5, vmax=len(names) - 0.5,
              interpolation="nearest", aspect="equal")
    ax.set_xticks([])
    ax.set_yticks(range(0, nrows, max(1, nrows // 8)))
    ax.set_yticklabels([str(r * cols) for r in range(0, nrows, max(1, nrows // 8))],
                       fontsize=7)
    ax.set_ylabel("first frame of row", fontsize=8)
    ax.set_title(f"{n} frames, {cols} per row", fontsize=9)
    handles = [Patch(facecolor=colours[k], edgecolor="#666666",
                     label=f"{names[k]}: {int(counts[k])}") for k in used]
    fig.legend(handles=handles, loc="outside lower center", ncols=2, fontsize=7,
               frameon=False)
    return fig
