"""Bad input: one table of every refused or malformed hypercall and the code it must return.

Sources: facts §3.10 (return-code summary), §3.1 (order of checks: a bad pool id wins over an
unknown command), §1.3 (NEW_POOL flag fields), §3.2 (NEW_POOL rejections), §8.1 (control ops),
§11.1 (XSA-15: control from guests, negative pool ids, save sub-ops without a client).

For every row the test asserts: the exact return code; that no Python exception escapes;
``host.check()`` passes; no lock is left held; a guest buffer is not written; and the snapshot of
stored state (pages, pools, objects, frames, LRU orders, billing) is unchanged — only
statistics counters may move.

Left out on purpose (they are failures that *do* change state, by design, and are tested in
test_ops.py): a failed duplicate put (-ENOSPC, the old page is flushed) and a flush of a present
page while frozen (-EFROZEN, the page is flushed anyway).
"""
from __future__ import annotations

import errno
from types import SimpleNamespace

import numpy as np
import pytest
from decimal import Decimal

from tmemref import Host, TmemOp, abi
from tmemref.host import locks

from helpers import (ALL, U64, assert_no_locks_held, auth, closed_mmap, control, destroy_pool, diff,
                     released_view,
                     new_pool, page, put, snapshot)

ENODEV, EPERM, ENOMEM, EFAULT, ENOSYS, EINVAL, EOPNOTSUPP = (
    -errno.ENODEV, -errno.EPERM, -errno.ENOMEM, -errno.EFAULT, -errno.ENOSYS, -errno.EINVAL,
    -errno.EOPNOTSUPP)
EFROZEN, EEMPTY = -abi.EFROZEN, -abi.EEMPTY
A, B, C = (1, 0, 0), (2, 0, 0), (3, 0, 0)
UUID = (0x1234, 0xABCD)
PG = page(42)

# pools of dom1 in the standard host
E, P, S, Z = 0, 1, 2, 3          # ephemeral private, persistent, shared (dom2: slot 0), empty


# --- hosts ---------------------------------------------------------------------------------------
def setup_std(**kw):
    """dom1: E (A[0,1], B[0]), P (A[0..2]), S shared with dom2 (C[5] by dom1, C[6] by dom2),
    Z (empty). dom2: slot 0 = S. dom3 exists without a tmem client."""
    h = Host(pages=600, **kw)
    h.create_domain(1, pages=32, max_pages=512)
    h.create_domain(2, pages=32, max_pages=512)
    h.create_domain(3, pages=4, max_pages=4)
    assert auth(h, 1, UUID) == 1 and auth(h, 2, UUID) == 1
    assert [new_pool(h, 1), new_pool(h, 1, persist=True),
            new_pool(h, 1, shared=True, uuid=UUID), new_pool(h, 1)] == [E, P, S, Z]
    assert new_pool(h, 2, shared=True, uuid=UUID) == 0
    for oid, idx in ((A, 0), (A, 1), (B, 0)):
        assert put(h, 1, E, oid, idx, page(idx + 10 * oid[0])) == 1
    for idx in range(3):
        assert put(h, 1, P, A, idx, page(100 + idx)) == 1
    assert put(h, 1, S, C, 5, page(200)) == 1
    assert put(h, 2, 0, C, 6, page(201)) == 1
    return h


def setup_frozen(**kw):
    h = setup_std(**kw)
    assert control(h, abi.TMEMC_FREEZE, cli_id=1) == 0
    return h


def setup_lowmem(**kw):
    """250 free frames (< 1 MB), no ephemeral page to evict. dom1: persistent 0, ephemeral 1."""
    h = Host(pages=300, **kw)
    h.create_domain(1, pages=50, max_pages=1000)
    assert [new_pool(h, 1, persist=True), new_pool(h, 1)] == [0, 1]
    assert h.mem.free_pages == 250
    return h


def setup_maxpages(**kw):
    """dom1 at max_pages after one persistent page (metadata frame + data frame)."""
    h = Host(pages=600, **kw)
    d = h.create_domain(1, pages=10, max_pages=12)
    assert new_pool(h, 1, persist=True) == 0
    assert put(h, 1, 0, A, 0, page(0)) == 1
    assert d.tot_pages == d.max_pages
    return h


def setup_full16(**kw):
    h = setup_std(**kw)
    while None in h.clients[1].pools:
        assert new_pool(h, 1) >= 0
    return h


def setup_shared16(**kw):
    """16 global shared pools (all dom1's); dom2 has a client but no pool."""
    h = Host(pages=600, **kw)
    h.create_domain(1)
    h.create_domain(2)
    assert auth(h, ALL, (0, 0)) == 1
    for i in range(16):
        assert new_pool(h, 1, shared=True, uuid=(i + 1, 0)) == i
    assert destroy_pool(h, 2, 0) == 0
    return h


def setup_nomem(**kw):
    """Every frame belongs to dom1's own memory: tmem cannot get a single frame."""
    h = Host(pages=300, **kw)
    h.create_domain(1, pages=300)
    assert destroy_pool(h, 1, 0) == 0                     # creates the client
    assert auth(h, 1, UUID) == 1
    return h


SETUPS = {f.__name__[6:]: f for f in (setup_std, setup_frozen, setup_lowmem, setup_maxpages,
                                      setup_full16, setup_shared16, setup_nomem)}


# --- op builders (fresh buffers for each run) ----------------------------------------------------
def PUT(pid, oid=A, idx=9, pg=None):
    return lambda: TmemOp(cmd=abi.TMEM_PUT_PAGE, pool_id=pid, oid=oid, index=idx,
                          page=PG if pg is None else pg())


def GET(pid, oid=A, idx=9, buf=None):
    return lambda: TmemOp(cmd=abi.TMEM_GET_PAGE, pool_id=pid, oid=oid, index=idx,
                          page=bytearray(4096) if buf is None else buf())


def FLUSH(pid, oid=A, idx=9):
    return lambda: TmemOp(cmd=abi.TMEM_FLUSH_PAGE, pool_id=pid, oid=oid, index=idx)


def FLOBJ(pid, oid=(9, 9, 9)):
    return lambda: TmemOp(cmd=abi.TMEM_FLUSH_OBJECT, pool_id=pid, oid=oid)


def DESTROY(pid):
    return lambda: TmemOp(cmd=abi.TMEM_DESTROY_POOL, pool_id=pid)


def NEW(flags, uuid=UUID):
    return lambda: TmemOp(cmd=abi.TMEM_NEW_POOL, flags=flags, uuid=uuid)


def CTRL(subop, cli_id=ALL, **kw):
    return lambda: TmemOp(cmd=abi.TMEM_CONTROL, subop=subop, cli_id=cli_id, **kw)


def RAW(**kw):
    return lambda: TmemOp(**kw)


def OBJ(thing):
    return lambda: thing


ROWS = []


def row(id_, dom, make, rc, setup="std"):
    ROWS.append(pytest.param(setup, dom, make, rc, id=id_))


# --- bad pool ids (§3.1 step 10, §3.3, §11.1 negative ids) --------------------------------------
# A pool id is 32 bits: Xen casts it to u32 before comparing with 16, so the unsigned spelling
# of the same bits (2**31, 2**32 - 1) is as good a bad id as the signed one (facts §3.1).
for pid in (16, -1, 2**31 - 1, -2**31, 4, 15, 2**31, 2**32 - 1):
    row(f"put-pool{pid}", 1, PUT(pid), ENODEV)
    row(f"get-pool{pid}", 1, GET(pid), ENODEV)
    row(f"flush-pool{pid}", 1, FLUSH(pid), ENODEV)
    row(f"flobj-pool{pid}", 1, FLOBJ(pid), ENODEV)
    row(f"destroy-pool{pid}", 1, DESTROY(pid), 0)
row("put-dom2-slot1-is-empty-for-dom2", 2, PUT(1), ENODEV)    # ids are per client
row("get-dom2-slot1-is-empty-for-dom2", 2, GET(1), ENODEV)
row("destroy-dom2-slot1", 2, DESTROY(1), 0)

# --- NEW_POOL rejections (§1.3, §3.2) -----------------------------------------------------------
for v in (0, 2, 0x7F, 0xFF):
    row(f"new-version{v}", 1, NEW(abi.pool_flags(version=v)), EPERM)
for ps in (1, 2, 0xF):
    row(f"new-pagesize{ps}", 1, NEW(abi.pool_flags(pagesize_field=ps)), EPERM)
row("new-precompressed", 1, NEW(abi.pool_flags() | abi.TMEM_POOL_PRECOMPRESSED), EPERM)
row("new-precompressed-persist", 1,
    NEW(abi.pool_flags(persist=True) | abi.TMEM_POOL_PRECOMPRESSED), EPERM)
for bit in range(8, 24):
    row(f"new-reserved-bit{bit}", 1, NEW(abi.pool_flags() | (1 << bit)), EPERM)
row("new-shared+persist", 1, NEW(abi.pool_flags(persist=True, shared=True)), EPERM)
row("new-shared+persist-uuid-all-ones", 1,
    NEW(abi.pool_flags(persist=True, shared=True), uuid=(U64, U64)), EPERM)
row("new-17th-pool", 1, NEW(abi.pool_flags()), EPERM, setup="full16")
row("new-17th-pool-shared", 1, NEW(abi.pool_flags(shared=True)), EPERM, setup="full16")
row("new-17th-global-shared", 2, NEW(abi.pool_flags(shared=True), uuid=(99, 0)), EPERM,
    setup="shared16")
row("new-shared-no-memory", 1, NEW(abi.pool_flags(shared=True)), EPERM, setup="nomem")

# --- unknown commands (§3.1 steps 10-11) --------------------------------------------------------
for cmd in (3, 8, 9, 10, 11, 100, 103, 2**32 - 1):
    row(f"cmd{cmd}", 1, RAW(cmd=cmd, pool_id=E, oid=A, page=bytearray(4096)), ENOSYS)
    row(f"cmd{cmd}-pool16", 1, RAW(cmd=cmd, pool_id=16), ENODEV)
    row(f"cmd{cmd}-pool-neg", 1, RAW(cmd=cmd, pool_id=-1), ENODEV)
    row(f"cmd{cmd}-empty-slot", 2, RAW(cmd=cmd, pool_id=5), ENODEV)

# --- privileged ops from a guest (§8.1, §11.1 XSA-15) -------------------------------------------
for sub in sorted(abi.SUBOP_NAMES):
    row(f"guest-control-{abi.SUBOP_NAMES[sub]}", 1, CTRL(sub, cli_id=1, arg1=4), EPERM)
row("guest-control-unknown-subop", 2, CTRL(99), EPERM)
row("guest-auth-self", 2, RAW(cmd=abi.TMEM_AUTH, arg1=2, flags=1, uuid=(5, 5)), EPERM)
row("guest-auth-all", 2, RAW(cmd=abi.TMEM_AUTH, arg1=ALL, flags=1, uuid=(5, 5)), EPERM)
row("guest-auth-revoke-other", 2, RAW(cmd=abi.TMEM_AUTH, arg1=1, flags=0, uuid=UUID), EPERM)
row("guest-restore-new-self", 1,
    RAW(cmd=abi.TMEM_RESTORE_NEW, pool_id=9, arg1=1, flags=abi.pool_flags()), EPERM)
row("guest-restore-new-other", 2,
    RAW(cmd=abi.TMEM_RESTORE_NEW, pool_id=9, arg1=1, flags=abi.pool_flags()), EPERM)
row("guest-control-from-dom3", 3, CTRL(abi.TMEMC_LIST, buf=bytearray(64)), EPERM)

# --- control refusals from dom0 (§8.1, §3.2, XSA-15) --------------------------------------------
# save / restore sub-ops naming a domain without a client (3) or no domain (77): Xen <= 4.5's
# values (facts §9.2; the NULL-client checks of XSA-15); VERSION and MAXPOOLS need no client
NO_CLIENT = {abi.TMEMC_SAVE_BEGIN: 0, abi.TMEMC_SAVE_GET_VERSION: 1,
             abi.TMEMC_SAVE_GET_MAXPOOLS: 16, abi.TMEMC_SAVE_GET_NEXT_INV: 0}
SAVE = sorted(s for n, s in vars(abi).items() if n.startswith(("TMEMC_SAVE", "TMEMC_RESTORE")))
for sub in SAVE:
    name = abi.SUBOP_NAMES[sub]
    for cli in (3, 77, 0x10000 + 77):   # a domain without a client; no such domain (16 bits)
        if sub == abi.TMEMC_RESTORE_BEGIN and cli == 3:
            continue                    # creates the client: not a refusal (test_migrate.py)
        row(f"dom0-{name}-no-client-{cli:#x}", 0, CTRL(sub, cli_id=cli, buf=bytearray(8192),
                                                       arg1=8192), NO_CLIENT.get(sub, -1))
row("dom0-RESTORE_BEGIN-client-exists", 0, CTRL(abi.TMEMC_RESTORE_BEGIN, cli_id=1), -1)
row("dom0-RESTORE_BEGIN-client-exists-0x10001", 0,
    CTRL(abi.TMEMC_RESTORE_BEGIN, cli_id=0x10001), -1)
for sub in (abi.TMEMC_SAVE_GET_NEXT_PAGE, abi.TMEMC_RESTORE_PUT_PAGE,
            abi.TMEMC_RESTORE_FLUSH_PAGE, abi.TMEMC_SAVE_GET_POOL_FLAGS,
            abi.TMEMC_SAVE_GET_POOL_NPAGES, abi.TMEMC_SAVE_GET_POOL_UUID):
    for pid in (-1, -2**31, 2**31, 2**31 - 1, 16, Z + 1):
        row(f"dom0-{abi.SUBOP_NAMES[sub]}-pool{pid}", 0,
            CTRL(sub, cli_id=1, pool_id=pid, buf=bytearray(8192), arg1=8192), -1)
NEXT_PAGE = abi.TMEMC_SAVE_GET_NEXT_PAGE
row("dom0-SAVE_GET_NEXT_PAGE-ephemeral", 0,
    CTRL(NEXT_PAGE, cli_id=1, pool_id=E, buf=bytearray(8192), arg1=8192), -1)
row("dom0-SAVE_GET_NEXT_PAGE-bufsize-short", 0,
    CTRL(NEXT_PAGE, cli_id=1, pool_id=P, buf=bytearray(8192), arg1=4096 + 31), ENOMEM)
row("dom0-SAVE_GET_NEXT_PAGE-buffer-short", 0,
    CTRL(NEXT_PAGE, cli_id=1, pool_id=P, buf=bytearray(4096), arg1=8192), EFAULT)
row("dom0-SAVE_GET_NEXT_PAGE-buffer-readonly", 0,
    CTRL(NEXT_PAGE, cli_id=1, pool_id=P, buf=bytes(8192), arg1=8192), EFAULT)
row("dom0-SAVE_GET_NEXT_PAGE-no-buffer", 0,
    CTRL(NEXT_PAGE, cli_id=1, pool_id=P, arg1=8192), EFAULT)
row("dom0-SAVE_GET_POOL_UUID-no-buffer", 0,
    CTRL(abi.TMEMC_SAVE_GET_POOL_UUID, cli_id=1, pool_id=P, arg1=16), EFAULT)
row("dom0-SAVE_GET_POOL_UUID-buffer-short", 0,
    CTRL(abi.TMEMC_SAVE_GET_POOL_UUID, cli_id=1, pool_id=P, arg1=16, buf=bytearray(15)),
    EFAULT)
row("dom0-SAVE_GET_NEXT_INV-not-migrating", 0,
    CTRL(abi.TMEMC_SAVE_GET_NEXT_INV, cli_id=1, arg1=32, buf=bytearray(32)), 0)
row("dom0-SAVE_GET_NEXT_INV-bufsize-short", 0,
    CTRL(abi.TMEMC_SAVE_GET_NEXT_INV, cli_id=1, arg1=31, buf=bytearray(32)), 0)
for name, buf in (("none", None), ("short", bytearray(4095)), ("long", bytearray(4097)),
                  ("text", "x" * 4096)):
    row(f"dom0-RESTORE_PUT_PAGE-buffer-{name}", 0,
        CTRL(abi.TMEMC_RESTORE_PUT_PAGE, cli_id=1, pool_id=P, oid=A, arg2=9, arg1=4096,
             buf=buf), EFAULT)
for sub in (9, 31, 34, 99, 2**32 - 1):
    row(f"dom0-control-unknown-subop{sub}", 0, CTRL(sub), -1)
for sub in (abi.TMEMC_THAW, abi.TMEMC_FREEZE, abi.TMEMC_DESTROY, abi.TMEMC_SET_WEIGHT,
            abi.TMEMC_SET_CAP, abi.TMEMC_SET_COMPRESS):
    row(f"dom0-{abi.SUBOP_NAMES[sub]}-unknown-client", 0, CTRL(sub, cli_id=77, arg1=3), -1)
    row(f"dom0-{abi.SUBOP_NAMES[sub]}-clientless-domain", 0, CTRL(sub, cli_id=3, arg1=3), -1)
row("dom0-LIST-unknown-client", 0, CTRL(abi.TMEMC_LIST, cli_id=77, arg1=64,
                                        buf=bytearray(64)), -1)
row("dom0-FLUSH-one-client", 0, CTRL(abi.TMEMC_FLUSH, cli_id=1, arg1=4096), -1)
row("dom0-restore-new-clientless", 0,
    RAW(cmd=abi.TMEM_RESTORE_NEW, pool_id=0, arg1=3, flags=abi.pool_flags()), EPERM)
row("dom0-restore-new-no-domain", 0,
    RAW(cmd=abi.TMEM_RESTORE_NEW, pool_id=0, arg1=77, flags=abi.pool_flags()), EPERM)
for pid in (E, 16, -1, -2**31):
    row(f"dom0-restore-new-pool{pid}", 0,
        RAW(cmd=abi.TMEM_RESTORE_NEW, pool_id=pid, arg1=1, flags=abi.pool_flags()), EPERM)
row("dom0-restore-new-bad-version", 0,
    RAW(cmd=abi.TMEM_RESTORE_NEW, pool_id=9, arg1=1, flags=abi.pool_flags(version=0)), EPERM)
row("dom0-auth-no-domain", 0, RAW(cmd=abi.TMEM_AUTH, arg1=77, flags=1, uuid=(5, 5)), EINVAL)
row("dom0-auth-revoke-absent", 0, RAW(cmd=abi.TMEM_AUTH, arg1=1, flags=0, uuid=(5, 5)), 0)

# --- resource failures and ordinary misses of §3.10 ---------------------------------------------
row("put-frozen-new-index", 1, PUT(E, A, 9), EFROZEN, setup="frozen")
row("put-frozen-new-object", 1, PUT(E, (9, 9, 9), 0), EFROZEN, setup="frozen")
row("put-frozen-persistent", 1, PUT(P, A, 9), EFROZEN, setup="frozen")
row("put-frozen-owner-shared-by-dom2", 2, PUT(0, C, 9), EFROZEN, setup="frozen")
row("flush-frozen-absent-page", 1, FLUSH(E, A, 9), EFROZEN, setup="frozen")
row("flush-frozen-absent-object", 1, FLOBJ(E), EFROZEN, setup="frozen")
row("flush-frozen-empty-pool", 1, FLUSH(Z), EFROZEN, setup="frozen")
row("put-below-1MB-persistent", 1, PUT(0), ENOMEM, setup="lowmem")
row("put-below-1MB-ephemeral", 1, PUT(1), ENOMEM, setup="lowmem")
row("put-at-max-pages-same-object", 1, PUT(0, A, 1), ENOMEM, setup="maxpages")
row("put-at-max-pages-new-object", 1, PUT(0, B, 0), ENOMEM, setup="maxpages")
row("get-empty-pool", 1, GET(Z), EEMPTY)
row("get-missing-index", 1, GET(E, A, 9), 0)
row("get-missing-object", 1, GET(E, (9, 9, 9), 0), 0)
row("get-missing-persistent", 1, GET(P, A, 9), 0)
row("get-missing-shared", 2, GET(0, C, 9), 0)
row("get-index-max-missing", 1, GET(P, A, 2**32 - 1), 0)
row("get-oid-max-missing", 1, GET(P, (U64, U64, U64), 0), 0)
row("flush-missing", 1, FLUSH(E, A, 9), 1)
row("flobj-missing", 1, FLOBJ(E), 1)
row("flush-empty-pool", 1, FLUSH(Z), 1)

# --- malformed struct tmem_op (-EFAULT: the copy-in fails) --------------------------------------
for name, oid in (("2words", (1, 0)), ("4words", (1, 0, 0, 0)), ("empty", ()), ("none", None),
                  ("int", 5), ("str", "abc"), ("word2**64", (2**64, 0, 0)),
                  ("mid2**64", (0, 2**64, 0)), ("neg", (-1, 0, 0)), ("lastneg", (0, 0, -1)),
                  ("float", (1.0, 0, 0)), ("strword", ("1", 0, 0)), ("noneword", (None, 0, 0))):
    row(f"put-oid-{name}", 1, PUT(E, oid, 9), EFAULT)
    row(f"get-oid-{name}", 1, GET(P, oid, 0), EFAULT)
    row(f"flobj-oid-{name}", 1, FLOBJ(E, oid), EFAULT)
for name, idx in (("2**32", 2**32), ("neg", -1), ("float", 1.5), ("str", "0"), ("none", None),
                  ("2**64", 2**64)):
    row(f"put-index-{name}", 1, PUT(E, A, idx), EFAULT)
    row(f"get-index-{name}", 1, GET(P, A, idx), EFAULT)
    row(f"flush-index-{name}", 1, FLUSH(E, A, idx), EFAULT)
for name, pid in (("-2**31-1", -2**31 - 1), ("float", 0.0), ("str", "0"),
                  ("none", None), ("2**32", 2**32)):
    row(f"put-poolid-{name}", 1, PUT(pid), EFAULT)
    row(f"destroy-poolid-{name}", 1, DESTROY(pid), EFAULT)
for name, cmd in (("neg", -1), ("2**32", 2**32), ("float", 4.0), ("str", "4"), ("none", None)):
    row(f"cmd-{name}", 1, RAW(cmd=cmd, pool_id=E, oid=A, index=9, page=PG), EFAULT)
for name, flags in (("2**32", 2**32 | abi.pool_flags()), ("neg", -1), ("float", 16777216.0),
                    ("none", None)):
    row(f"new-flags-{name}", 1, NEW(flags), EFAULT)
for name, uuid in (("1word", (1,)), ("3words", (1, 2, 3)), ("neg", (-1, 0)),
                   ("2**64", (2**64, 0)), ("none", None), ("str", "uuid")):
    row(f"new-uuid-{name}", 1, NEW(abi.pool_flags(shared=True), uuid), EFAULT)
for name, kw in (("arg1-neg", dict(arg1=-1)), ("arg1-2**32", dict(arg1=2**32)),
                 ("arg2-neg", dict(arg2=-1)), ("subop-neg", dict(subop=-1)),
                 ("subop-2**32", dict(subop=2**32)), ("cli_id-2**32", dict(cli_id=2**32)),
                 ("cli_id-neg", dict(cli_id=-1))):
    # malformed fields are refused before the privilege check, from dom0 and from a guest
    row(f"dom0-control-{name}", 0, RAW(cmd=abi.TMEM_CONTROL, **{"subop": 1, **kw}), EFAULT)
    row(f"guest-control-{name}", 1, RAW(cmd=abi.TMEM_CONTROL, **{"subop": 1, **kw}), EFAULT)
row("dom0-auth-arg1-neg", 0, RAW(cmd=abi.TMEM_AUTH, arg1=-1, flags=1, uuid=UUID), EFAULT)
row("dom0-auth-flags-neg", 0, RAW(cmd=abi.TMEM_AUTH, arg1=2, flags=-1, uuid=UUID), EFAULT)
FIELDS = dict(cmd=abi.TMEM_PUT_PAGE, pool_id=E, uuid=(0, 0), flags=0, arg1=0, oid=A, index=9,
              page=PG, subop=0, cli_id=ALL, arg2=0, buf=None)
for name, thing in (("None", None), ("dict", dict(FIELDS)), ("tuple", tuple(FIELDS.values())),
                    ("namespace", SimpleNamespace(**FIELDS)), ("class", TmemOp),
                    ("int", 4), ("str", "TMEM_PUT_PAGE")):
    row(f"not-a-tmemop-{name}", 1, OBJ(thing), EFAULT)
    row(f"not-a-tmemop-{name}-dom0", 0, OBJ(thing), EFAULT)

# --- wrong guest frames (-EFAULT) ---------------------------------------------------------------
BAD_PUT_PAGES = {
    "4095": lambda: b"x" * 4095, "4097": lambda: b"x" * 4097, "0": lambda: b"",
    "none": lambda: None, "str": lambda: "x" * 4096, "int": lambda: 4096,
    "list": lambda: [0] * 4096, "noncontig": lambda: memoryview(bytearray(8192))[::2],
    "8192": lambda: bytearray(8192),
}
BAD_GET_BUFS = {
    "readonly-bytes": lambda: bytes(4096), "readonly-view": lambda: memoryview(bytes(4096)),
    "4095": lambda: bytearray(4095), "4097": lambda: bytearray(4097), "0": lambda: bytearray(),
    "none": lambda: None, "str": lambda: "x" * 4096, "list": lambda: [0] * 4096,
    "noncontig": lambda: memoryview(bytearray(8192))[::2],
}
for name, mk in BAD_PUT_PAGES.items():
    row(f"put-page-{name}", 1, PUT(E, A, 9, mk), EFAULT)
    row(f"put-page-{name}-persistent-new-object", 1, PUT(P, (9, 9, 9), 0, mk), EFAULT)
for name, mk in BAD_GET_BUFS.items():
    # a present page, so Xen too would reach the copy (and fail it)
    row(f"get-buf-{name}-persistent", 1, GET(P, A, 0, mk), EFAULT)
    row(f"get-buf-{name}-shared", 2, GET(0, C, 5, mk), EFAULT)
    row(f"get-buf-{name}-private-ephemeral", 1, GET(E, A, 0, mk), EFAULT)



# --- guest buffers that cannot be read at all (each raised inside the object lock once) ---------
UNREADABLE = {
    "released-view": released_view, "closed-mmap": closed_mmap,
    "datetime64-array": lambda: np.zeros(512, dtype="datetime64[s]"),
    "object-array": lambda: np.array([object()] * 4096, dtype=object),
    "float-array-4096B": lambda: np.zeros(512, dtype=np.float64)[::-1],   # right size, not C-contiguous
}
for name, mk in UNREADABLE.items():
    row(f"put-unreadable-{name}", 1, PUT(E, A, 9, mk), EFAULT)
    row(f"put-unreadable-{name}-new-object", 1, PUT(P, (9, 9, 9), 0, mk), EFAULT)
    row(f"get-unreadable-{name}-persistent", 1, GET(P, A, 0, mk), EFAULT)
    row(f"get-unreadable-{name}-shared", 2, GET(0, C, 5, mk), EFAULT)
    row(f"get-unreadable-{name}-private-ephemeral", 1, GET(E, A, 0, mk), EFAULT)
    row(f"list-unreadable-{name}", 0, CTRL(abi.TMEMC_LIST, arg1=4096, buf=mk()), EFAULT)


# --- values no C integer field holds, in every field (-EFAULT, whatever the command) ------------
class EqRaises:
    """An object whose comparisons and conversions all raise."""
    def __eq__(self, other):
        raise RuntimeError("__eq__ called")
    __ne__ = __lt__ = __le__ = __gt__ = __ge__ = __eq__

    def __index__(self):
        raise RuntimeError("__index__ called")
    __int__ = __index__

    def __hash__(self):
        return 0


NOT_INTS = {
    "float0": lambda: 0.0, "decimal0": lambda: Decimal(0), "np-float0": lambda: np.float64(0),
    "np-int0": lambda: np.int64(0), "np-array": lambda: np.zeros(1, dtype=np.int64),
    "eq-raises": EqRaises, "bool": lambda: False,
}
INT_FIELDS = ("cmd", "pool_id", "flags", "arg1", "index", "subop", "cli_id", "arg2")
OPS = {   # name: (caller, the op's other fields) — one op of each kind that reads a field
    "put": (1, dict(cmd=abi.TMEM_PUT_PAGE, pool_id=E, oid=A, index=9, page=PG)),
    "new-pool": (1, dict(cmd=abi.TMEM_NEW_POOL, flags=abi.pool_flags(), uuid=UUID)),
    "auth": (0, dict(cmd=abi.TMEM_AUTH, arg1=2, flags=1, uuid=(5, 5))),
    "restore-new": (0, dict(cmd=abi.TMEM_RESTORE_NEW, pool_id=9, arg1=1,
                            flags=abi.pool_flags(), uuid=(0, 0))),
    "control": (0, dict(cmd=abi.TMEM_CONTROL, subop=abi.TMEMC_FREEZE,
                        cli_id=1)),
}


def _with(fields, name, make):
    return lambda: TmemOp(**{**fields, name: make()})


for opname, (dom, fields) in OPS.items():
    for vname, mk in NOT_INTS.items():
        for f in INT_FIELDS:
            row(f"{opname}-{f}-{vname}", dom, _with(fields, f, mk), EFAULT)
        for i in range(3):
            row(f"{opname}-oid{i}-{vname}", dom,
                _with(fields, "oid", lambda mk=mk, i=i: tuple(mk() if j == i else 0
                                                              for j in range(3))), EFAULT)
        for i in range(2):
            row(f"{opname}-uuid{i}-{vname}", dom,
                _with(fields, "uuid", lambda mk=mk, i=i: tuple(mk() if j == i else 0
                                                               for j in range(2))), EFAULT)
        row(f"{opname}-oid-whole-{vname}", dom, _with(fields, "oid", mk), EFAULT)
        row(f"{opname}-uuid-whole-{vname}", dom, _with(fields, "uuid", mk), EFAULT)


def _ids():
    return [p.id for p in ROWS]


assert len(set(_ids())) == len(ROWS), "duplicate row ids"


def _copy_if_mutable(x):
    if isinstance(x, bytearray):
        return bytes(x)
    try:
        if isinstance(x, memoryview) and not x.readonly:
            return x.tobytes()
    except ValueError:                          # a released view: nothing to compare
        pass
    return None


#: setup name -> (host, snapshot). Every row must leave the stored state unchanged — which is
#: exactly what each row asserts — so rows share one host per setup; a failing row drops the
#: shared host so that the next row starts from a freshly built one.
_CACHE: dict = {}
#: Every row runs on hosts booted each of these ways: a refusal never depends on them.
MODES = {"plain": {}, "dedup": dict(dedup=True), "tze": dict(dedup=True, tze=True),
         "compress": dict(compress=True), "all": dict(dedup=True, tze=True, compress=True)}


def _fresh(setup, mode="plain"):
    entry = _CACHE.get((setup, mode))
    if entry is None:
        host = SETUPS[setup](**MODES[mode])
        host.check()
        assert_no_locks_held(host)
        entry = _CACHE[setup, mode] = (host, snapshot(host))
    return entry


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("setup,domid,make,rc", ROWS)
def test_bad_input(setup, domid, make, rc, mode):
    setup_key = (setup, mode)
    host, before = _fresh(setup, mode)
    try:
        op = make()
        guest_page = getattr(op, "page", None) if isinstance(op, TmemOp) else None
        page_before = _copy_if_mutable(guest_page)
        try:
            got = host.do_tmem_op(domid, op)
        except Exception as e:  # noqa: BLE001 — the point is that nothing escapes
            pytest.fail(f"hypercall raised {type(e).__name__}: {e}")
        assert type(got) is int and got == rc, \
            f"returned {abi.rc_name(got)}, want {abi.rc_name(rc)}"
        host.check()
        assert_no_locks_held(host)
        assert locks.held_locks() == [], f"this thread still holds {locks.held_locks()}"
        after = snapshot(host)
        assert after == before, f"stored state changed: {diff(before, after)}"
        if page_before is not None:
            assert _copy_if_mutable(guest_page) == page_before, "guest buffer was written"
    except BaseException:
        _CACHE.pop(setup_key, None)
        raise


# --- callers that are not domains ----------------------------------------------------------------
@pytest.mark.parametrize("domid", [4, 77, -1, 0xFFFF, 2**40, "1", None],
                         ids=["4", "77", "-1", "0xFFFF", "2**40", "str", "None"])
def test_call_from_nonexistent_domain_raises_valueerror(domid):
    host = setup_std()
    before = snapshot(host)
    for op in (TmemOp(cmd=abi.TMEM_NEW_POOL, flags=abi.pool_flags()),
               TmemOp(cmd=abi.TMEM_PUT_PAGE, pool_id=0, oid=A, index=9, page=PG),
               TmemOp(cmd=abi.TMEM_CONTROL, subop=abi.TMEMC_FREEZE)):
        with pytest.raises(ValueError):
            host.do_tmem_op(domid, op)
    host.check()
    assert_no_locks_held(host)
    assert snapshot(host) == before


def test_destroyed_domain_is_nonexistent():
    host = setup_std()
    host.destroy_domain(3)
    before = snapshot(host)
    with pytest.raises(ValueError):
        host.do_tmem_op(3, TmemOp(cmd=abi.TMEM_NEW_POOL, flags=abi.pool_flags()))
    assert snapshot(host) == before
