"""Shared helpers of :mod:`tmemref.viz`: the lazy graphviz import, ids, colours, HTML labels.

Node ids are derived from structure identity, never from ``id()`` or addresses, so the same
host drawn twice gives the same DOT text:

========================  =================================================================
``d1``                    domain 1
``c1``                    client 1 (a table whose cells are its used pool slots, ports ``s0``..)
``c1p0``                  pool in slot 0 of client 1 (a shared pool: its owner's slot; cells
                          are the non-empty buckets, ports ``b7``..)
``c1p0o7.0.0``            object ``(7, 0, 0)`` of that pool
``c1p0o7.0.0r`` / ``.3``  radix-tree root node of that object / its child in slot 3
``c1p0o7.0.0i3``          the pgp at index 3
``c1p0o7.0.0i3z``         its compressed data
``f123``                  frame 123
========================  =================================================================
"""
from __future__ import annotations

import html

#: Graph attributes shared by every picture: fits a ~700 px book column.
PAGE_SIZE_ATTR = "7.5,10"
FONT = "Helvetica"

RED = "#c0392b"          # red rb-tree node
BLACK = "#222222"        # black rb-tree node
BACK = "#999999"         # back pointers
GLOBAL_LRU = "#1f6fb4"   # global ephemeral list
CLIENT_LRU = "#e67e22"   # a client's ephemeral list
PERS_LIST = "#2e8b57"    # a pool's persistent list
HIGHLIGHT = "#1f6fb4"    # the key an operation is about

#: One colour per client, picked by client id modulo the palette (light, for fills).
CLIENT_FILLS = ("#dbe9f6", "#fde2c8", "#d8f0d2", "#f3d6e8", "#e6e0f5", "#fff3b0", "#d5f0f0",
                "#f0dcd0")


def graphviz():
    """The ``graphviz`` module, imported only when a picture is made (the core needs numpy only)."""
    import graphviz as gv
    return gv


def new_digraph(name: str, *, size: str | None = PAGE_SIZE_ATTR, rankdir: str = "TB",
                **graph_attr):
    """A ``graphviz.Digraph`` with the house defaults: small font, compact spacing, a size."""
    gv = graphviz()
    attrs = {"rankdir": rankdir, "nodesep": "0.2", "ranksep": "0.3", "fontname": FONT,
             "fontsize": "10", "newrank": "true"}
    if size:
        attrs["size"] = size
    attrs.update({k: str(v) for k, v in graph_attr.items()})
    g = gv.Digraph(name, graph_attr=attrs,
                   node_attr={"fontname": FONT, "fontsize": "10", "margin": "0.04,0.02",
                              "height": "0.3"},
                   edge_attr={"fontname": FONT, "fontsize": "8", "arrowsize": "0.6"})
    return g


def esc(text) -> str:
    """Escape any text for an HTML-like graphviz label."""
    return html.escape(str(text), quote=True)


def html_label(inner: str) -> str:
    """Wrap HTML-like label text so the python graphviz package passes it through raw."""
    return f"<{inner}>"


def oid_str(oid) -> str:
    """``(7, 0, 0)`` -> ``"7.0.0"`` (the object part of node ids)."""
    return ".".join(str(int(w)) for w in oid)


def oid_text(oid) -> str:
    """``(7, 0, 0)`` -> ``"(7,0,0)"`` (the object part of labels)."""
    return "(" + ",".join(str(int(w)) for w in oid) + ")"


def pool_id(pool) -> str:
    """Node id of a pool: its owner's client id and its slot there, ``c1p0``."""
    return f"c{pool.client.cli_id}p{pool.pool_id}"


def obj_id(pool, obj) -> str:
    """Node id of an object, ``c1p0o7.0.0``."""
    return f"{pool_id(pool)}o{oid_str(obj.oid)}"


def pgp_id(pool, pgp) -> str:
    """Node id of a pgp, ``c1p0o7.0.0i3``."""
    return f"{obj_id(pool, pgp.obj)}i{pgp.index}"


def page_text(pgp) -> str:
    """A page named as the lists chapter names it: ``d1:p0:(7,0,0)[3]``."""
    pool = pgp.obj.pool
    return f"d{pool.client.cli_id}:p{pool.pool_id}:{oid_text(pgp.obj.oid)}[{pgp.index}]"


def plural(n: int, word: str) -> str:
    """``plural(1, "page")`` -> ``"1 page"``, ``plural(3, "page")`` -> ``"3 pages"``."""
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def client_fill(cli_id: int) -> str:
    """A client's fill colour (stable across pictures)."""
    return CLIENT_FILLS[cli_id % len(CLIENT_FILLS)]
