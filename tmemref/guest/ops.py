"""Linux: the "foundation ops" of ``drivers/xen/tmem.c`` — one guest's raw tmem hypercalls.

:class:`TmemOps` is what Linux's Xen shim wraps around ``HYPERVISOR_tmem_op``: one method per
command, each building a :class:`~tmemref.abi.TmemOp` and returning Xen's value untouched
(a pool id, ``1``, ``0``, or a negative errno). Cleancache and frontswap
(:mod:`.cleancache`, :mod:`.frontswap`) are built on it, exactly as Linux built its
``tmem_cleancache_*`` and ``tmem_frontswap_*`` functions on ``xen_tmem_*``.

Every hypercall can be recorded (``trace=True``): a list of :class:`Call` records, so a
reader — or a test — can see which handle a frontend's call really became.

>>> from tmemref import Host, abi
>>> host = Host(pages=1024)
>>> _ = host.create_domain(1, pages=64, max_pages=128)
>>> g = TmemOps(host, 1, trace=True)
>>> pool = g.new_pool(abi.TMEM_POOL_PERSIST)
>>> g.put_page(pool, (7, 0, 0), 3, b"x" * 4096)
1
>>> print(g.trace[-1])
dom1 PUT_PAGE pool=0 oid=(7, 0, 0) index=3 -> 1
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional

from .. import abi
from ..abi import TmemOp

PAGE_SIZE = abi.PAGE_SIZE
PRIVATE_UUID = (0, 0)          # Linux: TMEM_POOL_PRIVATE_UUID
_U32 = (1 << 32) - 1

#: Which fields of ``TmemOp`` each command reads (the C union member it uses).
_SHOWN = {
    abi.TMEM_NEW_POOL: ("uuid", "flags"),
    abi.TMEM_DESTROY_POOL: ("pool_id",),
    abi.TMEM_PUT_PAGE: ("pool_id", "oid", "index"),
    abi.TMEM_GET_PAGE: ("pool_id", "oid", "index"),
    abi.TMEM_FLUSH_PAGE: ("pool_id", "oid", "index"),
    abi.TMEM_FLUSH_OBJECT: ("pool_id", "oid"),
    abi.TMEM_CONTROL: ("subop", "cli_id", "arg1", "arg2"),
    abi.TMEM_AUTH: ("arg1", "uuid", "flags"),
    abi.TMEM_RESTORE_NEW: ("pool_id", "arg1", "uuid", "flags"),
}


def describe(op: TmemOp) -> str:
    """A one-line summary of a hypercall argument: the command and the fields it reads.

    >>> describe(TmemOp(cmd=abi.TMEM_FLUSH_OBJECT, pool_id=2, oid=(19, 0, 0)))
    'FLUSH_OBJECT pool=2 oid=(19, 0, 0)'
    >>> describe(TmemOp(cmd=abi.TMEM_CONTROL, subop=abi.TMEMC_FREEZE, cli_id=1))
    'CONTROL subop=FREEZE cli_id=1 arg1=0 arg2=0'
    """
    name = abi.CMD_NAMES.get(op.cmd, f"cmd {op.cmd}").removeprefix("TMEM_")
    parts = [name]
    for f in _SHOWN.get(op.cmd, ("pool_id", "oid", "index")):
        v = getattr(op, f)
        if f == "subop":
            v = abi.SUBOP_NAMES.get(v, v)
            v = v.removeprefix("TMEMC_") if isinstance(v, str) else v
        elif f == "flags" and op.cmd == abi.TMEM_NEW_POOL:
            v = hex(v)
        elif f == "uuid":
            v = f"({v[0]:#x}, {v[1]:#x})"
        f = "pool" if f == "pool_id" else f
        parts.append(f"{f}={v}")
    return " ".join(parts)


@dataclass(frozen=True)
class Call:
    """One recorded hypercall: who made it, the argument, and what Xen returned."""
    domid: int        # calling domain
    op: TmemOp        # the argument (a get's ``page`` is the caller's buffer)
    rc: int           # Xen's return value

    def __str__(self):
        return f"dom{self.domid} {describe(self.op)} -> {abi.rc_name(self.rc)}"


def linux_pool_flags(kind: int, pagesize: int = PAGE_SIZE) -> int:
    """Linux: ``xen_tmem_new_pool``'s flags word — the kind bits (``TMEM_POOL_PERSIST``,
    ``TMEM_POOL_SHARED``), ``log2(pagesize) - 12`` in the page-size field, the spec version
    in the top byte.

    As in C, the page shift is found by halving until 1 (so a size that is not a power of two
    rounds down) and a size below 4096 makes a negative field whose 32-bit two's complement
    spills into the version byte — Xen then refuses the pool (-EPERM).

    >>> linux_pool_flags(0) == abi.pool_flags()
    True
    >>> hex(linux_pool_flags(abi.TMEM_POOL_PERSIST, 8192))
    '0x1000011'
    >>> hex(linux_pool_flags(0, 2048))
    '0xfffffff0'
    """
    if not isinstance(pagesize, int) or pagesize < 1:
        raise ValueError(f"page size must be a positive int, not {pagesize!r}")
    shift = pagesize.bit_length() - 1
    flags = kind | (((shift - 12) << abi.TMEM_POOL_PAGESIZE_SHIFT) & _U32)
    return (flags | (abi.TMEM_SPEC_VERSION << abi.TMEM_POOL_VERSION_SHIFT)) & _U32


class TmemOps:
    """Linux: ``xen_tmem_op`` and its wrappers in ``drivers/xen/tmem.c`` — the raw hypercalls.

    ``TmemOps(host, domid, trace=False)``. Methods return exactly what
    :meth:`Host.do_tmem_op` returns; nothing is translated. Complexity: one hypercall each.

    * :meth:`new_pool` — TMEM_NEW_POOL (flags built by :func:`linux_pool_flags`);
    * :meth:`destroy_pool` — TMEM_DESTROY_POOL;
    * :meth:`put_page`, :meth:`get_page`, :meth:`flush_page`, :meth:`flush_object`;
    * :meth:`call` — any :class:`TmemOp`, as is.

    ``trace``: ``None`` (not recording) or the list of :class:`Call` made so far. Pass
    ``trace=True`` for a new list, or an existing list to interleave several callers' calls.
    ``last_rc``: the value of the most recent hypercall (``None`` before the first).

    Xen/Linux: Linux passed a guest frame number (``pfn_to_mfn(pfn)`` for PV guests) and
    issued ``mb()`` before a put "since tmem may address it with an alias"; here the page is a
    Python buffer and nothing can alias it.
    """

    def __init__(self, host, domid: int, trace=False):
        self.host = host                  # the Host (the hypervisor)
        self.domid = domid                # the calling domain
        # None = not recording; a list (possibly shared with other TmemOps) = recording
        self.trace: Optional[List[Call]] = trace if isinstance(trace, list) else (
            [] if trace else None)
        self.last_rc: Optional[int] = None  # most recent hypercall's value; None: none yet

    def call(self, op: TmemOp) -> int:
        """Issue one hypercall (``HYPERVISOR_tmem_op``), record it, return Xen's value."""
        rc = self.host.do_tmem_op(self.domid, op)
        self.last_rc = rc
        if self.trace is not None:
            self.trace.append(Call(self.domid, op, rc))
        return rc

    def new_pool(self, kind: int = 0, uuid=PRIVATE_UUID, pagesize: int = PAGE_SIZE) -> int:
        """Linux: ``xen_tmem_new_pool`` — the new pool's id (0..15), or a negative errno."""
        return self.call(TmemOp(cmd=abi.TMEM_NEW_POOL, uuid=tuple(uuid),
                                flags=linux_pool_flags(kind, pagesize)))

    def destroy_pool(self, pool: int) -> int:
        """Linux: ``xen_tmem_destroy_pool`` — 1 if a pool went, 0 if there was none."""
        return self.call(TmemOp(cmd=abi.TMEM_DESTROY_POOL, pool_id=pool))

    def put_page(self, pool: int, oid, index: int, page) -> int:
        """Linux: ``xen_tmem_put_page`` — copy ``page`` (4096 bytes) into tmem."""
        return self.call(TmemOp(cmd=abi.TMEM_PUT_PAGE, pool_id=pool, oid=tuple(oid),
                                index=index, page=page))

    def get_page(self, pool: int, oid, index: int, buf) -> int:
        """Linux: ``xen_tmem_get_page`` — 1 and ``buf`` filled, 0 absent, -EEMPTY, ..."""
        return self.call(TmemOp(cmd=abi.TMEM_GET_PAGE, pool_id=pool, oid=tuple(oid),
                                index=index, page=buf))

    def flush_page(self, pool: int, oid, index: int) -> int:
        """Linux: ``xen_tmem_flush_page``."""
        return self.call(TmemOp(cmd=abi.TMEM_FLUSH_PAGE, pool_id=pool, oid=tuple(oid),
                                index=index))

    def flush_object(self, pool: int, oid) -> int:
        """Linux: ``xen_tmem_flush_object``."""
        return self.call(TmemOp(cmd=abi.TMEM_FLUSH_OBJECT, pool_id=pool, oid=tuple(oid)))

    def __repr__(self):
        return f"<TmemOps dom{self.domid}>"
