"""The deduplication chapter's package code: tmemref.sim.dedup (experiments, the independent
count, the second-chance scene, the probe, the persistent-billing model) and tmemref.viz.dedup
(pictures of the pcd layer)."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from tmemref import Host, InvariantError
from tmemref.core import pcd as pcd_mod
from tmemref.core.pcd import content_key, tze_size
from tmemref.sim import dedup as D
from tmemref.viz import dedup as V
from tmemref.viz import web

from test_dedup import xen_page_cmp

PAGE = 4096


def sample_pages():
    """Synthetic pages with every case: duplicates, zero pages, short and long tails."""
    pages = [D.content_page(t) for t in "ABCA"] + [bytes(PAGE), bytes(PAGE)]
    pages += [D.tail_page(n) for n in (1, 100, 100, 4032, 4033, 4090)]
    pages += [bytes([7]) * PAGE, D.content_page("B")]
    return pages


# --- the independent count against the engine ---------------------------------------------------
@pytest.mark.parametrize("kw", [dict(dedup=True), dict(dedup=True, tze=True),
                                dict(dedup=True, tze=True, tze_match="xen")], ids=str)
def test_the_independent_count_predicts_the_host(kw):
    pages = sample_pages()
    run = D.put_pages(pages, 3, **kw)
    for g, after in enumerate(run.after, start=1):
        want = D.independent_count(pages, g, tze=kw.get("tze", False),
                                   tze_match=kw.get("tze_match", "doc"))
        assert {k: after[k] for k in want} == want
    assert run.after[-1]["Ep"] == 3 * len(pages)


def test_the_count_is_not_trivially_equal_across_modes():
    pages = sample_pages()
    doc = D.independent_count(pages, 2, tze=True)
    xen = D.independent_count(pages, 2, tze=True, tze_match="xen")
    plain = D.independent_count(pages, 2)
    assert xen["Sc"] > doc["Sc"] == plain["Sc"] and doc["Zt"] < plain["Sc"] * PAGE
    assert plain["Zt"] == 0 and doc["Fc"] < plain["Fc"]


def test_without_dedup_every_put_takes_a_frame():
    pages = sample_pages()
    run = D.put_pages(pages, 2)
    assert run.after[-1]["Fc"] == 2 * len(pages) and run.after[-1]["Sc"] == 0
    assert run.after[-1]["frames"] > run.after[-1]["Fc"]       # and some metadata
    with pytest.raises(ValueError):
        D.put_pages(pages, 0)


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=0, max_size=64), st.integers(0, PAGE))
def test_kept_size_is_tze_written_another_way(head, at):
    page = bytearray(PAGE)
    at = min(at, PAGE - len(head))
    page[at:at + len(head)] = head
    size = tze_size(bytes(page))
    assert D.kept_size(page) == (PAGE if size > pcd_mod.PCD_TZE_MAX_SIZE else size)


def test_tze_kept_reads_the_engine():
    lengths = [0, 1, 8, 9, 4031, 4032, 4033, 4096]
    assert D.tze_kept(lengths).tolist() == [0, 8, 8, 16, 4032, 4032, 4096, 4096]
    with pytest.raises(ValueError):
        D.tze_kept([4097])


def test_real_pages_are_a_fixed_sample():
    a, b = D.real_pages(40), D.real_pages(40)
    assert a == b and len(a) == 40 and all(len(p) == PAGE for p in a)
    with pytest.raises(ValueError):
        D.real_pages(0)


# --- the key order --------------------------------------------------------------------------------
words = st.lists(st.sampled_from([0, 1, 0x80, 0xFF, 2**56, 2**63, 2**64 - 1]), min_size=2,
                 max_size=2).map(lambda ws: b"".join(w.to_bytes(8, "little") for w in ws))


@settings(max_examples=200, deadline=None)
@given(st.lists(words, min_size=2, max_size=5, unique=True))
def test_key_order_is_xens_word_order_and_memcmps_byte_order(contents):
    ranks = D.key_order(contents)
    for i, a in enumerate(contents):
        for j, b in enumerate(contents):
            if i != j:
                assert (ranks[i][0] < ranks[j][0]) == (xen_page_cmp(a, b) < 0)
                assert (ranks[i][1] < ranks[j][1]) == (a < b)


# --- the named cases and the second chance ------------------------------------------------------
def test_the_cases_scene_shows_every_put_case():
    host, steps = D.cases_scene()
    rows = D.run_traced(host, steps)
    assert [r[2] for r in rows] == [["NEW_PCD"], ["MATCH"], ["TZE_SHRINK", "NEW_PCD"],
                                    ["ZERO_PAGE", "NEW_PCD"], [], ["LAST_USER"]]
    assert [r[1] for r in rows] == [1] * 6 and rows[-1][3] == 2


def test_case_names_cover_both_modules():
    assert D.CASE_NAMES["second chance"] == "SECOND_CHANCE"
    assert set(D.CASE_NAMES.values()) >= {"MATCH", "NEW_PCD", "TZE_SHRINK", "ZERO_PAGE",
                                         "LAST_USER", "SKIP_DYING", "SKIP_OBJ_BUSY"}


def test_the_second_chance_scene_step_by_step():
    host, steps = D.second_chance_scene()
    assert "pgps on its pcd: 2" in D.lru_text(host).splitlines()[0]
    got = [fn(host) for _, fn in steps]
    host.check()
    assert [e.victim for e in got] == ["d1:p0:(1,0,0)[1]", "d1:p0:(1,0,0)[2]",
                                       "d2:p0:(2,0,0)[1]", "d1:p0:(1,0,0)[0]",
                                       "d2:p0:(2,0,0)[0]"]
    assert [len(e.skipped) for e in got] == [1, 1, 0, 0, 0]
    assert [e.pcd_freed for e in got] == [True, True, True, False, True]
    assert repr(got[0]).startswith("SECOND_CHANCE d1:p0:(1,0,0)[0]; evicted")
    nothing = D.evict_once(host)
    assert nothing.victim is None and "nothing evicted" in repr(nothing)
    assert D.lru_text(host) == "(empty)"


def test_the_lru_text_marks_a_page_sent_back():
    host, steps = D.second_chance_scene()
    steps[0][1](host)
    assert D.lru_text(host).splitlines()[-1].endswith("sent back once")


@pytest.mark.parametrize("holds,dedup,hit", [(True, True, True), (False, True, False),
                                             (True, False, False), (False, False, False)])
def test_the_probe_tells_whether_another_guest_holds_a_page(holds, dedup, hit):
    got = D.dedup_probe(holds, dedup=dedup)
    assert got["hit"] is hit
    assert bool(got["sent_back"]) is (holds and dedup)


# --- persistent dedup: the billing model ---------------------------------------------------------
def test_the_documents_scenario_under_each_rule():
    s = {r: D.doc_scenario(r) for r in D.RULES}
    assert s["first"]["admitted"] and s["first"]["bill"] == 3
    assert s["first"]["broken"] == ["S1: domain 2 is billed 3 > its maximum 2"]
    assert s["orphan"]["admitted"] and s["orphan"]["broken"][0].startswith("S2")
    for r in ("split", "every", "per-content"):
        assert not s[r]["admitted"] and s[r]["broken"] == [] and s[r]["bill"] == 2


def test_split_breaks_when_sharers_leave():
    m = D.PersistentDedup("split", {1: 5, 2: 1, 3: 5})
    assert m.put(1, "X") and m.put(2, "X") and m.put(3, "Z") and m.put(2, "Z")
    assert m.bill[2] == 1 and not m.put(2, "Y") and m.unsound() == []
    m.destroy(1)
    m.check()
    assert m.bill[2] == Fraction(3, 2)
    assert m.unsound() == ["S1: domain 2 is billed 3/2 > its maximum 1"]


def test_a_refused_put_changes_nothing():
    m = D.PersistentDedup("every", {1: 1})
    assert m.put(1, "X")
    before = (dict(m.pages), {c: dict(u) for c, u in m.users.items()}, dict(m.bill))
    assert not m.put(1, "X") and m.refused == 1
    assert (dict(m.pages), {c: dict(u) for c, u in m.users.items()}, dict(m.bill)) == before
    m.check()


def test_first_transfers_to_the_earliest_remaining_sharer():
    m = D.PersistentDedup("first", {1: 5, 2: 5, 3: 5})
    for d in (1, 2, 3):
        assert m.put(d, "X")
    m.destroy(1)
    assert m.payer["X"] == 2 and m.bill[2] == 1 and m.bill[3] == 0
    m.check()


ops = st.lists(st.tuples(st.sampled_from(["put", "flush", "destroy"]), st.integers(1, 3),
                         st.integers(0, 4)), max_size=60)


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(["every", "per-content"]), ops)
def test_the_sound_rules_stay_sound(rule, script):
    m = D.PersistentDedup(rule, {1: 2, 2: 3, 3: 1})
    for op, d, k in script:
        if op == "put":
            m.put(d, k)
        elif op == "flush":
            own = sorted(p for p in m.pages if p[0] == d)
            if own:
                m.flush(*own[k % len(own)])
        else:
            m.destroy(d)
        m.check()
        assert m.unsound() == []


def test_the_random_workload_separates_the_rules():
    got = {r: D.billing_experiment(r, seed=1, steps=1500) for r in D.RULES}
    assert got["first"]["steps_over_max"] > 0 and got["split"]["steps_over_max"] > 0
    assert got["orphan"]["steps_unpaid"] > 0
    for r in ("every", "per-content"):
        assert got[r]["steps_over_max"] == got[r]["steps_unpaid"] == 0
    assert got["per-content"]["pages_held"] > got["every"]["pages_held"]
    assert D.billing_experiment("split", seed=3, steps=300) == \
        D.billing_experiment("split", seed=3, steps=300)


def _model():
    m = D.PersistentDedup("first", {1: 5, 2: 5})
    m.put(1, "X")
    m.put(2, "X")
    m.put(2, "Y")
    m.check()
    return m


@pytest.mark.parametrize("corrupt,match", [
    (lambda m: m.users["X"].__setitem__(1, 7), "invariant 1"),
    (lambda m: m.users.__setitem__("Z", {}), "invariant 1"),
    (lambda m: m.bill.__setitem__(2, Fraction(9)), "invariant 2"),
    (lambda m: m.payer.__setitem__("Y", 1), "invariant"),
    (lambda m: m.payer.__setitem__("X", None), "invariant"),
])
def test_model_invariants_break(corrupt, match):
    m = _model()
    corrupt(m)
    with pytest.raises(InvariantError, match=match):
        m.check()


def test_model_bad_input():
    with pytest.raises(ValueError):
        D.PersistentDedup("nobody", {1: 1})
    with pytest.raises(ValueError):
        D.PersistentDedup("every", {})
    with pytest.raises(KeyError):
        D.PersistentDedup("every", {1: 1}).put(2, "X")


# --- pictures -------------------------------------------------------------------------------------
def test_pcd_web_draws_the_shared_pcd_and_what_each_keeps():
    host, steps = D.cases_scene()
    D.run_traced(host, steps[:4])
    g = V.pcd_web(host, domains=[1, 2])
    src = g.source
    ids = V.pcd_ids(host)
    shared = next(iter(host.pcd.trees[ord("c")])).value          # content A, two users
    assert len(ids) == 3 and src.count(f"-> {ids[id(shared)]} ") == 2
    for label in ("frame ", "104 B (tze)", "nothing stored"):
        assert label in src
    assert src == V.pcd_web(host, domains=[1, 2]).source          # deterministic
    assert "<svg" in g.pipe(format="svg").decode()
    with pytest.raises(ValueError):
        V.pcd_web(Host(pages=1024))


def test_web_draws_a_dedup_host_without_frames_under_pcds():
    host, _ = D.second_chance_scene()
    src = web(host).source
    assert "pgp [0]" in src and "frame " not in src


def test_pcd_forest_counts_and_rejects_bad_input():
    host, _ = D.second_chance_scene()
    src = V.pcd_forest(host).source
    assert ">4</FONT>" in src                      # tree 0x63 holds A, X, B, C
    counts = np.zeros(256, dtype=int)
    counts[[0, 255]] = [3, 1000]
    assert ">1000</text>" in V.pcd_forest(counts).pipe(format="svg").decode()
    with pytest.raises(ValueError):
        V.pcd_forest([1, 2, 3])


def test_pcd_tree_and_key_text():
    host, _ = D.second_chance_scene()
    src = V.pcd_tree(host, ord("c")).source
    assert src.count("4096 B") == 4 and "content A" in src
    assert V.key_text(content_key(b"\x80abc", True)).startswith("z:")
    with pytest.raises(ValueError):
        V.pcd_tree(host, 256)
    xen = Host(pages=1024, dedup=True, tze=True, tze_match="xen")
    xen.create_domain(1, pages=16)
    g = D.TmemOps(xen, 1)
    p = g.new_pool()
    g.put_page(p, (1, 0, 0), 0, D.tail_page(50))
    (node,) = list(xen.pcd.trees[ord("t")])
    assert V.key_text(node.key).endswith("#1")


def test_second_chance_list_marks_and_links():
    host, steps = D.second_chance_scene()
    assert "sent back once" not in V.second_chance_list(host).source
    steps[0][1](host)
    src = V.second_chance_list(host).source
    assert src.count("sent back once") == 1 and src.count("style=dashed") == 4
    with pytest.raises(ValueError):
        V.second_chance_list(Host(pages=1024))


def test_content_text():
    assert V.content_text(bytes(PAGE)) == "(all zero)"
    assert V.content_text(b"ab\x00\xffcd" + bytes(10), 6) == "ab··cd"
