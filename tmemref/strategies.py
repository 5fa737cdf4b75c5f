"""Xen: guest ``do_tmem_op`` calls drawn by Hypothesis, and a pytest plugin (``tmem_oracle``).

Strategies (Hypothesis is imported when one is built, never at import time):

* :func:`guest_ops` — one guest hypercall ``(domid, TmemOp)``: NEW_POOL (private or shared,
  ephemeral or persistent), DESTROY_POOL, PUT_PAGE, GET_PAGE, FLUSH_PAGE, FLUSH_OBJECT, or a
  command Xen dropped, over a small space of pool ids, colliding object ids and indexes;
* :func:`traces` — lists of them, every put storing a distinct page
  (:func:`tmemref.oracle.page_of` of its position) and every get a ``page`` of None (whoever
  replays the trace supplies a buffer): what :func:`tmemref.oracle.compare`,
  :func:`~tmemref.oracle.broken_promise` and :class:`~tmemref.oracle.Oracle` take. Hypothesis
  shrinks a failing trace to a short one by itself;
* :func:`malformed_ops` — ``(field, op)``: an op with exactly one field no C ``struct tmem_op``
  can hold (-EFAULT), which :func:`tmemref.abi.explain` must name.

The plugin: installing tmemref registers this module with pytest (entry point ``tmemref`` in
the ``pytest11`` group; else ``pytest -p tmemref.strategies``). It provides the
session-scoped fixture ``tmem_oracle``, an :class:`~tmemref.oracle.Oracle` with default
options, so a test of your own implementation is a few lines::

    from hypothesis import given
    from tmemref.strategies import traces

    @given(trace=traces())
    def test_my_tmem(tmem_oracle, trace):
        tmem_oracle.assert_keeps_promises(MyTmem, trace)

>>> from hypothesis import given, settings
>>> @settings(max_examples=20, derandomize=True, database=None)
... @given(trace=traces(max_size=10))
... def test_every_put_stores_its_own_page(trace):
...     pages = [op.page for _, op in trace if op.cmd == abi.TMEM_PUT_PAGE]
...     assert len(pages) == len(set(pages)) and all(op.explain() is None for _, op in trace
...                                                  if op.cmd != abi.TMEM_GET_PAGE)
>>> test_every_put_stores_its_own_page()
"""
from __future__ import annotations

import decimal
from typing import Sequence

from . import abi
from .abi import TmemOp
from .oracle import TRACE_DOMAINS, Oracle, page_of

try:                                  # the plugin needs pytest; the strategies do not
    import pytest
except ImportError:                   # pragma: no cover - pytest is there when it loads us
    pytest = None

__all__ = ["OIDS", "INDEXES", "guest_ops", "traces", "malformed_ops", "tmem_oracle"]

#: Object ids: few, and colliding: (1,0,0), (0,1,0) and (257,0,0) all hash to bucket 1.
OIDS = ((1, 0, 0), (0, 1, 0), (257, 0, 0), (2**64 - 1, 0, 7))
#: Page indexes: few; 63/64 straddle a radix node, 2**32 - 1 needs the deepest tree.
INDEXES = (0, 63, 64, 2**32 - 1)
#: Commands Xen no longer implements (-ENOSYS on a pool) and one it never had.
DROPPED = (abi.TMEM_NEW_PAGE, abi.TMEM_READ, abi.TMEM_WRITE, abi.TMEM_XCHG, 11)


def _st():
    from hypothesis import strategies
    return strategies


def _ops_on(handles):
    """One guest hypercall ``(domid, TmemOp)`` whose domain, pool, oid and index come from
    ``handles``, a strategy for ``(domid, pool_id, oid, index)``; puts and gets the most
    frequent, shrinking towards NEW_POOL."""
    st = _st()

    def page(cmd):
        return handles.map(lambda h: (h[0], TmemOp(cmd=cmd, pool_id=h[1], oid=h[2], index=h[3])))

    kinds = {
        "new": st.builds(lambda h, persist, shared, u: (h[0], TmemOp(
            cmd=abi.TMEM_NEW_POOL, uuid=u, flags=abi.pool_flags(persist=persist, shared=shared))),
            handles, st.booleans(), st.booleans(), st.sampled_from(((0, 0), (1, 2)))),
        "put": page(abi.TMEM_PUT_PAGE), "get": page(abi.TMEM_GET_PAGE),
        "flush": page(abi.TMEM_FLUSH_PAGE),
        "flush_obj": handles.map(lambda h: (h[0], TmemOp(cmd=abi.TMEM_FLUSH_OBJECT,
                                                         pool_id=h[1], oid=h[2]))),
        "destroy": handles.map(lambda h: (h[0], TmemOp(cmd=abi.TMEM_DESTROY_POOL,
                                                       pool_id=h[1]))),
        "dropped": st.builds(lambda h, c: (h[0], TmemOp(cmd=c, pool_id=h[1], oid=h[2],
                                                        index=h[3])),
                             handles, st.sampled_from(DROPPED)),
    }
    return st.sampled_from(_MIX).flatmap(kinds.get)


#: How often each kind of call is drawn (by repetition): puts and gets the most.
_MIX = ("new", "put", "put", "put", "put", "get", "get", "get", "flush", "flush_obj",
        "destroy", "dropped")


def _handles(domids, max_pool, oids, indexes):
    st = _st()
    return st.tuples(st.sampled_from(tuple(domids)), st.integers(0, max_pool),
                     st.sampled_from(tuple(oids)), st.sampled_from(tuple(indexes)))


def guest_ops(domids: Sequence[int] = tuple(TRACE_DOMAINS), max_pool: int = 1,
              oids: Sequence[tuple] = OIDS, indexes: Sequence[int] = INDEXES):
    """A strategy for one guest hypercall ``(domid, TmemOp)`` with well-formed fields, over
    domains ``domids``, pool ids ``0..max_pool``, ``oids`` and ``indexes``. A put's ``page``
    is None here (:func:`traces` gives each put its page)."""
    return _ops_on(_handles(domids, max_pool, oids, indexes))


def _with_pages(steps) -> list:
    return [(domid, TmemOp(cmd=op.cmd, pool_id=op.pool_id, uuid=op.uuid, flags=op.flags,
                           oid=op.oid, index=op.index, page=page_of(i)))
            if op.cmd == abi.TMEM_PUT_PAGE else (domid, op) for i, (domid, op) in enumerate(steps)]


def traces(min_size: int = 0, max_size: int = 40, *, domids: Sequence[int] =
           tuple(TRACE_DOMAINS), max_pool: int = 1, oids: Sequence[tuple] = OIDS,
           indexes: Sequence[int] = INDEXES, max_handles: int = 3):
    """A strategy for a trace of ``min_size`` to ``max_size`` guest hypercalls. Each trace
    first draws up to ``max_handles`` handles ``(domid, pool_id, oid, index)`` from the space
    of :func:`guest_ops` and then works on those only, so that puts, duplicate puts, gets and
    flushes of the same page — where coherence bugs live — are common. Every put stores
    ``page_of(its position)``; a get's ``page`` is None."""
    st = _st()
    handles = st.lists(_handles(domids, max_pool, oids, indexes), min_size=1,
                       max_size=max_handles, unique=True)

    def on(hs):
        pick = st.sampled_from(hs)
        pools = st.lists(st.builds(lambda h, persist: (h[0], TmemOp(
            cmd=abi.TMEM_NEW_POOL, flags=abi.pool_flags(persist=persist))), pick, st.booleans()),
            max_size=max_pool + 1)
        return st.tuples(pools, st.lists(_ops_on(pick), min_size=min_size, max_size=max_size))

    return handles.flatmap(on).map(lambda t: _with_pages((t[0] + t[1])[:max_size]))


#: Values no integer field of ``struct tmem_op`` can hold, whatever its range: the kinds of
#: wrong value :func:`tmemref.abi.explain` must name.
NOT_INTEGERS = (1.0, True, "1", None, decimal.Decimal(1), b"\x01")


def malformed_ops():
    """A strategy for ``(field, op)``: a PUT_PAGE, GET_PAGE, FLUSH_PAGE, NEW_POOL or CONTROL
    op, otherwise well-formed, whose ``field`` holds a value no C ``struct tmem_op`` can —
    an integer out of its range, a float, bool, string, None, Decimal or numpy scalar, an
    ``oid``/``uuid`` that is a list, has the wrong number of words or a word out of range.
    The hypercall returns -EFAULT and changes nothing."""
    import numpy as np
    st = _st()
    int_field = st.sampled_from(sorted(abi.INT_FIELDS))
    word_field = st.sampled_from(sorted(abi.WORD_FIELDS))

    def out_of_range(name):
        low, end, _ = abi.INT_FIELDS[name]
        return st.one_of(st.integers(max_value=low - 1), st.integers(min_value=end))

    def bad_int(name):
        return st.one_of(out_of_range(name), st.sampled_from(NOT_INTEGERS),
                         st.integers(0, 3).map(np.int64), st.floats(allow_nan=False))

    def bad_words(name):
        n = abi.WORD_FIELDS[name]
        good = st.integers(0, 2**64 - 1)
        bad = st.one_of(st.integers(max_value=-1), st.integers(min_value=2**64),
                        st.sampled_from(NOT_INTEGERS))
        return st.one_of(
            st.lists(good, min_size=n, max_size=n),                       # a list
            st.lists(good, min_size=0, max_size=5).filter(lambda w: len(w) != n).map(tuple),
            st.tuples(st.integers(0, n - 1), bad, st.lists(good, min_size=n, max_size=n))
            .map(lambda t: tuple(t[2][:t[0]] + [t[1]] + t[2][t[0] + 1:])))

    cmds = st.sampled_from((abi.TMEM_PUT_PAGE, abi.TMEM_GET_PAGE, abi.TMEM_FLUSH_PAGE,
                            abi.TMEM_NEW_POOL, abi.TMEM_CONTROL))

    def build(cmd, name, value):
        kw = {"cmd": cmd, "page": page_of(0) if cmd == abi.TMEM_PUT_PAGE else bytearray(4096)}
        if cmd == abi.TMEM_NEW_POOL:
            kw["flags"] = abi.pool_flags()
        kw[name] = value
        return name, TmemOp(**kw)

    ints = int_field.flatmap(lambda name: st.tuples(cmds, st.just(name), bad_int(name)))
    words = word_field.flatmap(lambda name: st.tuples(cmds, st.just(name), bad_words(name)))
    return st.one_of(ints, words).map(lambda t: build(*t))


# --- the pytest plugin ---------------------------------------------------------------------------
if pytest is not None:
    @pytest.fixture(scope="session")
    def tmem_oracle() -> Oracle:
        """An :class:`~tmemref.oracle.Oracle` with default options (reference
        :func:`~tmemref.oracle.oracle_host`, domains 1 and 2): ``assert_agrees(impl, trace)``,
        ``assert_keeps_promises(impl, trace)``, ``compare``, ``broken_promise``, ``host()``.
        Session-scoped (it holds no state), so Hypothesis's ``@given`` may use it."""
        return Oracle()
