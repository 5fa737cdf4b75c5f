"""Explorers that also drive a live kernel.

Not a Xen concept: how the book's sliders work when a chapter is opened as a notebook. In the
static book a slider can only flip between pictures drawn at build time
(:func:`tmemref.viz.explorer`, tied together with ``jslink`` in the browser). In Jupyter there
is a kernel behind the page, so :func:`live_explorer` adds a pane under the pictures and an
``observe`` callback on the slider: each move runs ``live(step)`` in the kernel and shows what it
returns — typically a fresh host replayed to that step (:func:`replayer`) and seen in a way the
static pictures do not show (its ``xl tmem-list``, its LRU order, ``check()``). Edit the steps in
the notebook and the pane follows; the pictures above stay what the build drew.

>>> from tmemref.ds.rbtree import RBTree
>>> from tmemref.viz import rbtree
>>> t = RBTree(); states = []
>>> for k in (1, 2, 3):
...     _ = t.insert(k); states.append((f"insert {k}", rbtree(t)))
>>> box = live_explorer(states, lambda i: f"{i + 1} key(s) inserted")
>>> slider, stack, pane = box.children
>>> "live" in pane.value                 # until the slider moves: how to get a kernel
True
>>> slider.value = 2                     # what a browser does through the kernel's comm
>>> pane.value
'<pre style="white-space:pre-wrap;margin:0.4em 0">3 key(s) inserted</pre>'
"""
from __future__ import annotations

import html

from .explore import explorer, to_svg

#: What the live pane says before the slider first moves (in the static book: always).
HINT = ("In a live notebook (<code>jupyter lab book/&lt;chapter&gt;.md</code>, see the "
        "introduction) moving the slider also runs Python in the kernel, and its result "
        "appears here.")


def _pane_html(result) -> str:
    if isinstance(result, str):
        return (f'<pre style="white-space:pre-wrap;margin:0.4em 0">'
                f'{html.escape(result)}</pre>')
    return f'<div style="max-width:100%;overflow-x:auto">{to_svg(result)}</div>'


def live_explorer(states, live, *, render=None, description: str = "step"):
    """:func:`tmemref.viz.explorer` plus a pane that ``live(step)`` fills from the kernel.

    Returns ``VBox([slider, stack, pane])``. The slider and the stack stay linked in the browser
    (``jslink``), so the static page works as before; in addition ``slider.observe`` calls
    ``live(value)`` on every change and shows its result (text in a ``<pre>``, anything else
    through :func:`tmemref.viz.to_svg`). ``live`` must accept every step ``0 … len(states)-1``.
    O(states × render) to build, O(live) per move."""
    import ipywidgets as widgets
    if not callable(live):
        raise TypeError("live must be callable: live(step) -> text or picture")
    box = explorer(states, render, description=description)
    slider = box.children[0]
    pane = widgets.HTML(f'<div style="font-size:0.85em;color:#555">{HINT}</div>')

    def on_move(change):
        pane.value = _pane_html(live(change["new"]))

    slider.observe(on_move, names="value")
    box.children = (*box.children, pane)
    return box


def replayer(make, view):
    """``live(step)`` for :func:`live_explorer`: build a fresh ``(host, steps)`` with ``make()``,
    apply the first ``step`` steps (``(caption, fn)`` pairs, as :func:`tmemref.viz.record` takes;
    step 0 is the initial state), check the host, and return ``view(host)``.

    Each call starts from scratch, so it is exactly as deterministic as ``make``.
    O(step × cost of a step)."""
    if not callable(make) or not callable(view):
        raise TypeError("make and view must be callable")

    def live(step: int):
        host, steps = make()
        steps = list(steps)
        if not 0 <= step <= len(steps):
            raise ValueError(f"step {step} outside 0..{len(steps)}")
        for _, fn in steps[:step]:
            fn(host)
        host.check()
        return view(host)

    return live
