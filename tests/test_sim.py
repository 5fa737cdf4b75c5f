"""tmemref.sim: workload generators and experiment runners (chapter 5, Eviction).

Expected values are reasoned from the model, not read off a run:

* an infinite cache hits exactly the references to pages seen before (oracle below);
* LRU keeps nothing of a loop longer than the cache (every page is evicted just before it is
  read again) and everything of a loop that fits;
* the 1 MB guard evicts exactly when fewer than ``min_free_pages`` frames are free before a put
  (xen-tmem-facts.md 4.4), and gives up after ``evict_budget`` failed evictions;
* the quota rules (facts 4.3): a client *over* quota is evicted from its own list only. The
  documented rule calls a client over quota when its share of ephemeral pages exceeds its
  weight's share, so it cannot grow by evicting others; Xen's formula when its share is *below*
  its weight's share, so a client below its share cannot grow at all.
"""
from __future__ import annotations

import errno

import numpy as np
import pytest

from tmemref import TmemOp, abi
from tmemref.core import evict
from tmemref.sim import (Workload, evictions_per_put, hit_ratio, hit_ratio_curve, interleave,
                         lru_hits, lru_order, memory_curve, quota_truth_table,
                         locked_walk, make_bench, replay, scan, set_weight, weights_experiment,
                         zipf, zipf_probabilities)
from tmemref.sim.experiments import free_frames, held_elsewhere
from tmemref.sim.workloads import concat, swamp

GUEST = 16           # guest_pages of make_bench's default
GUARD = 256          # min_free_pages


def seen_before(w: Workload) -> np.ndarray:
    """Oracle: reference i hits in an infinite cache iff its page was referenced before."""
    seen, out = set(), np.zeros(len(w), dtype=bool)
    for i, key in enumerate(w.keys().tolist()):
        out[i] = key in seen
        seen.add(key)
    return out


# --- workloads ----------------------------------------------------------------------------------
def test_zipf_is_deterministic_per_seed():
    a, b = zipf(3000, 10, 16, 0.9, seed=5), zipf(3000, 10, 16, 0.9, seed=5)
    assert a == b
    assert a != zipf(3000, 10, 16, 0.9, seed=6)
    two = zipf(500, 4, 8, seed=1, guests=2)
    assert two == zipf(500, 4, 8, seed=1, guests=2)
    assert two.guest[:6].tolist() == [0, 1, 0, 1, 0, 1]
    assert len(two) == 1000 and two.guests == 2


def test_zipf_popularity_follows_the_law():
    n, refs = 64, 40000
    w = zipf(refs, 4, 16, alpha=1.0, seed=11)
    counts = np.sort(np.bincount(w.keys(), minlength=n))[::-1]
    p = zipf_probabilities(n, 1.0)
    assert abs(counts[0] / refs - p[0]) < 0.02          # the top page: ~21% of references
    assert counts[0] > 5 * counts[n // 2]               # heavy head, light tail
    assert np.isclose(p.sum(), 1.0) and np.all(np.diff(p) <= 0)
    flat = zipf(refs, 4, 16, alpha=0.0, seed=11)         # alpha 0: uniform
    c = np.bincount(flat.keys(), minlength=n)
    assert c.max() < 1.3 * refs / n and c.min() > 0.7 * refs / n


def test_scan_reads_every_page_in_order_and_loops():
    w = scan(25, n_files=3, pages_per_file=4)
    pos = (w.file * 4 + w.page).tolist()
    assert pos == [i % 12 for i in range(25)]
    two = scan(5, 2, 2, guests=2)
    assert two.guest.tolist() == [0, 1] * 5
    assert two.distinct_pages() == 8 and two.distinct_pages(0) == 4


def test_interleave_and_concat():
    a, b = scan(4, 1, 4), Workload("b", [1, 1], [0, 0], [0, 1], guests=2, pages_per_file=4)
    m = interleave([a, b], rates=[2, 1])
    assert m.guest.tolist() == [0, 0, 1, 0, 0, 1]
    assert m.page.tolist() == [0, 1, 0, 2, 3, 1]
    c = concat([b, a])
    assert c.guest.tolist() == [1, 1, 0, 0, 0, 0] and c.guests == 2
    with pytest.raises(ValueError):
        interleave([a, b], rates=[0, 1])
    with pytest.raises(ValueError):
        interleave([a, scan(2, 1, 5)])             # different pages_per_file


def test_workload_rejects_bad_references():
    with pytest.raises(ValueError):
        Workload("x", [0, 1], [0, 0], [0, 0], guests=1, pages_per_file=4)   # guest 1 of 1
    with pytest.raises(ValueError):
        Workload("x", [0], [0], [4], guests=1, pages_per_file=4)            # page past file
    with pytest.raises(ValueError):
        Workload("x", [0], [0, 1], [0], guests=1, pages_per_file=4)         # ragged


def test_swamp_phases():
    w = swamp(100, head_start=50, rate=3, light_files=2, heavy_files=4, pages_per_file=8)
    assert (w.guest[:50] == 0).all()                     # heavy alone first
    rest = w.guest[50:]
    assert (rest == 1).sum() == 100 and (rest == 0).sum() == 300
    assert rest[:4].tolist() == [0, 0, 0, 1]
    l = swamp(100, head_start=50, first="light", rate=3, light_files=2, heavy_files=4,
              pages_per_file=8)
    assert (l.guest[:50] == 1).all() and (l.guest == 1).sum() == 150
    assert w.distinct_pages(1) <= 16 and w.distinct_pages(0) <= 32


# --- replay and hit ratio -----------------------------------------------------------------------
def test_replay_is_deterministic_and_checks():
    w = zipf(2500, 40, 20, 0.8, seed=2, guests=2)
    runs = []
    for _ in range(2):
        bench = make_bench(700, 2)
        runs.append(replay(bench, w))
        bench.host.check()
        assert bench.host.evicted_pgs > 0                # it was under pressure
    assert np.array_equal(runs[0], runs[1])
    assert 0 < runs[0].mean() < 1


def test_hit_ratio_is_exact_when_everything_fits():
    w = zipf(3000, 8, 8, 1.0, seed=4)                    # 64 pages, host holds ~700
    bench = make_bench(1024, 1)
    hits = replay(bench, w)
    bench.host.check()
    assert bench.host.evicted_pgs == 0
    assert np.array_equal(hits, seen_before(w))          # only first references miss
    assert hit_ratio(1024, w, warmup=1000) == seen_before(w)[1000:].mean() > 0.99


def test_hit_ratio_is_zero_when_memory_is_tiny():
    # One frame short of guest memory + the 1 MB guard: the guard can never be met and there is
    # nothing to evict, so every put is refused (-ENOMEM after evict_budget failed evictions).
    w = zipf(600, 8, 8, 1.0, seed=4)
    bench = make_bench(GUEST + GUARD - 1, 1)
    hits = replay(bench, w)
    bench.host.check()
    assert not hits.any()
    assert bench.host.eph_count == 0
    assert bench.host.global_page_count == 0
    assert bench.host.evict_attempts == bench.host.evict_budget * len(w)
    assert hit_ratio(GUEST + GUARD + 8, scan(2000, 8, 16), warmup=500) == 0.0


def test_exactly_one_megabyte_free_caches_one_page():
    # With exactly 1 MB free a put is let through, and the next one must first evict it: tmem is
    # a cache of one page, which hits exactly when a page is read twice in a row.
    w = zipf(600, 8, 8, 1.0, seed=4)
    bench = make_bench(GUEST + GUARD + 2, 1)           # + the heap's reserve (274 // 128)
    hits = replay(bench, w)
    bench.host.check()
    keys = w.keys()
    assert np.array_equal(hits[1:], keys[1:] == keys[:-1]) and not hits[0]
    assert hits.any()
    assert bench.host.eph_count == 1


def test_scan_larger_than_memory_thrashes_lru():
    # ~750 frames for tmem: a 1000-page loop never hits; a 400-page loop always does.
    big = scan(4000, 50, 20)
    small = scan(2000, 20, 20)
    assert hit_ratio(1024, big, warmup=1000) == 0.0
    assert hit_ratio(1024, small, warmup=400) == 1.0
    # Zipf on the same big file set does hit: popular pages stay young
    assert hit_ratio(1024, zipf(4000, 50, 20, 1.0, seed=0), warmup=1000) > 0.5


def test_hit_ratio_grows_with_memory():
    w = zipf(3000, 40, 20, 0.8, seed=9)
    curve = hit_ratio_curve([400, 600, 800, 1100], w, warmup=1000)
    assert curve[0] < curve[-1]
    assert np.all(np.diff(curve) >= -0.01)                # LRU: more memory, no fewer hits
    assert curve[-1] == seen_before(w)[1000:].mean()      # 800 pages fit in 1100 frames


def test_shared_pool_hits_leave_the_page():
    w = zipf(1500, 8, 8, 1.0, seed=4)
    bench = make_bench(1024, 1, pool="shared")
    host = bench.host
    assert host.clients[1].pools[bench.pools[0]].shared
    hits = replay(bench, w)
    host.check()
    assert np.array_equal(hits, seen_before(w))
    pool = host.clients[1].pools[bench.pools[0]]
    assert pool.puts == (~hits).sum()                    # a hit in a shared pool puts nothing
    assert host.eph_count == w.distinct_pages()


def test_replay_detects_wrong_data():
    bench = make_bench(1024, 1)
    replay(bench, scan(4, 1, 4))
    # overwrite the stored frame of page 0 behind tmem's back
    host = bench.host
    obj = host.clients[1].pools[bench.pools[0]].find((0, 0, 0))
    host.mem.data[obj.tree.lookup(0).data][:4] = np.frombuffer(b"XXXX", np.uint8)
    from tmemref import InvariantError
    with pytest.raises(InvariantError):
        replay(bench, scan(1, 1, 4))


# --- the 1 MB guard -----------------------------------------------------------------------------
def test_guard_evicts_exactly_when_free_memory_is_short():
    r = evictions_per_put(800, 900)
    short = r["free_before"] < r["min_free_pages"]
    assert (r["rc"] == 1).all()
    assert np.array_equal(r["attempts"] > 0, short)       # evicts iff < 1 MB free before
    assert np.array_equal(r["attempts"], r["evicted"])    # nothing skipped, nothing failed
    assert short.sum() > 100 and (~short).sum() > 100     # both regimes were seen
    assert r["attempts"].max() <= 2                       # a data frame, maybe a metadata one


def test_guard_gives_up_after_the_budget():
    bench = make_bench(GUEST + GUARD + 40, 2)
    host = bench.host
    i = 0
    while free_frames(host) >= GUARD:                     # guest 1 fills one object
        rc = host.do_tmem_op(1, TmemOp(cmd=abi.TMEM_PUT_PAGE, pool_id=bench.pools[0],
                                       oid=(1, 0, 0), index=i, page=bytes(4096)))
        host.check()
        assert rc == 1
        i += 1
    obj = host.clients[1].pools[bench.pools[0]].find((1, 0, 0))
    before = host.evict_attempts
    with held_elsewhere(obj.lock):                        # another CPU is in guest 1's object
        rc = host.do_tmem_op(2, TmemOp(cmd=abi.TMEM_PUT_PAGE, pool_id=bench.pools[1],
                                       oid=(2, 0, 0), index=0, page=bytes(4096)))
    host.check()
    assert rc == -errno.ENOMEM
    assert host.evict_attempts - before == host.evict_budget
    assert host.eph_count == i                            # nothing was evicted


@pytest.mark.parametrize("n", [32, 100])
def test_locked_walk_is_linear_in_the_object(n):
    stuck = locked_walk(n, 0)
    assert stuck == {"visits": 10 * n, "attempts": 10, "evicted": 0, "victim": None,
                     "skips": {evict.SKIP_OBJ_BUSY: 10 * n}}
    past = locked_walk(n, 3)
    assert past["visits"] == n + 1 and past["evicted"] == 1
    assert past["victim"] == "d2:p0:(2,0,0)[0]"            # guest 2's oldest page
    guarded = locked_walk(n, 0, guard_first=True)
    assert guarded["visits"] == 1 and guarded["victim"] == "d1:p0:(1,0,0)[0]"


# --- weights ------------------------------------------------------------------------------------
def test_set_weight_reaches_the_client():
    bench = make_bench(1024, 2, weights=[1, 3])
    host = bench.host
    assert [host.clients[d].weight for d in (1, 2)] == [1, 3]
    assert host.client_weight_total == 4
    assert set_weight(host, 7, 1) == -1                   # no such client
    host.check()


def test_equal_load_without_weights_splits_evenly():
    r = weights_experiment((0, 0), "doc", n_refs=2500, samples=20)
    assert abs(r["final_share"][0] - 0.5) < 0.08
    assert r["resident"].shape == (20, 2) and r["hit_ratio"].shape == (20, 2)
    assert np.all(np.diff(r["t"]) > 0)


SWAMP = dict(n_refs=800, head_start=1500, rate=3, light_files=24, heavy_files=96)


def _light_share(first, weights, rule):
    w = swamp(first=first, **SWAMP)
    return weights_experiment(weights, rule, workload=w, samples=20)["final_share"][1]


def test_doc_rule_protects_the_light_guest_that_was_first():
    # The heavy guest (weight 1) is over its quarter as soon as it has a few pages, so under the
    # documented rule its puts evict only its own pages: it cannot eat the light guest's cache.
    # Xen's formula instead calls the light guest (weight 3, under three quarters) over quota.
    none = _light_share("light", (0, 0), "doc")
    doc = _light_share("light", (1, 3), "doc")
    xen = _light_share("light", (1, 3), "xen")
    assert doc > none + 0.1
    assert xen < none + 0.03


def test_xen_rule_locks_out_the_light_guest_that_came_late():
    # Tmem is full of the heavy guest's pages when the light guest starts. Under Xen's formula
    # the light guest (below its share) evicts only its own pages, so it can never grow.
    none = _light_share("heavy", (0, 0), "doc")
    doc = _light_share("heavy", (1, 3), "doc")
    xen = _light_share("heavy", (1, 3), "xen")
    assert xen < 0.1 and xen < none - 0.1
    assert doc > none - 0.03


def test_weights_experiment_is_deterministic():
    w = swamp(300, head_start=600, rate=2)
    a = weights_experiment((1, 3), "xen", workload=w, samples=10)
    b = weights_experiment((1, 3), "xen", workload=w, samples=10)
    assert np.array_equal(a["resident"], b["resident"])
    assert np.array_equal(a["hit_ratio"], b["hit_ratio"], equal_nan=True)
    assert a["weight_share"].tolist() == [0.25, 0.75]


# --- oracles and helpers ------------------------------------------------------------------------
def test_tmem_under_pressure_is_lru_of_its_capacity():
    # One guest, no locks held, no weights: each eviction takes the oldest page, so tmem should
    # hit exactly where a textbook LRU cache of the same size does (up to the few references
    # where metadata frames change how many pages fit).
    w = zipf(3000, 40, 20, 0.9, seed=1)
    r = memory_curve([500, 900], w, warmup=1000)
    assert np.all(r["agree"] > 0.99)
    assert np.all(np.abs(r["hit_ratio"] - r["lru"]) < 0.01)
    assert r["capacity"][0] < r["capacity"][1] < 800     # neither holds the whole file set
    assert r["infinite"] == seen_before(w)[1000:].mean()
    assert np.array_equal(lru_hits(w, float("inf")), seen_before(w))


def test_lru_order_follows_puts_and_gets():
    bench = make_bench(1024, 2, pool="shared")
    host = bench.host

    def op(d, cmd, i):
        buf = bytearray(4096) if cmd == abi.TMEM_GET_PAGE else bytes(4096)
        rc = host.do_tmem_op(d, TmemOp(cmd=cmd, pool_id=bench.pools[d - 1], oid=(d, 0, 0),
                                       index=i, page=buf))
        host.check()
        return rc

    for d, i in ((1, 0), (2, 0), (1, 1)):
        assert op(d, abi.TMEM_PUT_PAGE, i) == 1
    assert lru_order(host) == ["d1:p0:(1,0,0)[0]", "d2:p0:(2,0,0)[0]", "d1:p0:(1,0,0)[1]"]
    assert op(1, abi.TMEM_GET_PAGE, 0) == 1               # shared get: to the young end
    assert lru_order(host) == ["d2:p0:(2,0,0)[0]", "d1:p0:(1,0,0)[1]", "d1:p0:(1,0,0)[0]"]
    assert lru_order(host, 1) == ["d1:p0:(1,0,0)[1]", "d1:p0:(1,0,0)[0]"]
    assert op(2, abi.TMEM_PUT_PAGE, 0) == 1               # duplicate put: stays where it is
    assert lru_order(host)[0] == "d2:p0:(2,0,0)[0]"


def test_quota_truth_table_matches_both_formulas():
    # (c, g, w, T) -> (documented: c/g > w/T, Xen: g*100//c > T*100//w), worked by hand
    cases = {
        (10, 100, 1, 4): (False, True),    # 10% held, 25% due: Xen calls it over quota
        (50, 100, 1, 4): (True, False),    # 50% held, 25% due: the doc does
        (25, 100, 1, 4): (False, False),   # exactly its share: neither
        (0, 100, 1, 4): (False, False),    # holds nothing
        (50, 100, 0, 4): (False, False),   # no weight
        (76, 100, 3, 4): (True, False),    # 76% > 75%
        (299, 400, 3, 4): (False, False),  # 74.75% < 75%, yet 40000//299 = 133 > 133 is false
        (149, 200, 3, 4): (False, True),   # 74.5%: 134 > 133
    }
    table = quota_truth_table(list(cases))
    assert [(r["doc"], r["xen"]) for r in table] == list(cases.values())
    assert table[0]["share"] == 0.1 and table[0]["weight_share"] == 0.25
