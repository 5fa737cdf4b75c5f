"""The book's appendices as code: the package map, the data path, locks, the fidelity tables.

The chapters "How tmemref is built" (``book/architecture.md``) and "Fidelity notes"
(``book/fidelity.md``) only call what is here (and the oracle of :mod:`tmemref.oracle`), so
what they show is computed from the package as it is when the book is built. The engine never
imports this module.

How the package is built:

==================================  ==============================================================
:func:`module_map`,                 every module under ``tmemref`` (``pkgutil.walk_packages``) with
:func:`module_map_html`             its layer (:data:`LAYERS`) and its docstring's first line
:func:`import_edges`,               which layer imports which, read from the source (``ast``);
:func:`layer_graph`,                drawn as a graphviz picture; what the engine imports from
:func:`third_party_imports`         outside the standard library
:func:`design_vs_package`           the house DESIGN §3 planned next to the modules that exist
:func:`engine_lines`                lines of Python in the engine's modules (the README's figure)
:data:`PUT_PATH`, :data:`EVICT_PATH`  the steps of a put (top-down) and of an eviction (bottom-up),
                                    each naming the real function that takes it
:func:`data_path_diagram`           both paths as one graphviz picture
:func:`traced_put`,                 a real put that has to evict first, its Python calls recorded
:func:`calls_during`,               (``sys.setprofile``), and where each step of the diagram shows
:func:`path_rows`                   up in them
:func:`lock_order_from_doc`,        the lock order as ``tmemref.host.locks`` documents it, the
:func:`live_lock_ranks`,            ranks of the lock objects a live host really holds, and the
:func:`lock_rows`                   two joined
:func:`host_options`,               the oracle ABI: ``Host``'s keyword arguments with their
:func:`tmemop_fields`               docstring lines, ``TmemOp``'s fields with their comments
==================================  ==============================================================

Fidelity:

==================================  ==============================================================
:func:`html_table`,                 HTML tables (no pandas) for ``IPython.display.HTML``; the
:func:`fidelity_html`               fidelity notes grouped by kind (:data:`KIND_ORDER`)
:func:`option_kwargs`               the ``Host`` keyword arguments a note's ``option`` names
:data:`OPTION_DEMOS`,               for each such argument, a live run under two settings
:func:`option_rows`
:func:`quota_truth_table`,          ``client_over_quota`` and the list an eviction really takes
:func:`quota_table_rows`            from, on real hosts, under both quota rules
:data:`XEN_QUIRKS`,                 Xen's known save/restore bugs and LIST quirks, each with what
:func:`quirk_rows`                  tmemref does, observed live
:data:`VERSION_HISTORY`,            Xen's tmem versions and what tmemref takes from each, with
:func:`version_rows`                live checks where a claim can be checked
==================================  ==============================================================

>>> layer_of("tmemref.oracle"), layer_of("tmemref.core.host")
('tools', 'core')
"""
from __future__ import annotations

import ast
import dataclasses
import errno
import hashlib
import html
import importlib
import importlib.util
import inspect
import pkgutil
import re
import sys
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from .. import abi, fidelity
from ..abi import TmemOp
from ..core import evict
from ..core.host import Host
from ..core.listparse import format_list_parse, parse_list
from ..core.pool import Pool
from ..ds import dlist
from ..ds.radix import RadixTree
from ..ds.rbtree import RBTree
from ..guest.ops import TmemOps
from ..host import locks
from ..host.frames import HostMemory
from ..oracle import ORACLE_PAGES, oracle_host, page_of

PAGE = abi.PAGE_SIZE

# =================================================================================================
# The package map
# =================================================================================================

#: The layers, nearest the guest first, then the tooling built on top. ``(name, what it is,
#: the second component of the module names it holds)``; ``""`` is the package ``tmemref`` itself.
LAYERS: Tuple[Tuple[str, str, Tuple[str, ...]], ...] = (
    ("guest", "the Linux side and the administrator's tools, over the one hypercall",
     ("guest", "xl", "migrate")),
    ("public face", "what a user imports: Host, TmemOp, abi, InvariantError",
     ("", "abi", "errors")),
    ("core", "Xen's tmem.c: the hypercall, the web of structures, eviction, control, stats",
     ("core",)),
    ("host", "what the hypervisor provides: frames and billing, sub-page allocation, locks",
     ("host",)),
    ("ds", "the data structures Xen borrowed from Linux", ("ds",)),
    ("sim", "workloads and experiment runners on top of the engine", ("sim",)),
    ("viz", "pictures, kernel-free explorers and the tables of the book", ("viz",)),
    ("tools", "what a user runs: the oracle, Hypothesis strategies and a pytest plugin, the "
              "command line", ("oracle", "strategies", "cli", "__main__", "progress")),
    ("records", "where tmemref differs from Xen", ("fidelity",)),
)
#: The layer of modules no entry of :data:`LAYERS` claims (shown, never dropped).
OTHER_LAYER = "other"
#: Layers that make up the engine: they must not import the tooling layers.
ENGINE_UNITS = ("", "abi", "errors", "core", "host", "ds")
TOOLING_UNITS = ("guest", "xl", "migrate", "sim", "viz", "oracle", "strategies", "cli",
                 "__main__", "progress", "fidelity", "coverage")


def unit_of(name: str) -> str:
    """The second component of a dotted module name (``""`` for ``tmemref`` itself).

    >>> unit_of("tmemref"), unit_of("tmemref.core.host"), unit_of("tmemref.abi")
    ('', 'core', 'abi')
    """
    parts = name.split(".")
    return parts[1] if len(parts) > 1 else ""


def layer_of(name: str) -> str:
    """The :data:`LAYERS` name of a module (``"other"`` if no layer claims it).

    >>> layer_of("tmemref.core.evict"), layer_of("tmemref"), layer_of("tmemref.new")
    ('core', 'public face', 'other')
    """
    unit = unit_of(name)
    for layer, _, units in LAYERS:
        if unit in units:
            return layer
    return OTHER_LAYER


@dataclass(frozen=True)
class ModuleInfo:
    """One module of the package, as :func:`module_map` found it."""
    name: str          # dotted name, e.g. "tmemref.core.host"
    is_package: bool   # a folder with an __init__.py
    layer: str         # a LAYERS name, or "other"
    summary: str       # first line of the module docstring ("" if it has none)


def _walk(package: str) -> List[Tuple[str, bool]]:
    pkg = importlib.import_module(package)

    def fail(name):                      # a package that does not import must not vanish
        raise ImportError(f"cannot import {name} while walking {package}")

    found = [(package, True)]
    found += [(m.name, m.ispkg)
              for m in pkgutil.walk_packages(pkg.__path__, package + ".", onerror=fail)]
    return sorted(found)


def module_map(package: str = "tmemref") -> List[ModuleInfo]:
    """Every module of ``package``, found with ``pkgutil.walk_packages`` and imported, sorted by
    layer (in :data:`LAYERS` order, "other" last) and then by name. O(modules).

    >>> m = {i.name: i for i in module_map()}
    >>> m["tmemref.core.host"].summary.startswith("Xen: ``tmem.c``"), m["tmemref.ds"].is_package
    (True, True)
    """
    order = {layer: i for i, (layer, _, _) in enumerate(LAYERS)}
    out = []
    for name, ispkg in _walk(package):
        doc = inspect.getdoc(importlib.import_module(name)) or ""
        summary = doc.strip().splitlines()[0].strip() if doc.strip() else ""
        out.append(ModuleInfo(name, ispkg, layer_of(name), summary))
    return sorted(out, key=lambda m: (order.get(m.layer, len(order)), m.name))


def rst_plain(text: str) -> str:
    """Docstring markup as plain text: ``x``, *x*, **x** and :role:`~a.b` become x, x, x, b.

    >>> rst_plain("Xen: ``tmem.c``, *not* :class:`~tmemref.Host`, **or** :mod:`tmemref.abi`")
    'Xen: tmem.c, not Host, or tmemref.abi'
    """
    text = re.sub(r":\w+:`~[\w.]*?(\w+)`", r"\1", text)
    text = re.sub(r":\w+:`([^`]*)`", r"\1", text)
    text = re.sub(r"\*\*(\S[^*]*?)\*\*", r"\1", text)
    text = re.sub(r"(?<![\w*])\*(\S[^*]*?)\*(?![\w*])", r"\1", text)
    return re.sub(r"``([^`]*)``", r"\1", text)


def code_list(items: Sequence[str]) -> str:
    """Markdown: the items as inline code, comma-separated ("none" if there are none).

    >>> code_list(["a.py", "b.py"]), code_list([])
    ('`a.py`, `b.py`', 'none')
    """
    return ", ".join(f"`{x}`" for x in items) or "none"


def module_map_html(package: str = "tmemref") -> str:
    """:func:`module_map` as an HTML table, one group per layer (with the layer's gloss)."""
    gloss = {layer: what for layer, what, _ in LAYERS}
    groups: List[Tuple[str, List[tuple]]] = []
    for m in module_map(package):
        title = f"{m.layer} — {gloss[m.layer]}" if m.layer in gloss else m.layer
        if not groups or groups[-1][0] != title:
            groups.append((title, []))
        groups[-1][1].append((m.name + ("/" if m.is_package else ""),
                              rst_plain(m.summary) or "(no module docstring)"))
    return html_table(["module", "first line of its docstring"], groups=groups,
                      code_columns=[0])


def _imports_of(name: str, is_package: bool, source: str) -> List[Tuple[str, bool]]:
    """(absolute module name, lazy) for each import in ``source``; lazy = inside a function."""
    base = name if is_package else name.rpartition(".")[0]
    out = []

    def visit(node, lazy):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.expr):      # no import statement lives in an expression
                continue
            inner = lazy or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
            if isinstance(child, ast.Import):
                out.extend((a.name, lazy) for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    root = base
                    for _ in range(child.level - 1):
                        root = root.rpartition(".")[0]
                    target = root + ("." + child.module if child.module else "")
                else:
                    target = child.module or ""
                if child.module is None:       # "from .. import abi": the names are modules
                    out.extend((target + "." + a.name, lazy) for a in child.names)
                else:
                    out.append((target, lazy))
            visit(child, inner)

    visit(ast.parse(source), False)
    return out


def import_edges(package: str = "tmemref") -> List[Tuple[str, str, bool]]:
    """Which unit imports which: sorted ``(importer, imported, lazy)`` over the units of
    :func:`unit_of` (``""`` = the package's ``__init__``), read from every module's source with
    ``ast``. ``lazy`` is True when *every* such import sits inside a function. Self-imports
    (a unit importing its own modules) are left out. O(source size).

    >>> ("core", "host", False) in import_edges()
    True
    """
    edges: Dict[Tuple[str, str], bool] = {}
    for name, ispkg in _walk(package):
        spec = importlib.util.find_spec(name)
        with open(spec.origin, encoding="utf-8") as f:
            source = f.read()
        for target, lazy in _imports_of(name, ispkg, source):
            if target != package and not target.startswith(package + "."):
                continue
            a, b = unit_of(name), unit_of(target)
            if a == b:
                continue
            edges[(a, b)] = edges.get((a, b), True) and lazy
    return sorted((a, b, lazy) for (a, b), lazy in edges.items())


def third_party_imports(units: Sequence[str], package: str = "tmemref", *,
                        eager_only: bool = False) -> List[str]:
    """Top-level names of the modules outside ``package`` and outside Python's standard
    library (``sys.stdlib_module_names``) that the modules of ``units`` import, lazily or
    not (only at module level with ``eager_only``); sorted.

    >>> third_party_imports(["errors"]), third_party_imports(["core"])
    ([], ['numpy'])
    """
    found = set()
    for name, ispkg in _walk(package):
        if unit_of(name) not in units:
            continue
        spec = importlib.util.find_spec(name)
        with open(spec.origin, encoding="utf-8") as f:
            source = f.read()
        for target, lazy in _imports_of(name, ispkg, source):
            top = target.split(".")[0]
            if top and top != package and top not in sys.stdlib_module_names \
                    and not (eager_only and lazy):
                found.add(top)
    return sorted(found)


def engine_lines(package: str = "tmemref") -> int:
    """Lines of Python — every line, docstrings and comments included — in the modules of the
    engine (:data:`ENGINE_UNITS`: the package's ``__init__``, ``abi``, ``errors``, ``core``,
    ``host`` and ``ds``): the size the README states. O(source size).

    >>> 1000 < engine_lines() < 20000
    True
    """
    total = 0
    for name, _ in _walk(package):
        if unit_of(name) in ENGINE_UNITS:
            with open(importlib.util.find_spec(name).origin, encoding="utf-8") as f:
                total += sum(1 for _ in f)
    return total


def _unit_label(unit: str) -> str:
    return "tmemref" if unit == "" else unit


def layer_graph(package: str = "tmemref"):
    """A ``graphviz.Digraph`` of :func:`import_edges`: one box per unit, filled by layer and
    labelled with it, an arrow from importer to imported (dashed: only inside functions, i.e.
    lazily). Importers are drawn above what they import."""
    import graphviz
    edges = import_edges(package)
    units = sorted({u for a, b, _ in edges for u in (a, b)}
                   | {unit_of(n) for n, _ in _walk(package)})
    g = graphviz.Digraph("layers", graph_attr={
        "rankdir": "TB", "size": "7.5,6", "fontname": "Helvetica", "fontsize": "10",
        "nodesep": "0.35", "ranksep": "0.5", "concentrate": "true"},
        node_attr={"shape": "box", "style": "rounded,filled", "fontname": "Helvetica",
                   "fontsize": "11", "margin": "0.12,0.04"},
        edge_attr={"arrowsize": "0.6", "color": "#666666"})
    for u in units:
        layer = layer_of(package + ("." + u if u else ""))
        g.node(f"u_{u or 'tmemref'}",
               f"<<b>{html.escape(_unit_label(u))}</b><br/>"
               f"<font point-size='8' color='#555555'>{html.escape(layer)}</font>>",
               fillcolor=LAYER_FILLS.get(layer, "#eeeeee"))
    for a, b, lazy in edges:
        g.edge(f"u_{a or 'tmemref'}", f"u_{b or 'tmemref'}",
               style="dashed" if lazy else "solid")
    return g


#: Fill colour of each layer in :func:`layer_graph`.
LAYER_FILLS = {"guest": "#fde2c8", "public face": "#dbe9f6", "core": "#c9def2",
               "host": "#d8f0d2", "ds": "#e6e0f5", "sim": "#fff3b0", "viz": "#fff3b0",
               "tools": "#fff3b0", "records": "#f3d6e8"}


#: The house as DESIGN §3 planned it (module paths under ``tmemref/``; a folder stands for
#: everything in it).
DESIGN_HOUSE = (
    "__init__.py", "abi.py", "core/host.py", "core/client.py", "core/pool.py", "core/obj.py",
    "core/pcd.py", "core/evict.py", "core/control.py", "core/stats.py", "host/frames.py",
    "host/tlsf.py", "host/compress.py", "host/locks.py", "ds/rbtree.py", "ds/radix.py",
    "ds/dlist.py", "guest/", "sim/", "viz/", "migrate.py", "oracle.py", "strategies.py", "xl.py", "__main__.py",
    "cli.py")


def _module_path(name: str, is_package: bool) -> str:
    rel = "/".join(name.split(".")[1:])
    if is_package:
        return (rel + "/" if rel else "") + "__init__.py"
    return rel + ".py"


def design_vs_package(package: str = "tmemref") -> List[Tuple[str, str, str]]:
    """Rows ``(path, in DESIGN §3, in the package)`` — each ``"yes"`` or ``"—"`` — for every
    module either of them has, sorted by path. A DESIGN folder entry (``guest/``) counts as
    present when the folder has any module; the package's modules inside such a folder are
    reported as planned."""
    present = {_module_path(n, p) for n, p in _walk(package)}
    folders = {d for d in DESIGN_HOUSE if d.endswith("/")}
    rows = []
    for path in sorted(set(DESIGN_HOUSE) | present):
        if path.endswith("/"):
            rows.append((path, "yes", "yes" if any(p.startswith(path) for p in present)
                         else "—"))
            continue
        if any(path.startswith(d) for d in folders):
            continue                       # covered by its folder's row
        if path.endswith("/__init__.py") and path not in DESIGN_HOUSE:
            continue                       # a sub-package's __init__: implied by its modules
        rows.append((path, "yes" if path in DESIGN_HOUSE else "—",
                     "yes" if path in present else "—"))
    return rows


# =================================================================================================
# The data path
# =================================================================================================

@dataclass(frozen=True)
class Step:
    """One step of a walk through the web, and the function that takes it."""
    label: str         # what happens, in the book's words
    fn: Callable       # the real function (its code object is looked for in a call trace)

    @property
    def qualname(self) -> str:
        fn = inspect.unwrap(self.fn)
        return f"{fn.__module__}.{fn.__qualname__}"


#: A put, top-down: guest → hypercall → client → pool → bucket → rb-tree → obj → radix tree →
#: pgp → frame → LRU lists. (The object is new here, so it is inserted into the rb-tree.)
PUT_PATH: Tuple[Step, ...] = (
    Step("the guest makes the hypercall (TMEM_PUT_PAGE)", TmemOps.put_page),
    Step("one entry point: the caller's client, the op checked", Host.do_tmem_op),
    Step("the 1 MB guard: evict until min_free_pages are free", evict.ensure_avail_pages),
    Step("client.pools[pool_id]: the pool; do_tmem_put", Host._put),
    Step("bucket (oid0^oid1^oid2) & 255: look the object up", Pool.find),
    Step("the bucket's red-black tree, keyed (oid2, oid1, oid0)", RBTree.find),
    Step("not there: a new object, inserted into that tree", RBTree.insert),
    Step("the object's radix tree: index -> a new pgp", RadixTree.insert),
    Step("the data: into a frame (or compressed bytes)", Host._pgp_store),
    Step("the frame: tmem_page_list first, else the heap", HostMemory.alloc_tmem_page),
    Step("onto both LRU lists, at the young end", Host._pgp_enlist),
)

#: An eviction, bottom-up through back pointers: LRU list → pgp → obj → pool, with trylocks.
EVICT_PATH: Tuple[Step, ...] = (
    Step("eph_lists_spinlock; own list if over quota, else global", evict.tmem_evict),
    Step("walk the list from its oldest pgp", dlist.list_iter),
    Step("pgp -> obj (back pointer): trylock obj_spinlock", locks.SpinLock.trylock),
    Step("its last page? obj -> pool: write_trylock pool_rwlock", locks.RWLock.write_trylock),
    Step("off both LRU lists", dlist.list_del),
    Step("out of the object's radix tree", RadixTree.delete),
    Step("the frame back onto tmem_page_list, unscrubbed", HostMemory.free_tmem_page),
    Step("the object is empty: out of its bucket's rb-tree", RBTree.erase),
)


def _step_number(steps: Sequence[Step], fn: Callable) -> int:
    return next(i for i, s in enumerate(steps, start=1) if s.fn is fn)


def data_path_diagram():
    """A ``graphviz.Digraph`` of :data:`PUT_PATH` (blue, top-down) beside :data:`EVICT_PATH`
    (orange, bottom-up): each step a box naming its function; the guard's call into eviction
    and the freed frame's reuse by the put drawn between them."""
    import graphviz
    blue, orange = "#1f6fb4", "#d35400"
    g = graphviz.Digraph("data_path", graph_attr={
        "rankdir": "TB", "size": "7.5,9", "fontname": "Helvetica", "fontsize": "10",
        "nodesep": "0.3", "ranksep": "0.22", "newrank": "true"},
        node_attr={"shape": "box", "style": "rounded,filled", "fontname": "Helvetica",
                   "fontsize": "9", "margin": "0.08,0.03"},
        edge_attr={"arrowsize": "0.6", "fontname": "Helvetica", "fontsize": "8"})

    def label(n, prefix, step):
        return (f"<<b>{prefix}{n}</b> {html.escape(step.label)}<br/>"
                f"<font point-size='8' color='#555555'>{html.escape(step.qualname)}</font>>")

    for side, steps, colour, fill, prefix in (("put", PUT_PATH, blue, "#dbe9f6", "P"),
                                              ("evict", EVICT_PATH, orange, "#fde2c8", "E")):
        with g.subgraph(name=f"cluster_{side}") as c:
            c.attr(label="a put, top-down" if side == "put" else
                   "an eviction, bottom-up (only trylocks)",
                   color=colour, fontcolor=colour, style="rounded")
            for i, step in enumerate(steps, start=1):
                c.node(f"{side}{i}", label(i, prefix, step), fillcolor=fill)
            for i in range(1, len(steps)):
                c.edge(f"{side}{i}", f"{side}{i + 1}", color=colour)
    guard = _step_number(PUT_PATH, evict.ensure_avail_pages)
    freed = _step_number(EVICT_PATH, HostMemory.free_tmem_page)
    alloc = _step_number(PUT_PATH, HostMemory.alloc_tmem_page)
    g.edge(f"put{guard}", "evict1", style="dashed", color=orange,
           label=" fewer than\n min_free_pages", fontcolor=orange, constraint="false")
    g.edge(f"evict{freed}", f"put{alloc}", style="dashed", color=blue,
           label=" reused by\n the put", fontcolor=blue, constraint="false")
    return g


def calls_during(action: Callable[[], object]) -> List[object]:
    """The code objects of every Python function called while ``action()`` runs, in order
    (``sys.setprofile``; calls made by C code into Python included). O(calls)."""
    calls: List[object] = []

    def profiler(frame, event, arg):
        if event == "call":
            calls.append(frame.f_code)

    old = sys.getprofile()
    sys.setprofile(profiler)
    try:
        action()
    finally:
        sys.setprofile(old)
    return calls


def traced_put(host_pages: int = 1024, guest_pages: int = 600):
    """A put that has to evict first, its calls recorded.

    Builds a host of ``host_pages`` frames and a guest owning ``guest_pages`` of them, fills an
    ephemeral pool with one-page objects until fewer than ``min_free_pages`` frames are free,
    then records the calls of one more put (a new object): its guard evicts the oldest page
    (the last of its object) and the put reuses the freed frame. Returns ``(host, calls,
    evicted)`` where ``evicted`` is the ``(oid, index)`` that went. ``host.check()`` passes.
    """
    host = Host(pages=host_pages)
    host.create_domain(1, pages=guest_pages, max_pages=guest_pages)
    g = TmemOps(host, 1)
    pool = g.new_pool()
    n = 0
    while host.mem.guard_pages() >= host.min_free_pages:
        rc = g.put_page(pool, (n, 0, 0), 0, page_of(n))
        if rc != 1:
            raise RuntimeError(f"filling put {n} returned {abi.rc_name(rc)}")
        n += 1
    host.check()
    oldest = host.eph_list.next.owner
    evicted = (oldest.obj.oid, oldest.index)
    before = host.evicted_pgs
    calls = calls_during(lambda: g.put_page(pool, (n, 0, 0), 0, page_of(n)))
    if g.last_rc != 1 or host.evicted_pgs != before + 1:
        raise RuntimeError("the traced put did not evict exactly one page and succeed")
    host.check()
    return host, calls, evicted


def path_rows(steps: Sequence[Step], calls: Sequence[object], start: int = 0) -> List[tuple]:
    """Where each step shows up in ``calls``: rows ``(n, label, function, call number)``.

    Steps are matched in order: each one's function is looked for *after* the previous step's
    call (from ``start``), so a row with a call number proves the steps happened in the
    diagram's order; ``None`` means the function was not called after the previous step.
    Call numbers count from 1. O(len(calls))."""
    rows, pos = [], start - 1
    for n, step in enumerate(steps, start=1):
        code = inspect.unwrap(step.fn).__code__
        found = next((i for i in range(pos + 1, len(calls)) if calls[i] is code), None)
        if found is not None:
            pos = found
        rows.append((n, step.label, step.qualname, None if found is None else found + 1))
    return rows


# =================================================================================================
# Locks
# =================================================================================================

_RANK_LINE = re.compile(r"^\s*rank (\d+)\s+(\S+)\s+(.*\S)\s*$")


def lock_order_from_doc(doc: Optional[str] = None) -> List[Tuple[int, str, str]]:
    """The lock order block of :mod:`tmemref.host.locks`' docstring as rows ``(rank, lock,
    protects)``, continuation lines joined, in the docstring's order.

    >>> [r[:2] for r in lock_order_from_doc()][:3]
    [(0, 'tmem_rwlock'), (1, 'pool_rwlock'), (2, 'obj_spinlock')]
    """
    doc = locks.__doc__ if doc is None else doc
    rows: List[list] = []
    for line in doc.splitlines():
        m = _RANK_LINE.match(line)
        if m:
            rows.append([int(m.group(1)), m.group(2), m.group(3)])
        elif rows and line.startswith(" " * 20) and line.strip():
            rows[-1][2] += " " + line.strip()
        elif rows and not line.strip():
            break
    return [tuple(r) for r in rows]


def _lock_objects(host) -> List[object]:
    found = [host.tmem_rwlock, host.eph_lists_lock, host.pers_lists_lock,
             host.mem.page_list_lock, host.mem.heap_lock]
    for client in host.clients.values():
        for pool in client.pools:
            if pool is not None:
                found.append(pool.lock)
                found.extend(obj.lock for obj in pool.objects())
    return [x for x in found if isinstance(x, (locks.SpinLock, locks.RWLock))]


def live_lock_ranks(host=None) -> Dict[str, Tuple[int, int]]:
    """``{lock name: (rank, instances)}`` of the lock objects a live host holds: its own, its
    memory's, and every pool's and object's. Default host: one guest, one ephemeral pool,
    one page stored."""
    if host is None:
        host = oracle_host()
        host.create_domain(1, pages=16)
        g = TmemOps(host, 1)
        g.put_page(g.new_pool(), (7, 0, 0), 0, page_of(7))
    out: Dict[str, Tuple[int, int]] = {}
    for lock in _lock_objects(host):
        rank, n = out.get(lock.name, (lock.rank, 0))
        if rank != lock.rank:
            raise ValueError(f"two {lock.name} locks with ranks {rank} and {lock.rank}")
        out[lock.name] = (rank, n + 1)
    return out


def lock_rows(host=None) -> List[Tuple[int, str, str, str, str]]:
    """Rows ``(rank, lock, protects, live instances, live rank)`` joining
    :func:`lock_order_from_doc` and :func:`live_lock_ranks`: ``"—"`` where a documented lock
    has no object in a live host; ``"agrees"`` or ``"DIFFERS (n)"`` for the live rank. Live
    locks the docstring does not list are appended with rank ``-1`` and protects ``"(not in
    the docstring)"``."""
    live = live_lock_ranks(host)
    rows = []
    for rank, name, protects in lock_order_from_doc():
        if name in live:
            lrank, n = live.pop(name)
            rows.append((rank, name, rst_plain(protects), str(n),
                         "agrees" if lrank == rank else f"DIFFERS ({lrank})"))
        else:
            rows.append((rank, name, rst_plain(protects), "—", "—"))
    for name, (lrank, n) in sorted(live.items()):
        rows.append((-1, name, "(not in the docstring)", str(n), f"DIFFERS ({lrank})"))
    return rows


# =================================================================================================
# The oracle ABI
# =================================================================================================

def _doc_bullets(doc: str) -> Dict[str, str]:
    """``{name: text}`` from docstring bullets ``* ``a``, ``b`` — text`` (continued lines
    joined)."""
    out: Dict[str, str] = {}
    names: List[str] = []
    for line in doc.splitlines():
        s = line.strip()
        if line.startswith("* ``") and " — " in s:
            head, text = s[2:].split(" — ", 1)
            names = re.findall(r"``(\w+)``", head)
            for n in names:
                out[n] = text
        elif names and s and line.startswith("  "):
            for n in names:
                out[n] += " " + s
        else:
            names = []
    return out


def host_options() -> List[Tuple[str, str, str]]:
    """Rows ``(keyword, default, what the Host docstring says)`` for every parameter of
    ``Host`` (``""`` where the docstring says nothing), in signature order."""
    bullets = _doc_bullets(inspect.getdoc(Host) or "")
    rows = []
    for name, p in inspect.signature(Host).parameters.items():
        default = "(required)" if p.default is inspect.Parameter.empty else repr(p.default)
        rows.append((name, default, rst_plain(bullets.get(name, ""))))
    return rows


def tmemop_fields() -> List[Tuple[str, str, str]]:
    """Rows ``(field, default, its comment in the source)`` for every field of ``TmemOp``."""
    source = inspect.getsource(TmemOp)
    comments = {}
    for line in source.splitlines():
        m = re.match(r"\s+(\w+):[^#]*#\s*(.*)$", line)
        if m:
            comments[m.group(1)] = m.group(2).strip()
    rows = []
    for f in dataclasses.fields(TmemOp):
        if f.default is not dataclasses.MISSING:
            default = repr(f.default)
        elif f.default_factory is not dataclasses.MISSING:
            default = repr(f.default_factory())
        else:
            default = "(required)"
        rows.append((f.name, default, comments.get(f.name, "")))
    return rows


# =================================================================================================
# HTML tables
# =================================================================================================

_TABLE_STYLE = ("border-collapse:collapse;font-size:0.85em;line-height:1.35;margin:0.5em 0 1em;"
                "width:100%")
_CELL_STYLE = ("border-top:1px solid #d0d7de;padding:4px 8px;text-align:left;vertical-align:top;"
               "overflow-wrap:break-word")
_HEAD_STYLE = _CELL_STYLE + ";border-bottom:2px solid #8c959f;background:#f6f8fa"
_GROUP_STYLE = _CELL_STYLE + ";background:#eef3f8;font-weight:bold"


def _cell(value, code: bool) -> str:
    raw = "" if value is None else str(value)
    text = html.escape(raw)
    if not code or not text:
        return text
    if len(raw) <= 20:                   # short code (-EFROZEN, 0x1000000) never breaks
        return f'<code style="white-space:nowrap">{text}</code>'
    return f"<code>{text}</code>"


def html_table(headers: Sequence[str], rows: Sequence[Sequence] = (), *,
               groups: Optional[Sequence[Tuple[str, Sequence[Sequence]]]] = None,
               code_columns: Sequence[int] = (), caption: Optional[str] = None) -> str:
    """An HTML ``<table>`` (inline styles, no pandas) for ``IPython.display.HTML``.

    Every cell is escaped; ``None`` is an empty cell; columns in ``code_columns`` are set in
    ``<code>``. ``groups``, instead of ``rows``: ``(title, rows)`` pairs, each introduced by a
    full-width title row. O(cells).

    >>> print(html_table(["a", "b"], [(1, "<x>")], code_columns=[1]).replace(_HEAD_STYLE, "H")
    ...       .replace(_CELL_STYLE, "S").replace(_TABLE_STYLE, "T").replace("white-space:", ""))
    <table class="tmemref-table" style="T">
    <thead><tr><th style="H">a</th><th style="H">b</th></tr></thead>
    <tbody>
    <tr><td style="S">1</td><td style="S"><code style="nowrap">&lt;x&gt;</code></td></tr>
    </tbody>
    </table>
    """
    code = set(code_columns)
    out = [f'<table class="tmemref-table" style="{_TABLE_STYLE}">']
    if caption:
        out.append(f"<caption>{html.escape(caption)}</caption>")
    out.append("<thead><tr>" + "".join(f'<th style="{_HEAD_STYLE}">{html.escape(str(h))}</th>'
                                       for h in headers) + "</tr></thead>")
    out.append("<tbody>")
    for title, grows in (groups if groups is not None else [(None, rows)]):
        if title is not None:
            out.append(f'<tr><td colspan="{len(headers)}" style="{_GROUP_STYLE}">'
                       f"{html.escape(str(title))}</td></tr>")
        for row in grows:
            if len(row) != len(headers):
                raise ValueError(f"row {row!r} has {len(row)} cells for {len(headers)} headers")
            out.append("<tr>" + "".join(f'<td style="{_CELL_STYLE}">{_cell(v, i in code)}</td>'
                                        for i, v in enumerate(row)) + "</tr>")
    out.append("</tbody>")
    out.append("</table>")
    return "\n".join(out)


# =================================================================================================
# Fidelity
# =================================================================================================

#: The kinds of fidelity note, in the order the book shows them, each with a gloss.
KIND_ORDER: Tuple[Tuple[str, str], ...] = (
    ("code vs doc", "Xen's code and its documentation disagree: tmemref follows the documented "
                    "intent, with the code's behaviour behind an option where it is observable"),
    ("version", "Xen changed its behaviour between releases: tmemref picks one version"),
    ("choice", "Xen's behaviour is unobservable, accidental or impractical to copy: tmemref "
               "chose, and says what it chose"),
    ("bug not reproduced", "a known Xen bug: named here, not reproduced"),
    ("not modelled yet", "part of Xen tmemref does not have yet: it refuses loudly rather "
                         "than pretend"),
)


def fidelity_groups(rows=None) -> List[Tuple[str, List[tuple]]]:
    """:func:`tmemref.fidelity.table` rows grouped by kind, in :data:`KIND_ORDER`; kinds not
    listed there follow, sorted, so a new kind is shown rather than lost. Each group's rows
    are ``(topic, xen, tmemref, option)``; the title is ``"kind — gloss (n)"``."""
    rows = fidelity.table() if rows is None else rows
    gloss = dict(KIND_ORDER)
    kinds = [k for k, _ in KIND_ORDER] + sorted({r[1] for r in rows} - set(gloss))
    groups = []
    for kind in kinds:
        members = [(t, x, m, o) for t, k, x, m, o in rows if k == kind]
        if members:
            title = f"{kind} — {gloss[kind]} ({len(members)})" if kind in gloss else \
                f"{kind} ({len(members)})"
            groups.append((title, members))
    return groups


def fidelity_html(rows=None) -> str:
    """The fidelity notes as one HTML table grouped by kind (see :func:`fidelity_groups`)."""
    return html_table(["topic", "Xen (docs and code)", "tmemref", "option"],
                      groups=fidelity_groups(rows), code_columns=[3])


def option_kwargs(option: str) -> List[str]:
    """The keyword arguments a note's ``option`` names, e.g. ``'Host(quota_rule="xen")'`` →
    ``['quota_rule']``. ``ValueError`` unless it is a call of ``Host`` with keywords only.

    >>> option_kwargs("Host(min_free_pages=..., evict_budget=...)")
    ['min_free_pages', 'evict_budget']
    """
    try:
        tree = ast.parse(option.strip(), mode="eval").body
    except SyntaxError as e:
        raise ValueError(f"not a call: {option!r}") from e
    if not (isinstance(tree, ast.Call) and isinstance(tree.func, ast.Name)
            and tree.func.id == "Host" and not tree.args and tree.keywords
            and all(k.arg for k in tree.keywords)):
        raise ValueError(f"not Host(keyword=...): {option!r}")
    return [k.arg for k in tree.keywords]


# --- live demonstrations of the options ----------------------------------------------------------

def _control(host, subop: int, cli_id: int, arg1: int = 0) -> int:
    return host.do_tmem_op(0, TmemOp(cmd=abi.TMEM_CONTROL, subop=subop, cli_id=cli_id,
                                     arg1=arg1))


#: ``(c, g, w, T)`` rows of :func:`quota_truth_table`: the client holds ``c`` of ``g``
#: ephemeral pages and has weight ``w`` of a total ``T``.
QUOTA_ROWS = ((10, 100, 1, 4), (25, 100, 1, 4), (50, 100, 1, 4), (60, 100, 3, 4),
              (90, 100, 3, 4), (50, 100, 0, 4))


def _quota_host(rule: str, c: int, g: int, w: int, total: int) -> Host:
    host = Host(pages=ORACLE_PAGES, quota_rule=rule)
    guests = {}
    for domid in (1, 2):
        host.create_domain(domid, pages=16)
        ops = TmemOps(host, domid)
        guests[domid] = (ops, ops.new_pool())
    for domid, weight in ((1, w), (2, total - w)):
        if _control(host, abi.TMEMC_SET_WEIGHT, domid, weight) != 0:
            raise RuntimeError("SET_WEIGHT failed")
    for domid, count in ((2, g - c), (1, c)):      # domain 2's pages are the older ones
        ops, pool = guests[domid]
        for i in range(count):
            if ops.put_page(pool, (i, domid, 0), 0, page_of(i)) != 1:
                raise RuntimeError("a put failed")
    host.check()
    return host


def quota_truth_table(rows: Sequence[Tuple[int, int, int, int]] = QUOTA_ROWS) -> List[dict]:
    """For each ``(c, g, w, T)`` and each ``quota_rule``, a real host: domain 2 puts ``g - c``
    ephemeral pages, then domain 1 puts ``c``; weights ``w`` and ``T - w`` are set with
    ``TMEMC_SET_WEIGHT``. Then :func:`tmemref.core.evict.client_over_quota` is asked about
    domain 1, and one eviction is run on domain 1's behalf: the oldest page on the global list
    is domain 2's, on domain 1's own list domain 1's, so whose page went shows which list the
    eviction used. Returns one dict per row: ``c, g, w, T``, ``share`` and ``weight_share``
    (percent), and for each rule ``"doc"``/``"xen"`` a pair ``(over_quota, evicted_from)``."""
    out = []
    for c, g, w, total in rows:
        row = {"c": c, "g": g, "w": w, "T": total, "share": 100 * c / g,
               "weight_share": 100 * w / total}
        for rule in ("doc", "xen"):
            host = _quota_host(rule, c, g, w, total)
            client = host.clients[1]
            over = evict.client_over_quota(host, client)
            before = client.eph_count
            if evict.tmem_evict(host, client) != 1:
                raise RuntimeError("nothing was evicted")
            host.check()
            row[rule] = (over, "own list" if client.eph_count < before else "global LRU")
        out.append(row)
    return out


def quota_table_rows(rows: Sequence[Tuple[int, int, int, int]] = QUOTA_ROWS) -> List[tuple]:
    """:func:`quota_truth_table` as display rows ``(client's pages, its weight, share,
    weight share, doc: over quota / evicted from, xen: ...)``."""
    out = []
    for r in quota_truth_table(rows):
        out.append((f"{r['c']} of {r['g']}", f"{r['w']} of {r['T']}", f"{r['share']:.0f}%",
                    f"{r['weight_share']:.0f}%",
                    f"{'over' if r['doc'][0] else 'not over'} → {r['doc'][1]}",
                    f"{'over' if r['xen'][0] else 'not over'} → {r['xen'][1]}"))
    return out


class NullCodec:
    """A codec that never compresses (it returns the page as it is): every page is stored raw
    and counted as ``compress_poor``, as Xen does with a page that does not shrink below
    4064 bytes."""
    name = "none"

    @staticmethod
    def compress(data: bytes) -> bytes:
        return bytes(data)

    @staticmethod
    def decompress(data: bytes) -> bytes:
        return bytes(data)


def _client_stats(host, domid: int) -> dict:
    parsed = parse_list(host.list_stats(domid))
    return parsed["clients"][0]


def _demo_quota_rule() -> List[Tuple[str, str]]:
    row = quota_truth_table([(10, 100, 1, 4)])[0]
    where = {"own list": "its own list", "global LRU": "the global LRU"}
    return [(f'quota_rule="{rule}"',
             f"a client holding 10% of the pages with 25% of the weight: over quota "
             f"{row[rule][0]}, eviction from {where[row[rule][1]]}") for rule in ("doc", "xen")]


def _demo_shared_auth() -> List[Tuple[str, str]]:
    out = []
    uuid = (0x5EED, 0xF00D)
    for setting in (True, False):
        host = Host(pages=ORACLE_PAGES, shared_auth=setting)
        for d in (1, 2):
            host.create_domain(d, pages=16)
        one, two = TmemOps(host, 1), TmemOps(host, 2)
        p1 = one.new_pool(abi.TMEM_POOL_SHARED, uuid)
        p2 = two.new_pool(abi.TMEM_POOL_SHARED, uuid)
        one.put_page(p1, (1, 0, 0), 0, page_of(1))
        rc = two.get_page(p2, (1, 0, 0), 0, bytearray(PAGE))
        host.check()
        kind = "joined domain 1's pool" if rc == 1 else "got a private pool"
        out.append((f"shared_auth={setting}",
                    f"no TMEM_AUTH; domain 2 {kind}: its get of domain 1's page returns "
                    f"{abi.rc_name(rc)}"))
    return out


def _guard_host(**kw) -> Tuple[Host, int]:
    """A host whose free frames are below the 1 MB guard and holds no ephemeral page: a put
    must evict, and nothing can be evicted. Returns the host and the put's return value."""
    host = Host(pages=512, **kw)
    host.create_domain(1, pages=512 - 200, max_pages=512)   # 200 frames free, below 256
    ops = TmemOps(host, 1)
    pool = ops.new_pool()
    rc = ops.put_page(pool, (1, 0, 0), 0, page_of(1))
    host.check()
    return host, rc


def _demo_min_free_pages() -> List[Tuple[str, str]]:
    out = []
    for setting in (256, 128):
        host, rc = _guard_host(min_free_pages=setting)
        out.append((f"min_free_pages={setting}",
                    f"200 frames free, nothing to evict: a put returns {abi.rc_name(rc)}"))
    return out


def _demo_evict_budget() -> List[Tuple[str, str]]:
    out = []
    for setting in (10, 3):
        host, rc = _guard_host(evict_budget=setting)
        ea = parse_list(host.list_stats())["global"]["Ea"]
        out.append((f"evict_budget={setting}",
                    f"the refused put ({abi.rc_name(rc)}) made {ea} eviction attempts (Ea)"))
    return out


def _demo_codec() -> List[Tuple[str, str]]:
    out = []
    for label, codec in (("codec=None (LZO1X-1)", None), ("codec=NullCodec()", NullCodec())):
        host = Host(pages=ORACLE_PAGES, compress=True, codec=codec)
        host.create_domain(1, pages=16)
        ops = TmemOps(host, 1)
        ops.put_page(ops.new_pool(), (1, 0, 0), 0, b"A" * PAGE)
        host.check()
        s = _client_stats(host, 1)
        out.append((label, f"a page of 4096 'A's: cp:{s['cp']} compressed, {s['cb']} bytes; "
                           f"cn:{s['cn']} stored raw (poor)"))
    return out


def _demo_lock_scheme() -> List[Tuple[str, str]]:
    from .scenes import trace_locks
    out = []
    for setting in ("doc", "xen-4.5"):
        host = Host(pages=ORACLE_PAGES, lock_scheme=setting)
        host.create_domain(1, pages=16)
        ops = TmemOps(host, 1)
        pool = ops.new_pool()
        with trace_locks() as events:
            ops.put_page(pool, (1, 0, 0), 0, page_of(1))
        host.check()
        taken = [e.op for e in events if e.name == "tmem_rwlock" and e.op.endswith("lock")]
        out.append((f'lock_scheme="{setting}"',
                    f"a put takes tmem_rwlock: {', '.join(taken)}"))
    return out


def _demo_tze_match() -> List[Tuple[str, str]]:
    out = []
    data = b"tail" * 32 + bytes(PAGE - 128)
    for setting in ("doc", "xen"):
        host = Host(pages=ORACLE_PAGES, dedup=True, tze=True, tze_match=setting)
        host.create_domain(1, pages=16)
        ops = TmemOps(host, 1)
        pool = ops.new_pool()
        for i in range(3):
            ops.put_page(pool, (1, 0, 0), i, data)
        host.check()
        out.append((f'tze_match="{setting}"',
                    f"three puts of one 128-byte page: {host.global_pcd_count} content "
                    f"descriptor(s), {host.deduped_puts} deduplicated puts (Gd)"))
    return out


class _FixedSizeCodec:
    """Compresses every page to the same number of bytes (for the compress_fit demo)."""
    name = "fixed"

    def __init__(self, n):
        self.n = n

    def compress(self, data):
        return bytes(data[:self.n])

    def decompress(self, data):
        return bytes(data) + bytes(PAGE - len(data))


def _demo_compress_fit() -> List[Tuple[str, str]]:
    out = []
    for setting in ("doc", "xen"):
        host = Host(pages=ORACLE_PAGES, compress=True, codec=_FixedSizeCodec(4050),
                    compress_fit=setting)
        host.create_domain(1, pages=16)
        ops = TmemOps(host, 1)
        rc = ops.put_page(ops.new_pool(), (1, 0, 0), 0, b"\x01" * 4050 + bytes(PAGE - 4050))
        host.check()
        s = _client_stats(host, 1)
        out.append((f'compress_fit="{setting}"',
                    f"a page compressing to 4050 bytes: put returns {abi.rc_name(rc)}, "
                    f"poor (cn) {s['cn']}, no memory (cm) {s['cm']}"))
    return out


def _save_bug_pages(save_bugs, compressible=(True, True, False, True)) -> List[int]:
    """Guest 1 of a host with compression on holds persistent pages (compressible or not, in
    that order); it is live-migrated to a second host, then from the source again to a third
    (both as Xen with ``save_bugs``). The persistent pages each target ends with."""
    from .. import migrate
    hosts = [Host(pages=ORACLE_PAGES, compress=True, save_bugs=save_bugs) for _ in range(3)]
    src = hosts[0]
    src.create_domain(1, pages=16, max_pages=256)
    ops = TmemOps(src, 1)
    pool = ops.new_pool(abi.TMEM_POOL_PERSIST)
    for i, small in enumerate(compressible):
        data = (bytes([i + 1]) * 64 + bytes(range(64))) * 32 if small else \
            b"".join(hashlib.sha512(bytes([i, j])).digest() for j in range(64))
        if ops.put_page(pool, (1, 0, 0), i, data) != 1:
            raise RuntimeError("a put failed")
    got = []
    for dst in hosts[1:]:
        try:
            migrate.migrate(src, dst, 1)
        except migrate.StreamError:
            pass                                  # what was restored stays
        dst.check()
        got.append(dst.clients[1].pools[pool].pgp_count if 1 in dst.clients else 0)
    src.check()
    return got


def _demo_save_bugs() -> List[Tuple[str, str]]:
    out = []
    for label, setting in (("save_bugs=()", ()), ('save_bugs="xen"', "xen")):
        first, second = _save_bug_pages(setting)
        out.append((label, f"a guest with 4 persistent pages (3 compressed, 1 raw) is "
                           f"live-migrated twice: the targets hold {first} and {second} of them"))
    return out


#: For every ``Host`` keyword argument a fidelity note names: a live run under two settings,
#: returning ``[(setting, what happened), (setting, what happened)]``.
OPTION_DEMOS: Dict[str, Callable[[], List[Tuple[str, str]]]] = {
    "quota_rule": _demo_quota_rule,
    "shared_auth": _demo_shared_auth,
    "min_free_pages": _demo_min_free_pages,
    "evict_budget": _demo_evict_budget,
    "codec": _demo_codec,
    "lock_scheme": _demo_lock_scheme,
    "tze_match": _demo_tze_match,
    "compress_fit": _demo_compress_fit,
    "save_bugs": _demo_save_bugs,
}


def option_rows() -> List[Tuple[str, str, str, str]]:
    """Rows ``(note topic, keyword, setting, what happened)``: every keyword argument of every
    note's option, each demonstrated live by :data:`OPTION_DEMOS` (``KeyError`` if one has
    no demonstration)."""
    rows = []
    for note in fidelity.NOTES:
        if not note.option:
            continue
        for kw in option_kwargs(note.option):
            for setting, seen in OPTION_DEMOS[kw]():
                rows.append((note.topic, kw, setting, seen))
    return rows


# --- Xen's known bugs and quirks -----------------------------------------------------------------

@dataclass(frozen=True)
class Quirk:
    """A known Xen bug or quirk (facts §8.2, §8.3, §9.4) and what tmemref does instead."""
    section: str                   # the facts section that records it
    topic: str                     # what it is about
    xen: str                       # what Xen does (versions)
    tmemref: str                   # what tmemref does
    observe: Callable[[], str]     # a live run showing what tmemref does


def _observe_save_bug(name: str, migration: int = 0) -> str:
    """Persistent pages a target holds after live migration ``migration`` (0: the first,
    1: the second) of a guest with 4 of them, without and with save bug ``name``."""
    which = ("first", "second")[migration]
    return (f"{which} migration of 4 pages: the target holds "
            f"{_save_bug_pages(())[migration]}; with save_bugs={{{name!r}}}: "
            f"{_save_bug_pages({name})[migration]}")


def _two_shared_pools() -> Host:
    host = oracle_host()
    host.create_domain(1, pages=16)
    ops = TmemOps(host, 1)
    for uuid in ((1, 2), (3, 4)):
        host.do_tmem_op(0, TmemOp(cmd=abi.TMEM_AUTH, arg1=1, flags=1, uuid=uuid))
        ops.new_pool(abi.TMEM_POOL_SHARED, uuid)
    host.check()
    return host


def _observe_shared_lines() -> str:
    text = _two_shared_pools().list_stats()
    lines = [ln for ln in text.splitlines() if ln.startswith("S=")]
    return (f"{len(lines)} S= lines, SI " + ", ".join(str(s["SI"])
                                                      for s in parse_list(text)["shared"]))


def _observe_short_buffer() -> str:
    host = oracle_host()
    host.create_domain(1, pages=16)
    TmemOps(host, 1).new_pool()
    g_line = host.list_stats(long=False).splitlines(keepends=True)[0]
    buflen = len(g_line) + 8
    buf = bytearray(buflen)
    rc = host.do_tmem_op(0, TmemOp(cmd=abi.TMEM_CONTROL, subop=abi.TMEMC_LIST,
                                   cli_id=abi.TMEM_CLI_ID_NULL, arg1=buflen, arg2=0, buf=buf))
    text = bytes(buf).split(b"\0", 1)[0].decode()
    kinds = "".join(ln[0] for ln in text.splitlines())
    return (f"LIST into {buflen} bytes -> {abi.rc_name(rc)}: {len(text)} bytes written, "
            f"lines {'+'.join(kinds)} (the C= and P= lines did not fit and were dropped whole)")


def _observe_lm_fp() -> str:
    host = Host(pages=512)
    host.create_domain(1, pages=16)
    ops = TmemOps(host, 1)
    pool = ops.new_pool()
    for i in range(400):                        # more than fits: evictions
        ops.put_page(pool, (i, 0, 0), 0, page_of(i))
    _control(host, abi.TMEMC_FLUSH, abi.TMEM_CLI_ID_NULL, 64)
    host.check()
    g = parse_list(host.list_stats())["global"]
    return f"after {g['Et']} evictions and a FLUSH: Lm:{g['Lm']}, Fp:{g['Fp']}"


def _observe_t_line() -> str:
    host = oracle_host()
    host.create_domain(1, pages=16)
    TmemOps(host, 1).new_pool()
    text = host.list_stats()
    heads = sorted({ln.split("=", 1)[0] for ln in text.splitlines()})
    return "line kinds in LIST: " + ", ".join(heads)


def _observe_s_printer() -> str:
    text = _two_shared_pools().list_stats()

    def ids(out):
        return ", ".join(re.findall(r"^poolid=(\d+)", out, flags=re.M))

    return (f"pool ids printed: {ids(format_list_parse(text))} "
            f"(quirks=True: {ids(format_list_parse(text, quirks=True))})")


#: Xen's known save/restore bugs (facts §9.4) and LIST quirks (§8.2, §8.3).
XEN_QUIRKS: Tuple[Quirk, ...] = (
    Quirk("§9.4", "SAVE_GET_NEXT_PAGE",
          "On its first call it sets the cursor to the first page and then returns the next "
          "one, so the first page of every pool is never saved (a one-page list yields the "
          "list head). Present since save/restore was added (4.0).",
          "The first call returns the first page; Host(save_bugs={'skip_first_page'}) "
          "reproduces Xen.",
          lambda: _observe_save_bug("skip_first_page")),
    Quirk("§9.4", "Saving and restoring uncompressed persistent pages",
          "From 4.4 the copy helpers return -EINVAL when given a buffer instead of a guest "
          "frame, so saving or restoring an uncompressed page fails (compressed pages go "
          "through a scratch page and work).",
          "Whole pages are copied both ways; Host(save_bugs={'raw_copy'}) reproduces Xen.",
          lambda: _observe_save_bug("raw_copy")),
    Quirk("§9.4", "SAVE_END",
          "Frees the logged invalidation descriptors without re-initialising the list head "
          "or the cursors.",
          "Empties the log and resets the cursors; Host(save_bugs={'stale_end'}) reproduces "
          "Xen.",
          lambda: _observe_save_bug("stale_end", 1)),
    Quirk("§8.2", "LIST: second and later S= lines",
          "tmemc_list_shared() does not reset its offset between shared pools, so every S= "
          "line after the first is written at the wrong place in the buffer.",
          "Each line is placed after the previous one.", _observe_shared_lines),
    Quirk("§8.2", "LIST: the C= line",
          "Copied into the caller's buffer without the length check the other lines get.",
          "Every line is length-checked; a line that does not fit is dropped whole.",
          _observe_short_buffer),
    Quirk("§8.2 (§2.7)", "LIST: Lm and Fp",
          "low_on_memory and total_flush_pool are printed but never incremented anywhere, so "
          "they are always 0.",
          "The same: both are kept, printed and never incremented.", _observe_lm_fp),
    Quirk("§8.2", "LIST: the T= line",
          "<= 4.3 prints it only in TMEM_PERF builds; 4.12 prints a bare 'T' ('T=' with the "
          "'=' overwritten).",
          "No cycle counters are kept, so no T line at all.", _observe_t_line),
    Quirk("§8.3", "xen-tmem-list-parse: shared pool ids",
          "The S= printer looks up the tag PI, which S= lines never have, so every shared pool "
          "prints as poolid=0.",
          "Prints the line's own SI; format_list_parse(..., quirks=True) reproduces Xen.",
          _observe_s_printer),
)


def quirk_rows() -> List[Tuple[str, str, str, str, str]]:
    """Rows ``(section, topic, Xen, tmemref, observed now)`` of :data:`XEN_QUIRKS`."""
    return [(q.section, q.topic, q.xen, q.tmemref, q.observe()) for q in XEN_QUIRKS]


# --- the version history -------------------------------------------------------------------------

def _guest_rc(op: TmemOp, domid: int = 1, pool_flags: Optional[int] = None, **host_kw) -> int:
    """The value of ``op`` from a guest of a fresh host (in a fresh pool if ``pool_flags``)."""
    host = Host(pages=ORACLE_PAGES, **host_kw)
    host.create_domain(1, pages=16, max_pages=64)
    if pool_flags is not None:
        pool = host.do_tmem_op(1, TmemOp(cmd=abi.TMEM_NEW_POOL, flags=pool_flags))
        op = dataclasses.replace(op, pool_id=pool)
    rc = host.do_tmem_op(domid, op)
    host.check()
    return rc


def _raises(fn: Callable[[], object], exc) -> bool:
    try:
        fn()
    except exc:
        return True
    return False


def _dedup_shares_pages() -> bool:
    host = Host(pages=ORACLE_PAGES, dedup=True, tze=True)
    data = b"tmem" * 16 + bytes(PAGE - 64)
    for d in (1, 2):
        host.create_domain(d, pages=16)
        ops = TmemOps(host, d)
        ops.put_page(ops.new_pool(), (1, 0, 0), 0, data)
    host.check()
    return (host.global_pcd_count, host.deduped_puts, host.pcd_tot_tze_size) == (1, 1, 64)


def _creator_on_sharelist() -> bool:
    host = _two_shared_pools()
    return all(s["SC"] == [1] for s in parse_list(host.list_stats())["shared"])


def _cap_stored_not_enforced() -> bool:
    host = oracle_host()
    host.create_domain(1, pages=16)
    ops = TmemOps(host, 1)
    pool = ops.new_pool()
    ok = _control(host, abi.TMEMC_SET_CAP, 1, 1) == 0
    puts = [ops.put_page(pool, (1, 0, 0), i, page_of(i)) for i in range(3)]   # cap 1: ignored
    host.check()
    return ok and puts == [1, 1, 1] and _client_stats(host, 1)["ca"] == 1


def _unauthorised_join_is_private() -> bool:
    return [seen for _, seen in _demo_shared_auth()][0].endswith("-EEMPTY")


@dataclass(frozen=True)
class VersionRow:
    """One step of tmem's history in Xen (facts §0) and what tmemref takes from it."""
    xen: str                                  # release(s)
    change: str                               # what changed in Xen's tmem
    commits: str                              # xen-project/xen commits (short ids)
    tmemref: str                              # what tmemref does about it
    check: Optional[Callable[[], bool]] = None  # a live check of the tmemref column, if any


VERSION_HISTORY: Tuple[VersionRow, ...] = (
    VersionRow("4.0", "tmem added: object ids are one 64-bit word, TMEM_SPEC_VERSION 0; "
                      "save/restore, shared-pool auth and 'freeable' already there.",
               "6009f4ddb2, 734a7f6677, 81d70f1a53",
               "ABI v1 only: a pool asked for with version 0 is refused (-EPERM).",
               lambda: _guest_rc(TmemOp(cmd=abi.TMEM_NEW_POOL,
                                        flags=abi.pool_flags(version=0))) == -errno.EPERM),
    VersionRow("4.0.2 / 4.1", "ABI v1: object ids become 3 x 64 bits; dedup and trailing-zero "
                              "elimination added.", "de48582a2c, 38c433d0c7",
               "3 x 64-bit object ids; Host(dedup=True, tze=True): two domains putting the "
               "same page share one content descriptor, kept without its trailing zeros.",
               _dedup_shares_pages),
    VersionRow("4.2.1 / 4.3", "XSA-15 hardening: control operations from privileged domains "
                              "only.", "998f42b36c, 60172eff1e",
               "TMEM_CONTROL, TMEM_AUTH, TMEM_RESTORE_NEW from a guest: -EPERM.",
               lambda: _guest_rc(TmemOp(cmd=abi.TMEM_CONTROL, subop=abi.TMEMC_FREEZE,
                                        cli_id=1)) == -errno.EPERM),
    VersionRow("4.3", "The last 'classic' tmem: optional big lock, NEW_PAGE/READ/WRITE/XCHG "
                      "still handled (unknown commands return 0).", "—",
               "No big lock; commands 3, 8, 9, 10 return -ENOSYS (4.4's behaviour).",
               lambda: _guest_rc(TmemOp(cmd=abi.TMEM_NEW_PAGE), pool_flags=abi.pool_flags())
               == -errno.ENOSYS),
    VersionRow("4.4", "Clean-up: big lock dropped; NEW_PAGE/READ/WRITE/XCHG -> -ENOSYS; "
                      "partial-page parameters dropped (whole pages only).",
               "b67497054e, dcbc050b69, 751a77c9d5",
               "Whole 4096-byte pages only: a put of a shorter page is -EFAULT.",
               lambda: _guest_rc(TmemOp(cmd=abi.TMEM_PUT_PAGE, page=b"short"),
                                 pool_flags=abi.pool_flags()) == -errno.EFAULT),
    VersionRow("4.5", "Every hypercall takes tmem_rwlock for writing first; shared persistent "
                      "pools rejected.", "b214115f09, a36590e1b5",
               "The documented lock scheme (read for page operations); shared + persistent "
               "is -EPERM.",
               lambda: _guest_rc(TmemOp(cmd=abi.TMEM_NEW_POOL, flags=abi.pool_flags(
                   persist=True, shared=True))) == -errno.EPERM),
    VersionRow("4.6", "TMEM_CONTROL moves to XEN_SYSCTL_tmem_op; the creator of a shared pool "
                      "joins its own sharelist (refcount fix). From here on the toolstack "
                      "never calls tmem save/restore: persistent pages are not migrated.",
               "d0edc15a6c, 7ec4b2f89e",
               "Control stays in TMEM_CONTROL (classic numbering); the creator is on the "
               "sharelist.", _creator_on_sharelist),
    VersionRow("4.7", "Control code split into tmem_control.c; the last release with dedup "
                      "and tze.", "—", "—"),
    VersionRow("4.8", "Dedup and tze deleted; SET_CAP retired; GET/SET_CLIENT_INFO and "
                      "GET_POOLS added.", "1a70e54b5f, 840c5c9e66, b3d54cead6",
               "Classic sub-ops: SET_CAP is stored and reported (ca:) but never enforced.",
               _cap_stored_not_enforced),
    VersionRow("4.9", "SET_POOLS and SET_AUTH replace TMEM_RESTORE_NEW and TMEM_AUTH; "
                      "authorisation to join a shared pool required by default.",
               "8cd9fa11e1, 1144c8f12b, a9a3c04567",
               "TMEM_AUTH and TMEM_RESTORE_NEW (privileged); authorisation required by "
               "default, Host(shared_auth=False) for <= 4.8.", _unauthorised_join_is_private),
    VersionRow("4.12", "CONFIG_TMEM off by default; the last release with tmem.", "a67ce55a3e",
               "Host.from_cmdline() needs 'tmem' on the command line.",
               lambda: _raises(lambda: Host.from_cmdline("dom0_mem=512M", pages=ORACLE_PAGES),
                               ValueError)),
    VersionRow("4.13", "tmem removed from the hypervisor, tools and docs (public/tmem.h kept "
                       "for old guests).", "c492e19fdd, c588c002cc, 1061631a57", "—"),
)


def version_rows() -> List[Tuple[str, str, str, str, str]]:
    """Rows ``(Xen, change, commits, tmemref, checked live)`` of :data:`VERSION_HISTORY`; the
    last column is ``"yes"`` when the row's check passed now, ``"FAILED"`` when it did not,
    ``"—"`` when there is nothing to check."""
    rows = []
    for v in VERSION_HISTORY:
        status = "—" if v.check is None else ("yes" if v.check() else "FAILED")
        rows.append((v.xen, v.change, v.commits, v.tmemref, status))
    return rows
