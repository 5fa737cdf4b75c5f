"""A TLSF pool drawn: its two bitmaps, its non-empty free lists and one row per frame.

Drawn from :meth:`tmemref.host.tlsf.Tlsf.describe` (or the pool itself), so a snapshot taken
before and after an operation gives the before / after pictures of a named case (split,
coalesce-prev, ...). Node ids: ``bitmaps``; ``l5_29`` for free list ``(5, 29)``; ``f5`` for
frame 5, whose cells have ports ``b128`` (the block whose header is at offset 128). Widths are
proportional to bytes; the dark stripes are the 16-byte block headers.
"""
from __future__ import annotations

from ._common import esc, html_label, new_digraph

USED = "#f2c14e"
FREE = "#ffffff"
HEADER = "#555555"
SET_BIT = "#1f6fb4"
LIST_EDGE = "#2e8b57"
MARK = "#c0392b"


def _bitmaps(d) -> str:
    rows = [f'<TR><TD COLSPAN="34" ALIGN="LEFT"><B>{esc(d["name"])}</B>: '
            f'{d["used_size"]} of {d["total_size"]} B used, {d["num_regions"]} frame(s), '
            f'{d["failed"]} failed</TD></TR>',
            '<TR><TD></TD><TD>fl</TD><TD COLSPAN="32" ALIGN="LEFT">sl bitmap (bit 0 left)'
            '</TD></TR>']
    for fl, word in enumerate(d["sl_bitmaps"]):
        on = d["fl_bitmap"] >> fl & 1
        cells = "".join(f'<TD WIDTH="7" HEIGHT="9" FIXEDSIZE="TRUE" '
                        f'BGCOLOR="{SET_BIT if word >> sl & 1 else FREE}"></TD>'
                        for sl in range(32))
        rows.append(f'<TR><TD ALIGN="RIGHT">{fl}</TD><TD BGCOLOR="{SET_BIT if on else FREE}">'
                    f'{on}</TD>{cells}</TR>')
    return (f'<TABLE BORDER="0" CELLBORDER="1" CELLSPACING="0" CELLPADDING="1">'
            f'{"".join(rows)}</TABLE>')


def _frame_row(f: int, row, scale: float, marked) -> str:
    cells = [f'<TD BORDER="0" ALIGN="RIGHT">frame {f}</TD>']
    base = f << 12
    for off, size, state in row:
        cells.append(f'<TD BGCOLOR="{HEADER}" WIDTH="{max(1, round(16 * scale))}" '
                     f'HEIGHT="18" FIXEDSIZE="TRUE" TITLE="header at {off}"></TD>')
        if state == "sentinel":
            continue
        w = max(2, round(size * scale))
        text = f'<FONT POINT-SIZE="7">{size}</FONT>' if w >= 5 * len(str(size)) + 4 else ""
        colour = MARK if base + off + 16 in marked else USED if state == "used" else FREE
        cells.append(f'<TD PORT="b{off}" BGCOLOR="{colour}" WIDTH="{w}" HEIGHT="18" '
                     f'FIXEDSIZE="TRUE" TITLE="{state} block: header at {off}, {size} B">'
                     f'{text}</TD>')
    return (f'<TABLE BORDER="0" CELLBORDER="1" CELLSPACING="0" CELLPADDING="0">'
            f'<TR>{"".join(cells)}</TR></TABLE>')


def tlsf(pool, *, scale: float = 0.11, mark=(), size: str | None = "7.5,10"):
    """The picture of a :class:`~tmemref.host.tlsf.Tlsf` pool or of its ``describe()``
    snapshot: the bitmaps (first level as a column, second level as rows of 32 bits), one node
    per non-empty free list ``(fl, sl)`` with its size range and edges to its blocks (numbered
    from the head), and one row per frame, blocks to scale (``scale`` points per byte; used
    blocks yellow, free white). Blocks whose payload address is in ``mark`` are drawn red.
    O(blocks)."""
    d = pool.describe() if hasattr(pool, "describe") else pool
    marked = set(mark)
    g = new_digraph("tlsf", size=size, rankdir="LR", ranksep="0.5")
    g.node("bitmaps", html_label(_bitmaps(d)), shape="plaintext")
    lists = []
    for fl, sl, lo, hi, addrs in d["free_lists"]:
        lid = f"l{fl}_{sl}"
        lists.append(lid)
        g.node(lid, f"({fl},{sl})\n{lo}-{hi - 1} B", shape="box", style="rounded",
               fontsize="9")
        g.edge("bitmaps", lid, style="invis")
        for i, a in enumerate(addrs):
            g.edge(lid, f"f{a >> 12}:b{(a & 0xfff) - 16}", color=LIST_EDGE,
                   label=str(i + 1) if len(addrs) > 1 else "")
    with g.subgraph(name="frames") as s:
        s.attr(rank="same")
        for f, row in d["regions"].items():
            s.node(f"f{f}", html_label(_frame_row(f, row, scale, marked)), shape="plaintext")
    if not lists:
        for f in d["regions"]:
            g.edge("bitmaps", f"f{f}", style="invis")
    return g
