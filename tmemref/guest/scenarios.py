"""Small live experiments on the guest ABI, each answering one question by calling the engine.

The book's chapter "The guest's view" renders these; ``tests/test_guest.py`` checks them
against Xen's rules. Nothing here is a table of expected answers: every value comes from a
hypercall made on a fresh :class:`~tmemref.Host` when the function runs.

* :func:`command_rows` — every ``TMEM_*`` command, called by a guest and by dom0;
* :func:`return_code_rows` — one row per return code a guest can meet, each from a live call;
* :func:`gets_by_pool_kind` — what repeated gets return in each kind of pool;
* :func:`subop_rows` — every ``TMEMC_*`` sub-op and the ``xl`` command that sends it;
* :func:`md_table`, :func:`source_block` — Markdown for ``IPython.display.Markdown``.

>>> print(md_table(["a", "b"], [(1, "x|y")]))
| a | b |
|---|---|
| 1 | x\\|y |
"""
from __future__ import annotations

import inspect
import textwrap
from dataclasses import dataclass
from typing import List, Sequence

from .. import abi
from ..abi import TmemOp
from ..core.host import Host
from .ops import TmemOps, describe
from .xl import COMMANDS, sender_of

#: Size of the hosts the experiments build: comfortably above the 1 MB (256-frame) guard.
HOST_PAGES = 1024
PAGE_A = b"A" * abi.PAGE_SIZE
PAGE_B = b"B" * abi.PAGE_SIZE
OID = (1, 0, 0)
SHARED_UUID = (0x5EED, 0xF00D)

#: One line per command: what it asks for.
CMD_SUMMARY = {
    abi.TMEM_CONTROL: "a TMEMC_* management sub-op (tools only)",
    abi.TMEM_NEW_POOL: "create a pool; returns its id 0..15",
    abi.TMEM_DESTROY_POOL: "drop a pool and all its pages",
    abi.TMEM_NEW_PAGE: "put an all-zero page (Xen <= 4.3 only)",
    abi.TMEM_PUT_PAGE: "copy a page into tmem",
    abi.TMEM_GET_PAGE: "copy a page back out",
    abi.TMEM_FLUSH_PAGE: "forget one page",
    abi.TMEM_FLUSH_OBJECT: "forget every page of an object",
    abi.TMEM_READ: "sub-page get (Xen <= 4.3 only)",
    abi.TMEM_WRITE: "sub-page put (Xen <= 4.3 only)",
    abi.TMEM_XCHG: "never implemented",
    abi.TMEM_AUTH: "let a client join a shared pool uuid (tools only)",
    abi.TMEM_RESTORE_NEW: "create a pool with a given id for a client (restore)",
}

#: Which member of ``struct tmem_op``'s union each command reads.
CMD_UNION = {abi.TMEM_NEW_POOL: "creat", abi.TMEM_AUTH: "creat",
             abi.TMEM_RESTORE_NEW: "creat", abi.TMEM_CONTROL: "ctrl",
             abi.TMEM_DESTROY_POOL: "—"}       # DESTROY_POOL reads pool_id only

#: One line per control sub-op.
SUBOP_SUMMARY = {
    abi.TMEMC_THAW: "accept new puts again",
    abi.TMEMC_FREEZE: "refuse new puts (-EFROZEN)",
    abi.TMEMC_FLUSH: "evict ephemeral pages and give N KB back to Xen",
    abi.TMEMC_DESTROY: "named 'destroy', but Xen's code only thaws",
    abi.TMEMC_LIST: "statistics as two-letter ASCII counters",
    abi.TMEMC_SET_WEIGHT: "a client's share of ephemeral memory",
    abi.TMEMC_SET_CAP: "a cap (stored, never enforced)",
    abi.TMEMC_SET_COMPRESS: "compress this client's pages",
    abi.TMEMC_QUERY_FREEABLE_MB: "MB tmem could give back",
    abi.TMEMC_SAVE_BEGIN: "save: freeze the client, start",
    abi.TMEMC_SAVE_GET_VERSION: "save: the stream version",
    abi.TMEMC_SAVE_GET_MAXPOOLS: "save: pools per client (16)",
    abi.TMEMC_SAVE_GET_CLIENT_WEIGHT: "save: the client's weight",
    abi.TMEMC_SAVE_GET_CLIENT_CAP: "save: the client's cap",
    abi.TMEMC_SAVE_GET_CLIENT_FLAGS: "save: compress / frozen flags",
    abi.TMEMC_SAVE_GET_POOL_FLAGS: "save: one pool's flags",
    abi.TMEMC_SAVE_GET_POOL_NPAGES: "save: one pool's page count",
    abi.TMEMC_SAVE_GET_POOL_UUID: "save: one pool's uuid",
    abi.TMEMC_SAVE_GET_NEXT_PAGE: "save: the next persistent page",
    abi.TMEMC_SAVE_GET_NEXT_INV: "live migration: the next invalidated page",
    abi.TMEMC_SAVE_END: "save: done (thaw if it was not frozen before)",
    abi.TMEMC_RESTORE_BEGIN: "restore: create the client",
    abi.TMEMC_RESTORE_PUT_PAGE: "restore: put one saved page",
    abi.TMEMC_RESTORE_FLUSH_PAGE: "restore: replay one invalidation",
}


def md_table(headers: Sequence[str], rows: Sequence[Sequence]) -> str:
    """A Markdown table (``|`` inside a cell is escaped)."""
    def cell(v):
        return str(v).replace("|", "\\|")
    lines = ["| " + " | ".join(map(cell, headers)) + " |",
             "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(map(cell, r)) + " |" for r in rows]
    return "\n".join(lines)


def source_block(obj) -> str:
    """The source of ``obj`` as a fenced Markdown code block (the book shows code this way,
    so it never drifts from the package)."""
    return "```python\n" + textwrap.dedent(inspect.getsource(obj)).rstrip() + "\n```"


def new_host(*domids: int, pages: int = HOST_PAGES, max_pages: int = 512, **kw) -> Host:
    """A fresh host with the given guest domains (64 pages each, up to ``max_pages``)."""
    host = Host(pages=pages, **kw)
    for d in domids:
        host.create_domain(d, pages=64, max_pages=max_pages)
    return host


def _expect(rc: int, want: int) -> None:
    """An experiment's set-up step must succeed, or its answer would mean nothing."""
    if rc != want:
        raise RuntimeError(f"experiment set-up returned {abi.rc_name(rc)}, not {want}")


# --- the commands --------------------------------------------------------------------------
def _op_for(cmd: int, caller: int) -> TmemOp:
    """A well-formed argument for ``cmd``, aimed at pool 0 / OID index 0 of ``caller``."""
    if cmd == abi.TMEM_NEW_POOL:
        return TmemOp(cmd=cmd, flags=abi.pool_flags())
    if cmd == abi.TMEM_CONTROL:
        return TmemOp(cmd=cmd, subop=abi.TMEMC_LIST, cli_id=abi.TMEM_CLI_ID_NULL,
                      arg1=4096, buf=bytearray(4096))
    if cmd == abi.TMEM_AUTH:
        return TmemOp(cmd=cmd, arg1=caller, flags=1, uuid=SHARED_UUID)
    if cmd == abi.TMEM_RESTORE_NEW:
        return TmemOp(cmd=cmd, pool_id=5, arg1=caller, flags=abi.pool_flags())
    page = {abi.TMEM_PUT_PAGE: PAGE_B, abi.TMEM_GET_PAGE: bytearray(abi.PAGE_SIZE)}.get(cmd)
    return TmemOp(cmd=cmd, pool_id=0, oid=OID, index=0, page=page)


def command_call(cmd: int, caller: int) -> int:
    """Xen's answer to command ``cmd`` from domain ``caller``, which already has an ephemeral
    private pool 0 holding page ``OID``/0 (a fresh host each time)."""
    host = new_host(1)
    g = TmemOps(host, caller)
    _expect(g.new_pool(), 0)
    _expect(g.put_page(0, OID, 0, PAGE_A), 1)
    return g.call(_op_for(cmd, caller))


def command_rows() -> List[tuple]:
    """(number, name, union member, a guest (dom 1) gets, dom0 gets, summary) for every
    command of :data:`tmemref.abi.CMD_NAMES`, in numeric order — the two answer columns
    come from live calls (:func:`command_call`)."""
    rows = []
    for cmd in sorted(abi.CMD_NAMES):
        rows.append((cmd, abi.CMD_NAMES[cmd], CMD_UNION.get(cmd, "gen"),
                     abi.rc_name(command_call(cmd, 1)), abi.rc_name(command_call(cmd, 0)),
                     CMD_SUMMARY[cmd]))
    return rows


# --- return codes --------------------------------------------------------------------------
@dataclass(frozen=True)
class RcCase:
    """One return code, met live."""
    case: str        # the situation
    call: str        # the hypercall that met it (``describe``)
    rc: int          # what Xen returned
    xen: str         # the Xen function that decides it

    @property
    def name(self) -> str:
        return abi.rc_name(self.rc)


def _guest_with_page(persist: bool = False):
    host = new_host(1)
    g = TmemOps(host, 1, trace=True)
    pool = g.new_pool(abi.TMEM_POOL_PERSIST if persist else 0)
    _expect(g.put_page(pool, OID, 0, PAGE_A), 1)
    return host, g, pool


def _found():
    host, g, pool = _guest_with_page(persist=True)
    g.get_page(pool, OID, 0, bytearray(abi.PAGE_SIZE))
    return g


def _missing():
    host, g, pool = _guest_with_page()
    g.get_page(pool, OID, 1, bytearray(abi.PAGE_SIZE))
    return g


def _empty():
    g = TmemOps(new_host(1), 1, trace=True)
    pool = g.new_pool()
    g.get_page(pool, OID, 0, bytearray(abi.PAGE_SIZE))
    return g


def _bad_pool():
    g = TmemOps(new_host(1), 1, trace=True)
    g.new_pool()
    g.put_page(7, OID, 0, PAGE_A)
    return g


def _frozen_put():
    host, g, pool = _guest_with_page()
    TmemOps(host, 0).call(TmemOp(cmd=abi.TMEM_CONTROL, subop=abi.TMEMC_FREEZE, cli_id=1))
    g.put_page(pool, OID, 1, PAGE_B)
    return g


def _frozen_flush():
    host, g, pool = _guest_with_page()
    TmemOps(host, 0).call(TmemOp(cmd=abi.TMEM_CONTROL, subop=abi.TMEMC_FREEZE, cli_id=1))
    g.flush_page(pool, OID, 0)
    return g


def _unknown_cmd():
    host, g, pool = _guest_with_page()
    g.call(TmemOp(cmd=abi.TMEM_XCHG, pool_id=pool, oid=OID))
    return g


def _control_from_guest():
    g = TmemOps(new_host(1), 1, trace=True)
    g.call(TmemOp(cmd=abi.TMEM_CONTROL, subop=abi.TMEMC_FREEZE, cli_id=1))
    return g


def _bad_page():
    host, g, pool = _guest_with_page()
    g.put_page(pool, OID, 1, b"too short")
    return g


def _bad_version():
    g = TmemOps(new_host(1), 1, trace=True)
    g.call(TmemOp(cmd=abi.TMEM_NEW_POOL, flags=abi.pool_flags(version=0)))
    return g


def _over_allocation():
    host = new_host(1, max_pages=64)          # the guest already owns all it may have
    g = TmemOps(host, 1, trace=True)
    pool = g.new_pool(abi.TMEM_POOL_PERSIST)
    g.put_page(pool, OID, 0, PAGE_A)
    return g


def _destroy_empty_slot():
    g = TmemOps(new_host(1), 1, trace=True)
    g.destroy_pool(3)
    return g


#: (situation, experiment, Xen function) — each experiment leaves its answer in ``last_rc``.
RC_EXPERIMENTS: Sequence[tuple] = (
    ("page found", _found, "do_tmem_get"),
    ("page missing, pool not empty", _missing, "do_tmem_get"),
    ("pool holds no page at all", _empty, "do_tmem_get"),
    ("no such pool", _bad_pool, "do_tmem_op"),
    ("new put while frozen", _frozen_put, "do_tmem_put"),
    ("flush while frozen (done anyway)", _frozen_flush, "do_tmem_flush_page"),
    ("command not implemented", _unknown_cmd, "do_tmem_op"),
    ("control op from a guest", _control_from_guest, "do_tmem_op"),
    ("page not 4096 readable bytes", _bad_page, "tmem_copy_from_client"),
    ("NEW_POOL with version 0", _bad_version, "do_tmem_new_pool"),
    ("persistent put, guest at max_pages", _over_allocation, "do_tmem_put"),
    ("DESTROY_POOL of an empty slot", _destroy_empty_slot, "do_tmem_destroy_pool"),
)


def return_code_rows(experiments: Sequence[tuple] = RC_EXPERIMENTS) -> List[RcCase]:
    """Run each experiment on a fresh host; each row holds the guest's last hypercall (from
    its trace) and Xen's answer to it."""
    out = []
    for case, run, xen in experiments:
        g: TmemOps = run()
        last = g.trace[-1]
        out.append(RcCase(case, describe(last.op), last.rc, xen))
    return out


# --- get semantics -------------------------------------------------------------------------
POOL_KINDS = ("ephemeral private", "ephemeral shared", "persistent private")


def gets_by_pool_kind(n_gets: int = 3) -> dict:
    """For each pool kind: domain 1 puts one page, then ``getter`` gets it ``n_gets`` times.
    In the shared pool the getter is domain 2, which joined the same uuid (both authorised
    by dom0). Returns ``{kind: [put rc, get rc, ...]}``."""
    out = {}
    for kind in POOL_KINDS:
        host = new_host(1, 2)
        put_g = TmemOps(host, 1)
        get_g = put_g
        if kind == "ephemeral shared":
            tools = TmemOps(host, 0)
            for d in (1, 2):
                tools.call(TmemOp(cmd=abi.TMEM_AUTH, arg1=d, flags=1, uuid=SHARED_UUID))
            pool = put_g.new_pool(abi.TMEM_POOL_SHARED, SHARED_UUID)
            get_g = TmemOps(host, 2)
            get_pool = get_g.new_pool(abi.TMEM_POOL_SHARED, SHARED_UUID)
        else:
            pool = get_pool = put_g.new_pool(
                abi.TMEM_POOL_PERSIST if kind.startswith("persistent") else 0)
        rcs = [put_g.put_page(pool, OID, 0, PAGE_A)]
        rcs += [get_g.get_page(get_pool, OID, 0, bytearray(abi.PAGE_SIZE))
                for _ in range(n_gets)]
        out[kind] = rcs
    return out


# --- control sub-ops -----------------------------------------------------------------------
def subop_rows() -> List[tuple]:
    """(number, TMEMC name, the tool that sends it, summary) for every sub-op of
    :data:`tmemref.abi.SUBOP_NAMES`, in numeric order (see :func:`~.xl.sender_of`)."""
    return [(sub, abi.SUBOP_NAMES[sub], sender_of(sub), SUBOP_SUMMARY[sub])
            for sub in sorted(abi.SUBOP_NAMES)]


def xl_rows() -> List[tuple]:
    """(xl command with its arguments, hypercall, sub-ops) for every ``xl tmem-*`` command."""
    rows = []
    for c in COMMANDS:
        subs = ", ".join(abi.SUBOP_NAMES[s] for s in c.subops) or "—"
        rows.append((f"xl {c.name} {c.usage}".strip(), abi.CMD_NAMES[c.cmd], subs))
    return rows
