"""tmemref.xl (the ``xl tmem-*`` commands as functions, implemented in tmemref.guest.xl) and
tmemref.viz.admin (the LIST counter descriptions, the sub-op handler table and the
manageability sequence of tmem-internals.html).

Each command's effect is checked through the engine's state (clients, pools, frames), not
through the command's own output; ``host.check()`` runs after every mutation.
"""
from __future__ import annotations

import errno

import pytest

from tmemref import Host, TmemOp, abi, xl
from tmemref.core import control, save, stats
from tmemref.core.listparse import TIMING, format_list_parse, parse_list
from tmemref.guest import Xl
from tmemref.guest.ops import describe
from tmemref.viz import admin, frame_counts

ALL = abi.TMEM_CLI_ID_NULL
UUID_TEXT = "abcdef01-2345-6789-1234-567890abcdef"
# xc_tmem_uuid_parse: uuid_hi = the first 16 hex digits, uuid_lo = the last 16 (facts §8.4).
UUID_HI, UUID_LO = 0xABCDEF0123456789, 0x1234567890ABCDEF


def page(n: int) -> bytes:
    return (n.to_bytes(8, "little") + b"t" * 8) * 256


def host_with(*domids, pages=1024, max_pages=256):
    host = Host(pages=pages)
    for d in domids:
        host.create_domain(d, pages=64, max_pages=max_pages)
    host.check()
    return host


def put(host, domid, pool, i, data=None):
    rc = host.do_tmem_op(domid, TmemOp(cmd=abi.TMEM_PUT_PAGE, pool_id=pool, oid=(i // 8, 0, 0),
                                       index=i % 8, page=data or page(i)))
    host.check()
    return rc


def new_pool(host, domid, persist=False, shared=False, uuid=(0, 0)):
    rc = host.do_tmem_op(domid, TmemOp(cmd=abi.TMEM_NEW_POOL, uuid=uuid,
                                       flags=abi.pool_flags(persist=persist, shared=shared)))
    host.check()
    return rc


def busy_host():
    """Guest 1: an ephemeral pool with 5 pages, a persistent pool with 3; guest 2: 2 pages."""
    host = host_with(1, 2)
    e = new_pool(host, 1)
    p = new_pool(host, 1, persist=True)
    for i in range(5):
        assert put(host, 1, e, i) == 1
    for i in range(3):
        assert put(host, 1, p, i) == 1
    e2 = new_pool(host, 2)
    for i in range(2):
        assert put(host, 2, e2, 100 + i) == 1
    return host, e, p, e2


# --- tmem-list ----------------------------------------------------------------------------------
def test_list_all_is_the_buffer_plus_xls_newline():
    host, *_ = busy_host()
    calls = []
    out = xl.tmem_list(host, None, trace=calls)
    host.check()
    # one LIST hypercall from dom0, all clients, a 32768-byte buffer, short form
    assert len(calls) == 1
    op = calls[0].op
    assert (calls[0].domid, op.cmd, op.subop, op.cli_id) == (0, abi.TMEM_CONTROL,
                                                            abi.TMEMC_LIST, ALL)
    assert op.arg1 == 32768 and len(op.buf) == 32768 and op.arg2 == 0
    # xl: printf("%s\n", buf) -- LIST's own text, then one more newline
    assert out.endswith("\n\n")
    assert out == host.list_stats(ALL, long=False) + "\n"
    kinds = [line[:2] for line in out.splitlines() if line]
    assert kinds == ["G=", "C=", "P=", "P=", "C=", "P="]
    # Tt counts every hypercall so far, this LIST included: 2 domain creations made none;
    # 3 NEW_POOL + 10 PUT + 1 LIST = 14
    assert parse_list(out)["global"]["Tt"] == 14


def test_list_one_domain_long_form():
    host, *_ = busy_host()
    calls = []
    out = xl.tmem_list(host, 1, long=True, trace=calls)
    assert calls[0].op.cli_id == 1 and calls[0].op.arg2 == 1
    parsed = parse_list(out)
    assert parsed["global"] is None                      # one client: no G= line
    [client] = parsed["clients"]
    assert client["CI"] == 1 and client["Ec"] == 5       # the long part: eph count
    assert [p["PT"] for p in client["pools"]] == ["EP", "PP"]
    assert [p["Pc"] for p in client["pools"]] == [5, 3]
    host.check()


def test_list_unknown_domain_or_no_client_fails():
    host = host_with(1)
    with pytest.raises(xl.XlError) as e:
        xl.tmem_list(host, 7)                            # no such domain
    assert e.value.rc == -1
    with pytest.raises(xl.XlError) as e:
        xl.tmem_list(host, 1)                            # a domain that never used tmem
    assert e.value.rc == -1
    host.check()


# --- freeze / thaw / destroy --------------------------------------------------------------------
def test_freeze_and_thaw_one_client():
    host, e, p, e2 = busy_host()
    assert xl.tmem_freeze(host, 1) == 0
    host.check()
    assert host.clients[1].frozen and not host.clients[2].frozen
    assert put(host, 1, e, 50) == -abi.EFROZEN           # a new page is refused
    assert put(host, 1, e, 0, page(999)) == 1            # a duplicate put is not
    assert put(host, 2, e2, 50) == 1                     # other clients go on
    assert xl.tmem_thaw(host, 1) == 0
    host.check()
    assert not host.clients[1].frozen
    assert put(host, 1, e, 50) == 1


def test_freeze_all_covers_existing_clients_only():
    host, e, p, e2 = busy_host()
    host.create_domain(3, pages=16, max_pages=64)
    calls = []
    xl.tmem_freeze(host, None, trace=calls)
    host.check()
    assert calls[0].op.cli_id == ALL
    assert host.clients[1].frozen and host.clients[2].frozen
    # domain 3 had no client; its first tmem call makes one, not frozen
    pool3 = new_pool(host, 3)
    assert not host.clients[3].frozen and put(host, 3, pool3, 0) == 1
    xl.tmem_thaw(host, None)
    host.check()
    assert not any(c.frozen for c in host.clients.values())


def test_destroy_only_thaws():
    host, e, p, e2 = busy_host()
    xl.tmem_freeze(host, 1)
    before = (host.clients[1].pools[e].pgp_count, host.clients[1].pools[p].pgp_count)
    assert xl.tmem_destroy(host, 1) == 0
    host.check()
    c = host.clients[1]
    assert not c.frozen                                  # thawed ...
    assert (c.pools[e].pgp_count, c.pools[p].pgp_count) == before == (5, 3)   # ... nothing gone
    assert put(host, 1, e, 60) == 1


@pytest.mark.parametrize("fn", [xl.tmem_freeze, xl.tmem_thaw, xl.tmem_destroy])
def test_freeze_family_unknown_domain(fn):
    host = host_with(1)
    for domid in (1, 9):                                 # no client / no domain: -1 either way
        with pytest.raises(xl.XlError) as e:
            fn(host, domid)
        assert e.value.rc == -1
    host.check()


# --- tmem-set -----------------------------------------------------------------------------------
def test_set_weight_cap_compress_one_hypercall_each_in_xl_order():
    host, *_ = busy_host()
    calls = []
    assert xl.tmem_set(host, 1, compress=1, cap=7, weight=5, trace=calls) == 0
    host.check()
    assert [c.op.subop for c in calls] == [abi.TMEMC_SET_WEIGHT, abi.TMEMC_SET_CAP,
                                           abi.TMEMC_SET_COMPRESS]
    assert [c.op.arg1 for c in calls] == [5, 7, 1]
    c1, c2 = host.clients[1], host.clients[2]
    assert (c1.weight, c1.cap, c1.compress) == (5, 7, True)
    assert (c2.weight, c2.cap, c2.compress) == (0, 0, False)
    assert host.client_weight_total == 5
    out = parse_list(xl.tmem_list(host, 1))["clients"][0]
    assert (out["ww"], out["ca"], out["co"]) == (5, 7, 1)
    host.check()


def test_set_all_and_weight_total():
    host, *_ = busy_host()
    xl.tmem_set(host, None, weight=3)
    host.check()
    assert [c.weight for c in host.clients.values()] == [3, 3]
    assert host.client_weight_total == 6
    xl.tmem_set(host, 2, weight=1)
    host.check()
    assert host.client_weight_total == 4


def test_cap_is_stored_but_never_enforced():
    host, e, p, e2 = busy_host()
    xl.tmem_set(host, 1, cap=1)
    host.check()
    n = host.clients[1].pools[e].pgp_count
    for i in range(20):
        assert put(host, 1, e, 200 + i) == 1            # far beyond a cap of 1
    assert host.clients[1].pools[e].pgp_count == n + 20
    assert host.clients[1].cap == 1


def test_set_errors():
    host = host_with(1)
    with pytest.raises(ValueError):
        xl.tmem_set(host, 1)                             # "No set value specified"
    with pytest.raises(xl.XlError) as e:
        xl.tmem_set(host, 1, weight=2)                   # no client yet
    assert e.value.rc == -1
    with pytest.raises(xl.XlError):
        xl.tmem_set(host, 5, weight=2)                   # no domain
    with pytest.raises(ValueError):
        xl.tmem_set(host, 1, weight=-1)
    assert host.client_weight_total == 0
    host.check()


# --- tmem-shared-auth ---------------------------------------------------------------------------
def test_uuid_parse_is_hi_first_then_lo():
    # reasoned from facts §8.4, not from the implementation: the hypercall carries (lo, hi)
    assert xl.uuid_parse(UUID_TEXT) == (UUID_LO, UUID_HI)
    assert xl.uuid_parse("00000000-0000-0001-ffff-000000000000") == (0xFFFF << 48, 1)
    # not the <= 4.8 mis-parse, which read a-f as 0-5
    assert xl.uuid_parse(UUID_TEXT) != xl.uuid_parse("01234501-2345-6789-1234-567890012345")
    for bad in ("abcdef01-2345-6789-1234-567890abcde", "abcdef01+2345-6789-1234-567890abcdef",
                "abcdeg01-2345-6789-1234-567890abcdef"):
        with pytest.raises(ValueError):
            xl.uuid_parse(bad)


def test_shared_auth_authorises_and_withdraws():
    host = host_with(1)
    calls = []
    assert xl.tmem_shared_auth(host, 1, uuid=UUID_TEXT, auth=1, trace=calls) == 1
    host.check()
    op = calls[0].op
    assert (op.cmd, op.arg1, op.uuid, op.flags) == (abi.TMEM_AUTH, 1, (UUID_LO, UUID_HI), 1)
    assert host.clients[1].shared_auth_uuid == [(UUID_LO, UUID_HI)]
    # the guest can now join the shared pool of that uuid: LIST shows it shared (ES)
    pool = new_pool(host, 1, shared=True, uuid=(UUID_LO, UUID_HI))
    assert pool >= 0
    lst = parse_list(xl.tmem_list(host, None))
    assert [s["PT"] for s in lst["shared"]] == ["ES"]
    assert (lst["shared"][0]["U0"], lst["shared"][0]["U1"]) == (UUID_LO, UUID_HI)
    # withdraw: 1 the first time, 0 when there is nothing left to withdraw
    assert xl.tmem_shared_auth(host, 1, uuid=UUID_TEXT, auth=0) == 1
    host.check()
    assert host.clients[1].shared_auth_uuid == []
    assert xl.tmem_shared_auth(host, 1, uuid=UUID_TEXT, auth=0) == 0
    host.check()


def test_shared_auth_zero_does_not_authorise():
    """The man page's "0=auth" is wrong: 0 never lets a guest in (facts §8.4)."""
    host = host_with(1)
    assert xl.tmem_shared_auth(host, 1, uuid=UUID_TEXT, auth=0) == 0
    host.check()
    new_pool(host, 1, shared=True, uuid=(UUID_LO, UUID_HI))
    assert parse_list(xl.tmem_list(host, None))["shared"] == []      # silently private
    assert "0=auth,1=deauth" in xl.tmem_shared_auth.__doc__


def test_shared_auth_all_and_errors():
    host = host_with(1)
    calls = []
    assert xl.tmem_shared_auth(host, None, uuid=UUID_TEXT, auth=1, trace=calls) == 1
    host.check()
    assert calls[0].op.arg1 == ALL and host.global_shared_auth
    with pytest.raises(xl.XlError) as e:
        xl.tmem_shared_auth(host, 42, uuid=UUID_TEXT, auth=1)
    assert e.value.rc == -errno.EINVAL
    for bad in (2, -1, True):
        with pytest.raises(ValueError):
            xl.tmem_shared_auth(host, 1, uuid=UUID_TEXT, auth=bad)
    with pytest.raises(ValueError):
        xl.tmem_shared_auth(host, 1, uuid="not-a-uuid", auth=1)
    host.check()


# --- tmem-freeable and flush --------------------------------------------------------------------
def test_freeable_counts_page_list_and_ephemeral_frames_only():
    host = host_with(1, pages=1024, max_pages=512)
    e = new_pool(host, 1)
    p = new_pool(host, 1, persist=True)
    for i in range(300):
        assert put(host, 1, e, i) == 1
    counts = frame_counts(host)
    eph = counts["tmem ephemeral data"] + counts.get("tmem ephemeral metadata", 0)
    assert eph >= 300
    assert xl.tmem_freeable(host) == eph // 256 == 1
    for i in range(150):                                 # persistent pages: billed, not freeable
        assert put(host, 1, p, i) == 1
    assert frame_counts(host)["d1 persistent tmem data"] == 150
    assert xl.tmem_freeable(host) == 1
    bd = admin.freeable_breakdown(host)
    assert sum(n for n, counted in bd.values() if counted) == host.freeable_pages()
    assert bd["d1 persistent tmem data"] == (150, False)
    host.check()


def test_flush_gives_whole_page_list_and_evicts_only_ephemeral():
    host = host_with(1)
    e = new_pool(host, 1)
    p = new_pool(host, 1, persist=True)
    for i in range(100):
        assert put(host, 1, e, i) == 1
    for i in range(10):
        assert put(host, 1, p, i) == 1
    buf = bytearray(4096)
    for i in range(8):                                   # exclusive gets: 8 frames to page list
        assert host.do_tmem_op(1, TmemOp(cmd=abi.TMEM_GET_PAGE, pool_id=e, oid=(i // 8, 0, 0),
                                         index=i % 8, page=buf)) == 1
        host.check()
    listed = len(host.mem.page_list)
    assert listed >= 8
    heap = len(host.mem.heap)
    # 1 KB = one frame is asked for; everything on the list goes, nothing is evicted
    assert xl.tmem_flush(host, 1) == 4 * listed
    host.check()
    assert len(host.mem.page_list) == 0 and len(host.mem.heap) == heap + listed
    assert host.evicted_pgs == 0
    # 0xFFFFFFFF KB wraps (kb + 3 is a u32 in Xen): 0 frames asked, nothing evicted
    assert xl.tmem_flush(host, 0xFFFFFFFF) == 0 and host.evicted_pgs == 0
    # flushing "everything" (the largest request that does not wrap): all ephemeral
    # frames, no persistent page
    xl.tmem_flush(host, 0xFFFFFFFC)
    host.check()
    assert host.freeable_pages() == 0 and host.eph_count == 0
    assert host.clients[1].pools[p].pgp_count == 10


def test_flush_one_domain_is_refused():
    host = host_with(1)
    new_pool(host, 1)
    with pytest.raises(xl.XlError) as e:
        xl.tmem_flush(host, 4, 1)
    assert e.value.rc == -1
    host.check()


def test_a_guest_cannot_run_the_commands():
    host, *_ = busy_host()
    for fn, args in ((xl.tmem_list, (None,)), (xl.tmem_freeze, (1,)), (xl.tmem_freeable, ()),
                     (xl.tmem_flush, (4,))):
        with pytest.raises(xl.XlError) as e:
            fn(host, *args, caller=1)
        assert e.value.rc == -errno.EPERM
    with pytest.raises(xl.XlError) as e:
        xl.tmem_shared_auth(host, 2, uuid=UUID_TEXT, auth=1, caller=1)
    assert e.value.rc == -errno.EPERM
    assert not host.clients[1].frozen
    host.check()


@pytest.mark.parametrize("domid", [-1, ALL, 1 << 20, "1", 1.0])
def test_bad_domain_ids_are_rejected_before_any_hypercall(domid):
    host = host_with(1)
    calls = []
    with pytest.raises(ValueError):
        xl.tmem_freeze(host, domid, trace=calls)
    assert calls == [] and host.total_tmem_ops == 0


def test_same_hypercalls_as_the_guest_layer_xl():
    """tmemref.xl and tmemref.guest.Xl are two faces of the same libxl calls."""
    host, *_ = busy_host()
    mine, theirs = [], []
    xl.tmem_freeze(host, 1, trace=mine)
    xl.tmem_set(host, 2, weight=4, trace=mine)
    xl.tmem_shared_auth(host, 1, uuid=UUID_TEXT, auth=1, trace=mine)
    gx = Xl(host, trace=theirs)
    gx.tmem_freeze(1)
    gx.tmem_set(2, weight=4)
    gx.tmem_shared_auth(1, UUID_TEXT, 1)
    assert [describe(c.op) for c in mine] == [describe(c.op) for c in theirs]
    host.check()


def test_command_lines():
    assert xl.command_line("list", 3) == "xl tmem-list 3"
    assert xl.command_line("list", None, long=True) == "xl tmem-list -l -a"
    assert xl.command_line("thaw") == "xl tmem-thaw -a"
    assert xl.command_line("set", None, weight=1, cap=2, compress=0) == \
        "xl tmem-set -a -w 1 -c 2 -p 0"
    assert xl.command_line("freeable") == "xl tmem-freeable"
    with pytest.raises(ValueError):
        xl.command_line("reboot")


# --- COUNTER_DOCS -------------------------------------------------------------------------------
# The two-letter keys of facts §8.2, typed from the facts (not from the implementation).
FACTS_KEYS = {
    "G": "Tt Te Cf Af Pf Ta Lm Et Ea Rt Ra Rx Fp Ec Em Oc Om Nc Nm Pc Pm Fc Fm Sc Sm Ep Gd Zt Gz",
    "C": "CI ww ca co fr Tc Ge Pp Gp Ec Em cp cb cn cm",
    "P": "CI PI PT U0 U1 Pc Pm Oc Om Nc Nm ps pt pd pr px gs gt fs ft os ot",
    "S": "SI PT U0 U1 SC Pc Pm Oc Om Nc Nm ps pt pd pr px gs gt fs ft os ot",
}


def test_counter_docs_cover_exactly_the_facts_keys():
    want = {(k, t) for k, tags in FACTS_KEYS.items() for t in tags.split()}
    want |= {("T", letter + s) for letter in "GPgpFOCcd" for s in "ntxm"}
    assert set(admin.COUNTER_DOCS) == want
    # the T= letters are the ones xen-tmem-list-parse reads
    assert {letter for letter, _ in TIMING} == set("GPgpFOCcd")
    for key, text in admin.COUNTER_DOCS.items():
        field, sep, meaning = text.partition(": ")
        assert sep and field and meaning, key


def _everything_host():
    """Persistent and ephemeral pools, a shared pool with two sharers, dup puts, gets,
    flushes, a frozen client: every LIST line kind."""
    host, e, p, e2 = busy_host()
    for d in (1, 2):
        xl.tmem_shared_auth(host, d, uuid=UUID_TEXT, auth=1)
        s = new_pool(host, d, shared=True, uuid=(UUID_LO, UUID_HI))
        assert put(host, d, s, 300 + d) == 1
    put(host, 1, e, 0, page(77))
    host.do_tmem_op(1, TmemOp(cmd=abi.TMEM_FLUSH_PAGE, pool_id=e, oid=(9, 0, 0), index=1))
    xl.tmem_freeze(host, 2)
    host.check()
    return host


def test_every_key_list_prints_has_a_description_and_back():
    host = _everything_host()
    printed = set()
    for long in (False, True):
        out = xl.tmem_list(host, None, long=long)
        keys = admin.list_keys(out)
        assert len(keys) == len(set(keys))
        missing = [k for k in keys if k not in admin.COUNTER_DOCS]
        assert not missing, missing
        printed |= set(keys)
    assert {k[0] for k in printed} == {"G", "S", "C", "P"}
    # every documented G/S/C/P key is one LIST really prints (no T= line in tmemref)
    assert {k for k in admin.COUNTER_DOCS if k[0] != "T"} == printed
    host.check()


def test_counter_rows_values_match_the_parser():
    host = _everything_host()
    out = xl.tmem_list(host, None, long=True)
    parsed = parse_list(out)
    rows = admin.counter_rows(out)
    assert len(rows) == len(admin.list_keys(out))
    by = {(r[0][0], r[1]): r for r in rows}
    assert by[("G", "Tt")][4] == str(parsed["global"]["Tt"])
    assert by[("C", "fr")][4] == str(parsed["clients"][0]["fr"])       # the first client's
    assert by[("G", "Ec")][2] == "eph_count"
    with pytest.raises(KeyError):
        admin.counter_rows("G=Zz:1\n")
    short = admin.counter_rows(out, shared_pool_stats=False)
    assert [r[1] for r in short if r[0] == "S="] == ["SI", "PT", "U0", "U1", "SC"]
    assert len(short) == len(rows) - 17
    # xen-tmem-list-parse reads it too
    assert format_list_parse(out).startswith(f"total tmem ops={parsed['global']['Tt']} ")


# --- sub-op handlers ----------------------------------------------------------------------------
def test_subop_handlers_cover_every_subop():
    assert set(admin.SUBOP_HANDLERS) == set(abi.SUBOP_NAMES)


def test_subop_handlers_are_what_do_control_calls(monkeypatch):
    """Replace each named handler by a recorder and issue the sub-op from dom0."""
    targets = {control.freeze_pools: (control, "freeze_pools"),
               control.flush_mem: (control, "flush_mem"),
               control.set_var: (control, "set_var"),
               stats.tmemc_list_into: (stats, "tmemc_list_into"),
               Host.freeable_pages: (Host, "freeable_pages")}
    for sub, fn in admin.SUBOP_HANDLERS.items():
        host = host_with(1)
        new_pool(host, 1)
        called = []
        with monkeypatch.context() as m:
            for f, (owner, name) in targets.items():
                m.setattr(owner, name,
                          (lambda f: lambda *a, **k: called.append(f) or 0)(f))
            rc = host.do_tmem_op(0, TmemOp(cmd=abi.TMEM_CONTROL, subop=sub, cli_id=ALL,
                                           buf=bytearray(64), arg1=64))
        host.check()
        if sub in control.SAVE_RESTORE_SUBOPS:
            continue                                     # test_save_handlers_are_what_runs
        assert called == [fn], abi.SUBOP_NAMES[sub]


def test_save_handlers_are_what_runs(monkeypatch):
    """The save / restore handlers named in SUBOP_HANDLERS are the functions
    save.do_save_restore calls (each replaced by a recorder)."""
    fns = {fn for sub, fn in admin.SUBOP_HANDLERS.items() if sub in control.SAVE_RESTORE_SUBOPS}
    assert all(fn.__module__ == "tmemref.core.save" for fn in fns)
    for sub in sorted(control.SAVE_RESTORE_SUBOPS):
        host = host_with(1)
        new_pool(host, 1, persist=True)
        called = []
        with monkeypatch.context() as m:
            for fn in fns:
                m.setattr(save, fn.__name__,
                          (lambda f: lambda *a, **k: called.append(f) or 0)(fn))
            host.do_tmem_op(0, TmemOp(cmd=abi.TMEM_CONTROL, subop=sub, cli_id=1,
                                      buf=bytearray(8192), arg1=8192))
        host.check()
        assert called == [admin.SUBOP_HANDLERS[sub]], abi.SUBOP_NAMES[sub]


def test_subop_rows_live_return_codes():
    rows = admin.subop_rows()
    assert [r[0] for r in rows] == sorted(abi.SUBOP_NAMES)
    assert all(r[6] == "-EPERM" for r in rows)           # never from a guest
    by = {r[1]: r for r in rows}
    assert by["SAVE_BEGIN"][5] == "1" and by["FREEZE"][5] == "0"        # guest 1 has a pool
    assert by["SAVE_GET_MAXPOOLS"][5] == "16" and by["SAVE_END"][5] == "0"
    assert by["FLUSH"][2] == "core.control.flush_mem"
    assert "destroys nothing" in by["DESTROY"][3]
    assert "``" not in "".join(r[3] for r in rows)
    grouped = admin.subop_rows(grouped=True)
    assert len(grouped) == 10 and grouped[-1][2] == "core.save"
    assert grouped[-1][0] == "10–21, 30, 32, 33" and "-EOPNOTSUPP" not in grouped[-1][5]
    assert sorted(control.SAVE_RESTORE_SUBOPS) == [*range(10, 22), 30, 32, 33]


def test_handler_rows_group_every_subop_once():
    rows = admin.handler_rows()
    names = [n for _, subs, _ in rows for n in subs]
    assert sorted(names) == sorted(n.removeprefix("TMEMC_") for n in abi.SUBOP_NAMES.values())
    assert [h for h, _, _ in rows] == ["core.control.freeze_pools", "core.control.flush_mem",
                                       "core.stats.tmemc_list_into", "core.control.set_var",
                                       "core.host.Host.freeable_pages", "core.save"]
    assert rows[-1][1][0] == "SAVE_BEGIN" and len(rows[-1][1]) == 15


def test_control_notes_exist():
    notes = admin.control_notes()
    assert [n.topic for n in notes] == list(admin.CONTROL_NOTE_TOPICS)
    auth = notes[admin.CONTROL_NOTE_TOPICS.index("TMEM_AUTH flag value")]
    assert "1 = authorise" in auth.xen


# --- the manageability sequence -----------------------------------------------------------------
def _run(steps, host):
    out = []
    for caption, fn in steps:
        out.append(fn(host))
        host.check()
    return out


def test_absorbed_host_has_only_the_guard_free():
    host, guest = admin.absorbed_host(pages=2048, guest_pages=256, extra=64)
    host.check()
    assert host.evicted_pgs > 0
    assert host.mem.guard_pages() <= host.min_free_pages   # beyond the heap's reserve
    assert admin.tool_free_pages(host) < 300
    assert host.freeable_pages() > 2048 - 256 - 256 - 300


def test_make_room_with_freeze_creates_the_guest():
    host, guest = admin.absorbed_host(pages=2048, guest_pages=256, extra=64)
    t = admin.Transcript(host)
    steps = admin.make_room_steps(t, 2, 768, meanwhile=("guest 1 puts 100 pages",
                                                     lambda h: guest.put(100)))
    assert [c for c, _ in steps][0] == "xl tmem-freeze -a"
    freeable_before = host.freeable_pages() >> 8
    free_before = admin.tool_free_pages(host)
    freeze, freeable, flushed, busy, created, thaw = _run(steps, host)
    assert freeze == 0 and thaw == 0
    assert freeable == freeable_before
    assert flushed >= 4 * (768 - free_before)
    assert busy.value == {-abi.EFROZEN: 100}            # frozen: tmem took nothing more
    assert created.ok and len(host.mem.domains[2].own_frames) == 768
    assert not host.clients[1].frozen                    # thawed at the end
    assert guest.put(1).value == {1: 1}
    text = str(t)
    order = ["xl tmem-freeze -a", "xl tmem-freeable", "TMEMC_FLUSH", "meanwhile", "create domain",
             "xl tmem-thaw -a"]
    pos = [text.index(s) for s in order]
    assert pos == sorted(pos)
    assert [c.op.subop for c in t.calls] == [abi.TMEMC_FREEZE, abi.TMEMC_QUERY_FREEABLE_MB,
                                             abi.TMEMC_FLUSH, abi.TMEMC_THAW]
    host.check()


def test_make_room_without_freeze_tmem_keeps_absorbing():
    host, guest = admin.absorbed_host(pages=2048, guest_pages=256, extra=64)
    t = admin.Transcript(host)
    steps = admin.make_room_steps(t, 2, 768, freeze=False,
                               meanwhile=("guest 1 puts 300 pages", lambda h: guest.put(300)))
    freeable, flushed, busy, created = _run(steps, host)
    assert busy.value == {1: 300}                         # not frozen: all stored ...
    assert not created.ok and 2 not in host.mem.domains   # ... from the room just made
    assert admin.tool_free_pages(host) < 768
    assert "refused" in str(t)
    host.check()


def test_without_the_tools_check_the_heap_takes_frames_back_one_by_one():
    """Order-0 allocations make tmem relinquish frames (Rt/Ra), flush or not."""
    host, guest = admin.absorbed_host(pages=2048, guest_pages=256, extra=64)
    free = admin.tool_free_pages(host)
    host.create_domain(2, pages=768)
    host.check()
    short = 768 - (free - host.mem.midsize_alloc_zone_pages)   # the heap keeps its reserve
    assert host.relinq_pgs == short == host.relinq_attempts


def test_statistics_host_lists_every_documented_key_with_consistent_counters():
    host = admin.statistics_host()
    host.check()
    out = xl.tmem_list(host, None, long=True)
    assert {k for k in admin.COUNTER_DOCS if k[0] != "T"} == set(admin.list_keys(out))
    lst = parse_list(out)
    pools = [p for c in lst["clients"] for p in c["pools"]] + lst["shared"]
    for p in pools:                                      # facts §14 rule 15
        assert p["pt"] >= p["ps"] and p["gt"] >= p["gs"] and p["ft"] >= p["fs"]
        assert p["ot"] >= p["os"]
    assert lst["global"]["Ec"] == sum(c["Ec"] for c in lst["clients"]) == host.eph_count
    c1, c2 = lst["clients"]
    assert (c2["ww"], c2["co"], c2["fr"]) == (2, 1, 1)
    assert c2["cp"] == 3 and 0 < c2["cb"] < 3 * 4096
    eph1 = c1["pools"][0]
    assert (eph1["ps"], eph1["pt"], eph1["pr"], eph1["gs"], eph1["fs"], eph1["ft"]) == \
        (7, 7, 1, 2, 1, 2)
    assert lst["shared"][0]["SC"] == [1, 2]
    assert (lst["shared"][0]["U0"], lst["shared"][0]["U1"]) == \
        xl.uuid_parse(admin.STATS_UUID)
    assert lst["global"]["Te"] == 2                      # the -EEMPTY get, the -EFROZEN put


def test_rc_name_spells_eopnotsupp_as_xen_does():
    """Xen's headers and the facts (§3.1, §3.10) call errno 95 EOPNOTSUPP; Python's
    errno.errorcode[95] on Linux is 'ENOTSUP'. The sub-op table shows Xen's name."""
    assert abi.rc_name(-errno.EOPNOTSUPP) == "-EOPNOTSUPP"
    assert errno.errorcode[errno.EOPNOTSUPP] != "EOPNOTSUPP"   # what rc_name corrects
