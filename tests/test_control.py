"""The control plane through the hypercall (facts §8.1): TMEM_CONTROL sub-ops, TMEM_AUTH,
TMEM_RESTORE_NEW, and the manageability sequence of tmem-internals.html ("freeable memory":
freeze → query freeable MB → flush → allocate → thaw).

Every call goes through ``do_tmem_op`` (helpers.call), which runs ``host.check()`` after it.
"""
import errno

import numpy as np
import pytest

from helpers import (ALL, auth, call, control, cpage, diff, flush_object, flush_page, get,
                     new_pool, page, put, snapshot)
from tmemref import Host, TmemOp, abi
from tmemref.host.frames import ANON, PAGE_LIST

U_A = (0xA1, 0xA2)
U_B = (0xB1, 0xB2)


def frames_in(host, state):
    return int(np.count_nonzero(host.mem.owner == state))


def freeable(host):
    """Facts §6: tmem_page_list frames + ephemeral (anonymous) tmem frames, counted directly."""
    return frames_in(host, PAGE_LIST) + frames_in(host, ANON)


def two_guests(pages=1024):
    """dom1 and dom2, each with a private ephemeral pool (slot 0) holding 4 pages of object
    (1,0,0); dom1 also a persistent pool (slot 1) with 2 pages."""
    host = Host(pages=pages)
    for d in (1, 2):
        host.create_domain(d, pages=32, max_pages=512)
        assert new_pool(host, d) == 0
        for i in range(4):
            assert put(host, d, 0, (1, 0, 0), i, page(10 * d + i)) == 1
    assert new_pool(host, 1, persist=True) == 1
    for i in range(2):
        assert put(host, 1, 1, (1, 0, 0), i, page(100 + i)) == 1
    return host


def frozen(host):
    return {d: c.frozen for d, c in host.clients.items()}


def list_field(host, cli_id, tag):
    """The value of ``tag`` on the C= line of ``cli_id`` in a LIST issued by dom0."""
    buf = bytearray(4096)
    assert control(host, abi.TMEMC_LIST, cli_id=cli_id, arg1=len(buf), arg2=1, buf=buf) == 0
    line = bytes(buf).split(b"\0")[0].decode().splitlines()[0]
    assert line.startswith(f"C=CI:{cli_id},")
    return dict(it.split(":") for it in line[2:].split(","))[tag]


# --- freeze / thaw / destroy --------------------------------------------------------------------
def test_freeze_one_client():
    host = two_guests()
    assert control(host, abi.TMEMC_FREEZE, cli_id=1) == 0
    assert frozen(host) == {1: True, 2: False}
    assert list_field(host, 1, "fr") == "1" and list_field(host, 2, "fr") == "0"
    assert put(host, 1, 0, (2, 0, 0), 0, page(0)) == -abi.EFROZEN       # new object
    assert put(host, 1, 0, (1, 0, 0), 9, page(0)) == -abi.EFROZEN       # new page
    assert put(host, 1, 1, (5, 0, 0), 0, page(0)) == -abi.EFROZEN       # persistent too
    assert put(host, 2, 0, (2, 0, 0), 0, page(1)) == 1                  # dom2 unaffected
    assert put(host, 1, 0, (1, 0, 0), 0, page(7)) == 1                  # dup put allowed
    assert get(host, 1, 0, (1, 0, 0), 0) == (1, page(7))                # gets work
    assert flush_page(host, 1, 0, (1, 0, 0), 1) == -abi.EFROZEN         # flushed anyway
    assert get(host, 1, 0, (1, 0, 0), 1)[0] == 0
    assert flush_object(host, 1, 1, (1, 0, 0)) == -abi.EFROZEN
    assert get(host, 1, 1, (1, 0, 0), 0)[0] == -abi.EEMPTY
    assert new_pool(host, 1) == 2                                       # pools not blocked
    assert control(host, abi.TMEMC_THAW, cli_id=1) == 0
    assert frozen(host) == {1: False, 2: False}
    assert put(host, 1, 0, (2, 0, 0), 0, page(0)) == 1


def test_freeze_and_thaw_all_clients():
    host = two_guests()
    assert control(host, abi.TMEMC_FREEZE, cli_id=ALL) == 0
    assert frozen(host) == {1: True, 2: True}
    for d in (1, 2):
        assert put(host, d, 0, (3, 0, 0), 0, page(0)) == -abi.EFROZEN
    # "all" means the clients that exist: a client created later is not frozen
    host.create_domain(3, pages=8)
    assert new_pool(host, 3) == 0
    assert put(host, 3, 0, (1, 0, 0), 0, page(0)) == 1
    assert frozen(host) == {1: True, 2: True, 3: False}
    assert control(host, abi.TMEMC_THAW, cli_id=ALL) == 0
    assert frozen(host) == {1: False, 2: False, 3: False}
    for d in (1, 2):
        assert put(host, d, 0, (3, 0, 0), 0, page(0)) == 1


@pytest.mark.parametrize("cli_id", [1, ALL])
def test_destroy_only_thaws(cli_id):
    """TMEMC_DESTROY destroys nothing: Xen's tmemc_freeze_pools() prints 'destroyed' and sets
    frozen = 0 (facts §8.1 [CODE-READING]; fidelity note 'TMEMC_DESTROY')."""
    host = two_guests()
    assert control(host, abi.TMEMC_FREEZE, cli_id=ALL) == 0
    before = snapshot(host)
    assert control(host, abi.TMEMC_DESTROY, cli_id=cli_id) == 0
    after = snapshot(host)
    thawed = [1, 2] if cli_id == ALL else [1]
    for d in (1, 2):
        assert host.clients[d].frozen is (d not in thawed)
        before["clients"][d]["frozen"] = after["clients"][d]["frozen"]
    assert diff(before, after) == []                        # every page, pool, frame intact
    assert get(host, 1, 1, (1, 0, 0), 0) == (1, page(100))
    assert put(host, 1, 0, (9, 0, 0), 0, page(0)) == 1


@pytest.mark.parametrize("subop", [abi.TMEMC_FREEZE, abi.TMEMC_THAW, abi.TMEMC_DESTROY,
                                   abi.TMEMC_SET_WEIGHT, abi.TMEMC_SET_CAP,
                                   abi.TMEMC_SET_COMPRESS, abi.TMEMC_LIST])
@pytest.mark.parametrize("cli_id", [7, 3])      # no such domain; a domain with no client
def test_unknown_client_is_minus_one(subop, cli_id):
    host = two_guests()
    host.create_domain(3, pages=4)
    before = snapshot(host)
    buf = bytearray(b"\xaa" * 256)
    assert control(host, subop, cli_id=cli_id, arg1=1, arg2=1, buf=buf) == -1
    assert diff(before, snapshot(host)) == []
    assert buf == bytearray(b"\xaa" * 256)


def test_unknown_subop_is_minus_one():
    host = two_guests()
    assert control(host, 9) == -1                   # 9 is unused in the classic numbering
    assert control(host, 1234) == -1


# --- flush --------------------------------------------------------------------------------------
def test_flush_is_only_for_all_clients():
    host = two_guests()
    before = snapshot(host)
    assert control(host, abi.TMEMC_FLUSH, cli_id=1, arg1=1 << 20) == -1
    assert diff(before, snapshot(host)) == []


def test_flush_zero_kb_frees_every_page_list_frame():
    host = two_guests()
    for i in range(3):
        assert flush_page(host, 2, 0, (1, 0, 0), i) == 1
    listed = list(host.mem.page_list)
    assert len(listed) == 3 == frames_in(host, PAGE_LIST)
    heap, et = len(host.mem.heap), host.evicted_pgs
    assert control(host, abi.TMEMC_FLUSH, arg1=0) == 3 * 4          # KB
    assert host.mem.page_list == [] and host.evicted_pgs == et      # nothing evicted
    assert len(host.mem.heap) == heap + 3
    assert set(listed) <= set(host.mem.heap)
    assert not host.mem.data[listed].any()                          # scrubbed on the way


def test_flush_evicts_only_what_the_page_list_lacks():
    host = two_guests()
    for i in range(2):
        assert flush_page(host, 2, 0, (1, 0, 0), i) == 1
    assert len(host.mem.page_list) == 2
    et = host.evicted_pgs
    assert control(host, abi.TMEMC_FLUSH, arg1=8) == 8              # 2 pages: already there
    assert host.evicted_pgs == et
    # 1 KB rounds up to one page; the list is empty, so exactly one page is evicted: the
    # oldest, dom1's (1,0,0) index 0
    eph_before = host.eph_count
    kb = control(host, abi.TMEMC_FLUSH, arg1=1)
    assert host.evicted_pgs == et + 1 and host.evict_attempts >= 1
    assert host.eph_count == eph_before - 1
    assert kb >= 4 and kb % 4 == 0 and host.mem.page_list == []
    assert get(host, 1, 0, (1, 0, 0), 0)[0] == 0
    assert get(host, 1, 0, (1, 0, 0), 1) == (1, page(11))


def test_flush_everything_returns_all_freeable_memory_and_keeps_persistent_pages():
    host = two_guests()
    want = freeable(host)
    heap = len(host.mem.heap)
    ea, et = host.evict_attempts, host.evicted_pgs
    assert control(host, abi.TMEMC_FLUSH, arg1=1 << 30) == want * 4
    assert host.eph_count == 0 and freeable(host) == 0
    assert host.evicted_pgs - et == 4 + 4                  # every ephemeral page left
    assert host.evict_attempts - ea == 8 + 1               # ... and one attempt found nothing
    assert len(host.mem.heap) == heap + want
    assert control(host, abi.TMEMC_QUERY_FREEABLE_MB) == 0
    assert get(host, 1, 1, (1, 0, 0), 1) == (1, page(101))  # persistent: never evicted


# --- query freeable -----------------------------------------------------------------------------
def test_query_freeable_mb():
    host = Host(pages=1024)
    host.create_domain(1, pages=16, max_pages=600)
    E = new_pool(host, 1)
    assert control(host, abi.TMEMC_QUERY_FREEABLE_MB) == 0
    for i in range(270):
        assert put(host, 1, E, (1, 0, 0), i, page(i)) == 1
    assert freeable(host) >= 256
    assert control(host, abi.TMEMC_QUERY_FREEABLE_MB) == freeable(host) >> 8 == 1
    assert control(host, abi.TMEMC_QUERY_FREEABLE_MB, cli_id=1) == 1   # cli_id is ignored


# --- set weight / cap / compress ----------------------------------------------------------------
def test_set_weight_keeps_the_total():
    host = two_guests()
    assert control(host, abi.TMEMC_SET_WEIGHT, cli_id=1, arg1=5) == 0
    assert control(host, abi.TMEMC_SET_WEIGHT, cli_id=2, arg1=3) == 0
    assert host.client_weight_total == 8
    assert control(host, abi.TMEMC_SET_WEIGHT, cli_id=1, arg1=2) == 0     # minus old, plus new
    assert host.client_weight_total == 5
    assert (list_field(host, 1, "ww"), list_field(host, 2, "ww")) == ("2", "3")
    assert control(host, abi.TMEMC_SET_WEIGHT, cli_id=ALL, arg1=4) == 0
    assert host.client_weight_total == 8
    host.destroy_domain(2)
    host.check()
    assert host.client_weight_total == 4
    assert control(host, abi.TMEMC_SET_WEIGHT, cli_id=ALL, arg1=0) == 0
    assert host.client_weight_total == 0


def test_set_cap_is_stored_and_reported_but_not_enforced():
    host = two_guests()
    assert control(host, abi.TMEMC_SET_CAP, cli_id=1, arg1=1) == 0
    assert list_field(host, 1, "ca") == "1" and list_field(host, 2, "ca") == "0"
    for i in range(20):
        assert put(host, 1, 0, (7, 0, 0), i, page(i)) == 1
        assert put(host, 1, 1, (7, 0, 0), i, page(i)) == 1
    assert host.clients[1].eph_count == 24
    assert control(host, abi.TMEMC_SET_CAP, cli_id=ALL, arg1=9) == 0
    assert (list_field(host, 1, "ca"), list_field(host, 2, "ca")) == ("9", "9")


def test_set_compress_stores_compressible_pages_compressed():
    host = two_guests()
    assert control(host, abi.TMEMC_SET_COMPRESS, cli_id=1, arg1=1) == 0
    assert list_field(host, 1, "co") == "1" and list_field(host, 2, "co") == "0"
    c = host.clients[1]
    sizes = [len(host.codec.compress(cpage(i))) for i in range(3)]
    assert all(0 < s < 4096 - 32 for s in sizes)            # worth keeping compressed
    fc = host.global_page_count
    for i in range(3):
        assert put(host, 1, 0, (5, 0, 0), i, cpage(i)) == 1
    assert put(host, 1, 1, (5, 0, 0), 0, cpage(9)) == 1     # persistent pools compress too
    sizes.append(len(host.codec.compress(cpage(9))))
    assert (list_field(host, 1, "cp"), list_field(host, 1, "cb")) == ("4", str(sum(sizes)))
    assert list_field(host, 1, "cn") == "0"
    assert host.global_page_count == fc                     # no whole frame used
    # random data does not compress: stored raw, counted as poor
    assert put(host, 1, 0, (5, 0, 0), 3, page(3)) == 1
    assert list_field(host, 1, "cn") == "1" and list_field(host, 1, "cp") == "4"
    assert host.global_page_count == fc + 1
    # the data comes back as it went in
    assert get(host, 1, 0, (5, 0, 0), 1) == (1, cpage(1))
    assert get(host, 1, 0, (5, 0, 0), 3) == (1, page(3))
    assert get(host, 1, 1, (5, 0, 0), 0) == (1, cpage(9))
    assert list_field(host, 1, "cp") == "3"                 # the exclusive get freed one
    # turning it off: new pages are raw again
    assert control(host, abi.TMEMC_SET_COMPRESS, cli_id=1, arg1=0) == 0
    assert put(host, 1, 0, (6, 0, 0), 0, cpage(5)) == 1
    assert (list_field(host, 1, "co"), list_field(host, 1, "cp")) == ("0", "3")
    assert c.compress_poor == 1
    # dom2 never compressed anything
    assert (list_field(host, 2, "cp"), list_field(host, 2, "cn")) == ("0", "0")


def test_set_compress_for_all_clients():
    host = two_guests()
    assert control(host, abi.TMEMC_SET_COMPRESS, cli_id=ALL, arg1=7) == 0   # any nonzero: on
    assert [c.compress for c in host.clients.values()] == [True, True]
    assert list_field(host, 2, "co") == "1"


# --- TMEM_AUTH ----------------------------------------------------------------------------------
def shared_pool_of(host, domid, slot):
    pool = host.clients[domid].pools[slot]
    return pool if pool.shared else None


def test_auth_lets_a_client_join_a_shared_pool_and_revoking_stops_it():
    host = Host(pages=1024)                       # shared_auth required (the default)
    for d in (1, 2, 3):
        host.create_domain(d, pages=8)
    for d in (1, 2, 3):
        assert new_pool(host, d) == 0             # clients exist
    assert auth(host, 1, U_A) == 1
    assert new_pool(host, 1, shared=True, uuid=U_A) == 1
    sp = shared_pool_of(host, 1, 1)
    assert sp is not None and host.shared_pools.count(sp) == 1
    # dom2 is not authorised: silently a private pool
    assert new_pool(host, 2, shared=True, uuid=U_A) == 1
    assert shared_pool_of(host, 2, 1) is None
    assert auth(host, 2, U_A) == 1
    assert new_pool(host, 2, shared=True, uuid=U_A) == 2
    assert host.clients[2].pools[2] is sp and sp.share_list == [host.clients[1], host.clients[2]]
    assert put(host, 2, 2, (1, 0, 0), 0, page(1)) == 1
    assert get(host, 1, 1, (1, 0, 0), 0) == (1, page(1))  # the same pool
    # revoke: 1 if it was there, 0 if not; the next join is private again
    assert auth(host, 2, U_A, on=0) == 1
    assert auth(host, 2, U_A, on=0) == 0
    assert auth(host, 3, U_B, on=0) == 0
    assert new_pool(host, 2, shared=True, uuid=U_A) == 3
    assert shared_pool_of(host, 2, 3) is None
    assert host.clients[2].pools[2] is sp                 # already joined: stays joined


def test_auth_slots_are_sixteen_and_reauthorising_is_idempotent():
    host = Host(pages=512)
    host.create_domain(1, pages=8)
    assert new_pool(host, 1) == 0
    uuids = [(i, 100 + i) for i in range(16)]
    for u in uuids:
        assert auth(host, 1, u) == 1
    assert auth(host, 1, (99, 99)) == -errno.ENOMEM
    assert auth(host, 1, uuids[5]) == 1                   # already there: no new slot needed
    assert len(host.clients[1].shared_auth_uuid) == 16
    assert auth(host, 1, uuids[5], on=0) == 1
    assert auth(host, 1, (99, 99)) == 1                   # a slot is free again
    assert auth(host, 1, (98, 98)) == -errno.ENOMEM


def test_auth_for_all_clients_switches_the_global_knob():
    host = Host(pages=1024)
    for d in (1, 2, 3):
        host.create_domain(d, pages=8)
        assert new_pool(host, d) == 0
    assert call(host, 0, TmemOp(cmd=abi.TMEM_AUTH, arg1=ALL, flags=1, uuid=U_A)) == 1
    assert host.global_shared_auth is True
    assert new_pool(host, 1, shared=True, uuid=U_B) == 1  # any uuid, nobody authorised
    assert new_pool(host, 2, shared=True, uuid=U_B) == 1
    sp = shared_pool_of(host, 1, 1)
    assert sp is not None and host.clients[2].pools[1] is sp
    assert call(host, 0, TmemOp(cmd=abi.TMEM_AUTH, arg1=ALL, flags=0, uuid=U_A)) == 1
    assert host.global_shared_auth is False
    assert new_pool(host, 3, shared=True, uuid=U_B) == 1
    assert shared_pool_of(host, 3, 1) is None


def test_auth_for_an_unknown_domain_is_einval():
    host = Host(pages=512)
    before = snapshot(host)
    assert auth(host, 42, U_A) == -errno.EINVAL
    assert auth(host, 42, U_A, on=0) == -errno.EINVAL
    assert diff(before, snapshot(host)) == []


def test_a_client_may_open_the_same_shared_pool_twice():
    """Facts §3.2: a shared NEW_POOL whose uuid matches a live shared pool puts that pool in the
    caller's new slot and joins its sharelist — Xen does not check whether the caller is
    already a sharer, so one client can hold the same pool in two slots. The state must stay
    consistent (``call`` runs ``host.check()``)."""
    host = Host(pages=1024)
    host.create_domain(1, pages=8)
    assert new_pool(host, 1) == 0
    assert auth(host, 1, U_A) == 1
    assert new_pool(host, 1, shared=True, uuid=U_A) == 1
    assert new_pool(host, 1, shared=True, uuid=U_A) == 2
    pools = host.clients[1].pools
    assert pools[1] is pools[2] and pools[1].shared
    assert put(host, 1, 2, (1, 0, 0), 0, page(0)) == 1
    assert get(host, 1, 1, (1, 0, 0), 0) == (1, page(0))


# --- TMEM_RESTORE_NEW ---------------------------------------------------------------------------
def restore_new(host, cli_id, pool_id, flags=None, uuid=(0, 0), domid=0):
    flags = abi.pool_flags() if flags is None else flags
    return call(host, domid, TmemOp(cmd=abi.TMEM_RESTORE_NEW, pool_id=pool_id, arg1=cli_id,
                                    flags=flags, uuid=uuid))


def test_restore_new_creates_the_pool_in_the_slot_asked_for():
    host = Host(pages=1024)
    host.create_domain(1, pages=8, max_pages=64)
    assert new_pool(host, 1) == 0                          # the client exists
    assert restore_new(host, 1, 5, flags=abi.pool_flags(persist=True)) == 5
    pool = host.clients[1].pools[5]
    assert pool.persistent and pool.pool_id == 5
    assert put(host, 1, 5, (1, 0, 0), 0, page(0)) == 1
    assert get(host, 1, 5, (1, 0, 0), 0) == (1, page(0))
    assert new_pool(host, 1) == 1                          # guests still get the lowest free
    buf = bytearray(4096)
    assert control(host, abi.TMEMC_LIST, cli_id=1, arg1=4096, arg2=0, buf=buf) == 0
    assert "P=CI:1,PI:5,PT:PP,U0:0,U1:0\n" in bytes(buf).split(b"\0")[0].decode()


def test_restore_new_refusals():
    host = Host(pages=1024)
    host.create_domain(1, pages=8)
    host.create_domain(2, pages=8)                         # exists, but no client
    assert new_pool(host, 1) == 0
    before = snapshot(host)
    assert restore_new(host, 1, 0) == -errno.EPERM         # slot taken
    assert restore_new(host, 2, 3) == -errno.EPERM         # no client
    assert restore_new(host, 9, 3) == -errno.EPERM         # no domain
    assert restore_new(host, 1, 16) == -errno.EPERM        # no such slot
    assert restore_new(host, 1, 3, flags=abi.pool_flags(version=0)) == -errno.EPERM
    assert diff(before, snapshot(host)) == []


# --- privilege ----------------------------------------------------------------------------------
CONTROL_OPS = [
    TmemOp(cmd=abi.TMEM_CONTROL, subop=s, cli_id=c, arg1=a, arg2=1, buf=bytearray(b"\xaa" * 64))
    for s, c, a in [(abi.TMEMC_THAW, ALL, 0), (abi.TMEMC_FREEZE, ALL, 0),
                    (abi.TMEMC_FLUSH, ALL, 1 << 20), (abi.TMEMC_DESTROY, ALL, 0),
                    (abi.TMEMC_LIST, ALL, 64), (abi.TMEMC_SET_WEIGHT, 1, 5),
                    (abi.TMEMC_SET_CAP, 1, 5), (abi.TMEMC_SET_COMPRESS, 1, 1),
                    (abi.TMEMC_QUERY_FREEABLE_MB, ALL, 0), (abi.TMEMC_SAVE_BEGIN, 1, 0)]
] + [TmemOp(cmd=abi.TMEM_AUTH, arg1=1, flags=1, uuid=U_A),
     TmemOp(cmd=abi.TMEM_AUTH, arg1=ALL, flags=1, uuid=U_A),
     TmemOp(cmd=abi.TMEM_RESTORE_NEW, pool_id=7, arg1=1, flags=abi.pool_flags())]


@pytest.mark.parametrize("op", CONTROL_OPS, ids=lambda op: abi.CMD_NAMES[op.cmd] + (
    "_" + abi.SUBOP_NAMES[op.subop] if op.cmd == abi.TMEM_CONTROL else ""))
def test_control_from_a_guest_is_eperm_and_changes_nothing(op):
    host = two_guests()
    assert control(host, abi.TMEMC_FREEZE, cli_id=2) == 0
    before = snapshot(host)
    tt, te = host.total_tmem_ops, host.errored_tmem_ops
    assert call(host, 1, op) == -errno.EPERM
    assert diff(before, snapshot(host)) == []
    assert (host.total_tmem_ops, host.errored_tmem_ops) == (tt + 1, te + 1)
    if op.buf is not None:
        assert op.buf == bytearray(b"\xaa" * 64)


def test_a_privileged_guest_may_control():
    host = two_guests()
    host.create_domain(5, pages=4, privileged=True)
    assert call(host, 5, TmemOp(cmd=abi.TMEM_CONTROL, subop=abi.TMEMC_FREEZE, cli_id=1)) == 0
    assert frozen(host) == {1: True, 2: False}


# --- the manageability sequence -----------------------------------------------------------------
def fill_with_ephemeral_pages(host, domid, n):
    pool = new_pool(host, domid)
    for i in range(n):
        assert put(host, domid, pool, (i // 64, 0, 0), i % 64, page(i)) == 1
    return pool


def test_freeze_query_flush_create_thaw():
    """tmem-internals.html, "freeable memory": a tool that wants memory for a new guest freezes
    tmem (no put may absorb memory meanwhile), asks how many MB are freeable, flushes that much
    back to Xen's heap, creates the guest from the heap, and thaws."""
    host = Host(pages=800)
    host.create_domain(1, pages=64)
    E = fill_with_ephemeral_pages(host, 1, 420)
    need = 450
    free = len(host.mem.heap)
    assert free < need                                        # does not fit as things are
    rt, ra = host.relinq_pgs, host.relinq_attempts
    # 1. freeze
    assert control(host, abi.TMEMC_FREEZE, cli_id=ALL) == 0
    # 2. query
    mb = control(host, abi.TMEMC_QUERY_FREEABLE_MB)
    assert mb == freeable(host) >> 8 == 1
    assert free + mb * 256 >= need                            # enough would come back
    # 3. flush what is missing (in KB)
    kb = (need - free) * 4
    got = control(host, abi.TMEMC_FLUSH, arg1=kb)
    assert got >= kb and len(host.mem.heap) == free + got // 4 >= need
    assert host.mem.page_list == []
    # frozen: the guest cannot take the memory back before the new domain gets it
    heap = len(host.mem.heap)
    assert put(host, 1, E, (99, 0, 0), 0, page(0)) == -abi.EFROZEN
    assert len(host.mem.heap) == heap
    # 4. create the new guest: the heap serves it down to its reserve (1/128 of memory,
    # facts §4.5), then tmem relinquishes a frame per request — the tool flushed what the
    # heap lacked, not knowing about the reserve
    heap, reserve = len(host.mem.heap), host.mem.midsize_alloc_zone_pages
    assert reserve == 800 // 128
    d = host.create_domain(2, pages=need)
    host.check()
    assert d.tot_pages == need
    short = max(0, need - (heap - reserve))
    assert (host.relinq_pgs - rt, host.relinq_attempts - ra) == (short, short)
    assert len(host.mem.heap) == heap - (need - short)
    # 5. thaw: tmem takes what is left
    assert control(host, abi.TMEMC_THAW, cli_id=ALL) == 0
    assert put(host, 1, E, (99, 0, 0), 0, page(0)) == 1
    assert get(host, 1, E, (99, 0, 0), 0) == (1, page(0))


def test_without_the_flush_the_heap_borrows_from_tmem_frame_by_frame():
    """Same start, no flush: Xen's allocator serves the heap down to its reserve, then asks
    tmem for one frame at a time (tmem_relinquish_pages), so the shortfall and the reserve
    show up as relinquished pages."""
    host = Host(pages=800)
    host.create_domain(1, pages=64)
    fill_with_ephemeral_pages(host, 1, 420)
    need = 450
    free = len(host.mem.heap)
    rt, ra = host.relinq_pgs, host.relinq_attempts
    host.create_domain(2, pages=need)
    host.check()
    short = need - (free - host.mem.midsize_alloc_zone_pages)
    assert host.relinq_pgs - rt == short
    assert host.relinq_attempts - ra == short
