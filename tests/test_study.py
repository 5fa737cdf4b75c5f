"""The workload study (tmemref.sim.study), its real traces (tmemref.sim.traces), the other open
questions (tmemref.sim.questions) and the segmented-LRU solution: the model against oracles and
against the engine, the sweep through every kind of executor, the cache and its check."""
from __future__ import annotations

import json
import shutil
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from tmemref.errors import InvariantError
from tmemref.sim import lru_hits, scan, zipf
from tmemref.sim import questions as Q
from tmemref.sim import study as S
from tmemref.sim import traces as T
from tmemref.sim.solutions import SlruPolicy, policy_hits
from tmemref.sim.workloads import Workload


def wl(refs, guests=None, ppf=16, name="hand"):
    """A workload from (file, page) pairs (guest 0) or (guest, file, page) triples."""
    refs = [r if len(r) == 3 else (0, *r) for r in refs]
    g, f, p = (np.array(c) for c in zip(*refs))
    return Workload(name, g, f, p, guests or int(g.max()) + 1, ppf)


def served(case, var, capacity, guest_cache=0):
    return S.simulate(case, var, capacity, guest_cache).served.tolist()


D, G, H, R = S.DISK, S.GUEST, S.TMEM, S.REMOTE


# --- the model against oracles -------------------------------------------------------------------
@pytest.mark.parametrize("name", ["lru", "fifo", "lip"])
@pytest.mark.parametrize("capacity", [50, 300])
def test_list_policies_match_the_chapter_5_oracle(name, capacity):
    w = zipf(3000, 40, 20, 0.9, seed=3)
    run = S.simulate(S.Case("z", w), S.Variant(name, policy=name), capacity)
    assert np.array_equal(run.served != D, policy_hits(w, capacity, name))
    if name == "lru":
        assert np.array_equal(run.served != D, lru_hits(w, capacity))


def belady(keys, capacity):
    """Textbook MIN, O(n * capacity): evict the page used furthest in the future."""
    hits, cache = [], set()
    for i, k in enumerate(keys):
        if k in cache:
            hits.append(True)
            continue
        hits.append(False)
        if len(cache) >= capacity:
            def nxt(x):
                return next((j for j in range(i + 1, len(keys)) if keys[j] == x), len(keys) + 1)
            cache.remove(max(sorted(cache), key=nxt))
        cache.add(k)
    return hits


@pytest.mark.parametrize("capacity", [3, 10])
def test_opt_is_belady_and_beats_every_policy(capacity):
    w = zipf(400, 4, 8, 0.7, seed=5)
    run = S.simulate(S.Case("z", w), S.variant("opt"), capacity)
    assert (run.served != D).sum() == sum(belady(w.keys().tolist(), capacity))
    case = S.make_case("zipf + loop, 2 guests")
    for gc in (0, 64):
        best = S.simulate(case, S.variant("opt"), 300, gc).hit_ratio()
        for v in ("lru", "fifo", "lip", "random", "shared"):
            assert best >= S.simulate(case, S.variant(v), 300, gc).hit_ratio()


def test_random_is_seeded():
    case = S.make_case("loop 1500")
    a, b = (S.simulate(case, S.variant("random"), 500, seed=s).served for s in (1, 1))
    c = S.simulate(case, S.variant("random"), 500, seed=2).served
    assert np.array_equal(a, b) and not np.array_equal(a, c)


# --- what each variant changes, by hand ----------------------------------------------------------
def test_private_gets_are_exclusive_and_shared_gets_inclusive():
    # a guest cache of 1 page and room for 2 in tmem, a loop over 3 pages: A B C A B C
    case = S.Case("h", wl([(1, 0), (1, 1), (1, 2)] * 2))
    # private: a hit takes the page out of tmem, so guest cache + tmem hold 3 pages: all hit
    assert served(case, S.variant("lru"), 2, 1) == [D, D, D, H, H, H]
    # shared: the page the guest holds stays in tmem too, so the loop does not fit
    assert served(case, S.variant("shared"), 2, 1) == [D, D, D, H, D, H]


def test_shared_pool_serves_one_copy_to_every_guest_with_same_files():
    refs = [(0, 1, 0), (1, 1, 0), (1, 1, 1), (0, 1, 1)]
    one = S.Case("h", wl(refs), same_files=True)
    own = S.Case("h", wl(refs))
    assert served(one, S.variant("shared"), 4) == [D, H, D, H]
    assert served(own, S.variant("shared"), 4) == [D, D, D, D]
    assert served(one, S.variant("lru"), 4) == [D, D, D, D]     # private pools: two copies


def test_duplicate_put_moves_nothing_in_a_shared_pool():
    # guest cache of 1: A B (A -> tmem) A (hit; A stays) C (A is put again: a duplicate put,
    # no move, so A is still the oldest) D (B,A... room for 2: evicts the oldest)
    refs = [(1, 0), (1, 1), (1, 0), (1, 2), (1, 3), (1, 0)]
    case = S.Case("h", wl(refs))
    run = S.simulate(case, S.variant("shared"), 2, 1)
    assert run.served.tolist() == [D, D, H, D, D, D]
    assert run.evictions == 2


def test_dedup_counts_frames_by_content_and_second_chance_sends_shared_pages_back():
    refs = [(1, 0), (2, 0), (3, 0), (1, 0), (2, 0)]
    case = S.Case("h", wl(refs), [7, 7, 8, 7, 7])  # pages 1:0 and 2:0 hold the same bytes
    assert served(case, S.variant("lru"), 2) == [D, D, D, D, D]
    assert served(case, S.variant("dedup"), 2) == [D, D, D, H, H]
    with pytest.raises(ValueError):
        S.Case("h", wl(refs), [7, 7, 8, 9, 7])          # page 1:0 with two contents
    # 1:0 and 2:0 share a frame, 3:0 has the other; 4:0 needs one. Plain dedup evicts 1:0
    # (no frame freed) then 2:0; the second chance sends both back and takes 3:0.
    case = S.Case("h", wl(refs[:3] + [(4, 0)] + refs[3:]), [7, 7, 8, 9, 7, 7])
    plain = S.simulate(case, S.variant("dedup"), 2)
    second = S.simulate(case, S.variant("dedup-2nd"), 2)
    assert plain.served.tolist() == [D, D, D, D, D, D] and plain.second_chances == 0
    assert second.served.tolist() == [D, D, D, D, H, H] and second.second_chances == 2


def test_trylock_skips_pages_of_busy_objects_and_a_put_fails_when_all_are_busy():
    one_file = S.Case("h", wl([(1, p) for p in range(6)] * 2))
    run = S.simulate(one_file, S.Variant("b", busy=1), 3)
    assert run.failed_puts == 6 and run.evictions == 0         # the file's own pages: locked
    assert S.simulate(one_file, S.variant("lru"), 3).failed_puts == 0
    # two files: the walk skips the busy file's older page and takes the other file's page
    case = S.Case("h", wl([(1, 0), (2, 0), (1, 1), (3, 0), (1, 0)]))
    assert served(case, S.Variant("b", busy=1), 3) == [D, D, D, D, H]
    assert served(case, S.variant("lru"), 3) == [D, D, D, D, D]


def test_caps_hold_and_weights_match_the_engine():
    r = Q.cap_vs_weights("heavy", capacity=400)
    heavy = r["cap: heavy guest at most 25 %"]["resident"][:, 0]
    assert heavy.max() <= 0.25 * 400
    assert r["cap: heavy guest at most 50 %"]["share"][1] > r["no weights, no cap"]["share"][1]
    agree = Q.weights_model_vs_engine("light", samples=20)
    capacity = agree.pop("capacity")
    assert 600 < capacity < 1024 and len(agree) == 3
    for label, (engine, model) in agree.items():
        assert abs(engine - model) < 0.01, label


def test_numa_placement():
    # guest 1 (node 1) fills node 1, then node 0; guest 0 takes node 0's last frame; then a
    # put by guest 0 reuses the frame just freed, last in first out: node 1's
    refs = [(1, 2, 0), (1, 2, 1), (1, 2, 2), (0, 1, 0), (1, 2, 2), (0, 1, 0), (0, 1, 1),
            (0, 1, 1)]
    case = S.Case("h", wl(refs))
    assert served(case, S.Variant("n", numa="oblivious"), 4) == [D, D, D, D, R, H, D, R]
    assert served(case, S.Variant("n", numa="node-local"), 4) == [D, D, D, D, H, H, D, H]
    r = Q.numa_study("balanced", 600)
    assert r["node-local"]["all_remote"] == 0 and r["oblivious"]["all_remote"] > 0


@pytest.mark.parametrize("bad", [
    lambda: S.simulate(S.make_case("loop 600"), S.variant("lru"), 0),
    lambda: S.simulate(S.make_case("loop 600"), S.variant("lru"), 10, -1),
    lambda: S.variant("nope"), lambda: S.make_case("nope"),
    lambda: S.Variant("x", pool="public"), lambda: S.Variant("x", dedup="yes"),
    lambda: S.Variant("x", busy=-1), lambda: S.Variant("x", policy="clock"),
    lambda: S.Variant("x", numa="far"), lambda: S.Variant("x", quota_rule="mine"),
    lambda: S.Variant("x", weights=(1, 1), caps=(1, 1)),
    lambda: S.simulate(S.make_case("loop 600"), S.Variant("x", weights=(1, 2)), 10),
    lambda: S.RandomPolicy(10, owners=True), lambda: S.OptPolicy(10, owners=True),
    lambda: S.simulate(S.make_case("loop 600"), S.Variant("x", policy="opt", busy=1), 10),
    lambda: S.engine_agreement(S.make_case("loop 600"), S.variant("trylock"), 600),
    lambda: Q.numa_study("sideways"), lambda: Q.heap_limited_capacity(1, 0),
    lambda: Q.metadata_per_page(0),
])
def test_bad_input_is_refused(bad):
    with pytest.raises(ValueError):
        bad()


def test_broken_invariants_are_reported():
    case = S.make_case("trace: copyrights")
    object.__setattr__(case, "content", case.content[:-1])
    with pytest.raises(InvariantError, match="invariant 1"):
        case.check()
    case = S.make_case("trace: copyrights")
    case.content[0] += 1
    with pytest.raises(InvariantError, match="invariant 2"):
        case.check()
    t = T.load(S.DATA / S.TRACES_FILE)["sqlite"]
    t.check()
    for field, value, n in (("page", t.page[:-1], 1), ("file", t.file + len(t.paths), 2)):
        bad = T.load(S.DATA / S.TRACES_FILE)["sqlite"]
        object.__setattr__(bad, field, value)
        with pytest.raises(InvariantError, match=f"invariant {n}"):
            bad.check()
    bad = T.load(S.DATA / S.TRACES_FILE)["sqlite"]
    bad.content[0] = bad.content.max() + 1
    with pytest.raises(InvariantError, match="invariant 3"):
        bad.check()


# --- the model against the engine ----------------------------------------------------------------
@pytest.mark.parametrize("case,var,gc", [("zipf a=1", "lru", 0), ("zipf a=1", "lru", 64),
                                         ("same files, 2 guests", "shared", 64),
                                         ("same files, 2 guests", "dedup-2nd", 0),
                                         ("trace: copyrights", "dedup-2nd", 0)])
def test_the_model_agrees_with_the_engine(case, var, gc):
    r = S.engine_agreement(S.make_case(case), S.variant(var), 700, gc, limit=3000)
    assert r["agree"] >= 0.99 and abs(r["engine"] - r["model"]) < 0.01
    if var == "dedup-2nd":
        assert r["second_chances"] > 0


# --- traces ---------------------------------------------------------------------------------------
def test_parse_strace_follows_offsets_dups_and_relative_paths(tmp_path):
    a = tmp_path / "a"
    a.write_bytes(b"x" * 9000)
    lines = [f'9 openat(AT_FDCWD, "{tmp_path}", O_RDONLY|O_DIRECTORY) = 3',
             '9 fcntl(3, F_DUPFD_CLOEXEC, 3) = 4',
             '9 openat(4, "a", O_RDONLY) = 5',
             '9 read(5, ""..., 4000) = 4000', '9 read(5, ""..., 4000) = 4000',
             '9 lseek(5, 100, SEEK_SET) = 100', '9 read(5, ""..., 10) = 10',
             '9 pread64(5, ""..., 4096, 8192) = 808', '9 dup(5) = 6',
             '9 read(6, ""..., 10) = 10', '9 read(5, ""..., 10) = -1 EINTR',
             '9 close(5) = 0', '9 read(5, ""..., 10) = 10',
             '9 openat(AT_FDCWD, "/nonexistent", O_RDONLY) = -1 ENOENT']
    reads = T.parse_strace(lines)
    path = str(a)
    assert reads == [(path, 0, 4000), (path, 4000, 4000), (path, 100, 10), (path, 8192, 808),
                     (path, 110, 10)]
    assert list(T.pages_of(reads)) == [(path, 0), (path, 1), (path, 0), (path, 2), (path, 0)]


def test_traces_round_trip_and_recording_is_deterministic(tmp_path):
    if shutil.which("strace") is None:
        pytest.fail("strace is needed to record traces (scripts/bootstrap --test installs it)")
    first, again = T.record("copyrights"), T.record("copyrights")
    assert np.array_equal(first.content, again.content) and first.paths == again.paths
    assert len(np.unique(first.content)) < len(np.unique(first.file * 10**6 + first.page))
    T.save(tmp_path / "t.npz", [first])
    back = T.load(tmp_path / "t.npz")["copyrights"]
    assert np.array_equal(back.file, first.file) and np.array_equal(back.page, first.page)
    assert back.paths == first.paths
    with pytest.raises(ValueError):
        T.record("vim")


def test_the_committed_traces():
    traces = T.load(S.DATA / S.TRACES_FILE)
    assert sorted(traces) == sorted(T.PROGRAMS)
    for t in traces.values():
        t.check()
        assert len(t) > 2000
    cr = traces["copyrights"]
    assert len(np.unique(cr.content)) < 0.5 * len(np.unique(cr.file * 10**6 + cr.page))


# --- the sweep and its cache ---------------------------------------------------------------------
TINY = S.Grid(cases=("loop 600", "trace: sqlite"), variants=("lru", "tmem", "opt"),
              capacities=(300,), guest_caches=(0, 32))


def test_the_sweep_gives_the_same_rows_through_every_executor():
    from distributed import Client, LocalCluster
    inline = S.sweep(TINY, workers=1)
    assert len(inline.rows) == TINY.size() == 12
    with ProcessPoolExecutor(2) as pool:
        assert S.sweep(TINY, executor=pool).rows == inline.rows
    with LocalCluster(processes=False, n_workers=2, threads_per_worker=1,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        assert S.sweep(TINY, executor=client.get_executor()).rows == inline.rows
    assert inline.value("loop 600", "lru", 300) == 0.0
    assert inline.value("loop 600", "opt", 300) > 0.4


def test_progress_bar_only_on_a_terminal(capsys, monkeypatch):
    grid = S.Grid(cases=("loop 600",), variants=("lru",), capacities=(300,), guest_caches=(0,))
    S.sweep(grid, workers=1)
    assert capsys.readouterr().err == ""
    monkeypatch.setenv("TMEMREF_PROGRESS", "1")
    S.sweep(S.Grid(cases=("loop 600",), variants=("lru",), capacities=(300, 400),
                   guest_caches=(0,)), workers=1)
    assert "workload study" in capsys.readouterr().err


def test_the_cached_study_agrees_with_the_code():
    rows = S.check_cache(3)
    assert len(rows) >= 2 * len(S.GRID.variants)
    study = S.load()
    assert study.grid == S.GRID and len(study.rows) == S.GRID.size()
    assert study.meta["command"] == "python -m tmemref.sim.study"


@pytest.fixture
def data_copy(tmp_path):
    for name in (S.STUDY_FILE, S.TRACES_FILE):
        shutil.copy(S.DATA / name, tmp_path / name)
    return tmp_path


def _edit(path: Path, change):
    doc = json.loads(path.read_text())
    change(doc)
    path.write_text(json.dumps(doc))


@pytest.mark.parametrize("change,match", [
    (lambda d: d["rows"][S.tasks().index(next(t for t in S.tasks()
                                              if t[0] == "trace: copyrights"))
                        * len(S.GRID.variants)].__setitem__(4, 0.123), "differs"),
    (lambda d: d["grid"].__setitem__("capacities", [1, 2]), "another grid"),
    (lambda d: d.__setitem__("model_version", -1), "model version"),
    (lambda d: d.__setitem__("traces_sha256", "0" * 64), "traces changed"),
    (lambda d: d["rows"].pop(), "rows"),
])
def test_a_stale_or_wrong_cache_is_caught(data_copy, change, match):
    _edit(data_copy / S.STUDY_FILE, change)
    with pytest.raises(InvariantError, match=match):
        S.check_cache(1, data=data_copy)


def test_save_load_and_the_command_line(data_copy, capsys):
    study = S.sweep(TINY, workers=1, data=data_copy)
    back = S.load(S.save(study, data_copy / "x.json", data=data_copy))
    assert back.rows == study.rows and back.grid == TINY
    assert back.table(300, 32)["trace: sqlite"]["opt"] == study.value("trace: sqlite", "opt",
                                                                      300, 32)
    assert S.main(["--check", "1", "--data", str(data_copy)]) == 0
    assert "all agree" in capsys.readouterr().out


# --- the other questions -------------------------------------------------------------------------
def test_billing_schemes():
    creator = Q.doc_billing_scenario("creator pays")
    assert creator["B stored X"] and creator["B billed after"] > creator["B max"]
    for scheme in ("split evenly", "each pays in full"):
        r = Q.doc_billing_scenario(scheme)
        assert not r["B stored X"] and r["B billed after"] <= r["B max"]
    runs = Q.persistent_dedup_billing()
    assert runs["each pays in full"]["overdrafts"] == 0
    assert runs["creator pays"]["overdrafts"] > 0 and runs["split evenly"]["overdrafts"] > 0
    full = runs["each pays in full"]
    assert full["frames"] < full["bills"]                       # the host still saves frames


def test_premise_infra_and_32_bit():
    p = Q.persistent_dedup_premise()
    assert p["ephemeral"] == {"pcds": 1, "deduped_puts": 1}
    assert p["persistent"] == {"pcds": 0, "deduped_puts": 0}
    infra = Q.pcd_infra_bytes(300, 100)
    assert infra["pcds"] == 100 and infra["deduped_puts"] == 200
    assert 72 + 16 <= infra["per_content"] <= 72 + 16 + 16        # a pcd, a header, rounding
    meta = Q.metadata_per_page(1024)
    assert 72 < meta["bytes"] < 4096 * meta["frames"] + 1
    assert Q.heap_limited_capacity(Q.X86_32_DIRECTMAP_BYTES, 96) == {"pages": 131072,
                                                                     "gib": 0.5}
    assert Q.X86_64_TMEM_RAM_LIMIT == 5 * 2**40


# --- the exercise's solution ---------------------------------------------------------------------
def test_segmented_lru():
    p = SlruPolicy(5)
    for k in range(5):
        p.insert(k, 0)
    p.touch(0)                                 # 0 is protected; 1 is the oldest on probation
    assert p.evict() == 1 and len(p) == 4
    for k in (2, 3, 4):
        p.touch(k)                             # protected holds at most 4: 0 drops back
    p.insert(9, 0)
    p.touch(9)
    assert list(p.probation) == [0] and p.evict() == 0
    p.remove(9)
    assert 9 not in p.protected
    case = S.make_case("zipf + one-pass scan")
    slru = S.simulate(case, S.Variant("slru", policy=SlruPolicy), 1000).hit_ratio(4000)
    assert slru > S.simulate(case, S.variant("lru"), 1000).hit_ratio(4000) + 0.03
    assert slru > S.simulate(case, S.variant("lip"), 1000).hit_ratio(4000) + 0.03
    with pytest.raises(ValueError):
        SlruPolicy(5, owners=True)
