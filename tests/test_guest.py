"""The Linux side (tmemref.guest): each frontend call checked against the raw hypercalls.

Expected values come from Linux's ``drivers/xen/tmem.c`` and the frontends ``mm/cleancache.c`` /
``mm/frontswap.c`` as the facts digest describes them (§10.1-10.2), and from Xen's rules (§3,
§8.4), never from tmemref's output. An autouse fixture makes every hypercall on every Host run
``host.check()`` and the no-leaked-lock check afterwards (the house rule), including the hosts
the scenarios build internally.
"""
from __future__ import annotations

import errno
import itertools
import uuid as uuidlib

import pytest
from hypothesis import given, settings, strategies as st

from tmemref import Host, TmemOp, abi
from tmemref.core.obj import oid_hash
from tmemref.guest import (Call, Cleancache, Frontswap, TmemOps, Xl, XlError, describe,
                           filekey_oid, linux_pool_flags, swizzle, unswizzle, uuid_parse,
                           uuid_words)
from tmemref.guest import scenarios
from tmemref.guest.xl import COMMANDS, OTHER_SENDERS, command_for_subop, sender_of

from helpers import assert_no_locks_held, page, stored

EPERM, ENODEV, ENOSYS, EFAULT, ENOMEM = (-errno.EPERM, -errno.ENODEV, -errno.ENOSYS,
                                         -errno.EFAULT, -errno.ENOMEM)
EFROZEN, EEMPTY = -abi.EFROZEN, -abi.EEMPTY
PAGE = abi.PAGE_SIZE


@pytest.fixture(autouse=True)
def _check_after_every_hypercall(monkeypatch):
    real = Host.do_tmem_op

    def checked(self, domid, op):
        rc = real(self, domid, op)
        self.check()
        assert_no_locks_held(self)
        return rc
    monkeypatch.setattr(Host, "do_tmem_op", checked)



def buf():
    return bytearray(b"\xee" * PAGE)


def raw_get(host, domid, pool, oid, index):
    """A raw GET_PAGE: (rc, bytes)."""
    b = buf()
    rc = host.do_tmem_op(domid, TmemOp(cmd=abi.TMEM_GET_PAGE, pool_id=pool, oid=oid,
                                       index=index, page=b))
    return rc, bytes(b)


def cmds(trace):
    return [abi.CMD_NAMES[c.op.cmd] for c in trace]


# ================================================================================================
# TmemOps: the foundation ops
# ================================================================================================
def test_linux_pool_flags_match_the_abi():
    # §10.1: flags | (log2(pagesize) - 12) << 4 | TMEM_SPEC_VERSION << 24
    assert linux_pool_flags(0) == abi.pool_flags()
    assert linux_pool_flags(abi.TMEM_POOL_PERSIST) == abi.pool_flags(persist=True)
    assert linux_pool_flags(abi.TMEM_POOL_SHARED) == abi.pool_flags(shared=True)
    assert linux_pool_flags(0, 8192) == abi.pool_flags(pagesize_field=1)
    assert linux_pool_flags(0, 65536) == abi.pool_flags(pagesize_field=4)
    assert linux_pool_flags(0, 6000) == abi.pool_flags()      # halving loop rounds down
    # 2048: (11 - 12) << 4 is -16, whose 32-bit pattern fills the version byte
    assert linux_pool_flags(0, 2048) == 0xFFFFFFF0
    with pytest.raises(ValueError):
        linux_pool_flags(0, 0)


def test_tmemops_return_xen_values_and_trace(host):
    g = TmemOps(host, 1, trace=True)
    assert g.last_rc is None
    p = g.new_pool(abi.TMEM_POOL_PERSIST)
    assert p == 0
    assert g.put_page(p, [7, 0, 0], 3, page(1)) == 1        # a list oid becomes a tuple
    rc, data = raw_get(host, 1, p, (7, 0, 0), 3)
    assert (rc, data) == (1, page(1))
    b = buf()
    assert g.get_page(p, (7, 0, 0), 4, b) == 0 and b == buf()
    assert g.flush_page(p, (7, 0, 0), 3) == 1
    assert g.get_page(p, (7, 0, 0), 3, b) == EEMPTY
    assert g.flush_object(p, (7, 0, 0)) == 1
    assert g.destroy_pool(p) == 1 and g.destroy_pool(p) == 0
    assert cmds(g.trace) == ["TMEM_NEW_POOL", "TMEM_PUT_PAGE", "TMEM_GET_PAGE",
                             "TMEM_FLUSH_PAGE", "TMEM_GET_PAGE", "TMEM_FLUSH_OBJECT",
                             "TMEM_DESTROY_POOL", "TMEM_DESTROY_POOL"]
    assert [c.rc for c in g.trace] == [0, 1, 0, 1, EEMPTY, 1, 1, 0]
    assert g.last_rc == 0
    assert g.trace[0].op.flags == abi.pool_flags(persist=True)
    assert g.trace[0].op.uuid == (0, 0)
    assert str(g.trace[1]) == "dom1 PUT_PAGE pool=0 oid=(7, 0, 0) index=3 -> 1"
    assert str(g.trace[4]).endswith("-> -EEMPTY")


def test_tmemops_untraced_records_nothing(host):
    g = TmemOps(host, 1)
    g.new_pool()
    assert g.trace is None and g.last_rc == 0


def test_describe_names_commands_and_subops():
    assert describe(TmemOp(cmd=abi.TMEM_NEW_POOL, flags=abi.pool_flags(shared=True),
                           uuid=(1, 255))) == "NEW_POOL uuid=(0x1, 0xff) flags=0x1000002"
    assert describe(TmemOp(cmd=abi.TMEM_CONTROL, subop=abi.TMEMC_LIST, cli_id=3, arg1=9)) \
        == "CONTROL subop=LIST cli_id=3 arg1=9 arg2=0"
    assert describe(TmemOp(cmd=abi.TMEM_AUTH, arg1=2, flags=1, uuid=(0, 0))) \
        == "AUTH arg1=2 uuid=(0x0, 0x0) flags=1"
    assert describe(TmemOp(cmd=77, pool_id=1)).startswith("cmd 77 pool=1")
    assert str(Call(2, TmemOp(cmd=abi.TMEM_DESTROY_POOL, pool_id=4), 0)) \
        == "dom2 DESTROY_POOL pool=4 -> 0"


# ================================================================================================
# Cleancache (§10.1 cleancache mapping, §10.2 contract)
# ================================================================================================
def test_filekey_oid():
    assert filekey_oid(12) == (12, 0, 0)
    assert filekey_oid((1 << 64) - 1) == ((1 << 64) - 1, 0, 0)
    # a file handle of u32 words (1, 2, 3, 4, 5, 6), little-endian, pairs into u64 words
    fh = b"".join(w.to_bytes(4, "little") for w in (1, 2, 3, 4, 5, 6))
    assert filekey_oid(fh) == (1 | 2 << 32, 3 | 4 << 32, 5 | 6 << 32)
    assert filekey_oid(fh[:8]) == (1 | 2 << 32, 0, 0)          # the key is zero-filled
    assert filekey_oid((1, 2, 3)) == (1, 2, 3)
    for bad, exc in ((-1, ValueError), (1 << 64, ValueError), (bytes(25), ValueError),
                     (True, TypeError), ("12", TypeError), ((1, 2), TypeError),
                     ((1, 2, -3), TypeError)):
        with pytest.raises(exc):
            filekey_oid(bad)


def test_uuid_words_little_endian_halves():
    b = bytes(range(1, 17))
    lo, hi = uuid_words(b)
    assert lo == 0x0807060504030201 and hi == 0x100F0E0D0C0B0A09
    u = uuidlib.UUID(bytes=b)
    assert uuid_words(u) == (lo, hi)
    with pytest.raises(ValueError):
        uuid_words(bytes(15))


def test_init_fs_is_a_private_ephemeral_pool(host):
    cc = Cleancache(host, 1, trace=True)
    assert cc.init_fs() == 0 and cc.init_fs() == 1
    op = cc.ops.trace[0].op
    assert (op.cmd, op.flags, op.uuid) == (abi.TMEM_NEW_POOL, abi.pool_flags(), (0, 0))
    pool = host.clients[1].pools[0]
    assert not pool.persistent and not pool.shared
    # a page size the host does not have is refused by Xen (§1.6): -EPERM, no pool
    assert cc.init_fs(8192) == EPERM
    assert cc.init_fs(2048) == EPERM
    assert host.clients[1].pools[2] is None


def test_init_shared_fs_uses_le_uuid_halves_and_needs_auth(host):
    fs_uuid = bytes(range(16))
    lo, hi = 0x0706050403020100, 0x0F0E0D0C0B0A0908
    c1, c2 = Cleancache(host, 1, trace=True), Cleancache(host, 2)
    # unauthorised: Xen silently makes a private pool (§3.2)
    p = c1.init_shared_fs(fs_uuid)
    assert p == 0
    op = c1.ops.trace[-1].op
    assert op.flags == abi.pool_flags(shared=True) and op.uuid == (lo, hi)
    assert not host.clients[1].pools[p].shared
    # authorised by dom0 with the guest's words: both join one shared pool
    xl = Xl(host)
    for d in (1, 2):
        host.do_tmem_op(0, TmemOp(cmd=abi.TMEM_AUTH, arg1=d, flags=1, uuid=(lo, hi)))
    p1, p2 = c1.init_shared_fs(fs_uuid), c2.init_shared_fs(uuidlib.UUID(bytes=fs_uuid))
    assert (p1, p2) == (1, 0)
    shared = host.clients[1].pools[p1]
    assert shared.shared and shared is host.clients[2].pools[p2]
    assert tuple(shared.uuid) == (lo, hi)
    # shared ephemeral gets are not exclusive (§3.6): both guests read dom1's page, twice
    c1.put_page(p1, 99, 0, page(5))
    b = buf()
    assert [c2.get_page(p2, 99, 0, b), c1.get_page(p1, 99, 0, b), c2.get_page(p2, 99, 0, b)] \
        == [0, 0, 0]
    assert bytes(b) == page(5)
    assert "PT:ES" in xl.tmem_list(long=False)


def test_put_page_maps_key_and_index(host):
    cc = Cleancache(host, 1, trace=True)
    p = cc.init_fs()
    assert cc.put_page(p, 12, 5, page(1)) is None
    fh = bytes(range(1, 25))
    cc.put_page(p, fh, 6, page(2))
    assert [c.op for c in cc.ops.trace[1:]] == [
        TmemOp(cmd=abi.TMEM_PUT_PAGE, pool_id=p, oid=(12, 0, 0), index=5, page=page(1)),
        TmemOp(cmd=abi.TMEM_PUT_PAGE, pool_id=p, oid=filekey_oid(fh), index=6, page=page(2))]
    assert stored(host, host.clients[1].pools[p]) == {((12, 0, 0), 5): page(1),
                                                      (filekey_oid(fh), 6): page(2)}
    assert cc.puts == 2 and cc.put_results == {1: 2}


def test_put_page_skips_bad_pool_and_big_index_but_counts_like_linux(host):
    cc = Cleancache(host, 1, trace=True)
    p = cc.init_fs()
    n = len(cc.ops.trace)
    cc.put_page(-1, 12, 0, page(1))             # pool < 0: nothing, not counted
    assert cc.puts == 0 and len(cc.ops.trace) == n
    cc.put_page(p, 12, 1 << 32, page(1))        # index too big: skipped, still counted
    assert cc.puts == 1 and len(cc.ops.trace) == n
    assert host.clients[1].pools[p].pgp_count == 0
    cc.put_page(p, 12, (1 << 32) - 1, page(1))  # the largest u32 index is fine
    assert stored(host, host.clients[1].pools[p]) == {((12, 0, 0), (1 << 32) - 1): page(1)}
    with pytest.raises(ValueError):
        cc.put_page(p, 12, -1, page(1))
    with pytest.raises(ValueError):
        cc.put_page(p, 12, 1 << 64, page(1))


def test_put_page_result_is_ignored_but_recorded(host):
    cc = Cleancache(host, 1)
    p = cc.init_fs()
    assert cc.put_page(p, 12, 1, b"short") is None      # not a 4096-byte frame
    Xl(host).tmem_freeze(1)
    assert cc.put_page(p, 12, 0, page(1)) is None
    assert cc.put_results == {EFAULT: 1, EFROZEN: 1}
    assert cc.puts == 2                          # a put "always succeeds" (§10.2)


def test_get_page_exclusive_and_translated(host):
    cc = Cleancache(host, 1, trace=True)
    p = cc.init_fs()
    b = buf()
    assert cc.get_page(p, 12, 0, b) == -1 and cc.ops.last_rc == EEMPTY
    assert b == buf()                              # untouched on failure
    cc.put_page(p, 12, 0, page(1))
    cc.put_page(p, 12, 1, page(2))
    assert cc.get_page(p, 12, 7, b) == -1 and cc.ops.last_rc == 0
    assert cc.get_page(p, 12, 0, b) == 0 and bytes(b) == page(1)
    # private ephemeral: the get took the page (§3.6, cleancache.txt "exclusive")
    assert cc.get_page(p, 12, 0, b) == -1 and cc.ops.last_rc == 0
    assert raw_get(host, 1, p, (12, 0, 0), 0)[0] == 0
    assert cc.get_page(p, 12, 1, b) == 0 and bytes(b) == page(2)
    assert cc.get_page(p, 12, 1, b) == -1 and cc.ops.last_rc == EEMPTY
    assert (cc.succ_gets, cc.failed_gets) == (2, 4)
    n = len(cc.ops.trace)
    assert cc.get_page(-1, 12, 0, b) == -1
    assert cc.get_page(p, 12, 1 << 32, b) == -1
    assert len(cc.ops.trace) == n and cc.failed_gets == 6


def test_put_put_get_coherency(host):
    # §3.5/§10.2: a later get never returns the older of two puts
    cc = Cleancache(host, 1)
    p = cc.init_fs()
    cc.put_page(p, 3, 9, page(1))
    cc.put_page(p, 3, 9, page(2))
    b = buf()
    assert cc.get_page(p, 3, 9, b) == 0 and bytes(b) == page(2)
    assert host.clients[1].pools[p].dup_puts_replaced == 1


def test_invalidate_page_inode_fs(host):
    cc = Cleancache(host, 1, trace=True)
    p = cc.init_fs()
    for ino, idx in itertools.product((12, 13), range(3)):
        cc.put_page(p, ino, idx, page(ino * 10 + idx))
    cc.invalidate_page(p, 12, 1)
    assert cc.ops.trace[-1].op == TmemOp(cmd=abi.TMEM_FLUSH_PAGE, pool_id=p, oid=(12, 0, 0),
                                         index=1)
    assert set(stored(host, host.clients[1].pools[p])) == {
        ((12, 0, 0), 0), ((12, 0, 0), 2), ((13, 0, 0), 0), ((13, 0, 0), 1), ((13, 0, 0), 2)}
    cc.invalidate_inode(p, 13)
    assert cc.ops.trace[-1].op == TmemOp(cmd=abi.TMEM_FLUSH_OBJECT, pool_id=p, oid=(13, 0, 0))
    assert set(stored(host, host.clients[1].pools[p])) == {((12, 0, 0), 0), ((12, 0, 0), 2)}
    assert cc.invalidates == 1                    # inode invalidations are not counted
    n = len(cc.ops.trace)
    cc.invalidate_page(-1, 12, 0)
    cc.invalidate_inode(-1, 12)
    cc.invalidate_fs(-1)
    assert len(cc.ops.trace) == n and cc.invalidates == 1
    cc.invalidate_page(p, 12, 1 << 32)            # counted, but no hypercall
    assert len(cc.ops.trace) == n and cc.invalidates == 2
    cc.invalidate_fs(p)
    assert cc.ops.trace[-1].op == TmemOp(cmd=abi.TMEM_DESTROY_POOL, pool_id=p)
    assert cc.ops.last_rc == 1 and host.clients[1].pools[p] is None
    assert host.global_pgp_count == 0


def test_cleancache_counters_dict(host):
    cc = Cleancache(host, 1)
    p = cc.init_fs()
    cc.put_page(p, 1, 0, page(1))
    cc.get_page(p, 1, 0, buf())
    cc.get_page(p, 1, 0, buf())
    cc.invalidate_page(p, 1, 0)
    assert cc.counters() == {"succ_gets": 1, "failed_gets": 1, "puts": 1, "invalidates": 1}


# ================================================================================================
# Frontswap (§10.1 frontswap mapping, §10.2 contract)
# ================================================================================================
def test_swizzle_worked_example():
    # oid[0] = (type << 4) | (offset & 0xF), index = offset >> 4
    assert swizzle(1, 0x123) == (((1 << 4) | 3, 0, 0), 0x12)
    assert swizzle(0, 0) == ((0, 0, 0), 0)
    assert swizzle(31, 0xFFFFFFFF) == (((31 << 4) | 0xF, 0, 0), 0x0FFFFFFF)
    with pytest.raises(ValueError):
        swizzle(0, 1 << 32)
    with pytest.raises(ValueError):
        swizzle(-1, 0)
    with pytest.raises(ValueError):
        swizzle(1 << 28, 0)                       # type << 4 must fit in 32 bits
    with pytest.raises(ValueError):
        unswizzle((1, 1, 0), 0)


@settings(max_examples=300, deadline=None)
@given(st.integers(0, (1 << 28) - 1), st.integers(0, (1 << 32) - 1))
def test_swizzle_properties(type_, offset):
    oid, index = swizzle(type_, offset)
    assert oid[1] == oid[2] == 0
    assert oid[0] >> 4 == type_ and oid[0] & 0xF == offset & 0xF
    assert index < (1 << 28)                       # a u32 index, with room to spare
    assert unswizzle(oid, index) == (type_, offset)


def test_swizzle_is_injective_and_spreads_16_objects():
    handles = {swizzle(t, o) for t in range(4) for o in range(512)}
    assert len(handles) == 4 * 512
    # 16 consecutive offsets share one index but go to 16 objects in 16 hash buckets
    for k in (0, 7, 1000):
        hs = [swizzle(2, 16 * k + j) for j in range(16)]
        assert {i for _, i in hs} == {k}
        assert len({o for o, _ in hs}) == 16
        assert len({oid_hash(o) for o, _ in hs}) == 16
    # one swap type uses exactly 16 objects however many offsets it stores
    assert len({swizzle(5, o)[0] for o in range(10_000)}) == 16


def test_frontswap_init_one_persistent_pool(host):
    fs = Frontswap(host, 1, trace=True)
    assert fs.pool_id == -1
    assert fs.init(0) == 0 and fs.init(1) == 0 and fs.init(0) == 0
    assert cmds(fs.ops.trace) == ["TMEM_NEW_POOL"]
    op = fs.ops.trace[0].op
    assert (op.flags, op.uuid) == (abi.pool_flags(persist=True), (0, 0))
    pool = host.clients[1].pools[0]
    assert pool.persistent and not pool.shared


def test_frontswap_init_retries_after_failure(host):
    g = TmemOps(host, 1)
    for _ in range(16):
        g.new_pool()                               # every slot taken
    fs = Frontswap(host, 1, trace=True)
    assert fs.init(0) == EPERM and fs.pool_id == EPERM
    assert fs.store(0, 1, page(1)) == -1 and cmds(fs.ops.trace) == ["TMEM_NEW_POOL"]
    g.destroy_pool(4)
    assert fs.init(0) == 4 and host.clients[1].pools[4].persistent


def test_store_lands_at_the_swizzled_handle(host):
    fs = Frontswap(host, 1, trace=True)
    p = fs.init(1)
    assert fs.store(1, 0x123, page(7)) == 0
    assert fs.ops.trace[-1].op == TmemOp(cmd=abi.TMEM_PUT_PAGE, pool_id=p,
                                         oid=((1 << 4) | 3, 0, 0), index=0x12, page=page(7))
    assert raw_get(host, 1, p, ((1 << 4) | 3, 0, 0), 0x12) == (1, page(7))
    assert stored(host, host.clients[1].pools[p]) == {(((1 << 4) | 3, 0, 0), 0x12): page(7)}


def test_store_and_load_before_init_fail_without_hypercalls(host):
    fs = Frontswap(host, 1, trace=True)
    assert fs.store(0, 1, page(1)) == -1
    assert fs.load(0, 1, buf()) == -1
    fs.invalidate_page(0, 1)
    fs.invalidate_area(0)
    assert fs.ops.trace == []
    assert (fs.failed_stores, fs.loads) == (1, 0)


def test_offsets_beyond_32_bits_are_rejected(host):
    fs = Frontswap(host, 1, trace=True)
    fs.init(0)
    n = len(fs.ops.trace)
    assert fs.store(0, 1 << 32, page(1)) == -1
    assert fs.load(0, 1 << 32, buf()) == -1
    fs.invalidate_page(0, 1 << 32)
    assert len(fs.ops.trace) == n
    assert fs.failed_stores == 1
    assert fs.store(0, (1 << 32) - 1, page(1)) == 0
    with pytest.raises(ValueError):
        fs.store(0, -1, page(1))


def test_loads_are_persistent(host):
    fs = Frontswap(host, 1)
    fs.init(0)
    assert fs.store(0, 40, page(3)) == 0
    b = buf()
    for _ in range(3):
        b[:] = buf()
        assert fs.load(0, 40, b) == 0 and bytes(b) == page(3)
    assert fs.load(0, 41, b) == -1
    assert fs.loads == 3
    assert host.clients[1].pools[fs.pool_id].pgp_count == 1


def test_dup_store_overwrites(host):
    fs = Frontswap(host, 1)
    fs.init(0)
    fs.store(0, 8, page(1))
    assert fs.store(0, 8, page(2)) == 0
    b = buf()
    assert fs.load(0, 8, b) == 0 and bytes(b) == page(2)
    assert fs.succ_stores == 2


def test_invalidate_page(host):
    fs = Frontswap(host, 1, trace=True)
    fs.init(0)
    fs.store(2, 0x55, page(1))
    fs.store(2, 0x56, page(2))
    fs.invalidate_page(2, 0x55)
    assert fs.ops.trace[-1].op == TmemOp(cmd=abi.TMEM_FLUSH_PAGE, pool_id=fs.pool_id,
                                         oid=((2 << 4) | 5, 0, 0), index=5)
    assert fs.load(2, 0x55, buf()) == -1 and fs.load(2, 0x56, buf()) == 0
    assert fs.invalidates == 1


def test_invalidate_area_removes_exactly_that_type(host):
    fs = Frontswap(host, 1, trace=True)
    fs.init(0)
    offsets = list(range(40)) + [0xABCDE, 0xFFFFFFFF]
    n = 0
    for t in (0, 1, 2):
        for o in offsets:
            assert fs.store(t, o, page(n)) == 0
            n += 1
    before = stored(host, host.clients[1].pools[fs.pool_id])
    fs.invalidate_area(1)
    flushes = fs.ops.trace[-16:]
    assert [c.op for c in flushes] == [
        TmemOp(cmd=abi.TMEM_FLUSH_OBJECT, pool_id=fs.pool_id, oid=((1 << 4) | low, 0, 0))
        for low in range(15, -1, -1)]
    assert all(c.rc == 1 for c in flushes)
    after = stored(host, host.clients[1].pools[fs.pool_id])
    assert after == {k: v for k, v in before.items() if unswizzle(*k)[0] != 1}
    assert {unswizzle(*k)[0] for k in after} == {0, 2}
    assert len(after) == 2 * len(offsets)
    for o in offsets:
        assert fs.load(1, o, buf()) == -1
        assert fs.load(0, o, buf()) == 0 and fs.load(2, o, buf()) == 0


def test_persistent_stores_are_billed_and_fail_at_max_pages():
    # §6 / rule 12: persistent pages count against the guest's max_pages
    host = Host(pages=1024)
    host.create_domain(1, pages=32, max_pages=48)
    fs = Frontswap(host, 1)
    fs.init(0)
    results = [fs.store(0, o, page(o)) for o in range(32)]
    assert results[0] == 0 and -1 in results
    first_fail = results.index(-1)
    assert all(r == 0 for r in results[:first_fail])
    assert first_fail <= 48 - 32
    assert fs.ops.last_rc == ENOMEM
    assert host.mem.domains[1].tot_pages <= 48
    assert (fs.succ_stores, fs.failed_stores) == (results.count(0), results.count(-1))


def test_frozen_store_fails_load_works(host):
    fs = Frontswap(host, 1)
    fs.init(0)
    fs.store(0, 1, page(1))
    Xl(host).tmem_freeze(1)
    assert fs.store(0, 2, page(2)) == -1 and fs.ops.last_rc == EFROZEN
    assert fs.store(0, 1, page(3)) == 0            # a dup put is still allowed (§3.8)
    b = buf()
    assert fs.load(0, 1, b) == 0 and bytes(b) == page(3)
    assert fs.counters() == {"loads": 1, "succ_stores": 2, "failed_stores": 1,
                             "invalidates": 0}


def test_frontswap_and_cleancache_side_by_side(host):
    fs, cc = Frontswap(host, 1), Cleancache(host, 1)
    fs.init(0)
    p = cc.init_fs()
    assert p != fs.pool_id
    fs.store(0, 3, page(1))
    cc.put_page(p, 3, 0, page(2))                 # same oid (3,0,0) & index 0, other pool
    b = buf()
    assert fs.load(0, 3, b) == 0 and bytes(b) == page(1)
    assert cc.get_page(p, 3, 0, b) == 0 and bytes(b) == page(2)


# ================================================================================================
# xl (§8.4)
# ================================================================================================
def test_uuid_parse():
    # §8.4: uuid_hi = first 16 hex digits, uuid_lo = last 16
    assert uuid_parse("abcdef01-2345-6789-1234-567890abcdef") == (0x1234567890ABCDEF,
                                                                  0xABCDEF0123456789)
    assert uuid_parse("ABCDEF01-2345-6789-1234-567890ABCDEF") == (0x1234567890ABCDEF,
                                                                  0xABCDEF0123456789)
    # <= 4.8 read a-f as 0-5
    assert uuid_parse("00000000-0000-00ff-0000-00000000000a", hex_bug=True) == (0, 0x55)
    for bad in ("abcdef01-2345-6789-1234-567890abcde", "abcdef01+2345-6789-1234-567890abcdef",
                "abcdef01-2345-6789-1234-567890abcdeg", 12):
        with pytest.raises(ValueError):
            uuid_parse(bad)


def test_xl_and_linux_read_the_same_uuid_differently(host):
    # xl packs the text big-endian into (lo = last half, hi = first half); Linux reads the 16
    # bytes little-endian into (lo = first half, hi = last half). Same uuid, other words.
    text = "abcdef01-2345-6789-1234-567890abcdef"
    fs_uuid = uuidlib.UUID(text)
    assert uuid_parse(text) != uuid_words(fs_uuid)
    Xl(host).tmem_shared_auth(1, text, 1)
    cc = Cleancache(host, 1)
    p = cc.init_shared_fs(fs_uuid)
    assert p == 0 and not host.clients[1].pools[p].shared   # silently private
    # a guest asking with xl's words would have joined
    g = TmemOps(host, 1)
    q = g.new_pool(abi.TMEM_POOL_SHARED, uuid_parse(text))
    assert host.clients[1].pools[q].shared


def test_xl_freeze_thaw(host):
    xl = Xl(host, trace=True)
    g = TmemOps(host, 1)
    p = g.new_pool()
    assert xl.tmem_freeze(1) == 0 and host.clients[1].frozen
    assert g.put_page(p, (1, 0, 0), 0, page(1)) == EFROZEN
    assert xl.tmem_thaw(1) == 0 and not host.clients[1].frozen
    assert g.put_page(p, (1, 0, 0), 0, page(1)) == 1
    g2 = TmemOps(host, 2)
    p2 = g2.new_pool()
    xl.tmem_freeze()                               # -a
    assert host.clients[1].frozen and host.clients[2].frozen
    assert g2.put_page(p2, (1, 0, 0), 0, page(1)) == EFROZEN
    assert [c.op.cli_id for c in xl.ops.trace] == [1, 1, abi.TMEM_CLI_ID_NULL]
    assert [c.op.subop for c in xl.ops.trace] == [abi.TMEMC_FREEZE, abi.TMEMC_THAW,
                                                   abi.TMEMC_FREEZE]


def test_xl_set(host):
    xl = Xl(host, trace=True)
    TmemOps(host, 1).new_pool()
    TmemOps(host, 2).new_pool()
    xl.tmem_set(1, weight=5, cap=7, compress=1)
    assert [c.op.subop for c in xl.ops.trace] == [abi.TMEMC_SET_WEIGHT, abi.TMEMC_SET_CAP,
                                                   abi.TMEMC_SET_COMPRESS]
    c1 = host.clients[1]
    assert (c1.weight, c1.cap, c1.compress) == (5, 7, True)
    xl.tmem_set(weight=2)
    assert host.clients[1].weight == host.clients[2].weight == 2
    assert host.client_weight_total == 4
    with pytest.raises(ValueError):
        xl.tmem_set(1)


def test_xl_list_is_the_list_subop(host):
    xl = Xl(host)
    cc = Cleancache(host, 1)
    p = cc.init_fs()
    cc.put_page(p, 1, 0, page(1))
    text = xl.tmem_list(1, long=True)
    assert text == host.list_stats(1, long=True)
    assert text.startswith("C=CI:1,") and "P=CI:1,PI:0,PT:EP" in text and "Pc:1" in text
    assert "Pc:" not in xl.tmem_list(1)
    all_text = xl.tmem_list()
    assert all_text.startswith("G=") and "C=CI:1" in all_text


def test_xl_freeable(host):
    xl = Xl(host)
    cc = Cleancache(host, 1)
    p = cc.init_fs()
    for i in range(300):
        cc.put_page(p, 1, i, page(i))
    # §8.1: QUERY_FREEABLE_MB = freeable pages >> 8; 300 ephemeral pages >= 1 MB
    assert xl.tmem_freeable() == host.freeable_pages() >> 8
    assert xl.tmem_freeable() >= 1


def test_xl_errors(host):
    xl = Xl(host)
    with pytest.raises(XlError) as e:
        xl.tmem_freeze(7)                          # no client 7
    assert e.value.rc == -1
    with pytest.raises(XlError) as e:
        Xl(host, domid=1).tmem_freeze(2)           # a guest is not privileged
    assert e.value.rc == EPERM
    with pytest.raises(XlError) as e:
        Xl(host, domid=1).tmem_shared_auth(2, "abcdef01-2345-6789-1234-567890abcdef")
    assert e.value.rc == EPERM


def test_xl_shared_auth_flag_meaning(host):
    # §8.4 [DISAGREE]: the hypervisor takes 1 = authorise, 0 = revoke
    xl = Xl(host)
    text = "00000000-0000-0001-0000-000000000002"
    words = uuid_parse(text)
    assert words == (2, 1)
    assert xl.tmem_shared_auth(1, text, 1) == 1
    assert TmemOps(host, 1).new_pool(abi.TMEM_POOL_SHARED, words) == 0
    assert host.clients[1].pools[0].shared
    assert xl.tmem_shared_auth(1, text, 0) == 1
    assert xl.tmem_shared_auth(1, text, 0) == 0    # nothing left to revoke
    assert TmemOps(host, 1).new_pool(abi.TMEM_POOL_SHARED, words) == 1
    assert not host.clients[1].pools[1].shared


def test_xl_command_table():
    names = [c.name for c in COMMANDS]
    assert names == ["tmem-list", "tmem-freeze", "tmem-thaw", "tmem-set", "tmem-shared-auth",
                     "tmem-freeable"]
    for c in COMMANDS:
        assert hasattr(Xl, c.method)
        assert all(s in abi.SUBOP_NAMES for s in c.subops)
        assert (c.cmd == abi.TMEM_AUTH) == (c.subops == ())
    assert command_for_subop(abi.TMEMC_LIST).name == "tmem-list"
    assert command_for_subop(abi.TMEMC_FLUSH) is None
    # every sub-op has a sender named, either an xl command or another tool
    for sub in abi.SUBOP_NAMES:
        assert (command_for_subop(sub) is None) == (sub in OTHER_SENDERS)
        assert sender_of(sub) not in ("", "—")


# ================================================================================================
# scenarios (what the book renders)
# ================================================================================================
def test_command_rows_live():
    rows = scenarios.command_rows()
    assert [r[0] for r in rows] == sorted(abi.CMD_NAMES)
    by = {r[0]: r for r in rows}
    privileged = {abi.TMEM_CONTROL, abi.TMEM_AUTH, abi.TMEM_RESTORE_NEW}
    for cmd, r in by.items():
        assert (r[3] == "-EPERM") == (cmd in privileged), r
        assert r[4] != "-EPERM", r
    for cmd in (abi.TMEM_NEW_PAGE, abi.TMEM_READ, abi.TMEM_WRITE, abi.TMEM_XCHG):
        assert by[cmd][3] == by[cmd][4] == "-ENOSYS"
    assert by[abi.TMEM_NEW_POOL][3] == "1"         # pool 0 exists: the next slot
    assert by[abi.TMEM_RESTORE_NEW][4] == "5"      # the slot asked for
    assert by[abi.TMEM_AUTH][4] == "1"
    assert by[abi.TMEM_CONTROL][4] == "0"
    assert by[abi.TMEM_NEW_POOL][2] == "creat" and by[abi.TMEM_CONTROL][2] == "ctrl"
    assert by[abi.TMEM_PUT_PAGE][2] == "gen" and by[abi.TMEM_DESTROY_POOL][2] == "—"


def test_return_code_rows_match_xen_rules():
    want = {                                     # §3.10 / §14, by situation
        "page found": 1,
        "page missing, pool not empty": 0,
        "pool holds no page at all": EEMPTY,
        "no such pool": ENODEV,
        "new put while frozen": EFROZEN,
        "flush while frozen (done anyway)": EFROZEN,
        "command not implemented": ENOSYS,
        "control op from a guest": EPERM,
        "page not 4096 readable bytes": EFAULT,
        "NEW_POOL with version 0": EPERM,
        "persistent put, guest at max_pages": ENOMEM,
        "DESTROY_POOL of an empty slot": 0,
    }
    rows = scenarios.return_code_rows()
    assert {r.case: r.rc for r in rows} == want
    names = {r.case: r.name for r in rows}
    assert names["pool holds no page at all"] == "-EEMPTY"
    assert names["new put while frozen"] == "-EFROZEN"
    assert names["no such pool"] == "-ENODEV"
    assert all(r.call and r.xen for r in rows)
    assert {r.case: r.call.split()[0] for r in rows}["command not implemented"] == "XCHG"


def test_gets_by_pool_kind():
    got = scenarios.gets_by_pool_kind(3)
    assert got == {"ephemeral private": [1, 1, EEMPTY, EEMPTY],
                   "ephemeral shared": [1, 1, 1, 1],
                   "persistent private": [1, 1, 1, 1]}


def test_subop_and_xl_rows_cover_the_abi():
    rows = scenarios.subop_rows()
    assert [r[0] for r in rows] == sorted(abi.SUBOP_NAMES)
    assert all(r[2] and r[3] for r in rows)
    xl_rows = scenarios.xl_rows()
    assert len(xl_rows) == len(COMMANDS)
    assert xl_rows[4] == ("xl tmem-shared-auth <Domain>|-a -u UUID -A AUTH", "TMEM_AUTH", "—")


def test_md_table():
    t = scenarios.md_table(["x", "y"], [(1, "a|b"), (2, "c")])
    assert t.splitlines() == ["| x | y |", "|---|---|", "| 1 | a\\|b |", "| 2 | c |"]


def test_scenario_setup_failure_is_loud(monkeypatch):
    monkeypatch.setattr(scenarios, "PAGE_A", b"short")   # the set-up put now fails
    with pytest.raises(RuntimeError):
        scenarios.command_call(abi.TMEM_GET_PAGE, 1)


def test_shared_trace_list_interleaves_callers(host):
    calls = []
    fs, xl = Frontswap(host, 1, trace=calls), Xl(host, trace=calls)
    fs.init(0)
    xl.tmem_freeze(1)
    fs.store(0, 1, page(1))
    assert [(c.domid, abi.CMD_NAMES[c.op.cmd], c.rc) for c in calls] == [
        (1, "TMEM_NEW_POOL", 0), (0, "TMEM_CONTROL", 0), (1, "TMEM_PUT_PAGE", EFROZEN)]
    assert fs.ops.trace is calls and xl.ops.trace is calls


def test_source_block_shows_package_code():
    text = scenarios.source_block(Frontswap.store)
    assert text.startswith("```python\ndef store(") and text.endswith("\n```")
    assert "swizzle(type_, offset)" in text
