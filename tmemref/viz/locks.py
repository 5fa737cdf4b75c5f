"""Pictures of tmem's locks: the hierarchy, a deadlock's wait-for cycle, a run's timeline.

Xen: the lock order of tmem (``tmem.c``, ``tmem_xen.c``; :mod:`tmemref.host.locks`). Each
picture is drawn from data :mod:`tmemref.sim.locking` reads off the package and its recorded
schedules, never from a hand-made list:

=========================  ======================================================================
:func:`hierarchy`          one node per lock of the rank table (with the objects of a live host),
                           one edge per "taken while holding" seen in recorded runs, styled by
                           how it relates to the order (in order, tried in order, trylock against
                           it, the ``obj_free`` exception)
:func:`wait_for`           the wait-for cycle of a deadlock (:class:`~tmemref.sim.sched.Failure`)
:func:`timeline`           who held which lock when, in one run, and the failed trylocks
=========================  ======================================================================
"""
from __future__ import annotations

from ._common import esc, html_label, new_digraph

__all__ = ["hierarchy", "wait_for", "timeline", "EDGE_STYLES"]

#: How :func:`hierarchy` draws an edge: (kind, tried) -> (graphviz attributes, legend text).
EDGE_STYLES = {
    ("order", False): ({"color": "#9a9a9a"}, "taken in order"),
    ("order", True): ({"color": "#9a9a9a", "style": "dashed"}, "tried in order"),
    ("trylock", True): ({"color": "#1f6fb4", "style": "dashed", "penwidth": "1.6",
                         "fontcolor": "#1f6fb4"}, "trylock against the order"),
    ("exception", False): ({"color": "#c0392b", "penwidth": "2", "fontcolor": "#c0392b"},
                           "the obj_free exception"),
    ("violation", False): ({"color": "#c0392b", "style": "dotted", "penwidth": "2"},
                           "violation"),
}


def hierarchy(ranks: dict, live: dict, edges: dict, notes: dict | None = None):
    """The lock hierarchy: ``ranks`` ``{name: rank}`` (:func:`tmemref.sim.locking.ranks`),
    ``live`` ``{name: (rank, objects)}`` (:func:`~tmemref.sim.locking.live_locks`), ``edges``
    ``{Edge: times}`` (:func:`~tmemref.sim.locking.lock_edges`); ``notes`` ``{name: text}``
    adds a line under a lock. Locks of one rank share a row, lower ranks above. Edges against
    the order do not move the layout. ``ValueError`` if an edge names a lock with no rank.
    O(locks + edges)."""
    g = new_digraph("locks", size="7.5,9", ranksep="0.45", nodesep="0.35")
    notes = notes or {}
    by_rank: dict = {}
    for name, rank in sorted(ranks.items(), key=lambda kv: (kv[1], kv[0])):
        by_rank.setdefault(rank, []).append(name)
    for rank, names in sorted(by_rank.items()):
        with g.subgraph(name=f"rank{rank}") as s:
            s.attr(rank="same")
            for name in names:
                n = live.get(name, (rank, 0))[1]
                extra = f'<br/><font point-size="8">{esc(notes[name])}</font>' \
                    if name in notes else ""
                s.node(_id(name), html_label(
                    f"<b>{esc(name)}</b><br/>"
                    f'<font point-size="8">rank {rank} · {n} in the host</font>{extra}'),
                    shape="box", style="rounded,filled", fillcolor="#f4f4f4")
    rows = [names for _, names in sorted(by_rank.items())]
    for upper, lower in zip(rows, rows[1:]):         # one row per rank, in rank order
        g.edge(_id(upper[0]), _id(lower[0]), style="invis")
    for e, times in sorted(edges.items(), key=lambda kv: (kv[0].held, kv[0].taken,
                                                          kv[0].kind, kv[0].tried)):
        for name in (e.held, e.taken):
            if name not in ranks:
                raise ValueError(f"lock {name!r} has no rank")
        attrs, _ = EDGE_STYLES[e.kind, e.tried]
        attrs = dict(attrs)
        if e.kind != "order":
            attrs["constraint"] = "false"
            attrs["label"] = f" {'obj_free' if e.kind == 'exception' else e.kind} ×{times}"
        g.edge(_id(e.held), _id(e.taken), **attrs)
    return g


def _id(name: str) -> str:
    return "L_" + "".join(c if c.isalnum() else "_" for c in name)


def wait_for(cycle):
    """A deadlock's wait-for cycle, ``((thread, lock it waits for, holder), ...)`` as in
    :attr:`tmemref.sim.sched.Failure.cycle`: threads as ellipses, locks as boxes, "waits for"
    and "held by" edges. ``ValueError`` for an empty cycle. O(len(cycle))."""
    if not cycle:
        raise ValueError("no cycle to draw")
    g = new_digraph("waitfor", size="6,4", rankdir="LR")
    for thread, lock, holder in cycle:
        for t in (thread, holder):
            g.node("T_" + _id(t), t, shape="ellipse", style="filled", fillcolor="#dbe9f6")
        g.node(_id(lock), lock, shape="box", style="rounded,filled", fillcolor="#fde2c8")
        g.edge("T_" + _id(thread), _id(lock), label=" waits for", color="#c0392b",
               fontcolor="#c0392b")
        g.edge(_id(lock), "T_" + _id(holder), label=" held by", color="#555555")
    return g


def timeline(run, holds, tries, *, title: str = ""):
    """A matplotlib figure of one run: a lane per (thread, lock) with a bar for each hold
    (hatched: read mode), a cross for each failed trylock, and a top lane showing which
    thread ran at each trace position. ``holds`` and ``tries`` as
    :func:`tmemref.sim.locking.holds` and :func:`~tmemref.sim.locking.tries` return them.
    O(holds)."""
    import matplotlib.pyplot as plt
    threads = list(run.names)
    colours = {t: f"C{i}" for i, t in enumerate(threads)}
    lanes: list = []
    for h in holds:
        if (h.thread, h.lock) not in lanes:
            lanes.append((h.thread, h.lock))
    for _, t, lock in tries:
        if (t, lock) not in lanes:
            lanes.append((t, lock))
    lanes.sort(key=lambda lane: (threads.index(lane[0]), _first(lane, holds, tries)))
    y = {lane: len(lanes) - i for i, lane in enumerate(lanes)}
    fig, ax = plt.subplots(figsize=(8, 0.32 * len(lanes) + 1.6))
    for h in holds:
        ax.broken_barh([(h.start, max(h.end - h.start, 0.6))], (y[h.thread, h.lock] - 0.35, 0.7),
                       facecolors=colours[h.thread], alpha=0.55 if h.mode == "R" else 0.85,
                       hatch="///" if h.mode == "R" else None, edgecolor="white")
    for i, t, lock in tries:
        ax.scatter([i + 0.3], [y[t, lock]], marker="x", s=60, color="black", zorder=3)
    top = len(lanes) + 1
    for i, (_, tid, *_rest) in enumerate(run.trace):
        ax.broken_barh([(i, 1)], (top - 0.3, 0.6), facecolors=colours[threads[tid]])
    ax.set_yticks([top] + [y[lane] for lane in lanes])
    ax.set_yticklabels(["running"] + [f"{t}: {lock}" for t, lock in lanes], fontsize=8)
    for label, lane in zip(ax.get_yticklabels()[1:], lanes):
        label.set_color(colours[lane[0]])
    ax.set_xlim(0, len(run.trace) + 1)
    ax.set_ylim(0.3, top + 0.7)
    ax.set_xlabel("position in the recorded schedule (one lock operation, yield or call each)")
    ax.grid(axis="x", alpha=0.3)
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


def _first(lane, holds, tries) -> int:
    starts = [h.start for h in holds if (h.thread, h.lock) == lane]
    starts += [i for i, t, lock in tries if (t, lock) == lane]
    return min(starts)
