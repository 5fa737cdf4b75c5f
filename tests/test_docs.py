"""tmemref.viz.appendix: the package map, the data path, the lock order, the fidelity tables.

(The oracle the appendix also shows is tested in test_oracle.py.) Expected values come from the
facts digest (reference/xen-tmem-facts.md, cited by section), from DESIGN §2-3 and from the
package's own documented claims (docstrings), never from the appendix module's output. A fixture makes every hypercall on every Host run ``host.check()`` afterwards (the house
rule) in the tests that drive hosts through the appendix's helpers.
"""
from __future__ import annotations

import errno
import inspect
import sys
import textwrap
from html.parser import HTMLParser
from pathlib import Path

import pytest

from tmemref import Host, InvariantError, TmemOp, abi, fidelity, oracle
from tmemref.viz import appendix as docs
from tmemref.host import locks

ROOT = Path(__file__).resolve().parent.parent
PKG = ROOT / "tmemref"
PAGE = abi.PAGE_SIZE
EOPNOTSUPP = -errno.EOPNOTSUPP


@pytest.fixture
def checked(monkeypatch):
    """Every hypercall on every Host is followed by ``host.check()``."""
    real = Host.do_tmem_op

    def do_tmem_op(self, domid, op):
        rc = real(self, domid, op)
        self.check()
        return rc

    monkeypatch.setattr(Host, "do_tmem_op", do_tmem_op)


def op(cmd, **kw):
    return TmemOp(cmd=cmd, **kw)


NEW = abi.TMEM_NEW_POOL
PUT, GET = abi.TMEM_PUT_PAGE, abi.TMEM_GET_PAGE


# =================================================================================================
# The package map
# =================================================================================================

def _modules_on_disk(root=PKG, package="tmemref"):
    """Dotted names of every .py file under the package folder (no import involved)."""
    names = set()
    for path in root.rglob("*.py"):
        rel = path.relative_to(root)
        if "__pycache__" in rel.parts:
            continue
        parts = list(rel.with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names.add(".".join([package] + parts))
    return names


def test_module_map_lists_every_module_once():
    mm = docs.module_map()
    names = [m.name for m in mm]
    assert len(names) == len(set(names))
    assert set(names) == _modules_on_disk()


def test_module_map_summary_is_the_first_docstring_line():
    import tmemref.core.host as core_host
    import tmemref.host.locks as host_locks
    m = {i.name: i for i in docs.module_map()}
    assert m["tmemref.core.host"].summary == core_host.__doc__.strip().splitlines()[0]
    assert m["tmemref.host.locks"].summary == host_locks.__doc__.strip().splitlines()[0]
    assert m["tmemref.viz.appendix"].summary.startswith("The book's appendices")
    assert m["tmemref.oracle"].layer == m["tmemref.cli"].layer == "tools"
    assert m["tmemref.core"].is_package and not m["tmemref.core.host"].is_package


def test_module_map_is_ordered_by_layer_then_name():
    mm = docs.module_map()
    order = [layer for layer, _, _ in docs.LAYERS] + [docs.OTHER_LAYER]
    keys = [(order.index(m.layer), m.name) for m in mm]
    assert keys == sorted(keys)
    assert {m.layer for m in mm if m.name.startswith("tmemref.core.")} == {"core"}
    assert docs.layer_of("tmemref") == "public face"
    assert docs.layer_of("tmemref.guest.cleancache") == "guest"
    assert docs.layer_of("tmemref.newthing") == docs.OTHER_LAYER   # shown, never dropped


def _make_package(tmp_path, name, files):
    for rel, text in files.items():
        p = tmp_path / name / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(textwrap.dedent(text))
    sys.path.insert(0, str(tmp_path))
    return name


@pytest.fixture
def scratch_packages(tmp_path):
    made = []

    def make(name, files):
        made.append(name)
        return _make_package(tmp_path, name, files)

    yield make
    sys.path.remove(str(tmp_path))
    for name in made:
        for mod in [m for m in sys.modules if m == name or m.startswith(name + ".")]:
            del sys.modules[mod]


def test_module_map_does_not_hide_a_package_that_fails_to_import(scratch_packages):
    pkg = scratch_packages("docs_broken_pkg", {
        "__init__.py": '"""Top."""\n',
        "good.py": '"""Good module."""\n',
        "bad/__init__.py": '"""Bad."""\nraise ImportError("broken on purpose")\n',
        "bad/inner.py": '"""Inner."""\n',
    })
    with pytest.raises(ImportError):
        docs.module_map(pkg)


def test_import_edges_read_lazy_and_module_level_imports(scratch_packages):
    pkg = scratch_packages("docs_edges_pkg", {
        "__init__.py": '"""Top."""\nfrom . import core\n',
        "core/__init__.py": '"""Core."""\n',
        "core/a.py": '"""A."""\nfrom ..host.x import y\nfrom .b import z\n',
        "core/b.py": '"""B."""\nz = 1\n',
        "host/__init__.py": '"""Host."""\n',
        "host/x.py": '"""X."""\ny = 1\ndef f():\n    from ..viz import w\n    return w\n',
        "viz/__init__.py": '"""Viz."""\nimport docs_edges_pkg.core.b\nw = 2\n',
    })
    assert docs.import_edges(pkg) == [("", "core", False), ("core", "host", False),
                                      ("host", "viz", True), ("viz", "core", False)]


def test_the_engine_never_imports_the_tooling():
    """tmemref.viz and tmemref.sim say the engine never imports them; nor may it import the
    guest layer, xl or docs."""
    all_edges = docs.import_edges()
    bad = [(a, b, lazy) for a, b, lazy in all_edges
           if a in docs.ENGINE_UNITS and b in docs.TOOLING_UNITS]
    assert not bad
    edges = {(a, b) for a, b, _ in all_edges}
    assert {("", "core"), ("", "abi"), ("core", "host"), ("core", "ds")} <= edges


def test_the_engine_needs_only_numpy(scratch_packages):
    # pyproject: numpy only; the optional codecs of host/compress.py only inside functions
    assert docs.third_party_imports(docs.ENGINE_UNITS, eager_only=True) == ["numpy"]
    assert docs.third_party_imports(docs.ENGINE_UNITS) == ["lz4", "lzo", "numpy", "zstandard"]
    pkg = scratch_packages("docs_3p_pkg", {
        "__init__.py": '"""Top."""\nimport os\n',
        "core/__init__.py": '"""Core."""\nimport json\ndef f():\n    import yaml\n',
        "viz/__init__.py": '"""Viz."""\nimport graphviz\n',
    })
    assert docs.third_party_imports(["", "core"], pkg) == ["yaml"]
    assert docs.third_party_imports(["viz"], pkg) == ["graphviz"]
    assert docs.third_party_imports(["", "core"], pkg, eager_only=True) == []


def test_layer_graph_draws_every_unit_and_renders():
    g = docs.layer_graph()
    units = {docs.unit_of(m.name) for m in docs.module_map()}
    for u in units:
        assert f"u_{u or 'tmemref'}" in g.source
    for a, b, lazy in docs.import_edges():
        line = next(ln for ln in g.source.splitlines()
                    if f"u_{a or 'tmemref'} -> u_{b or 'tmemref'}" in ln)
        assert ("dashed" in line) == lazy
    assert g.pipe(format="svg").startswith(b"<?xml")


def test_design_vs_package_reports_the_filesystem():
    rows = {path: (design, present) for path, design, present in docs.design_vs_package()}
    for path, (design, present) in rows.items():
        if path.endswith("/"):
            continue
        assert present == ("yes" if (PKG / path).is_file() else "—"), path
        assert design == ("yes" if path in docs.DESIGN_HOUSE else "—"), path
    assert rows["core/host.py"] == ("yes", "yes")
    assert rows["oracle.py"] == rows["cli.py"] == ("yes", "yes")
    assert rows["progress.py"] == ("—", "yes")
    assert rows["guest/"] == ("yes", "yes")
    assert "core/__init__.py" not in rows


# =================================================================================================
# The data path
# =================================================================================================

def test_data_path_diagram_names_the_real_functions_and_renders():
    g = docs.data_path_diagram()
    for step in docs.PUT_PATH + docs.EVICT_PATH:
        assert step.qualname in g.source
        obj = sys.modules[step.fn.__module__]
        for part in step.qualname[len(step.fn.__module__) + 1:].split("."):
            obj = getattr(obj, part)
        assert obj is step.fn
    assert "put3 -> evict1" in g.source          # the guard calls the evictor
    assert "evict7 -> put10" in g.source         # the freed frame is the put's frame
    assert g.pipe(format="svg").startswith(b"<?xml")


def test_a_put_that_must_evict_follows_both_paths_in_order(checked):
    host, calls, evicted = docs.traced_put()
    put = docs.path_rows(docs.PUT_PATH, calls)
    ev = docs.path_rows(docs.EVICT_PATH, calls)
    put_calls = [r[3] for r in put]
    ev_calls = [r[3] for r in ev]
    assert None not in put_calls and None not in ev_calls
    assert put_calls == sorted(put_calls) and ev_calls == sorted(ev_calls)
    guard = put_calls[2]                     # ensure_avail_pages
    do_put = put_calls[3]                    # Host._put
    assert guard < ev_calls[0] and ev_calls[-1] < do_put   # eviction inside the guard (§4.4)
    assert evicted == ((0, 0, 0), 0)         # the oldest page (§4.1: oldest first)
    assert host.evicted_pgs == 1


def test_path_rows_reports_a_step_that_did_not_happen(checked):
    """A duplicate put finds its object: no rb-tree insert, no radix insert."""
    host = oracle.oracle_host()
    host.create_domain(1, pages=16)
    g = docs.TmemOps(host, 1)
    pool = g.new_pool()
    g.put_page(pool, (5, 0, 0), 1, oracle.page_of(1))
    calls = docs.calls_during(lambda: g.put_page(pool, (5, 0, 0), 1, oracle.page_of(2)))
    rows = {r[2]: r[3] for r in docs.path_rows(docs.PUT_PATH, calls)}
    assert rows["tmemref.ds.rbtree.RBTree.insert"] is None
    assert rows["tmemref.ds.radix.RadixTree.insert"] is None
    assert rows["tmemref.core.pool.Pool.find"] is not None


def test_calls_during_restores_the_previous_profiler():
    seen = []

    def outer(frame, event, arg):
        seen.append(event)

    sys.setprofile(outer)
    try:
        docs.calls_during(lambda: None)
        assert sys.getprofile() is outer
    finally:
        sys.setprofile(None)


# =================================================================================================
# Locks
# =================================================================================================

def test_lock_order_doc_agrees_with_the_rank_constants():
    ranks = {name: rank for rank, name, _ in docs.lock_order_from_doc()}
    assert ranks["tmem_rwlock"] == locks.RANK_TMEM
    assert ranks["pool_rwlock"] == locks.RANK_POOL
    assert ranks["obj_spinlock"] == locks.RANK_OBJ
    assert ranks["pcd_tree_rwlocks[i]"] == locks.RANK_PCD
    assert ranks["eph_lists_spinlock"] == ranks["pers_lists_spinlock"] == locks.RANK_LISTS
    assert ranks["tmem_page_list_lock"] == locks.RANK_PAGE_LIST
    assert ranks["heap_lock"] == locks.RANK_HEAP


def test_lock_order_doc_joins_continuation_lines():
    doc = ("Lock order::\n\n    rank 0  a_lock   first part\n"
           "                             second part\n    rank 1  b_lock   other\n\nAfter.\n"
           "    rank 9  not_in_block  ignored\n")
    assert docs.lock_order_from_doc(doc) == [(0, "a_lock", "first part second part"),
                                             (1, "b_lock", "other")]


def test_live_locks_have_the_documented_ranks(checked):
    doc = {name: rank for rank, name, _ in docs.lock_order_from_doc()}
    live = docs.live_lock_ranks()
    assert {"tmem_rwlock", "pool_rwlock", "obj_spinlock", "eph_lists_spinlock"} <= set(live)
    for name, (rank, n) in live.items():
        assert doc[name] == rank, name
        assert n >= 1


# =================================================================================================
# The oracle ABI
# =================================================================================================

def test_host_options_follow_the_signature():
    rows = docs.host_options()
    assert [r[0] for r in rows] == list(inspect.signature(Host).parameters)
    row = {r[0]: r for r in rows}
    assert row["min_free_pages"][1] == "256"            # 1 MB (§4.4)
    assert row["evict_budget"][1] == "10"               # §4.4
    assert "inverse" in row["quota_rule"][2]            # a continued bullet is joined
    assert "``" not in "".join(r[2] for r in rows)


def test_every_host_option_is_documented():
    """The Host docstring lists its options (the book's ABI table renders that list).

    Fails while ``dom0_max_pages`` has no bullet in ``Host``'s docstring."""
    undocumented = [name for name, _, text in docs.host_options() if not text]
    assert not undocumented


def test_tmemop_fields_are_designs_and_commented():
    rows = docs.tmemop_fields()
    assert [r[0] for r in rows] == ["cmd", "pool_id", "uuid", "flags", "arg1", "oid", "index",
                                    "page", "subop", "cli_id", "arg2", "buf"]   # DESIGN §2
    assert all(r[2] for r in rows)                      # STYLE: one comment per field
    assert dict((r[0], r[1]) for r in rows)["cli_id"] == str(abi.TMEM_CLI_ID_NULL)


# =================================================================================================
# HTML tables
# =================================================================================================

class _Cells(HTMLParser):
    def __init__(self):
        super().__init__()
        self.rows, self.cur, self.intd, self.colspans = [], None, False, []

    def handle_starttag(self, tag, attrs):
        if tag == "tr":
            self.cur = []
        elif tag in ("td", "th"):
            self.cur.append("")
            self.intd = True
            self.colspans.append(dict(attrs).get("colspan"))

    def handle_endtag(self, tag):
        if tag == "tr":
            self.rows.append(self.cur)
        elif tag in ("td", "th"):
            self.intd = False

    def handle_data(self, data):
        if self.intd:
            self.cur[-1] += data


def cells(text):
    p = _Cells()
    p.feed(text)
    return p


def test_html_table_escapes_and_structures():
    long = "tmemref.core.host.Host.do_tmem_op"
    t = docs.html_table(["a", "b"], [("<1>", None), ("x & y", "Host(k=1)"), ("z", long)],
                        code_columns=[1])
    p = cells(t)
    assert p.rows == [["a", "b"], ["<1>", ""], ["x & y", "Host(k=1)"], ["z", long]]
    assert "&lt;1&gt;" in t and "<code></code>" not in t
    assert '<code style="white-space:nowrap">Host(k=1)</code>' in t   # short: never broken
    assert f"<code>{long}</code>" in t                                # long: may wrap
    with pytest.raises(ValueError):
        docs.html_table(["a", "b"], [(1,)])


def test_html_table_groups():
    t = docs.html_table(["a", "b"], groups=[("G1", [(1, 2)]), ("G2", [(3, 4), (5, 6)])])
    p = cells(t)
    assert p.rows == [["a", "b"], ["G1"], ["1", "2"], ["G2"], ["3", "4"], ["5", "6"]]
    assert p.colspans.count("2") == 2


def test_fidelity_html_shows_every_note_once_grouped_in_order():
    t = docs.fidelity_html()
    p = cells(t)
    topics = [r[0] for r in p.rows if len(r) == 4][1:]            # minus the header
    assert sorted(topics) == sorted(n.topic for n in fidelity.NOTES)
    titles = [r[0] for r in p.rows if len(r) == 1]
    kinds = [k for k, _ in docs.KIND_ORDER if any(n.kind == k for n in fidelity.NOTES)]
    assert [t.split(" — ")[0] for t in titles] == kinds
    for title in titles:
        kind = title.split(" — ")[0]
        assert title.endswith(f"({sum(n.kind == kind for n in fidelity.NOTES)})")
    assert "&lt;= 4.3" in t                                       # notes say "<= 4.3"


def test_fidelity_groups_keep_an_unknown_kind():
    rows = [("t1", "choice", "x", "y", ""), ("t2", "brand new kind", "x", "y", ""),
            ("t3", "code vs doc", "x", "y", "Host(a=1)")]
    groups = docs.fidelity_groups(rows)
    assert [g[0].split(" — ")[0].split(" (")[0] for g in groups] == \
        ["code vs doc", "choice", "brand new kind"]
    assert groups[2] == ("brand new kind (1)", [("t2", "x", "y", "")])


# =================================================================================================
# Fidelity options
# =================================================================================================

def test_every_note_option_names_real_host_keywords():
    params = inspect.signature(Host).parameters
    named = [n for n in fidelity.NOTES if n.option]
    assert named
    for note in named:
        kws = docs.option_kwargs(note.option)
        assert kws, note.topic
        for kw in kws:
            assert kw in params, f"{note.topic}: {kw} is not a Host keyword"
            assert params[kw].kind is inspect.Parameter.KEYWORD_ONLY


@pytest.mark.parametrize("bad", ["quota_rule='xen'", "Host(1)", "Guest(x=1)", "Host()",
                                 "Host(**kw)", "Host(x=", "Host.make(x=1)"])
def test_option_kwargs_refuses_what_is_not_a_host_call(bad):
    with pytest.raises(ValueError):
        docs.option_kwargs(bad)


def test_every_named_option_has_a_demo_that_changes_behaviour(checked):
    kws = {kw for n in fidelity.NOTES if n.option for kw in docs.option_kwargs(n.option)}
    assert kws <= set(docs.OPTION_DEMOS)
    for kw in kws:
        (s1, seen1), (s2, seen2) = docs.OPTION_DEMOS[kw]()
        assert s1 != s2 and seen1 != seen2, kw
        assert kw in s1 and kw in s2


def test_option_demos_show_what_the_facts_predict(checked):
    q = dict(docs.OPTION_DEMOS["quota_rule"]())
    assert q['quota_rule="doc"'].endswith("over quota False, eviction from the global LRU")
    assert q['quota_rule="xen"'].endswith("over quota True, eviction from its own list")  # §4.3
    a = dict(docs.OPTION_DEMOS["shared_auth"]())
    assert a["shared_auth=True"].endswith("returns -EEMPTY")          # silently private (§3.2)
    assert a["shared_auth=False"].endswith("returns 1")               # <= 4.8 behaviour
    m = dict(docs.OPTION_DEMOS["min_free_pages"]())
    assert m["min_free_pages=256"].endswith(abi.rc_name(-errno.ENOMEM))   # §4.4
    assert m["min_free_pages=128"].endswith("returns 1")
    b = dict(docs.OPTION_DEMOS["evict_budget"]())
    assert "made 10 eviction attempts" in b["evict_budget=10"]        # budget of 10 (§4.4)
    assert "made 3 eviction attempts" in b["evict_budget=3"]
    c = dict(docs.OPTION_DEMOS["codec"]())
    assert "cp:1" in c["codec=None (LZO1X-1)"] and "cn:0" in c["codec=None (LZO1X-1)"]
    assert "cp:0" in c["codec=NullCodec()"] and "cn:1" in c["codec=NullCodec()"]   # §5.3 poor


def test_option_rows_cover_every_option_note(checked):
    rows = docs.option_rows()
    assert {r[0] for r in rows} == {n.topic for n in fidelity.NOTES if n.option}
    assert len(rows) == 2 * sum(len(docs.option_kwargs(n.option))
                                for n in fidelity.NOTES if n.option)


#: Small versions of the book's rows (g = 20 pages keeps the checked hosts quick).
QUOTA_TEST_ROWS = ((2, 20, 1, 4), (5, 20, 1, 4), (10, 20, 1, 4), (12, 20, 3, 4), (18, 20, 3, 4),
                   (10, 20, 0, 4))


def test_quota_truth_table_follows_both_formulas(checked):
    rows = docs.quota_truth_table(QUOTA_TEST_ROWS)
    assert len(rows) == len(QUOTA_TEST_ROWS)
    for r in rows:
        c, g, w, total = r["c"], r["g"], r["w"], r["T"]
        doc_rule = w > 0 and c * total > g * w                        # share exceeds weight share
        xen_rule = w > 0 and (g * 100) // c > (total * 100) // w      # client_over_quota (§4.3)
        assert r["doc"][0] == doc_rule and r["xen"][0] == xen_rule, r
        for rule in ("doc", "xen"):
            assert r[rule][1] == ("own list" if r[rule][0] else "global LRU"), r
    verdicts = {(r["doc"][0], r["xen"][0]) for r in rows}
    assert {(True, False), (False, True)} <= verdicts                 # the rules disagree


# =================================================================================================
# Xen's quirks and the version history
# =================================================================================================

def test_xen_quirks_cover_the_facts_sections():
    sections = {q.section.split()[0] for q in docs.XEN_QUIRKS}
    assert sections == {"§9.4", "§8.2", "§8.3"}
    assert all(q.xen and q.tmemref for q in docs.XEN_QUIRKS)


def test_xen_quirk_observations(checked):
    seen = {q.topic: q.observe() for q in docs.XEN_QUIRKS}
    # facts §9.4: the first page of the pool is lost; the raw page ends the pool (the
    # compressed page after it is lost too); a second migration resumes at the stale cursor
    assert seen["SAVE_GET_NEXT_PAGE"] == ("first migration of 4 pages: the target holds 4; "
                                          "with save_bugs={'skip_first_page'}: 3")
    assert seen["Saving and restoring uncompressed persistent pages"] == \
        "first migration of 4 pages: the target holds 4; with save_bugs={'raw_copy'}: 2"
    assert seen["SAVE_END"] == ("second migration of 4 pages: the target holds 4; "
                                "with save_bugs={'stale_end'}: 0")
    assert seen["LIST: second and later S= lines"] == "2 S= lines, SI 0, 1"
    assert ", lines G (" in seen["LIST: the C= line"]
    lm = seen["LIST: Lm and Fp"]
    assert lm.endswith("Lm:0, Fp:0") and not lm.startswith("after 0 ")
    assert seen["LIST: the T= line"] == "line kinds in LIST: C, G, P"
    assert seen["xen-tmem-list-parse: shared pool ids"] == \
        "pool ids printed: 0, 1 (quirks=True: 0, 0)"


def test_version_history_checks_pass(checked):
    rows = docs.version_rows()
    assert [r[0] for r in rows] == [v.xen for v in docs.VERSION_HISTORY]
    for v, r in zip(docs.VERSION_HISTORY, rows):
        assert r[4] == ("—" if v.check is None else "yes"), v.xen
    assert [r[0] for r in rows][0] == "4.0" and rows[-1][0] == "4.13"    # facts §0


def test_version_rows_report_a_failing_check(monkeypatch):
    bad = docs.VersionRow("9.9", "x", "—", "y", lambda: False)
    monkeypatch.setattr(docs, "VERSION_HISTORY", (bad,))
    assert docs.version_rows() == [("9.9", "x", "—", "y", "FAILED")]


def test_rc_name_names_eopnotsupp_as_xen_does():
    """Xen returns -EOPNOTSUPP (facts §3.10; the fidelity notes say so too), but on Linux
    ``errno.errorcode[95]`` is 'ENOTSUP', so abi.rc_name prints '-ENOTSUP' in the book.
    Fails until abi.rc_name prefers the name Xen uses."""
    assert abi.rc_name(EOPNOTSUPP) == "-EOPNOTSUPP"


def test_the_readme_states_the_engines_size_as_counted():
    """The README's figure is engine_lines(), which counts every line of the engine's files
    (checked here by reading them directly)."""
    import re
    text = (ROOT / "README.md").read_text()
    stated = int(re.search(r"is\s+([\d,]+) lines of Python", text).group(1).replace(",", ""))
    files = [PKG / "__init__.py", PKG / "abi.py", PKG / "errors.py"] + \
        [p for d in ("core", "host", "ds") for p in sorted((PKG / d).glob("*.py"))]
    counted = sum(len(p.read_text(encoding="utf-8").splitlines()) for p in files)
    assert docs.engine_lines() == counted
    assert stated == counted, (f"README says {stated:,} lines; the engine has {counted:,}: "
                               "update the README's Layout section")
