"""Pictures of tmem's page lists: the global ephemeral LRU list and each client's.

Each list is one row, oldest page on the left (the end eviction takes from), newest on the
right. A page is named ``d1:p0:(7,0,0)[3]``: pool owner's domain, pool slot, object id, page
index, and filled with its client's colour. The same pgp sits on the global list (through
its first links) and on its client's list (through its second); when every list is short enough to
show whole, each page of a client row sits in the *column* of its place on the global list, so
the interleaving of clients on the global list can be read off vertically.

>>> from tmemref import Host, TmemOp, abi
>>> h = Host(pages=1024); _ = h.create_domain(1, pages=4)
>>> p = h.do_tmem_op(1, TmemOp(cmd=abi.TMEM_NEW_POOL, flags=abi.pool_flags()))
>>> for i in (3, 1):
...     _ = h.do_tmem_op(1, TmemOp(cmd=abi.TMEM_PUT_PAGE, pool_id=p, oid=(7, 0, 0), index=i,
...                                page=bytes(4096)))
>>> src = lru(h).source
>>> src.index("d1:p0:(7,0,0)[3]") < src.index("d1:p0:(7,0,0)[1]")    # oldest first
True
"""
from __future__ import annotations

from ..ds.dlist import list_iter
from ._common import (CLIENT_LRU, GLOBAL_LRU, PERS_LIST, client_fill, new_digraph, page_text,
                      pgp_id)


def _window(items, limit):
    """``(head, hidden, tail)``: the oldest and newest ``limit // 2`` items and how many are
    hidden between them (everything, hidden 0, if ``len(items) <= limit``)."""
    if len(items) <= limit:
        return items, 0, []
    k = max(1, limit // 2)
    return items[:k], len(items) - 2 * k, items[-k:]


def _cells(pgps, limit, columns):
    """Place a list's items: ``{position: item}`` where an item is a pgp or ``("more", k)``."""
    if columns is not None:
        return {columns[id(p)]: p for p in pgps}
    first, hidden, last = _window(pgps, limit)
    items = list(first) + ([("more", hidden)] if hidden else []) + list(last)
    return dict(enumerate(items))


def _rows(g, rows, per_line: int) -> None:
    """Draw each list as a cluster of lines of ``per_line`` cells (placeholders keep columns).

    ``rows``: ``(key, title, pgps, colour, cells)``. Invisible edges order the cells of a line
    and stack every cell on the one above it, so columns line up across lists."""
    above = None                                   # cell ids of the previous line
    longest = max((len(page_text(p)) for *_, cells in rows for p in cells.values()
                   if not isinstance(p, tuple)), default=8)
    width = f"{longest * 0.07 + 0.2:.2f}"          # one width for every cell: columns align
    for key, title, pgps, color, cells in rows:
        npos = max(cells) + 1 if cells else 1
        nlines = -(-npos // per_line)
        ids = {}
        with g.subgraph(name=f"cluster_{key}") as c:
            c.attr(label=title, labeljust="l", color="#cccccc", fontsize="9", style="rounded")
            for line in range(nlines):
                line_ids = []
                with c.subgraph(name=f"{key}_line{line}") as ln:
                    ln.attr(rank="same")
                    for col in range(per_line):
                        pos = line * per_line + col
                        item = cells.get(pos)
                        if item is None:
                            nid = f"{key}_x{pos}"
                            label = "(empty)" if not cells and pos == 0 else ""
                            ln.node(nid, label, shape="plaintext" if label else "box",
                                    style="" if label else "invis", fontsize="8",
                                    height="0.25", width=width)
                        elif isinstance(item, tuple):
                            nid = f"{key}_more"
                            ln.node(nid, f"… {item[1]} more", shape="plaintext", fontsize="8",
                                    width=width)
                        else:
                            pool = item.obj.pool
                            nid = f"{key}_{pgp_id(pool, item)}"
                            ln.node(nid, page_text(item), shape="box", style="filled,rounded",
                                    fillcolor=client_fill(pool.client.cli_id), fontsize="9",
                                    height="0.25", width=width)
                        ids[pos] = nid
                        line_ids.append(nid)
                    for a, b in zip(line_ids, line_ids[1:]):
                        ln.edge(a, b, style="invis", weight="10")
                if above is not None:
                    for a, b in zip(above, line_ids):
                        g.edge(a, b, style="invis", weight="10")
                above = line_ids
        # the list's own links, oldest -> newest
        order = sorted(p for p in cells)
        attrs = {"color": color, "penwidth": "1.2", "arrowsize": "0.5"}
        for a, b in zip(order, order[1:]):
            same_line = a // per_line == b // per_line
            g.edge(ids[a], ids[b], constraint="false",
                   **(attrs if same_line else dict(attrs, style="dashed")))


def lru(host, *, max_per_list: int = 15, per_line: int = 5, show_persistent: bool = False,
        align: bool = True, size: str | None = "7.5,8"):
    """The global ephemeral list and each client's ephemeral list, oldest first.

    Each list reads like text: left to right, ``per_line`` pages a line, then the next line
    (a dashed link joins the lines). ``max_per_list``: longer lists show their oldest and
    newest halves around ``"… k more"``. ``show_persistent``: also each persistent pool's
    list (save/restore order). ``align``: when no list is cut, put each page in the cell of
    its global position, so client rows show where their pages sit on the global list.
    Node ids: ``G_<pgp id>`` on the global list, ``L1_<pgp id>`` on client 1's,
    ``P_c1p0_<pgp id>`` on a persistent list. O(pages on the lists).
    """
    g = new_digraph("lru", size=size, nodesep="0.15", ranksep="0.12")
    glist = [n.owner for n in list_iter(host.eph_list)]
    clients = [c for _, c in sorted(host.clients.items())]
    clists = [(c, [n.owner for n in list_iter(c.eph_list)]) for c in clients]
    columns = None
    if align and len(glist) <= max_per_list and all(len(x) <= max_per_list for _, x in clists):
        columns = {id(p): i for i, p in enumerate(glist)}
        if any(id(p) not in columns for _, x in clists for p in x):
            columns = None       # a client list holds a page the global list lacks: no columns
    rows = [("G", f"global ephemeral list · eph_count {host.eph_count} · oldest first",
             glist, GLOBAL_LRU, _cells(glist, max_per_list, columns))]
    for c, pgps in clists:
        rows.append((f"L{c.cli_id}", f"client {c.cli_id} ephemeral list · eph_count "
                     f"{c.eph_count}", pgps, CLIENT_LRU, _cells(pgps, max_per_list, columns)))
    if show_persistent:
        for c in clients:
            for slot, pool in c.pool_slots():
                if pool.persistent and pool.client is c:
                    pgps = [n.owner for n in list_iter(pool.pers_list)]
                    rows.append((f"P_c{c.cli_id}p{slot}", f"client {c.cli_id} pool {slot} "
                                 f"persistent list · {len(pgps)} pages", pgps, PERS_LIST,
                                 _cells(pgps, max_per_list, None)))
    _rows(g, rows, per_line)
    return g
