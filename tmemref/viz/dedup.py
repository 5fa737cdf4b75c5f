"""Pictures of deduplication: the pcd layer of the web, the 256 first-byte trees, and the LRU
list as the second chance sees it.

* :func:`pcd_web` — :func:`tmemref.viz.web` with one more layer: under the pgps, the page
  content descriptors (pcds) they point at, and under each pcd what it keeps (a frame, the
  bytes trailing-zero elimination kept, compressed bytes, or nothing for an all-zero page);
* :func:`pcd_forest` — the 256 trees as a 16 × 16 grid (row: high hex digit of the first
  byte, column: low digit), each cell the number of pcds in that tree;
* :func:`pcd_tree` — one of those trees, each node labelled with its key: the content's first
  bytes and its length;
* :func:`second_chance_list` — the global ephemeral list, oldest first, each page with its
  content, the pcd it shares and a mark once it had its second chance.

Node ids: ``pcd41_0`` is the first pcd (in key order) of tree 0x41; ``pcd41_0d`` what it keeps;
the web's own ids (``c1p0o7.0.0i3`` …) are unchanged. Colours: one per content, from its
bytes, so the same content keeps its colour from picture to picture.

>>> from tmemref.sim.dedup import second_chance_scene
>>> host, _ = second_chance_scene()
>>> src = pcd_web(host).source
>>> src.count('-> pcd63_0 '), 'pcd63_0d [' in src      # two pgps share content A (tree "c")
(2, True)
"""
from __future__ import annotations

import re
import zlib

import numpy as np

from ..ds.dlist import list_iter
from ._common import esc, html_label, new_digraph, page_text, pgp_id
from .trees import rbtree

PCD_EDGE = "#7a5195"       # pgp -> pcd
PCD_FILL = "#f1ebf7"       # a pcd in the web
#: Light fills, one per content (picked by a checksum of its first bytes).
CONTENT_FILLS = ("#fde2c8", "#d8f0d2", "#dbe9f6", "#f3d6e8", "#fff3b0", "#e6e0f5", "#d5f0f0",
                 "#f0dcd0", "#e8f5c8", "#f9d5d3")
MARK = "#c0392b"           # a pgp that had its second chance

_NODE = re.compile(r'^\s*"?([^"\s\[]+)"? \[', re.M)     # a node statement of DOT text


def content_text(data, n: int = 12) -> str:
    """The first ``n`` bytes of a content as text: printable ASCII kept, other bytes as
    ``·`` (an all-zero page reads ``(all zero)``). O(len(data))."""
    data = bytes(data)
    if not data.strip(b"\0"):
        return "(all zero)"
    return "".join(chr(b) if 32 <= b < 127 else "·" for b in data[:n])


def _fill(host, pcd) -> str:
    head = host.pcd.stored_bytes(pcd)[:32]
    return CONTENT_FILLS[zlib.crc32(head + bytes([pcd.compressed])) % len(CONTENT_FILLS)]


def pcd_ids(host) -> dict:
    """``{id(pcd): node id}`` for every pcd of ``host``: ``pcd41_0`` … (tree in hex, then the
    pcd's rank in that tree's key order). O(pcds)."""
    return {id(node.value): f"pcd{fb:02x}_{k}"
            for fb, tree in enumerate(host.pcd.trees) for k, node in enumerate(tree)}


def _kept_label(pcd) -> tuple:
    """``(label, shape, fill)`` of what a pcd keeps."""
    from ..core.pcd import PAGE_SIZE
    if pcd.compressed:
        return f"compressed {pcd.size} B", "note", "#f0f0f0"
    if pcd.size == PAGE_SIZE:
        return f"frame {pcd.data}", "box3d", "#fff7d6"
    if pcd.size == 0:
        return "nothing stored", "plaintext", "#ffffff"
    return f"{pcd.size} B (tze)", "note", "#f0f0f0"


def pcd_web(host, *, size: str | None = "7.5,10", **web_kw):
    """The web of ``host`` (:func:`tmemref.viz.web`, without its frame row) and its pcd layer:
    an edge from each drawn pgp to its pcd, each pcd (its tree, the pgps using it, the first
    bytes of its content) and what it keeps. ``web_kw`` go to ``web`` (``domains``,
    ``max_pages`` …); pcds of pgps not drawn are left out. ``ValueError`` on a host without
    dedup. O(what is drawn + pcds)."""
    from .web import legend_node, web
    if host.pcd is None:
        raise ValueError("a host without dedup has no pcd layer (Host(dedup=True))")
    g = web(host, show_frames=False, size=size, **web_kw)
    drawn = set(_NODE.findall(g.source))
    ids = pcd_ids(host)
    shown = []
    for fb, tree in enumerate(host.pcd.trees):
        for node in tree:
            pcd = node.value
            users = [(pgp, pgp_id(pgp.obj.pool, pgp)) for pgp in pcd.pgps]
            users = [(p, nid) for p, nid in users if nid in drawn]
            if users:
                shown.append((pcd, sorted(users, key=lambda u: u[1])))
    with g.subgraph(name="pcds") as s:
        s.attr(rank="same")
        for pcd, _ in shown:
            text = content_text(host.pcd.stored_bytes(pcd), 10)
            s.node(ids[id(pcd)], html_label(
                f'<B>pcd</B> · tree 0x{pcd.firstbyte:02x}<BR/><FONT POINT-SIZE="8">'
                f'{pcd.ref_count} pgp(s) · "{esc(text)}"</FONT>'),
                shape="box", style="rounded,filled", fillcolor=PCD_FILL, color=PCD_EDGE)
        legend_node(s, [(PCD_EDGE, "——›", "pgp → its pcd (content)")], "legend_pcd")
    with g.subgraph(name="pcd_data") as s:
        s.attr(rank="same")
        for pcd, _ in shown:
            label, shape, fill = _kept_label(pcd)
            s.node(ids[id(pcd)] + "d", label, shape=shape, style="filled", fillcolor=fill,
                   fontsize="8", height="0.25")
    for pcd, users in shown:
        pid = ids[id(pcd)]
        for _, nid in users:
            g.edge(nid, pid, color=PCD_EDGE, penwidth="1.3")
        g.edge(pid, pid + "d")
    return g


def pcd_forest(counts, *, title: str = "pcds in each of the 256 first-byte trees"):
    """The 256 trees as a 16 × 16 table: row = first byte's high hex digit, column = low
    digit; each cell the count (blank when 0), shaded by count on a log scale. ``counts``: a
    host with dedup, or 256 numbers. O(256)."""
    if hasattr(counts, "pcd"):
        counts = [len(t) for t in counts.pcd.trees]
    counts = np.asarray(counts, dtype=np.int64)
    if counts.shape != (256,) or (counts < 0).any():
        raise ValueError("256 non-negative counts, one per first byte")
    top = max(1, int(counts.max()))
    head = "".join(f'<TD><FONT POINT-SIZE="7">_{d:x}</FONT></TD>' for d in range(16))
    rows = [f'<TR><TD></TD>{head}</TR>']
    for hi in range(16):
        cells = []
        for lo in range(16):
            n = int(counts[hi * 16 + lo])
            level = np.log1p(n) / np.log1p(top)
            shade = int(255 - 170 * level)
            bg = f"#{shade:02x}{shade + (255 - shade) // 3:02x}ff" if n else "#ffffff"
            colour = "white" if level > 0.7 else "black"
            text = f'<FONT POINT-SIZE="7" COLOR="{colour}">{n}</FONT>' if n else " "
            cells.append(f'<TD BGCOLOR="{bg}" WIDTH="26" HEIGHT="16" FIXEDSIZE="TRUE">'
                         f'{text}</TD>')
        rows.append(f'<TR><TD><FONT POINT-SIZE="7">{hi:x}_</FONT></TD>{"".join(cells)}</TR>')
    g = new_digraph("pcd_forest", size="7.5,6")
    g.attr(label=title, labelloc="t")
    g.node("grid", html_label('<TABLE BORDER="0" CELLBORDER="1" CELLSPACING="0" '
                              f'CELLPADDING="1">{"".join(rows)}</TABLE>'), shape="plaintext")
    return g


def key_text(key) -> str:
    """A pcd tree key as a node label: the content's first bytes and its length (compressed
    keys marked ``z``; a key Xen's compare never matches marked ``#n``). O(key length)."""
    kind, n, data = key[:3]
    if kind == 0:
        raw = bytes(data).translate(bytes(range(128, 256)) + bytes(range(128)))
        text = "z:" + content_text(raw, 6)
    else:
        raw = np.frombuffer(data, dtype=">u8").astype("<u8").tobytes()
        text = content_text(raw, 10)
    extra = f" #{key[3]}" if len(key) > 3 else ""
    return f"{text} · {n} B{extra}"


def pcd_tree(host, firstbyte: int, *, size: str | None = "7.5,4"):
    """One first-byte tree of ``host``'s pcds, drawn as :func:`tmemref.viz.rbtree` draws any
    red-black tree, each node labelled by :func:`key_text`. O(pcds in the tree)."""
    if not 0 <= firstbyte < 256:
        raise ValueError("firstbyte must be in 0..255")
    tree = host.pcd.trees[firstbyte]
    return rbtree(tree, label=key_text, size=size,
                  title=f"tree 0x{firstbyte:02x}: {len(tree)} pcd(s), in key order left "
                        "to right")


def second_chance_list(host, *, size: str | None = "7.5,3"):
    """The global ephemeral list of a dedup host, oldest (the end eviction takes from) on the
    left: each page with the first bytes of its content, filled with its content's colour,
    outlined in red with ``sent back once`` after its second chance; under the list the pcds,
    each with an edge from every page that uses it. O(pages)."""
    if host.pcd is None:
        raise ValueError("a host without dedup has no second chance")
    g = new_digraph("second_chance", size=size, nodesep="0.12", ranksep="0.35")
    ids = pcd_ids(host)
    pgps = [n.owner for n in list_iter(host.eph_list)]
    g.attr(label=f"global ephemeral list · {len(pgps)} page(s) · oldest first",
           labelloc="t", fontsize="9")
    seen = {}
    with g.subgraph(name="list") as s:
        s.attr(rank="same")
        for i, pgp in enumerate(pgps):
            pcd = pgp.data
            lines = [esc(page_text(pgp)),
                     f'<FONT POINT-SIZE="8">"{esc(content_text(host.pcd.stored_bytes(pcd), 9))}"'
                     f'</FONT>']
            attrs = {}
            if pgp.eviction_attempted:
                lines.append(f'<FONT POINT-SIZE="8" COLOR="{MARK}">sent back once</FONT>')
                attrs = {"color": MARK, "penwidth": "2.2"}
            s.node(f"e{i}", html_label("<BR/>".join(lines)), shape="box",
                   style="rounded,filled", fillcolor=_fill(host, pcd), **attrs)
            seen.setdefault(id(pcd), pcd)
        if not pgps:
            s.node("empty", "(empty)", shape="plaintext")
    for a, b in zip(range(len(pgps)), range(1, len(pgps))):
        g.edge(f"e{a}", f"e{b}", color="#1f6fb4", arrowsize="0.5")
    with g.subgraph(name="pcds") as s:
        s.attr(rank="same")
        for pcd in seen.values():
            s.node(ids[id(pcd)], f"pcd · {pcd.ref_count} pgp(s)", shape="box",
                   style="filled", fillcolor=_fill(host, pcd), fontsize="8", height="0.25")
    for i, pgp in enumerate(pgps):
        g.edge(f"e{i}", ids[id(pgp.data)], color=PCD_EDGE, style="dashed", arrowsize="0.5")
    return g
