"""The data-structure web of a host, top-down, as one graphviz picture.

domains → clients (their used pool slots) → pools (their non-empty buckets) → each bucket's
red-black tree of objects → each object's radix tree → pgps → frames (or compressed data).
Back pointers (pgp → obj, obj → pool) are dashed grey and do not shape the layout; the LRU
lists are coloured chains through the pgps (legend included).

A shared pool is drawn once, under the id of its owner's slot, and each other sharer's slot
points at it with a bold edge.

>>> from tmemref import Host, TmemOp, abi
>>> h = Host(pages=1024); _ = h.create_domain(1, pages=16, max_pages=64)
>>> p = h.do_tmem_op(1, TmemOp(cmd=abi.TMEM_NEW_POOL, flags=abi.pool_flags()))
>>> h.do_tmem_op(1, TmemOp(cmd=abi.TMEM_PUT_PAGE, pool_id=p, oid=(7, 0, 0), index=3,
...                        page=bytes(4096)))
1
>>> src = web(h).source
>>> '"c1p0o7.0.0i3"' in src and 'PORT="b7"' in src and 'PORT="b8"' not in src
True
"""
from __future__ import annotations

from ..core.pcd import Pcd
from ..ds.dlist import list_iter
from ._common import (BACK, CLIENT_LRU, GLOBAL_LRU, PERS_LIST, client_fill, esc, html_label,
                      new_digraph, obj_id, oid_text, pgp_id, plural, pool_id)
from .trees import draw_radix, draw_rb, rb_style

TABLE = '<TABLE BORDER="0" CELLBORDER="1" CELLSPACING="0" CELLPADDING="3">'
BACK_ATTRS = {"style": "dashed", "color": BACK, "constraint": "false", "arrowhead": "onormal",
              "penwidth": "0.8"}


def _pool_kind(pool) -> str:
    return ("persistent" if pool.persistent else "ephemeral") + \
        (" shared" if pool.shared else " private")


def legend_node(g, rows, name: str = "legend") -> None:
    """A small table explaining the edge styles: ``rows`` of (colour, sample, meaning)."""
    cells = "".join(f'<TR><TD ALIGN="LEFT"><FONT COLOR="{c}"><B>{esc(s)}</B></FONT></TD>'
                    f'<TD ALIGN="LEFT">{esc(m)}</TD></TR>' for c, s, m in rows)
    g.node(name, html_label(f'<TABLE BORDER="1" CELLBORDER="0" CELLSPACING="0" '
                            f'CELLPADDING="1" COLOR="#bbbbbb">{cells}</TABLE>'),
           shape="plaintext", fontsize="8")


def _chain(g, pgps, drawn: dict, color: str) -> None:
    """Edges through the drawn pgps of a list (oldest first); ``+k`` where pages are hidden."""
    prev, skipped = None, 0
    for pgp in pgps:
        nid = drawn.get(id(pgp))
        if nid is None:
            skipped += 1
            continue
        if prev is not None:
            attrs = {"color": color, "constraint": "false", "penwidth": "1.2",
                     "arrowsize": "0.5"}
            if skipped:
                attrs.update(style="dotted", label=f"+{skipped}", fontcolor=color)
            g.edge(prev, nid, **attrs)
        prev, skipped = nid, 0


def web(host, *, max_pages_per_obj: int = 8, max_objs_per_pool: int = 6,
        max_buckets_per_pool: int = 8, max_pages: int = 24, max_slots: int = 8,
        show_frames: bool = True, show_lru: bool = True, show_pers: bool = False,
        show_back: bool = True, domains=None, size: str | None = "7.5,10"):
    """The whole web of ``host``; returns a ``graphviz.Digraph``.

    * ``max_pages_per_obj`` pages are drawn per object (lowest indices first; then
      ``"… k more pages"``); ``max_objs_per_pool`` objects per pool, in bucket order, each
      bucket's tree breadth first (cut subtrees read ``"… k more objects"``);
      ``max_buckets_per_pool`` bucket cells per pool (then ``+k buckets``); ``max_slots``
      slot cells per radix node; ``max_pages`` pages in the whole picture (a wide picture
      shrinks to fit the page: about a dozen pages side by side stay readable).
    * ``show_frames``: the frame (``frame 123``, its owner) or ``compressed N B`` under each pgp.
    * ``show_lru``: the global ephemeral list (blue) and each client's list (orange) as chains
      through the pgps, oldest → newest; ``show_pers``: each persistent pool's list (green).
    * ``show_back``: back pointers pgp → obj and obj → pool (dashed grey).
    * ``domains``: only these domain ids (default all), with their clients.

    Deterministic: everything is visited in a sorted order and ids come from structure
    (``c1``, ``c1p0``, ``c1p0o7.0.0``, ``c1p0o7.0.0r.0``, ``c1p0o7.0.0i3``, ``f123``).
    O(what is drawn + pages on the lists).
    """
    from ..host.frames import ANON
    g = new_digraph("web", size=size, ranksep="0.35", nodesep="0.15")
    want = None if domains is None else set(domains)
    doms = [d for _, d in sorted(host.mem.domains.items()) if want is None or d.domid in want]
    drawn_pgps: dict = {}          # id(pgp) -> node id
    drawn_pools: dict = {}         # pool node id -> pool
    pgp_ids, frame_ids = [], []

    # --- domains and clients -----------------------------------------------------------------
    with g.subgraph(name="domains") as top:
        top.attr(rank="same")
        for d in doms:
            kind = " (privileged)" if d.privileged else ""
            own = len(d.own_frames)
            top.node(f"d{d.domid}", html_label(
                f"<B>domain {d.domid}</B>{esc(kind)}<BR/><FONT POINT-SIZE=\"8\">own {own} · "
                f"billed {d.tot_pages}/{d.max_pages}</FONT>"),
                shape="box", style="rounded,filled", fillcolor="#eeeeee")
        if show_lru or show_back or show_pers:
            rows = [("#555555", "——", "pointer (tree / array slot)")]
            if show_back:
                rows.append((BACK, "- - ›", "back pointer"))
            if show_lru:
                rows.append((GLOBAL_LRU, "——›", "global ephemeral LRU, old → new"))
                rows.append((CLIENT_LRU, "——›", "client ephemeral LRU, old → new"))
            if show_pers:
                rows.append((PERS_LIST, "——›", "pool persistent list"))
            legend_node(top, rows)

    for d in doms:
        client = d.client
        if client is None:
            continue
        cid = f"c{client.cli_id}"
        slots = client.pool_slots()
        fill = client_fill(client.cli_id)
        cells = "".join(f'<TD PORT="s{i}">{i}</TD>' for i, _ in slots) or \
            "<TD><I>no pools</I></TD>"
        n = max(1, len(slots))
        extra = []
        if client.weight:
            extra.append(f"weight {client.weight}")
        if client.frozen:
            extra.append("frozen")
        if client.compress:
            extra.append("compress")
        extra.append(f"eph {client.eph_count}")
        g.node(cid, html_label(
            f'{TABLE}<TR><TD COLSPAN="{n}" BGCOLOR="{fill}"><B>client {client.cli_id}</B>'
            f'<BR/><FONT POINT-SIZE="8">{esc(" · ".join(extra))}</FONT></TD></TR>'
            f'<TR>{cells}</TR></TABLE>'), shape="plaintext", margin="0")
        g.edge(f"d{d.domid}", cid)
        for slot, pool in slots:
            pid = pool_id(pool)
            if pool.client is client:
                g.edge(f"{cid}:s{slot}:s", pid)
            else:
                g.edge(f"{cid}:s{slot}:s", pid, style="bold", color="#7a5195",
                       label=" shares", fontcolor="#7a5195")
            drawn_pools.setdefault(pid, pool)

    # --- pools, buckets, objects ---------------------------------------------------------------
    for pid in sorted(drawn_pools, key=_pool_sort_key):
        pool = drawn_pools[pid]
        fill = client_fill(pool.client.cli_id)
        nonempty = [(b, t) for b, t in enumerate(pool.buckets) if t.root is not None]
        budget = max_objs_per_pool
        shown, hidden_b, hidden_o = [], 0, 0
        for b, tree in nonempty:
            if budget > 0 and len(shown) < max_buckets_per_pool:
                shown.append((b, tree))
                budget -= min(budget, len(tree))
            else:
                hidden_b += 1
                hidden_o += len(tree)
        cells = "".join(f'<TD PORT="b{b}">{b}</TD>' for b, _ in shown)
        if hidden_b:
            cells += f'<TD><I>+{hidden_b} buckets ({hidden_o} obj)</I></TD>'
        if not cells:
            cells = "<TD><I>no objects</I></TD>"
        ncols = len(shown) + (1 if hidden_b else 0) or 1
        title = f"<B>pool {pool.pool_id}</B> of client {pool.client.cli_id}"
        sub = f"{_pool_kind(pool)} · {pool.obj_count} obj · {pool.pgp_count} pgp"
        if pool.shared:
            sharers = ",".join(str(c.cli_id) for c in pool.share_list)
            uuid = "(" + ",".join(f"{w:#x}" for w in pool.uuid) + ")"
            sub += f"<BR/>uuid {esc(uuid)} · sharers {esc(sharers)}"
        g.node(pid, html_label(
            f'{TABLE}<TR><TD COLSPAN="{ncols}" BGCOLOR="{fill}">{title}<BR/>'
            f'<FONT POINT-SIZE="8">{sub}</FONT></TD></TR>'
            f'<TR><TD COLSPAN="{ncols}"><FONT POINT-SIZE="7">obj_rb_root[256]: non-empty '
            f'buckets</FONT></TD></TR><TR>{cells}</TR></TABLE>'), shape="plaintext", margin="0")

        budget = max_objs_per_pool
        for b, tree in shown:
            if budget <= 0:
                break
            root = tree.root
            g.edge(f"{pid}:b{b}:s", obj_id(pool, root.value))

            def draw_obj(gg, x, nid, pool=pool):
                obj = x.value
                gg.node(nid, html_label(f"obj {esc(oid_text(obj.oid))}<BR/>"
                                        f'<FONT POINT-SIZE="8">{obj.pgp_count} pgp</FONT>'),
                        shape="box", style="rounded,filled", ordering="out",
                        **{k: v for k, v in rb_style(x.red).items() if k != "style"})
                if show_back:
                    gg.edge(nid, pid, **BACK_ATTRS)

            def hang_radix(gg, x, nid, pool=pool):
                obj = x.value

                def draw_item(g2, index, pgp):
                    return _draw_pgp(g2, host, pool, pgp, show_frames, show_back, drawn_pgps,
                                     pgp_ids, frame_ids, ANON)
                room = max(0, min(max_pages_per_obj, max_pages - len(pgp_ids)))
                entry, n = draw_radix(gg, obj.tree, nid, draw_item, max_items=room,
                                      max_slots=max_slots)
                if entry is not None:
                    if obj.tree.height == 0:
                        gg.edge(nid, entry, label=" direct", fontsize="7")
                    else:
                        gg.edge(nid, entry)
                if obj.pgp_count > n:
                    mid = f"{nid}more"
                    gg.node(mid, "… " + plural(obj.pgp_count - n, "more page"),
                            shape="plaintext", fontsize="8")
                    gg.edge(nid, mid, style="dotted")

            drawn = draw_rb(g, root, lambda x, pool=pool: obj_id(pool, x.value), draw_obj,
                            budget=budget, edge_attrs={"color": "#555555"},
                            more_label=lambda k: "… " + plural(k, "more object"),
                            between=hang_radix)
            budget -= len(drawn)

    # --- pgps and frames on their own rows; back pointers; lists --------------------------------
    if pgp_ids:
        with g.subgraph(name="pgps") as s:
            s.attr(rank="same")
            for nid in pgp_ids:
                s.node(nid)
    if frame_ids:
        with g.subgraph(name="frames") as s:
            s.attr(rank="same")
            for nid in frame_ids:
                s.node(nid)
    if show_lru:
        _chain(g, (n.owner for n in list_iter(host.eph_list)), drawn_pgps, GLOBAL_LRU)
        for d in doms:
            if d.client is not None:
                _chain(g, (n.owner for n in list_iter(d.client.eph_list)), drawn_pgps,
                       CLIENT_LRU)
    if show_pers:
        for pid in sorted(drawn_pools, key=_pool_sort_key):
            pool = drawn_pools[pid]
            if pool.persistent:
                _chain(g, (n.owner for n in list_iter(pool.pers_list)), drawn_pgps, PERS_LIST)
    return g


def _pool_sort_key(pid: str):
    c, p = pid[1:].split("p")
    return int(c), int(p)


def _draw_pgp(g, host, pool, pgp, show_frames, show_back, drawn_pgps, pgp_ids, frame_ids,
              ANON):
    """A pgp node, its frame or compressed data, and its back pointer; returns the pgp's id."""
    nid = pgp_id(pool, pgp)
    drawn_pgps[id(pgp)] = nid
    pgp_ids.append(nid)
    g.node(nid, f"pgp [{pgp.index}]", shape="box", style="filled",
           fillcolor=client_fill(pool.client.cli_id), height="0.25")
    if show_frames and pgp.data is not None and not isinstance(pgp.data, Pcd):
        # (a pgp of a dedup host points at a pcd: tmemref.viz.dedup.pcd_web draws that layer)
        if pgp.size == 0:
            f = int(pgp.data)
            fid = f"f{f}"
            owner = int(host.mem.owner[f])
            who = "tmem (anon)" if owner == ANON else f"billed d{owner}"
            g.node(fid, html_label(f"frame {f}<BR/><FONT POINT-SIZE=\"7\">{esc(who)}</FONT>"),
                   shape="box3d", style="filled",
                   fillcolor="#fff7d6" if owner == ANON else "#e3e3f7", height="0.25",
                   margin="0.08,0.02")
            frame_ids.append(fid)
            g.edge(nid, fid)
        else:
            zid = f"{nid}z"
            g.node(zid, f"compressed {pgp.size} B", shape="note", style="filled",
                   fillcolor="#f0f0f0", fontsize="8", height="0.25")
            frame_ids.append(zid)
            g.edge(nid, zid)
    if show_back and pgp.obj is not None:
        # back pointer: pgp -> obj
        g.edge(nid, obj_id(pool, pgp.obj), **BACK_ATTRS)
    return nid
