"""tmemref.sim.solutions: the solutions of the book's build-something exercises."""

from __future__ import annotations

import uuid

import numpy as np
import pytest

from tmemref import InvariantError, oracle
from tmemref.sim.trees import bucketed_depth, inode_numbers
from tmemref.guest import Cleancache, Xl, scenarios, uuid_parse, uuid_words
from tmemref.sim import lru_hits, scan, zipf
from tmemref.sim import solutions as S


def test_memory_flow_moves_pages_to_the_busy_guest():
    f = S.memory_flow(1024, first=300, second=900, every=100)
    g1, g2 = f["guest1"], f["guest2"]
    assert g1[0] == 300 and g1[-1] == 0 and g2[-1] > 300
    assert np.all(np.diff(g1) <= 0) and np.all(np.diff(g2) >= 0)
    with pytest.raises(ValueError):
        S.memory_flow(0)


@pytest.mark.parametrize("text", ["abcdef01-2345-6789-1234-567890abcdef",
                                  "00000000-0000-0000-0000-000000000001",
                                  "ffffffff-0000-ffff-0000-ffffffffffff"])
def test_xl_uuid_text_makes_the_linux_pool_shared(text):
    fs = uuid.UUID(text)
    host = scenarios.new_host(1)
    Xl(host).tmem_shared_auth(1, S.xl_uuid_text(fs), 1)
    pool = Cleancache(host, 1).init_shared_fs(fs)
    host.check()
    assert host.clients[1].pools[pool].shared
    assert uuid_parse(S.xl_uuid_text(fs)) == uuid_words(fs)
    with pytest.raises(TypeError):
        S.xl_uuid_text(text)


def test_pages_top_down_and_bottom_up_differ_by_shared_pools_joined():
    from tmemref.viz import scenes
    host = scenes.overview().host
    assert S.pages_top_down(host, 1) == S.pages_bottom_up(host, 1)
    extra = set(S.pages_top_down(host, 2)) - set(S.pages_bottom_up(host, 2))
    assert extra and all(name.startswith("d1:p1:") for name in extra)
    with pytest.raises(KeyError):
        S.pages_top_down(host, 9)


def test_fib_bucket_spreads_strided_ids_and_matches_low_byte_depths_otherwise():
    strided = inode_numbers("strided", 4096, seed=1)
    mixed = S.hashed_depth(strided)
    assert bucketed_depth(strided).trees == 1 and mixed.trees == 256
    assert mixed.height < bucketed_depth(strided).height
    low_byte = S.hashed_depth(strided, bucket=lambda oid: oid[0] & 255)
    assert low_byte == bucketed_depth(strided)        # the harness reproduces tmem's hash
    assert all(0 <= S.fib_bucket((k, 0, 0)) < 256 for k in range(1000))
    with pytest.raises(ValueError):
        S.fib_bucket((1, 0, 0), bits=0)
    with pytest.raises(ValueError):
        S.hashed_depth([1], bucket=lambda oid: 300)


def test_policy_hits():
    w = zipf(3000, n_files=20, pages_per_file=10, alpha=0.9, seed=2)
    assert np.array_equal(S.policy_hits(w, 50, "lru"), lru_hits(w, 50))
    loop = scan(1000, n_files=10, pages_per_file=20)           # 200 pages, cache of 100
    assert S.policy_hits(loop, 100, "lru")[200:].sum() == 0
    assert S.policy_hits(loop, 100, "lip")[200:].mean() > 0.4
    assert S.policy_hits(loop, 100, "random", seed=1)[200:].sum() > 0
    fifo = S.policy_hits(w, 50, "fifo")
    assert fifo.sum() <= S.policy_hits(w, 50, "lru").sum()
    with pytest.raises(ValueError):
        S.policy_hits(w, 50, "mru")
    with pytest.raises(ValueError):
        S.policy_hits(w, 0)


def test_tmem_top_counts_between_snapshots():
    from tmemref import Host, xl
    from tmemref.guest import TmemOps
    host = Host(pages=1024)
    host.create_domain(1, pages=32, max_pages=128)
    g = TmemOps(host, 1)
    p = g.new_pool(0)
    before = xl.tmem_list(host, long=True)
    for i in range(10):
        g.put_page(p, (1, 0, 0), i, bytes([i]) * 4096)
    for i in range(12):
        g.get_page(p, (1, 0, 0), i, bytearray(4096))
    rows = S.tmem_top(before, xl.tmem_list(host, long=True))
    assert rows == [{"client": 1, "puts": 10, "stored": 10, "gets": 10, "found": 10,
                     "flushes": 0, "ephemeral_pages": 0, "hit_ratio": 1.0}]
    with pytest.raises(ValueError):
        S.tmem_top(before, xl.tmem_list(host, long=False))


def test_repaired_dict_tmem_agrees_where_the_buggy_one_does_not():
    repaired = S.repaired_dict_tmem()
    trace = oracle.random_trace(150, 3)
    assert oracle.compare(oracle.oracle_host, repaired, trace) is None
    seed, bad, _ = oracle.first_difference_in(oracle.oracle_host, oracle.BuggyDictTmem,
                                              range(20), 150)
    assert oracle.compare(oracle.oracle_host, repaired, bad) is None


def test_guessing_a_uuid_reads_pages_only_without_authorisation():
    assert S.guess_uuid_attack(shared_auth=False) is True
    assert S.guess_uuid_attack(shared_auth=True) is False


# --- chapter 8: a hashed pcd index -------------------------------------------------------------
def test_hashed_index_finds_what_the_engine_dedups():
    from tmemref.sim import dedup as D
    pages = [D.content_page(t) for t in "ABAC"] + [bytes(4096)] * 2 + [D.tail_page(9)]
    costs = S.index_costs(pages * 2)
    engine = D.put_pages(pages, 2, dedup=True).after[-1]["Gd"]
    assert costs["trees"]["found"] == costs["hash"]["found"] == engine == 2 * 7 - 5
    # all the "content …" pages start with "c": one tree takes them; the hash spreads them
    assert costs["trees"]["busiest_lock"] == ord("c")
    assert costs["hash"]["busiest"] < costs["trees"]["busiest"]
    assert costs["hash"]["hashed"] == 4096 and costs["trees"]["hashed"] == 0
    assert costs["trees"]["compares"] > costs["hash"]["compares"]


def test_hashed_index_invariants_and_bad_input():
    ix = S.HashedPcdIndex(buckets=4)
    for c in (b"a" * 4096, b"b" * 4096, b"a" * 4096):
        ix.lookup(c)
    ix.check()
    assert ix.count == 2
    h = ix.hash(b"a" * 4096)
    ix.buckets[(h + 1) % 4][h] = [b"a" * 4096]          # under the wrong bucket
    with pytest.raises(InvariantError, match="invariant 1"):
        ix.check()
    ix = S.HashedPcdIndex(buckets=4)
    ix.lookup(b"z" * 4096)
    ix.count = 5
    with pytest.raises(InvariantError, match="invariant 2"):
        ix.check()
    ix = S.HashedPcdIndex(buckets=4)
    ix.lookup(b"z" * 4096)
    bucket = ix.buckets[ix.hash(b"z" * 4096) % 4]
    next(iter(bucket.values())).append(b"z" * 4096)
    with pytest.raises(InvariantError, match="invariant 2"):
        ix.check()
    with pytest.raises(ValueError):
        S.HashedPcdIndex(buckets=0)
    with pytest.raises(ValueError):
        S.index_costs([b"short"])
    with pytest.raises(ValueError):
        S.index_costs([])


def test_zstd_level_is_a_tmem_codec():
    from tmemref import Host
    from tmemref.guest import TmemOps
    from tmemref.host.compress import DecompressError
    from tmemref.sim.filepages import spread_pages
    from tmemref.sim.packing import fill
    pages = spread_pages(files_per_root=40, per_file=2)
    fast, tight = S.ZstdLevel(1), S.ZstdLevel(9)
    assert (fast.name, tight.name) == ("zstd-1", "zstd-9")
    for p in pages:
        assert tight.decompress(tight.compress(p)) == p
    assert sum(map(len, map(tight.compress, pages))) < sum(map(len, map(fast.compress, pages)))
    data = tight.compress(pages[0])
    for bad in (lambda: tight.decompress(data, 100), lambda: tight.decompress(data, 5000),
                lambda: tight.decompress(b"not zstd at all")):
        with pytest.raises(DecompressError, match="zstd-9"):
            bad()
    for level, err in ((0, ValueError), (99, ValueError), ("9", TypeError), (9.0, TypeError)):
        with pytest.raises(err):
            S.ZstdLevel(level)
    h = Host(pages=1024, compress=True, codec=S.ZstdLevel(3))     # byte-exact through the engine
    h.create_domain(1, pages=16)
    g = TmemOps(h, 1)
    pool = g.new_pool()
    for i, p in enumerate(pages[:50]):
        assert g.put_page(pool, (i, 0, 0), 0, p) == 1
    h.check()
    assert h.clients[1].compressed_pages > 40
    buf = bytearray(4096)
    for i, p in enumerate(pages[:50]):
        assert g.get_page(pool, (i, 0, 0), 0, buf) == 1 and buf == p
    h.check()
    held = [fill(pages, host_pages=500, compress=True, codec=c)["held"] for c in (fast, tight)]
    assert held[0] <= held[1]


def test_bottom_up_evict_breaks_the_order_and_deadlocks_without_the_checker():
    from tmemref.sim.explore import explore, replay
    from tmemref.sim.solutions import bottom_up_scenario
    checked = explore(bottom_up_scenario(), 0, workers=1)
    assert checked.verdict == "lock-order" and "obj_spinlock (rank 2)" in checked.failure.message
    assert explore(bottom_up_scenario(check_order=False), 0, workers=1).verdict == "none"
    r = explore(bottom_up_scenario(check_order=False), 1, workers=1)
    assert r.verdict == "deadlock"
    assert {lock for _, lock, _ in r.failure.cycle} == {"obj_spinlock[dom1 oid 1]",
                                                         "eph_lists_spinlock"}
    again = replay(bottom_up_scenario(check_order=False), r.failure.schedule)
    assert again.failure.cycle == r.failure.cycle


def test_bottom_up_evict_evicts_the_oldest_page_alone():
    from tmemref import Host
    from tmemref.guest import TmemOps
    from tmemref.host import locks
    from tmemref.sim.solutions import bottom_up_evict
    host = Host(pages=600)
    host.create_domain(1, pages=8, max_pages=64)
    g = TmemOps(host, 1)
    p = g.new_pool()
    for i in range(3):
        assert g.put_page(p, (i, 0, 0), 0, bytes([i + 1]) * 4096) == 1
    with pytest.raises(locks.LockOrderError):            # the checker sees it at once
        bottom_up_evict(host)
    assert not host.eph_lists_lock.held and locks.held_locks() == []
    locks.set_order_checking(False)                      # alone, it works
    try:
        assert bottom_up_evict(host) == 1
    finally:
        locks.set_order_checking(True)
    host.check()
    assert host.clients[1].pools[p].find((0, 0, 0)) is None and host.evicted_pgs == 1
    assert not host.eph_lists_lock.held
