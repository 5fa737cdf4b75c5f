"""tmemref.sim.locking, the chapter 7 scenarios of tmemref.sim.races and tmemref.viz.locks:
the lock hierarchy read off recorded runs, timelines, the two lock schemes, non-atomic counters,
the big lock, the cached cost table, and the pictures."""
import json
from functools import partial
from pathlib import Path

import pytest

from tmemref import Host, TmemOp, abi
from tmemref.host import locks
from tmemref.host.locks import SpinLock
from tmemref.sim import locking, races
from tmemref.sim.explore import explore, replay
from tmemref.sim.sched import Scenario, World, run

CACHE = Path(__file__).resolve().parent.parent / "book" / "_data" / "explore_k2.json"
NEW = {"put-evict": "none", "relinquish": "none", "xen-4.5": "none",
       "xen-4.5-window": "invariant", "racy-pgp-count": "lost-page"}


# --- ranks, names, live locks --------------------------------------------------------------------
def test_ranks_are_the_lock_modules_constants():
    r = locking.ranks()
    assert r == {"tmem_rwlock": locks.RANK_TMEM, "pool_rwlock": locks.RANK_POOL,
                 "obj_spinlock": locks.RANK_OBJ, "pcd_tree_rwlock": locks.RANK_PCD,
                 "heap_lock": locks.RANK_HEAP, "eph_lists_spinlock": locks.RANK_LISTS,
                 "pers_lists_spinlock": locks.RANK_LISTS, "xmem_pool lock": locks.RANK_XMEM,
                 "tmem_page_list_lock": locks.RANK_PAGE_LIST}
    assert locking.base_name("obj_spinlock[dom1 oid 3]") == "obj_spinlock"
    assert locking.base_name("xmem_pool lock#12") == "xmem_pool lock"
    assert locking.base_name("heap_lock") == "heap_lock"


def test_live_locks_count_every_lock_object_and_refuse_a_wrong_rank():
    host = Host(600, dedup=True)
    host.create_domain(1, pages=8, max_pages=64)
    p = host.do_tmem_op(1, TmemOp(cmd=abi.TMEM_NEW_POOL, flags=abi.pool_flags()))
    for oid in (1, 2, 3):
        assert host.do_tmem_op(1, TmemOp(cmd=abi.TMEM_PUT_PAGE, pool_id=p, oid=(oid, 0, 0),
                                         page=bytes([oid]) * 4096)) == 1
    live = locking.live_locks(host)
    assert live["obj_spinlock"] == (locks.RANK_OBJ, 3)
    assert live["pcd_tree_rwlock"] == (locks.RANK_PCD, 256)
    assert live["pool_rwlock"] == (locks.RANK_POOL, 1)
    assert live["xmem_pool lock"] == (locks.RANK_XMEM, 2)     # the global one and the client's
    host.clients[1].pools[p].find((2, 0, 0)).lock.rank = 9
    with pytest.raises(ValueError, match="obj_spinlock"):
        locking.live_locks(host)


# --- edges --------------------------------------------------------------------------------------
def test_the_tour_shows_the_two_ways_round_and_the_heap_lock_in_the_middle():
    edges = locking.lock_edges(locking.tour())
    kinds = {(e.held, e.taken, e.tried): e.kind for e in edges}
    assert kinds["eph_lists_spinlock", "obj_spinlock", True] == "trylock"
    assert kinds["obj_spinlock", "pool_rwlock", False] == "exception"
    assert kinds["obj_spinlock", "pool_rwlock", True] == "trylock"      # the eviction's
    assert kinds["pool_rwlock", "obj_spinlock", True] == "order"        # top-down try
    assert kinds["heap_lock", "eph_lists_spinlock", False] == "order"   # relinquish
    assert kinds["obj_spinlock", "heap_lock", False] == "order"         # tmem allocates
    assert kinds["obj_spinlock", "pcd_tree_rwlock", False] == "order"
    assert all(e.kind != "violation" for e in edges)


def _inverted():
    hi, lo = SpinLock("eph_lists_spinlock", 5), SpinLock("obj_spinlock", 2)

    def go():
        with hi, lo:
            pass
    return World((("t0", (("go", go),)),))


def test_a_blocking_acquire_against_the_order_is_a_violation_edge():
    checked = run(Scenario("inverted", _inverted))
    assert checked.failure.kind == "lock-order"
    r = run(Scenario("inverted", _inverted, check_order=False))
    assert r.failure is None
    assert locking.lock_edges([r]) == {locking.Edge("eph_lists_spinlock", "obj_spinlock",
                                                    "violation"): 1}


# --- timelines, schedules, schemes ---------------------------------------------------------------
def test_holds_and_tries_of_the_put_against_the_eviction():
    scenario = races.SCENARIOS["put-evict"]
    schedule, r = locking.preempt_at(
        scenario, lambda r: any(who == "evictor" for _, who, _ in locking.tries(r)))
    assert replay("put-evict", schedule).trace == r.trace
    hs = locking.holds(r)
    (i, who, lock), = locking.tries(r)
    assert (who, lock) == ("evictor", "obj_spinlock[dom1 oid 1]")
    put_obj = next(h for h in hs if h.thread == "dom1" and h.lock == lock)
    assert put_obj.start < i < put_obj.end and put_obj.mode == "W"
    assert next(h for h in hs if h.lock == "tmem_rwlock").mode == "R"
    for h in hs:                                         # every hold ends with a release
        assert r.trace[h.end][2] in ("release", "read_unlock", "write_unlock")
    with pytest.raises(ValueError):
        locking.preempt_at(scenario, lambda r: False, limit=3)


def test_an_open_hold_ends_with_the_trace():
    lock = SpinLock("x", 1)
    r = run(Scenario("leak", lambda: World((("t0", (("grab", lambda: lock.acquire()),)),))))
    assert r.failure.kind == "leak"
    (h,) = locking.holds(r)
    assert h.end == len(r.trace)


def test_the_two_lock_schemes_of_one_put():
    ops = {}
    for scheme in ("doc", "xen-4.5"):
        r = run(Scenario(scheme, partial(races.pool_lookup_world, False, scheme)))
        ops[scheme] = [op for op, what, _ in locking.lock_ops(r, "vcpu0")
                       if what == "tmem_rwlock"]
    assert ops["doc"] == ["read_lock", "read_unlock"]
    assert ops["xen-4.5"] == ["write_lock", "write_unlock", "read_lock", "read_unlock"]


# --- the new scenarios -------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(NEW))
def test_new_scenario_verdicts_both_ways_and_replay(name):
    for reduce in (True, False):
        r = explore(name, 1, reduce=reduce, workers=1)
        assert r.verdict == NEW[name], r.failure
    if r.failure is not None:
        again = replay(name, r.failure.schedule)
        assert again.failure.message == r.failure.message


def test_the_naive_evictor_releases_its_locks_when_nothing_goes_wrong():
    r = explore("naive-evict", 0, workers=1)
    assert r.verdict == "none" and r.schedules == 2


def test_the_window_is_the_lost_pool_and_the_real_45_scheme_closes_it():
    f = explore("xen-4.5-window", 1, workers=1).failure
    assert "global obj/pgp/node/page counts 1/1/0/1 but the structures hold 0/0/0/0" in f.message


# --- counters ------------------------------------------------------------------------------------
class _Box:
    def __init__(self):
        self.n = 0


def test_make_racy_reads_yield_and_increments_drift():
    def build():
        box = _Box()
        races.make_racy(box, "n")

        def inc():
            box.n += 1

        def final(results):
            if box.n != 2:
                raise races.Finding("drift", f"n is {box.n}")
        return World((("t0", (("inc", inc),)), ("t1", (("inc", inc),))), final=final)
    r = explore(Scenario("box", build), 1, workers=1)
    assert r.verdict == "drift" and r.failure.message == "n is 1"
    box = _Box()
    races.make_racy(box, "n")
    box.n += 5                                            # no scheduler: a plain counter
    assert box.n == 5 and type(box).__name__ == "Racy_Box"


def test_make_racy_refuses_what_is_not_a_plain_attribute():
    class P:
        @property
        def n(self):
            return 1
    with pytest.raises(TypeError):
        races.make_racy(P(), "n")


def test_which_counters_must_be_atomic():
    got = {c: explore(Scenario(c, partial(races.counters_world, c)), 1, workers=1).verdict
           for c in races.RACY}
    assert got == {"pool.pgp_count": "lost-page", "host.global_pgp_count": "drift",
                   "mem.freeable_page_count": "drift", "client.eph_count": "none"}


def test_the_census_counts_every_completed_schedule():
    r = explore(Scenario("census", partial(races.counters_world, census=True)), 1, workers=1)
    assert sum(r.kinds.values()) == r.schedules - r.pruned
    assert r.kinds["pool.puts 1, pool.good_puts 2, total_tmem_ops +2"] > 0
    assert r.kinds["pool.puts 2, pool.good_puts 2, total_tmem_ops +2"] > \
        sum(r.kinds.values()) / 2


@pytest.mark.parametrize("name", ["counters", "pool-lookup-race"])
def test_the_big_lock_hides_the_races(name):
    base = races.SCENARIOS[name]
    assert explore(base, 2, workers=1).verdict != "none"
    big = Scenario(name + " big", partial(races.big_locked, base.build))
    r = explore(big, 2, workers=1)
    assert r.verdict == "none"
    assert any(op == "acquire" and what.startswith("tmem_spinlock")
               for _, _, op, what, _ in run(big).trace)


# --- the cost table --------------------------------------------------------------------------------
def test_explore_table_reuses_results_and_checks_both_searches_agree(tmp_path):
    done = {("lock-leak", True): explore("lock-leak", 1, workers=1),
            ("lock-leak", False): explore("lock-leak", 1, reduce=False, workers=1)}
    (row,) = locking.explore_table(["lock-leak"], 1, results=done)
    assert (row["schedules"], row["cut"], row["schedules_full"]) == \
        (done["lock-leak", True].schedules, done["lock-leak", True].pruned,
         done["lock-leak", False].schedules)
    bad = dict(done)
    bad["lock-leak", False] = explore("evict", 1, reduce=False, workers=1)
    with pytest.raises(AssertionError):
        locking.explore_table(["lock-leak"], 1, results=bad)
    out = tmp_path / "t.json"
    assert locking.main([str(out), "--k", "0"]) == 0
    data = locking.load_table(out)
    assert data["command"].endswith("--k 0")
    assert [r["scenario"] for r in data["rows"]] == list(locking.TABLE_SCENARIOS)


def test_the_cached_table_agrees_with_a_fresh_search():
    data = json.loads(CACHE.read_text())
    rows = {r["scenario"]: r for r in data["rows"]}
    assert set(rows) == set(locking.TABLE_SCENARIOS) and {r["k"] for r in rows.values()} == {2}
    for name in ("pool-lookup-race", "xen-4.5-window", "put-evict"):
        (fresh,) = locking.explore_table([name], 2)
        for key in ("verdict", "schedules", "cut", "schedules_full"):
            assert fresh[key] == rows[name][key], (name, key)


# --- real threads ---------------------------------------------------------------------------------
def test_a_short_stress_run_is_clean():
    host = Host(700)
    stats = locking.stress(host, 0.5, guests=(1, 2), victims=(2,), vcpus=2, deadline=60)
    assert stats["errors"] == [] and stats["calls"] > 100
    host.check()
    assert not host.tmem_rwlock.held and not host.eph_lists_lock.held


# --- pictures -----------------------------------------------------------------------------------
def test_hierarchy_picture_draws_ranks_live_counts_and_edge_kinds():
    from tmemref.viz import locks as lockviz
    ranks = locking.ranks()
    edges = {locking.Edge("eph_lists_spinlock", "obj_spinlock", "trylock", True): 3,
             locking.Edge("obj_spinlock", "pool_rwlock", "exception"): 1,
             locking.Edge("tmem_rwlock", "pool_rwlock", "order"): 5}
    g = lockviz.hierarchy(ranks, {"obj_spinlock": (2, 7)}, edges, {"heap_lock": "note"})
    src = g.source
    assert "rank 2 · 7 in the host" in src and "note" in src
    assert "trylock ×3" in src and "obj_free ×1" in src
    assert src.count("->") == len(edges) + len(set(ranks.values())) - 1   # + the rank chain
    with pytest.raises(ValueError):
        lockviz.hierarchy(ranks, {}, {locking.Edge("nope", "obj_spinlock", "order"): 1})


def test_wait_for_and_timeline_pictures():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from tmemref.viz import locks as lockviz
    from tmemref.viz.plots import check_figure
    f = explore("naive-evict", 1, workers=1).failure
    src = lockviz.wait_for(f.cycle).source
    assert src.count("waits for") == 2 and src.count("held by") == 2
    with pytest.raises(ValueError):
        lockviz.wait_for(())
    _, r = locking.preempt_at(races.SCENARIOS["put-evict"],
                              lambda r: bool(locking.tries(r)))
    fig = lockviz.timeline(r, locking.holds(r), locking.tries(r), title="t")
    lanes = {(h.thread, h.lock) for h in locking.holds(r)}
    lanes |= {(who, lock) for _, who, lock in locking.tries(r)}
    assert len(fig.axes[0].get_yticks()) == len(lanes) + 1           # + the "running" lane
    check_figure(fig)
    plt.close(fig)
