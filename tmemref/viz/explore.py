"""Kernel-free explorers: a slider over precomputed pictures.

The book is static HTML: widget *state* is embedded in the page but no Python runs behind it,
so an explorer cannot compute a picture when the slider moves. Instead every state is drawn
up front into an ``ipywidgets.Stack`` of ``HTML`` children (inline SVG) and the slider is tied
to the stack with ``widgets.jslink`` — a link the browser itself keeps, kernel or not.

* :func:`record` applies steps to a host and captures a picture after each;
* :func:`explorer` turns ``(caption, picture)`` pairs into ``VBox([slider, stack])``;
* :func:`to_svg` turns a picture (graphviz graph, SVG text, matplotlib figure) into inline SVG.

>>> from tmemref.ds.rbtree import RBTree
>>> from tmemref.viz import rbtree
>>> t = RBTree(); states = []
>>> for k in (1, 2, 3):
...     _ = t.insert(k); states.append((f"insert {k}", rbtree(t)))
>>> box = explorer(states)
>>> slider, stack = box.children
>>> slider.max, len(stack.children), stack.selected_index
(2, 3, 0)
"""
from __future__ import annotations

import base64
import io
import re

_PROLOG = re.compile(r"\A.*?(?=<svg\b)", re.S)
_COMMENT = re.compile(r"<!--.*?-->", re.S)
_SVG_TAG = re.compile(r"<svg\b")


def to_svg(picture) -> str:
    """Inline-able markup for a picture: ``<svg …>`` without XML prolog, DOCTYPE or comments,
    scaled to the column width (``max-width:100%``).

    Accepts a graphviz ``Digraph``/``Graph``/``Source`` (rendered with ``dot``), SVG text, a
    matplotlib ``Figure`` (SVG with text as text), PNG bytes (an ``<img>``), or anything with
    ``_repr_svg_``. Other text is returned as it is (HTML)."""
    if isinstance(picture, (bytes, bytearray)):
        data = base64.b64encode(bytes(picture)).decode("ascii")
        return f'<img style="max-width:100%" src="data:image/png;base64,{data}"/>'
    if hasattr(picture, "pipe") and hasattr(picture, "source"):
        svg = picture.pipe(format="svg").decode("utf-8")
    elif hasattr(picture, "savefig"):
        import matplotlib
        buf = io.StringIO()
        with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "tmemref"}):
            picture.savefig(buf, format="svg", metadata={"Date": None})
        svg = buf.getvalue()
    elif isinstance(picture, str):
        svg = picture
    elif hasattr(picture, "_repr_svg_"):
        svg = picture._repr_svg_()
    else:
        raise TypeError(f"cannot make SVG of a {type(picture).__name__}")
    if "<svg" not in svg:
        return svg
    svg = _PROLOG.sub("", svg, count=1)
    svg = _COMMENT.sub("", svg)
    return _SVG_TAG.sub('<svg style="max-width:100%;height:auto"', svg, count=1).strip()


def _state_html(i: int, n: int, caption, picture) -> str:
    head = ""
    if caption is not None:
        head = (f'<div style="font-size:0.9em;margin:0.2em 0 0.4em 0"><b>{i + 1}/{n}</b> '
                f'{_esc(caption)}</div>')
    return f'<div style="max-width:100%;overflow-x:auto">{head}{to_svg(picture)}</div>'


def _esc(text) -> str:
    import html
    return html.escape(str(text))


def explorer(states, render=None, *, description: str = "step"):
    """A kernel-free explorer: ``VBox([IntSlider, Stack of HTML])``, slider and stack linked
    in the browser (``jslink``), so it works in the static book.

    ``states``: a sequence; each one (after ``render(state)`` if ``render`` is given) is a
    ``(caption, picture)`` pair or a bare picture (see :func:`to_svg`). Every picture is
    rendered now, once. ``ValueError`` for no states. O(states × render)."""
    import ipywidgets as widgets
    states = list(states)
    if not states:
        raise ValueError("an explorer needs at least one state")
    pairs = []
    for st in states:
        if render is not None:
            st = render(st)
        if isinstance(st, tuple) and len(st) == 2:
            pairs.append(st)
        else:
            pairs.append((None, st))
    n = len(pairs)
    children = [widgets.HTML(_state_html(i, n, cap, pic)) for i, (cap, pic) in enumerate(pairs)]
    slider = widgets.IntSlider(value=0, min=0, max=n - 1, step=1, description=description,
                               continuous_update=True,
                               layout=widgets.Layout(width="min(100%, 36em)"))
    stack = widgets.Stack(children, selected_index=0)
    widgets.jslink((slider, "value"), (stack, "selected_index"))
    return widgets.VBox([slider, stack])


def record(host, steps, *, picture=None, initial: str | None = "initial state",
           check: bool = True, show_result: bool = True, **picture_kw):
    """Apply ``steps`` — ``(caption, fn)`` pairs, ``fn(host)`` — to ``host`` in order and
    capture ``picture(host, **picture_kw)`` (default :func:`tmemref.viz.web`) after each.

    Returns ``[(caption, picture), …]`` for :func:`explorer`, starting with the host as it is
    (captioned ``initial``; ``None`` skips it). ``check`` runs ``host.check()`` after every
    step; ``show_result`` appends what ``fn`` returned to the caption (return codes by name:
    ``→ 1``, ``→ -ENOMEM``). A graphviz picture is a snapshot (its DOT text is fixed when it
    is made), so later steps do not change earlier states. The host *is* changed."""
    from ..abi import rc_name
    if picture is None:
        from .web import web as picture
    out = []
    if initial is not None:
        out.append((initial, picture(host, **picture_kw)))
    for caption, fn in steps:
        result = fn(host)
        if check:
            host.check()
        if show_result and result is not None:
            shown = rc_name(result) if isinstance(result, int) and not isinstance(result, bool) \
                else repr(result)
            caption = f"{caption} → {shown}"
        out.append((caption, picture(host, **picture_kw)))
    return out
