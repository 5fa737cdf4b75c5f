"""Xen: the guest's contract with ``do_tmem_op`` — tmemref as an oracle for other implementations.

Anything that satisfies the :class:`Tmem` protocol — ``create_domain(domid, pages=...,
max_pages=...)`` and ``do_tmem_op(domid, op)`` returning Xen's value — can be put beside the
reference (:func:`oracle_host`, a :class:`~tmemref.Host`): a Python tmem, or a thin wrapper
around a C or Rust one (ctypes, cffi, PyO3, or the line protocol of ``tmemref serve``).

Two ways to judge it, both reporting the first problem in words:

* **exactly**, :func:`compare` ``(a, b, trace)``: replay a trace on both in lockstep; the first
  step whose return value (or, for a successful get, whose page) differs. For
  implementations that run the same memory model, or traces too small to evict anything.
* **by the promises**, :func:`broken_promise` ``(impl, trace)``: replay a trace on one
  implementation and judge every answer against :class:`Promises`, a model of what tmem
  promises a guest — not of how it keeps the promises. An ephemeral page may vanish at any
  time, so an implementation that evicts differently still passes; stale data, a lost
  persistent page, a non-exclusive private get or a wrong error code do not.

Traces are lists of ``(domid, TmemOp)``: :func:`random_trace` draws them from a seed,
:mod:`tmemref.strategies` from Hypothesis (which shrinks a failure for you), and :func:`shrink`
cuts any failing trace to a 1-minimal one. :func:`trace_lines` turns a trace into the JSON
lines of ``tmemref serve`` / ``tmemref replay``, for an implementation outside Python, and
:func:`answer_lines` an implementation's answers into the lines ``replay --check`` compares;
:class:`LineTmem` wraps a program that speaks those lines as a :class:`Tmem`.
:class:`Oracle` bundles all this for a test; the pytest plugin's ``tmem_oracle`` fixture is one.

>>> trace = [(1, TmemOp(cmd=abi.TMEM_NEW_POOL, flags=abi.pool_flags())),
...          (1, TmemOp(cmd=abi.TMEM_PUT_PAGE, oid=(1, 0, 0), page=page_of(1))),
...          (1, TmemOp(cmd=abi.TMEM_PUT_PAGE, oid=(1, 0, 0), page=page_of(2))),
...          (1, TmemOp(cmd=abi.TMEM_GET_PAGE, oid=(1, 0, 0)))]
>>> compare(oracle_host, DictTmem, trace) is None
True
>>> print(compare(oracle_host, BuggyDictTmem, trace))
step 3, dom1 GET_PAGE pool=0 oid=(1, 0, 0) index=0: Host returned 1 (page 2), BuggyDictTmem returned 1 (page 1)
>>> print(broken_promise(BuggyDictTmem, trace))
step 3, dom1 GET_PAGE pool=0 oid=(1, 0, 0) index=0 returned 1 (page 1): a get returns the page of the last successful put (page 2), never another
"""
from __future__ import annotations

import dataclasses
import errno
import hashlib
import itertools
import random
from dataclasses import dataclass
from typing import (Callable, Dict, Iterator, List, Optional, Protocol, Sequence, Tuple, Union,
                    runtime_checkable)

from . import abi
from .abi import TmemOp
from .core.host import Host
from .errors import InvariantError

PAGE = abi.PAGE_SIZE
Trace = List[Tuple[int, TmemOp]]

__all__ = ["Tmem", "Trace", "page_of", "page_label", "DictTmem", "BuggyDictTmem",
           "TRACE_DOMAINS", "ORACLE_PAGES", "oracle_host", "random_trace", "trace_lines",
           "Outcome", "Difference", "run_trace", "compare", "shrink", "relabel", "side_by_side",
           "first_difference_in", "exhaustive_differences", "Promises", "Broken",
           "broken_promise", "answer_lines", "LineTmem", "Oracle", "new_pool_refused"]


@runtime_checkable
class Tmem(Protocol):
    """What an implementation needs to be compared: the guest ABI of :class:`~tmemref.Host`.

    ``create_domain(domid, pages=..., max_pages=...)`` makes a domain (its return value is
    ignored); ``do_tmem_op(domid, op)`` is the hypercall: it reads the fields of the
    :class:`~tmemref.TmemOp` its command uses, fills ``op.page`` on a successful get, and
    returns Xen's value (a pool id, 1, 0 or a negative errno). An optional ``check()`` is
    called after every step when present. A C or Rust tmem is wrapped in a class with these
    two methods.
    """

    def create_domain(self, domid: int, pages: int = ..., max_pages: Optional[int] = ...): ...

    def do_tmem_op(self, domid: int, op: TmemOp) -> int: ...


#: An implementation, or a zero-argument callable making a fresh one (a class, a function).
Impl = Union[Tmem, Callable[[], Tmem]]


# =================================================================================================
# Pages
# =================================================================================================

def page_of(tag: int) -> bytes:
    """A 4096-byte page whose every 32-bit word is ``tag``: different tags, different pages.

    >>> page_label(page_of(7)), len(page_of(7))
    ('page 7', 4096)
    """
    return (tag & 0xFFFFFFFF).to_bytes(4, "little") * (PAGE // 4)


def page_label(data) -> str:
    """``"page N"`` for a :func:`page_of` page, else the first 8 hex digits of its sha1."""
    data = bytes(data)
    if len(data) == PAGE and data == data[:4] * (PAGE // 4):
        return f"page {int.from_bytes(data[:4], 'little')}"
    return "sha1 " + hashlib.sha1(data).hexdigest()[:8]


def _page_in_ok(page) -> bool:
    try:
        return memoryview(page).nbytes == PAGE
    except TypeError:
        return False


def _page_out_ok(buf) -> bool:
    try:
        m = memoryview(buf)
    except TypeError:
        return False
    return m.nbytes == PAGE and not m.readonly


def new_pool_refused(flags: int) -> bool:
    """Whether NEW_POOL refuses ``flags`` (-EPERM) whatever the state: a version other than
    1, a page size field other than 0, precompressed or reserved bits, shared and persistent
    together, or bits above 31. O(1).

    >>> new_pool_refused(abi.pool_flags()), new_pool_refused(abi.pool_flags(version=0))
    (False, True)
    """
    persist = bool(flags & abi.TMEM_POOL_PERSIST)
    shared = bool(flags & abi.TMEM_POOL_SHARED)
    version = (flags >> abi.TMEM_POOL_VERSION_SHIFT) & abi.TMEM_POOL_VERSION_MASK
    pagesize = (flags >> abi.TMEM_POOL_PAGESIZE_SHIFT) & abi.TMEM_POOL_PAGESIZE_MASK
    return bool(version != abi.TMEM_SPEC_VERSION or (shared and persist) or pagesize
                or flags & (abi.TMEM_POOL_PRECOMPRESSED | abi.TMEM_POOL_RESERVED_BITS)
                or flags >> 32)


# =================================================================================================
# A toy tmem, and a buggy one
# =================================================================================================

@dataclass
class _DictPool:
    persistent: bool                                       # False: ephemeral
    pages: Dict[tuple, bytes] = dataclasses.field(default_factory=dict)  # (oid, index) -> page


class DictTmem:
    """A whole tmem in a few dozen lines: each pool is a dict ``{(oid, index): page}``.

    The guest ABI of :class:`~tmemref.Host` — ``create_domain(domid, ...)`` and
    ``do_tmem_op(domid, op)`` with Xen's return values — for well-formed ``TmemOp`` values
    and hosts that never run short of memory. It has no memory (so no eviction and no
    billing), no sharing (a guest asking for a shared pool gets a private one, as a guest that
    domain 0 never authorised does on a ``Host``), and no control plane (control commands from
    domain 0 raise ``NotImplementedError``). O(1) per operation, FLUSH_OBJECT O(pages in the
    pool).

    Invariants: 1. every domain has 16 pool slots, each None or a pool; 2. every stored page
    is 4096 ``bytes``.

    >>> t = DictTmem(); t.create_domain(1)
    >>> pool = t.do_tmem_op(1, TmemOp(cmd=abi.TMEM_NEW_POOL, flags=abi.pool_flags()))
    >>> t.do_tmem_op(1, TmemOp(cmd=abi.TMEM_PUT_PAGE, pool_id=pool, page=page_of(1)))
    1
    >>> buf = bytearray(PAGE)
    >>> t.do_tmem_op(1, TmemOp(cmd=abi.TMEM_GET_PAGE, pool_id=pool, page=buf)), page_label(buf)
    (1, 'page 1')
    >>> abi.rc_name(t.do_tmem_op(1, TmemOp(cmd=abi.TMEM_GET_PAGE, pool_id=pool, page=buf)))
    '-EEMPTY'
    """

    def __init__(self):
        self.domains: Dict[int, list] = {0: [None] * abi.MAX_POOLS_PER_DOMAIN}  # domid -> slots

    def create_domain(self, domid: int, pages: int = 0, max_pages: Optional[int] = None,
                      privileged: bool = False) -> None:
        """A domain with 16 empty pool slots (``pages``, ``max_pages``: ignored)."""
        if domid in self.domains:
            raise ValueError(f"domain {domid} exists")
        self.domains[domid] = [None] * abi.MAX_POOLS_PER_DOMAIN

    def _store(self, pool: _DictPool, key: tuple, data: bytes) -> None:
        pool.pages[key] = data                   # a duplicate put replaces the old page

    def do_tmem_op(self, domid: int, op: TmemOp) -> int:
        """The hypercall. ``ValueError`` for a domain that was never created."""
        slots = self.domains.get(domid)
        if slots is None:
            raise ValueError(f"no domain {domid!r}")
        cmd = op.cmd
        if cmd in (abi.TMEM_CONTROL, abi.TMEM_AUTH, abi.TMEM_RESTORE_NEW):
            if domid != 0:
                return -errno.EPERM
            raise NotImplementedError("DictTmem has no control plane")
        if cmd == abi.TMEM_NEW_POOL:
            if new_pool_refused(op.flags) or None not in slots:
                return -errno.EPERM
            slot = slots.index(None)
            slots[slot] = _DictPool(bool(op.flags & abi.TMEM_POOL_PERSIST))
            return slot
        if cmd == abi.TMEM_DESTROY_POOL:
            if not 0 <= op.pool_id < len(slots) or slots[op.pool_id] is None:
                return 0
            slots[op.pool_id] = None
            return 1
        if not 0 <= op.pool_id < len(slots) or slots[op.pool_id] is None:
            return -errno.ENODEV
        pool = slots[op.pool_id]
        key = (tuple(op.oid), op.index)
        if cmd == abi.TMEM_PUT_PAGE:
            if not _page_in_ok(op.page):
                pool.pages.pop(key, None)        # a failed duplicate put flushes the old page
                return -errno.EFAULT
            self._store(pool, key, bytes(op.page))
            return 1
        if cmd == abi.TMEM_GET_PAGE:
            if not pool.pages:
                return -abi.EEMPTY
            data = pool.pages.get(key)
            if data is None:
                return 0
            if not _page_out_ok(op.page):
                return -errno.EFAULT
            memoryview(op.page).cast("B")[:] = data
            if not pool.persistent:
                del pool.pages[key]              # a private ephemeral get is exclusive
            return 1
        if cmd == abi.TMEM_FLUSH_PAGE:
            pool.pages.pop(key, None)
            return 1
        if cmd == abi.TMEM_FLUSH_OBJECT:
            for k in [k for k in pool.pages if k[0] == key[0]]:
                del pool.pages[k]
            return 1
        return -errno.ENOSYS

    def check(self) -> None:
        """The invariants above; ``InvariantError`` names the one broken. O(pages)."""
        for domid, slots in self.domains.items():
            if len(slots) != abi.MAX_POOLS_PER_DOMAIN or any(
                    p is not None and not isinstance(p, _DictPool) for p in slots):
                raise InvariantError(f"DictTmem invariant 1: domain {domid}'s pool slots")
            for pool in filter(None, slots):
                if any(type(v) is not bytes or len(v) != PAGE for v in pool.pages.values()):
                    raise InvariantError(f"DictTmem invariant 2: a bad page in domain {domid}")


class BuggyDictTmem(DictTmem):
    """:class:`DictTmem` with one bug: it forgets put-put-get coherence. A duplicate put
    reports success but keeps the *old* page, so a later get returns the older of two puts —
    exactly what cleancache and frontswap forbid."""

    def _store(self, pool: _DictPool, key: tuple, data: bytes) -> None:
        pool.pages.setdefault(key, data)         # BUG: the first put wins


# =================================================================================================
# Traces
# =================================================================================================

#: Domains every implementation gets before a trace runs: ``{domid: (pages, max_pages)}``.
TRACE_DOMAINS: Dict[int, Tuple[int, int]] = {1: (32, 512), 2: (32, 512)}
#: Frames of the oracle host: room for a few hundred pages above the 1 MB guard.
ORACLE_PAGES = 1024


def oracle_host() -> Host:
    """A fresh ``Host(pages=ORACLE_PAGES)`` with default options: the reference."""
    return Host(pages=ORACLE_PAGES)


def random_trace(n: int, seed: int = 0, domids: Sequence[int] = (1, 2), n_oids: int = 3,
                 n_indexes: int = 4, max_pool: int = 3) -> Trace:
    """``n`` random guest hypercalls ``(domid, TmemOp)``, deterministic for a ``seed``. O(n).

    Handles come from a small space (``n_oids`` objects, ``n_indexes`` indexes, pool ids
    ``0..max_pool``) so that duplicate puts, gets of put pages, flushes of stored pages and
    calls on missing pools all happen often. Every put stores :func:`page_of` of its step
    number, so no two puts store the same page. A get's ``page`` is None: whoever replays
    the trace passes a fresh buffer. Control commands are never drawn.
    """
    rng = random.Random(seed)
    kinds = ("new", "destroy", "put", "get", "flush", "flush_obj", "other")
    weights = (8, 3, 40, 30, 10, 5, 4)
    out = []
    for step in range(n):
        domid = rng.choice(list(domids))
        kind = rng.choices(kinds, weights)[0]
        pool = rng.randrange(max_pool + 1)
        oid = (rng.randrange(1, n_oids + 1), 0, 0)
        index = rng.randrange(n_indexes)
        if kind == "new":
            op = TmemOp(cmd=abi.TMEM_NEW_POOL, uuid=(0, 0), flags=abi.pool_flags(
                persist=rng.random() < 0.4, shared=rng.random() < 0.1))
        elif kind == "destroy":
            op = TmemOp(cmd=abi.TMEM_DESTROY_POOL, pool_id=pool)
        elif kind == "put":
            op = TmemOp(cmd=abi.TMEM_PUT_PAGE, pool_id=pool, oid=oid, index=index,
                        page=page_of(step))
        elif kind == "get":
            op = TmemOp(cmd=abi.TMEM_GET_PAGE, pool_id=pool, oid=oid, index=index)
        elif kind == "flush":
            op = TmemOp(cmd=abi.TMEM_FLUSH_PAGE, pool_id=pool, oid=oid, index=index)
        elif kind == "flush_obj":
            op = TmemOp(cmd=abi.TMEM_FLUSH_OBJECT, pool_id=pool, oid=oid)
        else:
            op = TmemOp(cmd=rng.choice((abi.TMEM_NEW_PAGE, abi.TMEM_READ, abi.TMEM_XCHG)),
                        pool_id=pool, oid=oid, index=index)
        out.append((domid, op))
    return out


def trace_lines(trace: Sequence[Tuple[int, TmemOp]], domains=None,
                pages: int = ORACLE_PAGES) -> Iterator[str]:
    """The JSON lines of ``tmemref serve`` that replay ``trace`` on a fresh host of ``pages``
    frames with ``domains`` (default :data:`TRACE_DOMAINS`): a ``host`` line, one
    ``create_domain`` line per domain, then one line per hypercall (each without its newline).
    Feed them to ``tmemref replay`` or to an implementation that speaks the protocol. O(len).

    >>> list(trace_lines([(1, TmemOp(cmd=abi.TMEM_FLUSH_OBJECT, oid=(5, 0, 0)))], {1: (8, 8)}))
    ['{"op": "host", "pages": 1024}', '{"op": "create_domain", "domid": 1, "pages": 8, "max_pages": 8}', '{"dom": 1, "cmd": "FLUSH_OBJECT", "oid": [5, 0, 0]}']
    """
    from .cli import request_line
    import json
    yield json.dumps({"op": "host", "pages": pages})
    for domid, (p, m) in sorted((TRACE_DOMAINS if domains is None else domains).items()):
        yield json.dumps({"op": "create_domain", "domid": domid, "pages": p, "max_pages": m})
    for domid, op in trace:
        yield request_line(domid, op)


# =================================================================================================
# Replaying a trace, comparing two implementations
# =================================================================================================

@dataclass(frozen=True)
class Outcome:
    """What one implementation did with one hypercall."""
    rc: object                     # the return value, or "raises <ExceptionName>"
    data: Optional[bytes] = None   # a get's buffer after it returned 1

    def __str__(self):
        rc = abi.rc_name(self.rc) if type(self.rc) is int else str(self.rc)
        return rc if self.data is None else f"{rc} ({page_label(self.data)})"

    def __repr__(self):                     # a page by its label, never 4 KB of bytes
        data = "" if self.data is None else f", <{page_label(self.data)}>"
        return f"Outcome({self.rc!r}{data})"

    @property
    def phrase(self) -> str:
        """The outcome as a verb phrase: ``"returned 1 (page 2)"``, ``"raised ValueError"``."""
        text = str(self)
        return "raised" + text[len("raises"):] if text.startswith("raises") else \
            "returned " + text


@dataclass(frozen=True)
class Difference:
    """The first step at which two implementations disagree."""
    step: int                      # index in the trace
    domid: int                     # caller
    call: str                      # the hypercall, as describe() prints it
    a: Outcome                     # what the first implementation did
    b: Outcome                     # what the second did
    names: Tuple[str, str] = ("a", "b")   # the implementations' names

    def __str__(self):
        return (f"step {self.step}, dom{self.domid} {self.call}: {self.names[0]} "
                f"{self.a.phrase}, {self.names[1]} {self.b.phrase}")


def _make(impl: Impl) -> Tmem:
    """An implementation from ``impl``: a class or other factory is called, an object with
    ``do_tmem_op`` is used as it is."""
    if isinstance(impl, type) or not hasattr(impl, "do_tmem_op"):
        if not callable(impl):
            raise TypeError(f"not an implementation or a factory of one: {impl!r}")
        impl = impl()
    if not isinstance(impl, Tmem):
        raise TypeError(f"{type(impl).__name__} has no create_domain() and do_tmem_op(): "
                        "it does not satisfy tmemref.oracle.Tmem")
    return impl


def _setup(impl: Impl, domains) -> Tmem:
    impl = _make(impl)
    for domid, (pages, max_pages) in sorted(
            (TRACE_DOMAINS if domains is None else domains).items()):
        impl.create_domain(domid, pages=pages, max_pages=max_pages)
    return impl


def _names(a: Tmem, b: Tmem) -> Tuple[str, str]:
    na, nb = type(a).__name__, type(b).__name__
    return (na, nb) if na != nb else (f"{na} (a)", f"{nb} (b)")


def _step(impl: Tmem, domid: int, op: TmemOp, check: bool) -> Outcome:
    if op.cmd == abi.TMEM_GET_PAGE:
        op = dataclasses.replace(op, page=bytearray(b"\xee" * PAGE))
    try:
        rc = impl.do_tmem_op(domid, op)
    except Exception as e:                  # an implementation's crash is an outcome too
        return Outcome(f"raises {type(e).__name__}")
    if check and hasattr(impl, "check"):
        impl.check()                        # a broken invariant is the oracle's failure: raise
    data = bytes(op.page) if op.cmd == abi.TMEM_GET_PAGE and rc == 1 else None
    return Outcome(rc, data)


def run_trace(impl: Impl, trace: Sequence[Tuple[int, TmemOp]], domains=None,
              check: bool = True) -> List[Outcome]:
    """Replay ``trace`` on ``impl`` (an implementation, or a class or other callable making a
    fresh one) after creating ``domains`` (default :data:`TRACE_DOMAINS`). Each get gets a
    fresh buffer. ``check``: call the implementation's ``check()`` after every step, if it
    has one. O(len(trace))."""
    impl = _setup(impl, domains)
    return [_step(impl, domid, op, check) for domid, op in trace]


def compare(a: Impl, b: Impl, trace: Sequence[Tuple[int, TmemOp]], domains=None,
            check: bool = True) -> Optional[Difference]:
    """Replay ``trace`` on ``a`` and ``b`` in lockstep; the first step whose return values
    (or, for a successful get, whose pages) differ, as a :class:`Difference` whose ``str``
    says it in words — or None if they agree throughout.

    ``a`` and ``b`` are implementations or factories, as for :func:`run_trace`; the reference
    usually goes first (:func:`oracle_host`). Both get ``domains`` first. Exact comparison:
    for a host that evicts, keep traces small enough that nothing is evicted, or the
    reference will rightly miss pages the other still has (:func:`broken_promise` judges
    without that limit). O(len(trace))."""
    a, b = _setup(a, domains), _setup(b, domains)
    names = _names(a, b)
    for i, (domid, op) in enumerate(trace):
        oa, ob = _step(a, domid, op, check), _step(b, domid, op, check)
        if oa != ob:
            from .guest.ops import describe
            return Difference(i, domid, describe(op), oa, ob, names)
    return None


def shrink(a: Impl, b: Impl, trace: Sequence[Tuple[int, TmemOp]], domains=None,
           check: bool = False) -> Trace:
    """A short trace on which ``a`` and ``b`` still differ (both must be factories: each
    replay needs fresh implementations): cut after the first difference, then drop chunks of
    steps (halving the chunk size down to one step) while a difference remains. The result is
    1-minimal: removing any single step makes the implementations agree. ``ValueError`` if
    they agree on ``trace``. ``check`` as for :func:`compare` (off by default: shrinking
    replays many traces, and the invariants were checked when the difference was found).
    O(len(trace)² · log len(trace)) replays at worst.
    """
    d = compare(a, b, trace, domains, check)
    if d is None:
        raise ValueError("the implementations agree on this trace")
    cur = list(trace[:d.step + 1])
    chunk = max(1, len(cur) // 2)
    while True:
        i = 0
        while i < len(cur):
            cand = cur[:i] + cur[i + chunk:]
            dc = compare(a, b, cand, domains, check) if cand else None
            if dc is not None:
                cur = cand[:dc.step + 1]
            else:
                i += chunk
        if chunk == 1:
            return cur
        chunk = max(1, chunk // 2)


def relabel(trace: Sequence[Tuple[int, TmemOp]]) -> Trace:
    """The same trace with each put's page replaced by :func:`page_of` its step number in
    *this* trace (after :func:`shrink`, "page 2" then means "the page put at step 2").
    Distinct puts stay distinct, so any difference in pages survives. O(len(trace))."""
    return [(d, dataclasses.replace(op, page=page_of(i)) if op.cmd == abi.TMEM_PUT_PAGE
             and _page_in_ok(op.page) else op) for i, (d, op) in enumerate(trace)]


def side_by_side(a: Impl, b: Impl, trace: Sequence[Tuple[int, TmemOp]],
                 domains=None) -> List[Tuple[int, str, str, str, str]]:
    """Rows ``(step, call, outcome a, outcome b, "≠" or "")`` of a trace on both. O(len)."""
    from .guest.ops import describe
    ra, rb = run_trace(a, trace, domains), run_trace(b, trace, domains)
    return [(i, f"dom{domid} {describe(op)}", str(x), str(y), "" if x == y else "≠")
            for i, ((domid, op), x, y) in enumerate(zip(trace, ra, rb))]


def first_difference_in(a: Impl, b: Impl, seeds: Sequence[int], n: int, check: bool = True):
    """``(seed, trace, Difference)`` for the first seed whose :func:`random_trace` of ``n``
    steps shows a difference, or None if none does (``check`` as for :func:`compare`).
    O(len(seeds) · n)."""
    for seed in seeds:
        trace = random_trace(n, seed)
        d = compare(a, b, trace, check=check)
        if d is not None:
            return seed, trace, d
    return None


def exhaustive_differences(a: Impl, b: Impl, alphabet: Sequence[Tuple[int, TmemOp]],
                           length: int) -> List[Trace]:
    """Every trace of exactly ``length`` steps drawn from ``alphabet`` (with repeats) on which
    the implementations differ. ``len(alphabet) ** length`` replays (invariants unchecked)."""
    return [list(t) for t in itertools.product(alphabet, repeat=length)
            if compare(a, b, t, check=False) is not None]


# =================================================================================================
# The promises
# =================================================================================================

@dataclass
class _ModelPool:
    persistent: bool
    #: (oid, index) -> the page a get must (persistent) or may (ephemeral) return
    pages: Dict[tuple, bytes] = dataclasses.field(default_factory=dict)


@dataclass(frozen=True)
class Broken:
    """The first answer of an implementation that breaks a promise."""
    step: int                      # index in the trace
    domid: int                     # caller
    call: str                      # the hypercall, as describe() prints it
    outcome: Outcome               # what the implementation did
    promise: str                   # the promise it broke, in words
    name: str = "impl"             # the implementation's name

    def __str__(self):
        return (f"step {self.step}, dom{self.domid} {self.call} {self.outcome.phrase}: "
                f"{self.promise}")


_GUEST_ONLY = (abi.TMEM_CONTROL, abi.TMEM_AUTH, abi.TMEM_RESTORE_NEW)
_EFAULT, _ENOMEM, _ENOSPC, _EPERM, _ENODEV, _ENOSYS = (
    -errno.EFAULT, -errno.ENOMEM, -errno.ENOSPC, -errno.EPERM, -errno.ENODEV, -errno.ENOSYS)
_EEMPTY = -abi.EEMPTY


class Promises:
    """A model of what tmem promises a guest, judging one implementation's answers.

    It never decides which page is evicted; it knows what may, must and must never come back.
    For guest hypercalls (``domids`` other than 0; control commands from them must be -EPERM):

    * a malformed op (:func:`tmemref.abi.explain`: a field no C struct can hold) is -EFAULT;
    * NEW_POOL returns a free slot, or -EPERM when the flags are refused
      (:func:`new_pool_refused`) or all 16 slots are used, or -ENOMEM. A shared pool is
      private: nobody authorised the guest (Xen 4.9's default, ``Host(shared_auth=True)``);
    * DESTROY_POOL returns 1 for a pool, 0 for an empty or invalid slot;
    * every other command on an invalid or empty slot is -ENODEV; an unknown one on a pool
      -ENOSYS;
    * a put returns 1, -ENOMEM or -ENOSPC, or -EFAULT exactly when its frame is not 4096
      bytes; a failed put leaves nothing readable under its handle;
    * a get returns the page of the last successful put of that handle and nothing older,
      nothing after a flush, a miss or a failed put (get-get coherency), from persistent pools
      always, from ephemeral ones at most once (a private ephemeral get is exclusive, and an
      ephemeral page may be evicted at any time); a miss is 0, or -EEMPTY when the pool may
      be empty — and must be -EEMPTY when it is certainly empty;
    * FLUSH_PAGE and FLUSH_OBJECT return 1 and forget the page or the object's pages.

    :meth:`step` judges one answer and updates the model; :func:`broken_promise` replays a
    trace. O(1) per step (FLUSH_OBJECT: O(pages in the pool)).

    Invariants: 1. every domain has 16 slots, each None or a model pool; 2. every remembered
    page is 4096 ``bytes`` under an ``((u64, u64, u64), u32)`` handle.
    """

    def __init__(self, domids: Sequence[int] = tuple(TRACE_DOMAINS)):
        self.slots: Dict[int, List[Optional[_ModelPool]]] = {
            d: [None] * abi.MAX_POOLS_PER_DOMAIN for d in domids}

    def step(self, domid: int, op: TmemOp, outcome: Outcome) -> Optional[str]:
        """Judge ``outcome`` of ``op`` from ``domid`` and update the model: the promise it
        broke, in words, or None. ``ValueError`` for a caller the model does not know."""
        if domid not in self.slots:
            raise ValueError(f"the promises model knows domains {sorted(self.slots)}, "
                             f"not {domid!r}")
        slots, rc = self.slots[domid], outcome.rc
        why = abi.explain(op)
        if why and not why.startswith(("page:", "buf:")):
            return None if rc == _EFAULT else f"a malformed op returns -EFAULT ({why})"
        cmd = op.cmd
        if cmd in _GUEST_ONLY:
            return None if rc == _EPERM else "control commands from a guest return -EPERM"
        if cmd == abi.TMEM_NEW_POOL:
            return self._new_pool(slots, op.flags, rc)
        pool_id = op.pool_id
        pool = slots[pool_id] if 0 <= pool_id < len(slots) else None
        if cmd == abi.TMEM_DESTROY_POOL:
            if pool is None:
                return None if rc == 0 else "DESTROY_POOL of an empty or invalid slot returns 0"
            slots[pool_id] = None
            return None if rc == 1 else "DESTROY_POOL of a pool returns 1"
        if pool is None:
            return None if rc == _ENODEV else \
                "a call on an empty or invalid pool slot returns -ENODEV"
        key = (op.oid, op.index)
        if cmd == abi.TMEM_PUT_PAGE:
            return self._put(pool, key, op.page, bool(why), rc)
        if cmd == abi.TMEM_GET_PAGE:
            return self._get(pool, key, outcome)
        if cmd == abi.TMEM_FLUSH_PAGE:
            pool.pages.pop(key, None)
            return None if rc == 1 else "FLUSH_PAGE returns 1, found or not"
        if cmd == abi.TMEM_FLUSH_OBJECT:
            for k in [k for k in pool.pages if k[0] == op.oid]:
                del pool.pages[k]
            return None if rc == 1 else "FLUSH_OBJECT returns 1, found or not"
        return None if rc == _ENOSYS else "an unknown command on a pool returns -ENOSYS"

    @staticmethod
    def _new_pool(slots, flags: int, rc) -> Optional[str]:
        if new_pool_refused(flags) or None not in slots:
            return None if rc == _EPERM else \
                "NEW_POOL returns -EPERM for refused flags or when all 16 slots are used"
        if rc == _ENOMEM:
            return None
        if type(rc) is not int or not 0 <= rc < len(slots) or slots[rc] is not None:
            return "NEW_POOL returns a free pool slot (or -EPERM, -ENOMEM)"
        slots[rc] = _ModelPool(bool(flags & abi.TMEM_POOL_PERSIST))
        return None

    @staticmethod
    def _put(pool: _ModelPool, key, page, bad_frame: bool, rc) -> Optional[str]:
        pool.pages.pop(key, None)                # a failed put leaves nothing readable
        if bad_frame:
            return None if rc in (_EFAULT, _ENOMEM) else \
                "a put of a frame that is not 4096 contiguous bytes fails with -EFAULT"
        if rc == 1:
            pool.pages[key] = bytes(page)
            return None
        return None if rc in (_ENOMEM, _ENOSPC) else "a put returns 1, -ENOMEM or -ENOSPC"

    @staticmethod
    def _get(pool: _ModelPool, key, outcome: Outcome) -> Optional[str]:
        want, rc = pool.pages.get(key), outcome.rc
        if rc == 1:
            if want is None:
                return "a get returns no page after a flush, a miss or a failed put, nor " \
                       "one that was never put"
            if outcome.data != want:
                return (f"a get returns the page of the last successful put "
                        f"({page_label(want)}), never another")
        if pool.persistent:
            if rc == 1:
                return None
            if want is not None:
                return f"a persistent page ({page_label(want)}) comes back until it is flushed"
            if rc == (0 if pool.pages else _EEMPTY):
                return None
            return "a get that misses returns 0 from a pool that holds pages, -EEMPTY from " \
                   "one that holds none"
        pool.pages.pop(key, None)                # exclusive, or evicted: gone either way
        if rc == 1:
            return None
        if rc == _EEMPTY:
            pool.pages.clear()                   # the pool is empty: everything was evicted
            return None
        if rc == 0:
            return None if pool.pages else "a get from a pool that holds no page returns -EEMPTY"
        return "a get returns 1, 0 or -EEMPTY"

    def check(self) -> None:
        """The invariants above; ``InvariantError`` names the one broken. O(pages)."""
        for domid, slots in self.slots.items():
            if len(slots) != abi.MAX_POOLS_PER_DOMAIN or any(
                    p is not None and not isinstance(p, _ModelPool) for p in slots):
                raise InvariantError(f"Promises invariant 1: domain {domid}'s slots")
            for pool in filter(None, slots):
                for (oid, index), page in pool.pages.items():
                    if abi.explain(TmemOp(cmd=abi.TMEM_FLUSH_PAGE, oid=oid, index=index)) \
                            or type(page) is not bytes or len(page) != PAGE:
                        raise InvariantError(f"Promises invariant 2: domain {domid} handle "
                                             f"{(oid, index)!r}")


def broken_promise(impl: Impl, trace: Sequence[Tuple[int, TmemOp]], domains=None,
                   check: bool = True) -> Optional[Broken]:
    """Replay ``trace`` on ``impl`` (as for :func:`run_trace`) and judge every answer with
    :class:`Promises`: the first :class:`Broken` promise, or None. An implementation may
    evict ephemeral pages whenever it likes and still keep every promise. ``ValueError`` if
    the trace has a control command from domain 0 (the model covers guests only). O(len)."""
    domains = TRACE_DOMAINS if domains is None else domains
    model, impl = Promises(tuple(domains)), _setup(impl, domains)
    for i, (domid, op) in enumerate(trace):
        if domid == 0 and op.cmd in _GUEST_ONLY:
            raise ValueError("the promises model covers guest hypercalls, not control "
                             "commands from domain 0")
        outcome = _step(impl, domid, op, check)
        promise = model.step(domid, op, outcome)
        if promise is not None:
            from .guest.ops import describe
            return Broken(i, domid, describe(op), outcome, promise, type(impl).__name__)
    return None


# =================================================================================================
# Implementations outside Python: the line protocol of ``tmemref serve``
# =================================================================================================

def answer_lines(impl: Impl, trace: Sequence[Tuple[int, TmemOp]], domains=None,
                 check: bool = True) -> Iterator[str]:
    """The answer lines ``impl`` gives to the lines of :func:`trace_lines` ``(trace,
    domains)``, in the form ``tmemref serve`` prints them: ``{"rc": 0}`` for the host and each
    domain, then ``{"rc": R}`` per hypercall, with ``"page"`` (base64) for a get that returned
    1, or ``{"error": ...}`` where the implementation raised. What ``tmemref replay --check``
    compares with the reference's answers. O(len(trace)).

    >>> trace = [(1, TmemOp(cmd=abi.TMEM_NEW_POOL, flags=abi.pool_flags())),
    ...          (1, TmemOp(cmd=abi.TMEM_GET_PAGE, oid=(1, 0, 0)))]
    >>> list(answer_lines(DictTmem, trace, {1: (8, 8)}))
    ['{"rc": 0}', '{"rc": 0}', '{"rc": 0}', '{"rc": -1001}']
    """
    import base64
    import json
    domains = TRACE_DOMAINS if domains is None else domains
    yield from ['{"rc": 0}'] * (1 + len(domains))
    for outcome in run_trace(impl, trace, domains, check):
        if type(outcome.rc) is not int:
            yield json.dumps({"error": str(outcome.rc)})
        elif outcome.data is None:
            yield json.dumps({"rc": outcome.rc})
        else:
            yield json.dumps({"rc": outcome.rc,
                              "page": base64.b64encode(outcome.data).decode("ascii")})


class LineTmem:
    """A tmem in another process, speaking the line protocol of ``tmemref serve`` on its
    standard input and output, wrapped to satisfy :class:`Tmem` — so that :func:`compare`,
    :func:`broken_promise`, :class:`Oracle` and :mod:`tmemref.strategies` can judge a C or
    Rust implementation (given a main loop that reads a request line and prints its answer
    line) as they judge a Python one.

    ``LineTmem(argv, pages=ORACLE_PAGES, host=None, env=None, cwd=None, timeout=10.0)`` starts
    ``argv`` and sends the ``host`` line (``pages`` and the ``Host`` keywords of ``host``);
    :meth:`create_domain` and :meth:`do_tmem_op` send one line each and wait for its answer.
    A get that returned 1 gets the answer's page copied into its frame, a LIST its buffer.
    An ``{"error": ...}`` answer raises ``ValueError``; an answer not given within
    ``timeout`` seconds, or a process that exits, raises ``RuntimeError``. :meth:`close`
    (or a ``with`` block) closes its input and waits for it. Each call costs one round trip.

    Invariants: 1. the process is running; 2. every line sent got exactly one answer.
    """

    def __init__(self, argv: Sequence[str], pages: int = ORACLE_PAGES, host=None, env=None,
                 cwd=None, timeout: float = 10.0):
        import subprocess
        if isinstance(argv, str) or not argv:
            raise TypeError("argv is a non-empty list of strings, e.g. ['./my-tmem']")
        self.argv = list(argv)
        self.timeout = timeout
        self.sent = self.answered = 0
        self._buf = bytearray()
        self._proc = subprocess.Popen(self.argv, stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE, env=env, cwd=cwd)
        try:
            self._ask({"op": "host", "pages": pages, **(host or {})})
        except BaseException:
            self.close()
            raise

    def _ask(self, request) -> dict:
        import json
        import os
        import select
        line = request if isinstance(request, str) else json.dumps(request)
        proc = self._proc
        try:
            proc.stdin.write(line.encode() + b"\n")
            proc.stdin.flush()
        except (BrokenPipeError, ValueError):
            raise RuntimeError(f"{self.argv[0]} is not running") from None
        self.sent += 1
        fd = proc.stdout.fileno()
        while b"\n" not in self._buf:
            ready, _, _ = select.select([fd], [], [], self.timeout)
            if not ready:
                raise RuntimeError(f"{self.argv[0]} gave no answer within {self.timeout} s "
                                   f"to: {line[:80]}")
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                raise RuntimeError(f"{self.argv[0]} exited (status {proc.wait()}) "
                                   f"without answering: {line[:80]}")
            self._buf += chunk
        end = self._buf.index(b"\n")
        answer = json.loads(self._buf[:end])
        del self._buf[:end + 1]
        self.answered += 1
        if not isinstance(answer, dict) or ("error" not in answer and "rc" not in answer):
            raise RuntimeError(f"{self.argv[0]} answered {answer!r}, not an answer object")
        if "error" in answer:
            raise ValueError(f"{self.argv[0]}: {answer['error']}")
        return answer

    def create_domain(self, domid: int, pages: int = 0, max_pages: Optional[int] = None,
                      privileged: bool = False) -> None:
        """Send a ``create_domain`` line."""
        request = {"op": "create_domain", "domid": domid, "pages": pages}
        if max_pages is not None:
            request["max_pages"] = max_pages
        if privileged:
            request["privileged"] = True
        self._ask(request)

    def do_tmem_op(self, domid: int, op: TmemOp) -> int:
        """Send the hypercall's line; its answer's rc, with a got page or LIST text copied in."""
        import base64
        from .cli import request_line
        answer = self._ask(request_line(domid, op))
        if "page" in answer and op.page is not None:
            memoryview(op.page).cast("B")[:] = base64.b64decode(answer["page"])
        if "buf" in answer and op.buf is not None:
            text = answer["buf"].encode()[:max(0, len(op.buf) - 1)]
            op.buf[:len(text) + 1] = text + b"\0"
        return answer["rc"]

    def check(self) -> None:
        """The invariants above; ``InvariantError`` names the one broken. O(1)."""
        if self._proc.poll() is not None:
            raise InvariantError(f"LineTmem invariant 1: {self.argv[0]} exited with status "
                                 f"{self._proc.returncode}")
        if self.sent != self.answered:
            raise InvariantError(f"LineTmem invariant 2: {self.sent} lines sent, "
                                 f"{self.answered} answered")

    def close(self) -> int:
        """Close the process's input and wait for it to exit (killed after ``timeout``);
        returns its exit status. Idempotent."""
        import subprocess
        proc = self._proc
        if proc.stdin and not proc.stdin.closed:
            try:
                proc.stdin.close()
            except BrokenPipeError:
                pass
        try:
            status = proc.wait(self.timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            status = proc.wait()
        if proc.stdout and not proc.stdout.closed:
            proc.stdout.close()
        return status

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        if getattr(self, "_proc", None) is not None and self._proc.poll() is None:
            self.close()

    def __repr__(self):
        return f"<LineTmem {' '.join(self.argv)}>"


# =================================================================================================
# For a test
# =================================================================================================

class Oracle:
    """The reference and both judgements, bound to one set of options: what the pytest
    plugin's ``tmem_oracle`` fixture gives a test (:mod:`tmemref.strategies`).

    ``Oracle(reference=oracle_host, domains=TRACE_DOMAINS, check=True)``; ``reference`` is a
    factory of fresh reference implementations. :meth:`assert_agrees` and
    :meth:`assert_keeps_promises` raise ``AssertionError`` whose message is the first
    difference or broken promise in words. Stateless: one instance serves a whole session.

    Invariants: 1. ``reference`` is callable; 2. ``domains`` maps domain ids (1-65534) to
    ``(pages, max_pages)``.

    >>> oracle = Oracle()
    >>> oracle.assert_agrees(DictTmem, random_trace(50, seed=1))
    >>> oracle.assert_keeps_promises(BuggyDictTmem, [
    ...     (1, TmemOp(cmd=abi.TMEM_NEW_POOL, flags=abi.pool_flags(persist=True))),
    ...     (1, TmemOp(cmd=abi.TMEM_PUT_PAGE, page=page_of(1))),
    ...     (1, TmemOp(cmd=abi.TMEM_PUT_PAGE, page=page_of(2))),
    ...     (1, TmemOp(cmd=abi.TMEM_GET_PAGE))])
    Traceback (most recent call last):
    AssertionError: BuggyDictTmem broke a promise at step 3, dom1 GET_PAGE pool=0 oid=(0, 0, 0) index=0 returned 1 (page 1): a get returns the page of the last successful put (page 2), never another
    """

    def __init__(self, reference: Callable[[], Tmem] = oracle_host, domains=None,
                 check: bool = True):
        self.reference = reference
        self.domains = dict(TRACE_DOMAINS if domains is None else domains)
        self.check_each_step = check
        self.check()

    def host(self) -> Tmem:
        """A fresh reference with the domains created."""
        return _setup(self.reference, self.domains)

    def compare(self, impl: Impl, trace) -> Optional[Difference]:
        """:func:`compare` of the reference (first) and ``impl``."""
        return compare(self.reference, impl, trace, self.domains, self.check_each_step)

    def broken_promise(self, impl: Impl, trace) -> Optional[Broken]:
        """:func:`broken_promise` of ``impl`` on ``trace``."""
        return broken_promise(impl, trace, self.domains, self.check_each_step)

    def assert_agrees(self, impl: Impl, trace) -> None:
        """``AssertionError`` naming the first difference between the reference and ``impl``."""
        d = self.compare(impl, trace)
        if d is not None:
            raise AssertionError(f"{d.names[1]} differs from the reference at {d}")

    def assert_keeps_promises(self, impl: Impl, trace) -> None:
        """``AssertionError`` naming the first promise ``impl`` breaks on ``trace``."""
        b = self.broken_promise(impl, trace)
        if b is not None:
            raise AssertionError(f"{b.name} broke a promise at {b}")

    def check(self) -> None:
        """The invariants above; ``InvariantError`` names the one broken. O(domains)."""
        if not callable(self.reference):
            raise InvariantError("Oracle invariant 1: the reference is not callable")
        for domid, value in self.domains.items():
            if type(domid) is not int or not 0 < domid < abi.TMEM_CLI_ID_NULL or \
                    not (isinstance(value, tuple) and len(value) == 2):
                raise InvariantError(f"Oracle invariant 2: domain {domid!r}: {value!r}")

    def __repr__(self):
        name = getattr(self.reference, "__name__", repr(self.reference))
        return f"<Oracle reference={name} domains={sorted(self.domains)}>"
