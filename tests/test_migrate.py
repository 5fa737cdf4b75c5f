"""Save, restore and live migration: the TMEMC_SAVE_* / RESTORE_* sub-ops (core/save.py) and
the toolstack's part (tmemref.migrate).

Sources: facts §9.1 (the model), §9.2 (the classic libxc stream and the sub-ops' values),
§9.3 (the invalidation log), §9.4 (Xen's bugs); tmem-internals.html "Save/Restore/Migrate".
Every step is followed by ``check()`` of the hosts involved.
"""
from __future__ import annotations

import errno
import io
import struct

import pytest

from tmemref import Host, InvariantError, TmemOp, abi, migrate
from tmemref.core import save
from tmemref.ds.dlist import ListHead
from tmemref.migrate import StreamError

from helpers import (control, cpage, destroy_pool, flush_object, flush_page, get, new_pool,
                     page, put, snapshot, stored)

U32, U64 = (1 << 32) - 1, (1 << 64) - 1
ENOMEM, ENOSPC, EINVAL, EFAULT = -errno.ENOMEM, -errno.ENOSPC, -errno.EINVAL, -errno.EFAULT
EFROZEN = -abi.EFROZEN
A, B, C = (7, 0, 0), (8, 1, 0), (9, 0, 2)
PERSIST = abi.pool_flags(persist=True)          # 0x01000001
EPHEMERAL = abi.pool_flags()                    # 0x01000000


def ctl(host, sub, cli_id=1, **kw):
    """A save/restore sub-op from dom0, then check()."""
    rc = host.do_tmem_op(0, TmemOp(cmd=abi.TMEM_CONTROL, subop=sub, cli_id=cli_id, **kw))
    host.check()
    return rc


def next_page(host, pool_id, cli_id=1):
    """SAVE_GET_NEXT_PAGE: (rc, (pool_id, index, oid) or None, page bytes)."""
    buf = bytearray(4096 + 32)
    rc = ctl(host, abi.TMEMC_SAVE_GET_NEXT_PAGE, cli_id, pool_id=pool_id, arg1=len(buf),
             buf=buf)
    pid, index, *oid = struct.unpack_from("<II3Q", buf)
    return rc, ((pid, index, tuple(oid)) if rc > 0 else None), bytes(buf[32:])


def next_inv(host, cli_id=1):
    buf = bytearray(32)
    rc = ctl(host, abi.TMEMC_SAVE_GET_NEXT_INV, cli_id, arg1=32, buf=buf)
    pid, index, *oid = struct.unpack("<II3Q", buf)
    return rc, ((pid, tuple(oid), index) if rc > 0 else None)


def source(**kw):
    """dom1 with a persistent pool 0 (pages A[1], A[2], B[0], C[5], in that order) and an
    ephemeral pool 1 (two pages); weight 3."""
    h = Host(pages=2048, **kw)
    h.create_domain(1, pages=64, max_pages=1024)
    assert new_pool(h, 1, persist=True) == 0 and new_pool(h, 1) == 1
    for i, (oid, index) in enumerate(((A, 1), (A, 2), (B, 0), (C, 5))):
        assert put(h, 1, 0, oid, index, page(i)) == 1
    for i in range(2):
        assert put(h, 1, 1, A, i, page(50 + i)) == 1
    assert control(h, abi.TMEMC_SET_WEIGHT, cli_id=1, arg1=3) == 0
    return h


def target(pages=64, max_pages=1024):
    h = Host(pages=2048)
    h.create_domain(1, pages=pages, max_pages=max_pages)
    h.check()
    return h


def persistent(host, domid=1, pool_id=0):
    return stored(host, host.clients[domid].pools[pool_id])


def saved(host, live=False) -> bytes:
    out = io.BytesIO()
    assert migrate.save(host, 1, out, live=live) == 1
    host.check()
    return out.getvalue()


# =================================================================================================
# The stream, byte for byte (facts §9.2)
# =================================================================================================

def test_stream_is_libxc_classic_format_byte_for_byte():
    h = Host(pages=1024)
    h.create_domain(1, pages=16, max_pages=256)
    assert new_pool(h, 1, persist=True) == 0 and new_pool(h, 1) == 1
    assert put(h, 1, 0, A, 1, page(1)) == 1
    assert put(h, 1, 0, (1, 2, 3), 0xFFFFFFFF, page(2)) == 1
    assert put(h, 1, 1, A, 0, page(3)) == 1                    # ephemeral: not carried
    assert control(h, abi.TMEMC_SET_WEIGHT, cli_id=1, arg1=3) == 0
    assert control(h, abi.TMEMC_SET_CAP, cli_id=1, arg1=U32) == 0   # -1 is saved as -2
    assert control(h, abi.TMEMC_SET_COMPRESS, cli_id=1, arg1=0) == 0
    expected = (
        b"\xfb\xff\xff\xff"                                     # i32 -5 (XC_SAVE_ID_TMEM)
        + b"\x01\x00\x00\x00" + b"\x10\x00\x00\x00"             # version 1, max_pools 16
        + b"\xff\xff\xff\xff"                                   # -1
        + b"\x00\x00\x00\x00"                                   # flags: no compress, thawed
        + b"\x03\x00\x00\x00" + b"\xfe\xff\xff\xff"             # weight 3, cap -2
        + b"\xff\xff\xff\xff"                                   # -1
        + b"\x00\x00\x00\x00" + b"\x01\x00\x00\x01"             # pool 0, flags PERSIST | v1
        + b"\x02\x00\x00\x00" + bytes(16)                       # 2 pages, uuid 0, 0
        + bytes([7]) + bytes(23) + b"\x01\x00\x00\x00" + page(1)          # oid A, index 1
        + b"\x01" + bytes(7) + b"\x02" + bytes(7) + b"\x03" + bytes(7)    # oid (1, 2, 3)
        + b"\xff\xff\xff\xff" + page(2)                                   # index 2**32-1
        + b"\x01\x00\x00\x00" + b"\x00\x00\x00\x01"             # pool 1, ephemeral v1
        + bytes(4) + bytes(16)                                  # 0 pages (forced), uuid
        + b"\xff\xff\xff\xff")                                  # end of pools
    assert saved(h) == expected
    # a non-live save leaves the client frozen (xl save then destroys the domain)
    assert put(h, 1, 0, A, 9, page(9)) == EFROZEN
    assert get(h, 1, 0, A, 1) == (1, page(1))


def test_stream_terminates_a_pool_that_ran_out_of_pages(monkeypatch):
    """If the pool has fewer pages than SAVE_GET_POOL_NPAGES said (the guest flushed one
    meanwhile), the oid -1, -1, -1 ends it."""
    h = source()
    real = save.save_get_next_page
    calls = []

    def flushing(host, pool, pool_id, buf, bufsize):
        if pool_id == 0 and not calls:                 # the guest flushes C[5] first
            host._flush_handle(pool, C, 5)
        calls.append(pool_id)
        return real(host, pool, pool_id, buf, bufsize)

    monkeypatch.setattr(save, "save_get_next_page", flushing)
    data = saved(h, live=True)
    fields = migrate.parse_stream(data)
    assert [f.name for f in fields].count("page") == 3
    term = [i for i, f in enumerate(fields) if f.name == "oid" and f.value == (U64, U64, U64)]
    assert len(term) == 1 and fields[term[0] - 1].name == "page"
    assert h.clients[1].invalidated == [(0, C, 5)]


def test_nothing_to_save():
    h = Host(pages=1024)
    h.create_domain(1, pages=16)
    h.create_domain(2, pages=16)
    assert new_pool(h, 2, persist=True) == 0 and destroy_pool(h, 2, 0) == 1   # no pool left
    for domid in (1, 2):
        out = io.BytesIO()
        assert migrate.save(h, domid, out) == 0 and out.getvalue() == b""
        h.check()
    assert not h.clients[2].frozen
    with pytest.raises(ValueError):
        migrate.save(h, 9, io.BytesIO())


def test_parse_stream_names_every_field_with_its_offset():
    data = saved(source(), live=True)
    fields = migrate.parse_stream(data)
    assert [f.name for f in fields[:8]] == ["marker", "version", "max_pools", "end of header",
                                            "client flags", "weight", "cap", "end of client"]
    assert fields[0].value == -5 and fields[5].value == 3
    pos = 0
    for f in fields:                                   # contiguous, covering every byte
        assert f.offset == pos
        pos += f.size
    assert pos == len(data)


# =================================================================================================
# Round trips
# =================================================================================================

def test_save_restore_round_trip_carries_persistent_pages_only():
    src = source()
    before = persistent(src)
    data = saved(src)
    dst = target()
    assert migrate.restore(dst, 1, io.BytesIO(data)) == 4
    dst.check()
    assert persistent(dst) == before
    c = dst.clients[1]
    assert (c.weight, c.cap, c.compress, c.frozen) == (3, 0, False, False)
    assert dst.client_weight_total == 3
    eph = c.pools[1]
    assert not eph.persistent and eph.pgp_count == 0         # recreated, empty
    # billed to the target domain: 4 data frames and its metadata frames
    d = dst.mem.domains[1]
    assert d.tot_pages > len(d.own_frames) + 4 - 1
    assert dst.clients[1].pools[0].puts == 4 and dst.clients[1].succ_pers_puts == 4


def test_round_trip_keeps_compression_and_a_frozen_client():
    src = source(compress=True)
    for i in range(3):
        assert put(src, 1, 0, (99, 0, 0), i, cpage(i)) == 1
    assert control(src, abi.TMEMC_FREEZE, cli_id=1) == 0
    data = saved(src)
    assert migrate.parse_stream(data)[4].value == abi.TMEM_CLIENT_COMPRESS | abi.TMEM_CLIENT_FROZEN
    dst = target()
    assert migrate.restore(dst, 1, io.BytesIO(data)) == 7
    dst.check()
    assert persistent(dst) == persistent(src)
    c = dst.clients[1]
    assert c.compress and c.frozen and c.compressed_pages == 3     # cpages compress
    assert put(dst, 1, 0, A, 77, page(1)) == EFROZEN


def test_restore_leaves_the_stream_after_its_chunk():
    data = saved(source())
    stream = io.BytesIO(data + b"TAIL")
    migrate.restore(target(), 1, stream)
    assert stream.read() == b"TAIL"


# =================================================================================================
# Live migration
# =================================================================================================

def test_live_migration_with_a_working_guest():
    src = source()
    dst = Host(pages=2048)
    seen = {}

    def during(h):
        h.check()
        c = h.clients[1]
        assert c.frozen and c.live_migrating
        seen["flush"] = flush_page(h, 1, 0, A, 1)            # frozen: flushed, -EFROZEN
        seen["dup"] = put(h, 1, 0, B, 0, page(99))           # refused: old data flushed
        seen["new"] = put(h, 1, 0, A, 3, page(98))           # frozen: refused
        seen["flobj"] = flush_object(h, 1, 0, C)
        seen["eph"] = put(h, 1, 1, B, 7, page(97))
        seen["get"] = get(h, 1, 0, A, 2)
        seen["log"] = list(c.invalidated)

    m = migrate.migrate(src, dst, 1, during=during)
    src.check()
    dst.check()
    assert seen["flush"] == EFROZEN and seen["dup"] == ENOSPC and seen["new"] == EFROZEN
    assert seen["flobj"] == EFROZEN and seen["eph"] == EFROZEN and seen["get"] == (1, page(1))
    assert seen["log"] == [(0, A, 1), (0, B, 0), (0, C, 5)]
    assert (m.pages, m.invalidated) == (4, 3)
    assert persistent(dst) == persistent(src) == {(A, 2): page(1)}
    assert dst.clients[1].pools[1].pgp_count == 0 and src.clients[1].pools[1].pgp_count == 2
    c = src.clients[1]
    assert not c.frozen and not c.live_migrating and c.invalidated == []
    assert put(src, 1, 0, A, 3, page(98)) == 1               # thawed
    # the stream: the -5 chunk, then the -6 chunk with three handles and -1
    fields = migrate.parse_stream(m.stream)
    extra = [f for f in fields if f.name == "marker"]
    assert [f.value for f in extra] == [-5, -6]
    tail = m.stream[extra[1].offset:]
    assert tail == (struct.pack("<i", -6)
                    + b"".join(struct.pack("<I3QI", 0, *oid, i)
                               for oid, i in ((A, 1), (B, 0), (C, 5)))
                    + struct.pack("<I", U32))
    assert dst.mem.domains[1].max_pages == src.mem.domains[1].max_pages


def test_migrating_a_guest_without_tmem_does_nothing():
    src, dst = Host(pages=1024), Host(pages=1024)
    src.create_domain(1, pages=16)
    m = migrate.migrate(src, dst, 1, during=lambda h: pytest.fail("no live phase"))
    assert (m.pages, m.invalidated, m.stream) == (0, 0, b"")
    assert 1 in dst.mem.domains and 1 not in dst.clients


def test_a_failed_migration_loses_nothing_on_the_source():
    src = source()
    before = snapshot(src)
    dst = target(pages=64, max_pages=64)                       # at its maximum memory
    with pytest.raises(StreamError) as e:
        migrate.migrate(src, dst, 1, during=lambda h: pytest.fail("not reached"))
    assert e.value.rc == ENOMEM
    src.check()
    dst.check()
    assert snapshot(src) == before                               # thawed, nothing lost
    c = src.clients[1]
    assert not c.frozen and not c.live_migrating and c.invalidated == []


# =================================================================================================
# Bad streams (toolstack level): an exception naming the offset; the target unchanged
# =================================================================================================

def _mutate(data: bytes, offset: int, fmt: str, value) -> bytes:
    b = bytearray(data)
    struct.pack_into("<" + fmt, b, offset, value)
    return bytes(b)


def _offset(data: bytes, name: str, nth: int = 0) -> int:
    return [f.offset for f in migrate.parse_stream(data) if f.name == name][nth]


@pytest.fixture(scope="module")
def good():
    return saved(source())


def _corruptions(data):
    pool1 = _offset(data, "pool_id", 1)
    return [
        (0, "i", -4, "marker -5"),
        (4, "I", 2, "version 1"),
        (8, "I", 15, "max_pools 16"),
        (12, "I", 0, "separator -1"),
        (16, "I", 4, "client flags"),
        (28, "I", 7, "separator -1"),
        (32, "I", 16, "pool id below 16"),
        (pool1, "I", 0, "not seen before"),
        (pool1, "I", 0xFFFFFFFE, "pool id below 16"),
        (pool1 + 4, "I", abi.pool_flags(version=2), "version 1"),
        (pool1 + 8, "I", 3, "n_pages 0 for an ephemeral pool"),
    ]


@pytest.mark.parametrize("i", range(11))
def test_corrupted_stream_names_the_offset_and_changes_nothing(good, i):
    offset, fmt, value, expected = _corruptions(good)[i]
    dst = target()
    before = snapshot(dst)
    with pytest.raises(StreamError) as e:
        migrate.restore(dst, 1, io.BytesIO(_mutate(good, offset, fmt, value)))
    assert e.value.offset == offset and expected in e.value.expected
    assert f"byte {offset}" in str(e.value) and e.value.rc is None
    dst.check()
    assert snapshot(dst) == before and 1 not in dst.clients


def test_truncated_stream_at_every_field(good):
    fields = migrate.parse_stream(good)
    cuts = sorted({f.offset for f in fields} | {f.offset + 1 for f in fields} | {len(good) - 1})
    dst = target()
    before = snapshot(dst)
    for cut in cuts:
        with pytest.raises(StreamError) as e:
            migrate.restore(dst, 1, io.BytesIO(good[:cut]))
        field = max((f for f in fields if f.offset <= cut), key=lambda f: f.offset)
        assert e.value.offset == field.offset, cut
        assert "end of the stream" in e.value.found
    dst.check()
    assert snapshot(dst) == before


def test_restore_into_a_client_that_exists(good):
    dst = target()
    assert new_pool(dst, 1) == 0                                # dom1 has a client
    before = snapshot(dst)
    with pytest.raises(StreamError) as e:
        migrate.restore(dst, 1, io.BytesIO(good))
    assert e.value.rc == -1 and e.value.offset == 16 and "without a tmem client" in str(e.value)
    dst.check()
    assert snapshot(dst) == before


def test_restore_into_a_domain_at_its_maximum_memory(good):
    dst = target(pages=64, max_pages=65)         # room for one metadata frame, no data frame
    with pytest.raises(StreamError) as e:
        migrate.restore(dst, 1, io.BytesIO(good))
    assert e.value.rc == ENOMEM and e.value.offset == _offset(good, "oid")
    assert "RESTORE_PUT_PAGE" in e.value.expected
    dst.check()                                  # what was rebuilt stays, consistent
    assert dst.mem.domains[1].tot_pages <= 65


def test_restore_needs_the_domain():
    with pytest.raises(ValueError):
        migrate.restore(Host(pages=1024), 1, io.BytesIO(b""))


def test_bad_extra_chunks():
    dst = target()
    migrate.restore(dst, 1, io.BytesIO(saved(source())))
    before = snapshot(dst)
    good = struct.pack("<i", -6) + struct.pack("<I3QI", 0, *A, 1) + struct.pack("<I", U32)
    for data, offset, expected in (
            (struct.pack("<i", -5) + good[4:], 0, "marker -6"),
            (good[:4] + struct.pack("<I", 16) + good[8:], 4, "pool id below 16"),
            (good[:-1], 36, "pool_id"),
            (good[:20], 8, "oid")):
        with pytest.raises(StreamError) as e:
            migrate.restore_extra(dst, 1, io.BytesIO(data))
        assert (e.value.offset, expected in e.value.expected) == (offset, True), data
        dst.check()
        assert snapshot(dst) == before
    with pytest.raises(StreamError) as e:                    # a pool the target lacks
        migrate.restore_extra(dst, 1, io.BytesIO(good[:4] + struct.pack("<I3QI", 5, *A, 1)
                                                 + good[-4:]))
    assert e.value.rc == -1 and e.value.offset == 4
    assert migrate.restore_extra(dst, 1, io.BytesIO(good)) == 1
    dst.check()
    assert (A, 1) not in persistent(dst)


# =================================================================================================
# The sub-ops (hypercall level)
# =================================================================================================

def test_save_begin_freezes_and_save_end_restores_the_frozen_state():
    h = source()
    assert ctl(h, abi.TMEMC_SAVE_BEGIN, arg1=0) == 1
    c = h.clients[1]
    assert c.frozen and not c.live_migrating and not c.was_frozen
    assert ctl(h, abi.TMEMC_SAVE_END) == 0 and not c.frozen
    assert control(h, abi.TMEMC_FREEZE, cli_id=1) == 0
    assert ctl(h, abi.TMEMC_SAVE_BEGIN, arg1=1) == 1 and c.live_migrating and c.was_frozen
    assert ctl(h, abi.TMEMC_SAVE_GET_CLIENT_FLAGS) == abi.TMEM_CLIENT_FROZEN
    assert ctl(h, abi.TMEMC_SAVE_END) == 0 and c.frozen and not c.live_migrating


def test_client_and_pool_info_values():
    h = source()
    assert ctl(h, abi.TMEMC_SAVE_GET_VERSION, cli_id=0) == 1
    assert ctl(h, abi.TMEMC_SAVE_GET_MAXPOOLS, cli_id=0) == 16
    assert ctl(h, abi.TMEMC_SAVE_GET_CLIENT_WEIGHT) == 3
    assert control(h, abi.TMEMC_SET_WEIGHT, cli_id=1, arg1=U32) == 0
    assert ctl(h, abi.TMEMC_SAVE_GET_CLIENT_WEIGHT) == -2            # -1 reported as -2
    assert ctl(h, abi.TMEMC_SAVE_GET_POOL_FLAGS, pool_id=0) == PERSIST
    assert ctl(h, abi.TMEMC_SAVE_GET_POOL_FLAGS, pool_id=1) == EPHEMERAL
    assert ctl(h, abi.TMEMC_SAVE_GET_POOL_NPAGES, pool_id=0) == 4
    assert ctl(h, abi.TMEMC_SAVE_GET_POOL_NPAGES, pool_id=0x10000000) == -1
    buf = bytearray(b"\xee" * 20)
    assert ctl(h, abi.TMEMC_SAVE_GET_POOL_UUID, pool_id=0, arg1=16, buf=buf) == 0
    assert buf == bytes(16) + b"\xee" * 4


def test_next_page_walks_the_list_once_then_minus_one():
    h = source()
    assert ctl(h, abi.TMEMC_SAVE_BEGIN, arg1=0) == 1
    got = [next_page(h, 0) for _ in range(5)]
    assert [g[0] for g in got] == [1, 1, 1, 1, -1]
    assert [g[1] for g in got[:4]] == [(0, 1, A), (0, 2, A), (0, 0, B), (0, 5, C)]
    assert [g[2] for g in got[:4]] == [page(i) for i in range(4)]
    assert h.clients[1].pools[0].found_gets == 4                     # each is a real get
    assert next_page(h, 1)[0] == -1                                  # ephemeral
    assert ctl(h, abi.TMEMC_SAVE_BEGIN, arg1=0) == 1                 # a new save: from the start
    assert next_page(h, 0)[1] == (0, 1, A)


def test_flushing_the_cursor_page_does_not_restart_the_walk():
    h = source()
    assert ctl(h, abi.TMEMC_SAVE_BEGIN, arg1=1) == 1
    assert next_page(h, 0)[1] == (0, 1, A)
    assert flush_page(h, 1, 0, A, 1) == EFROZEN                      # the cursor's page
    assert next_page(h, 0)[1] == (0, 2, A)
    assert next_page(h, 0)[1] == (0, 0, B)
    assert flush_page(h, 1, 0, B, 0) == EFROZEN                      # the cursor again
    assert flush_page(h, 1, 0, C, 5) == EFROZEN                      # not sent yet
    assert next_page(h, 0)[0] == -1
    assert h.clients[1].invalidated == [(0, A, 1), (0, B, 0), (0, C, 5)]


def test_invalidation_log_only_while_migrating():
    h = source()
    assert flush_page(h, 1, 0, A, 1) == 1
    assert h.clients[1].invalidated == [] and next_inv(h) == (0, None)
    assert ctl(h, abi.TMEMC_SAVE_BEGIN, arg1=0) == 1                 # not live: no log
    assert flush_page(h, 1, 0, A, 2) == EFROZEN
    assert h.clients[1].invalidated == []
    assert ctl(h, abi.TMEMC_SAVE_END) == 0
    assert ctl(h, abi.TMEMC_SAVE_BEGIN, arg1=1) == 1
    assert put(h, 1, 0, B, 0, page(7)) == ENOSPC                     # dup put refused
    assert flush_page(h, 1, 1, A, 0) == EFROZEN                      # ephemeral: not logged
    assert flush_page(h, 1, 0, (5, 5, 5), 0) == EFROZEN              # absent: not logged
    assert next_inv(h) == (1, (0, B, 0))
    assert next_inv(h) == (0, None)                                  # end: cursor reset
    assert next_inv(h) == (1, (0, B, 0))
    assert ctl(h, abi.TMEMC_SAVE_END) == 0
    assert h.clients[1].invalidated == [] and next_inv(h) == (0, None)


def test_destroying_a_pool_while_migrating_logs_its_pages():
    h = source()
    assert ctl(h, abi.TMEMC_SAVE_BEGIN, arg1=1) == 1
    assert destroy_pool(h, 1, 0) == 1
    assert sorted(h.clients[1].invalidated) == sorted(
        [(0, A, 1), (0, A, 2), (0, B, 0), (0, C, 5)])


def test_restore_sub_ops():
    h = target()
    assert ctl(h, abi.TMEMC_RESTORE_BEGIN) == 1 and 1 in h.clients
    assert ctl(h, abi.TMEMC_RESTORE_BEGIN) == -1
    rc = h.do_tmem_op(0, TmemOp(cmd=abi.TMEM_RESTORE_NEW, pool_id=5, arg1=1, flags=PERSIST))
    assert rc == 5
    tot = h.mem.domains[1].tot_pages
    assert ctl(h, abi.TMEMC_RESTORE_PUT_PAGE, pool_id=5, oid=A, arg2=3, arg1=4096,
               buf=page(3)) == 1
    assert h.mem.domains[1].tot_pages > tot                          # billed to the guest
    assert persistent(h, 1, 5) == {(A, 3): page(3)}
    assert ctl(h, abi.TMEMC_RESTORE_FLUSH_PAGE, pool_id=5, oid=A, arg2=3) == 1
    assert persistent(h, 1, 5) == {}
    assert ctl(h, abi.TMEMC_RESTORE_FLUSH_PAGE, pool_id=6, oid=A, arg2=3) == -1


# =================================================================================================
# Xen's bugs, behind Host(save_bugs=...) (facts §9.4)
# =================================================================================================

def test_save_bugs_option_is_validated():
    assert Host(pages=1024, save_bugs="xen").save_bugs == save.SAVE_BUGS_XEN
    assert Host(pages=1024, save_bugs=["raw_copy"]).save_bugs == {"raw_copy"}
    with pytest.raises(ValueError):
        Host(pages=1024, save_bugs={"nope"})
    for bad in ("raw_copy", 3, None):
        with pytest.raises(TypeError):
            Host(pages=1024, save_bugs=bad)


def test_skip_first_page_bug():
    h = source(save_bugs={"skip_first_page"})
    assert ctl(h, abi.TMEMC_SAVE_BEGIN, arg1=0) == 1
    got = [next_page(h, 0)[1] for _ in range(4)]
    assert got == [(0, 2, A), (0, 0, B), (0, 5, C), None]           # A[1] is never sent
    dst = target()
    migrate.restore(dst, 1, io.BytesIO(saved(h)))              # a whole save: the same loss
    dst.check()
    assert (A, 1) not in persistent(dst) and len(persistent(dst)) == 3


def test_skip_first_page_bug_on_a_one_page_pool():
    """The list head is read as a page (no object has its oid: 0), then the real page, then
    -1: libxc asks once (n_pages = 1), so nothing is sent."""
    h = Host(pages=1024, save_bugs={"skip_first_page"})
    h.create_domain(1, pages=16, max_pages=256)
    assert new_pool(h, 1, persist=True) == 0 and put(h, 1, 0, A, 0, page(0)) == 1
    assert ctl(h, abi.TMEMC_SAVE_BEGIN, arg1=0) == 1
    assert [next_page(h, 0)[0] for _ in range(3)] == [0, 1, -1]
    data = saved(h)
    # the pool says 1 page; the one call returned 0, so libxc wrote neither a page nor the
    # terminator: a restore reads the end of the pools (-1) where an object id should be
    with pytest.raises(StreamError) as e:
        migrate.parse_stream(data)
    assert e.value.offset == 60 and e.value.expected == "oid (24 bytes)"
    assert len(data) == 64


def test_raw_copy_bug():
    h = source(save_bugs={"raw_copy"})
    assert ctl(h, abi.TMEMC_SAVE_BEGIN, arg1=0) == 1
    failed = h.failed_copies
    rc, handle, _ = next_page(h, 0)
    assert rc == EINVAL and h.failed_copies == failed + 1
    # restore of an uncompressed page fails the same way (the put is undone)
    dst = Host(pages=2048, save_bugs={"raw_copy"})
    dst.create_domain(1, pages=64, max_pages=1024)
    data = saved(source())
    with pytest.raises(StreamError) as e:
        migrate.restore(dst, 1, io.BytesIO(data))
    assert e.value.rc == EINVAL and e.value.offset == _offset(data, "oid")
    dst.check()
    assert persistent(dst) == {} and dst.failed_copies == 1


def test_raw_copy_bug_spares_compressed_pages():
    src = Host(pages=2048, compress=True, save_bugs={"raw_copy"})
    src.create_domain(1, pages=64, max_pages=1024)
    assert new_pool(src, 1, persist=True) == 0
    for i in range(3):
        assert put(src, 1, 0, A, i, cpage(i)) == 1
    dst = Host(pages=2048, save_bugs={"raw_copy"})
    m = migrate.migrate(src, dst, 1)
    dst.check()
    assert m.pages == 3 and persistent(dst) == persistent(src)


def test_stale_end_bug():
    src = source(save_bugs={"stale_end"})
    first = Host(pages=2048)
    migrate.migrate(src, first, 1, during=lambda h: flush_page(h, 1, 0, A, 1))
    assert src.clients[1].invalidated == [(0, A, 1)]                 # freed, still listed
    src.check()                                                      # allowed by the option
    second = Host(pages=2048)
    m = migrate.migrate(src, second, 1)
    assert m.pages == 0                         # each pool's walk resumed at its old end
    assert m.invalidated == 1                   # the old invalidation is sent again
    # the default: the second migration carries everything and no stale handle
    src = source()
    migrate.migrate(src, Host(pages=2048), 1, during=lambda h: flush_page(h, 1, 0, A, 1))
    m = migrate.migrate(src, Host(pages=2048), 1)
    assert (m.pages, m.invalidated) == (3, 0)


# =================================================================================================
# Invariants broken on purpose
# =================================================================================================

def test_client_invariant_4_log_without_migration():
    h = source()
    h.clients[1].invalidated.append((0, A, 1))
    with pytest.raises(InvariantError, match="invariant 4"):
        h.check()


def test_client_invariant_4_bad_handle_and_cursor():
    h = source()
    c = h.clients[1]
    c.live_migrating = True
    c.invalidated.append((16, A, 1))
    with pytest.raises(InvariantError, match="invariant 4"):
        h.check()
    c.invalidated[:] = [(0, A, 1)]
    h.check()
    c.inv_cursor = 1
    with pytest.raises(InvariantError, match="invariant 4"):
        h.check()


def test_client_invariant_5_cursor_off_the_list():
    h = source()
    h.clients[1].pools[0].cur_pgp = ListHead(object())
    with pytest.raises(InvariantError, match="invariant 5"):
        h.check()
