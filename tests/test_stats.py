"""TMEMC_LIST and the statistics it reports (facts §2.2, §2.7, §8.2); the list parser (§8.3).

Expected key lists and counter values are written down from the facts, not read back from
the implementation: each workload is small enough that every counter can be worked out by hand,
and the comment next to each expectation says why it has that value.
"""
import errno
import re

import numpy as np
import pytest

from helpers import (ALL, call, control, cpage, flush_object, flush_page, get, new_pool,
                     page, put, auth)
from tmemref import Host, TmemOp, abi
from tmemref.core import listparse
from tmemref.core.listparse import format_list_parse, parse_line, parse_list, unparse_list
from tmemref.host.frames import ANON, PAGE_LIST

# --- the format, from facts §8.2 ----------------------------------------------------------------
G_SHORT = ["Tt", "Te", "Cf", "Af", "Pf", "Ta", "Lm", "Et", "Ea", "Rt", "Ra", "Rx", "Fp"]
G_LONG = G_SHORT + ["Ec", "Em", "Oc", "Om", "Nc", "Nm", "Pc", "Pm", "Fc", "Fm", "Sc", "Sm", "Ep",
                    "Gd", "Zt", "Gz"]
C_SHORT = ["CI", "ww", "ca", "co", "fr", "Tc", "Ge", "Pp", "Gp"]
C_LONG = C_SHORT + ["Ec", "Em", "cp", "cb", "cn", "cm"]
POOL_LONG = ["Pc", "Pm", "Oc", "Om", "Nc", "Nm", "ps", "pt", "pd", "pr", "px", "gs", "gt", "fs",
             "ft", "os", "ot"]
P_SHORT = ["CI", "PI", "PT", "U0", "U1"]
S_SHORT = ["SI", "PT", "U0", "U1"]          # then SC once per sharer
U_A = (0x1234abcd, 0xfeed)                  # a shared pool uuid (lo, hi)


def keys(line):
    """The tags of one LIST line, in order (read with a regex, independent of listparse)."""
    assert line.endswith("\n") and not line.endswith(",\n"), repr(line)
    body = line[2:-1]
    items = body.split(",")
    assert all(re.fullmatch(r"[A-Za-z0-9]{2}:[0-9a-zA-Z]+", it) for it in items), line
    return [it[:2] for it in items]


def fields(line):
    """{tag: raw value string} of one LIST line."""
    return {it[:2]: it[3:] for it in line[2:].rstrip("\n").split(",")}


def lines_of(text):
    return text.splitlines(keepends=True)


def list_via_hypercall(host, cli_id=ALL, buflen=32768, use_long=1, size=None, fill=0xAA):
    """(rc, buffer) of TMEMC_LIST issued by dom0; the buffer starts as ``fill`` bytes."""
    buf = bytearray([fill]) * (buflen if size is None else size)
    rc = call(host, 0, TmemOp(cmd=abi.TMEM_CONTROL, subop=abi.TMEMC_LIST, cli_id=cli_id,
                              arg1=buflen, arg2=use_long, buf=buf))
    return rc, buf


def c_string(buf):
    return bytes(buf).split(b"\0", 1)[0].decode("ascii")


def busy_host():
    """Three domains: dom2 uses tmem first (so its client is listed first), dom1 owns a private
    ephemeral, a private persistent (created with a nonzero uuid) and a shared pool that dom2
    joins; dom3 never uses tmem (no client, so no C= line)."""
    host = Host(pages=2048)
    for d in (1, 2, 3):
        host.create_domain(d, pages=32, max_pages=512)
    assert new_pool(host, 2) == 0                                   # dom2 slot 0: private eph
    assert new_pool(host, 1) == 0                                   # dom1 slot 0: private eph
    assert new_pool(host, 1, persist=True, uuid=(0x77, 0x88)) == 1  # dom1 slot 1: private pers
    assert auth(host, 1, U_A) == 1 and auth(host, 2, U_A) == 1
    assert new_pool(host, 1, shared=True, uuid=U_A) == 2            # dom1 slot 2: creates U_A
    assert new_pool(host, 2, shared=True, uuid=U_A) == 1            # dom2 slot 1: joins U_A
    for i in range(3):
        assert put(host, 1, 0, (1, 0, 0), i, page(i)) == 1
        assert put(host, 1, 1, (2, 0, 0), i, page(10 + i)) == 1
        assert put(host, 2, 1, (3, 0, 0), i, page(20 + i)) == 1
    assert put(host, 2, 0, (4, 0, 0), 0, page(30)) == 1
    return host


# --- line structure -----------------------------------------------------------------------------
@pytest.mark.parametrize("use_long", [False, True])
def test_all_clients_lines_in_order_with_the_documented_keys(use_long):
    host = busy_host()
    text = host.list_stats(long=use_long)
    lines = lines_of(text)
    # G, then one S per global shared pool, then each client (creation order) with its pools
    # (slot order); no T= line (this model keeps no cycle counters).
    assert [ln[:2] for ln in lines] == ["G=", "S=", "C=", "P=", "P=", "C=", "P=", "P=", "P="]
    g, s, c2, p20, p21, c1, p10, p11, p12 = lines
    tail = POOL_LONG if use_long else []
    assert keys(g) == (G_LONG if use_long else G_SHORT)
    assert keys(s) == S_SHORT + ["SC", "SC"] + tail
    for c in (c2, c1):
        assert keys(c) == (C_LONG if use_long else C_SHORT)
    for p in (p20, p21, p10, p11, p12):
        assert keys(p) == P_SHORT + tail
    assert [fields(c)["CI"] for c in (c2, c1)] == ["2", "1"]
    # PI is the pool's own id (tmemc_list_client prints p->pool_id): for the shared pool that
    # dom2 joined in its slot 1, that is the owner's (dom1's) slot 2.
    assert [(fields(p)["CI"], fields(p)["PI"]) for p in (p20, p21, p10, p11, p12)] == \
        [("2", "0"), ("2", "2"), ("1", "0"), ("1", "1"), ("1", "2")]
    # PT: P/E persistent/ephemeral, then S/P shared/private
    assert [fields(p)["PT"] for p in (p20, p21, p10, p11, p12)] == ["EP", "ES", "EP", "PP", "ES"]
    assert fields(s)["PT"] == "ES"
    # uuid words in hex; private pools print 0 even if created with a uuid
    assert (fields(s)["U0"], fields(s)["U1"]) == ("1234abcd", "feed")
    assert (fields(p12)["U0"], fields(p12)["U1"]) == ("1234abcd", "feed")
    assert (fields(p11)["U0"], fields(p11)["U1"]) == ("0", "0")
    # SI is the index in the global table (the first shared pool: 0); SC lists the sharers in
    # the order they joined
    assert fields(s)["SI"] == "0"
    assert re.findall(r"SC:(\d+)", s) == ["1", "2"]
    # every other value is a plain decimal
    for line in lines:
        for tag, raw in fields(line).items():
            if tag not in ("PT", "U0", "U1"):
                assert re.fullmatch(r"[0-9]+", raw), (tag, raw, line)


def test_short_form_is_the_first_group_of_the_long_form():
    host = busy_host()
    short, long_ = lines_of(host.list_stats(long=False)), lines_of(host.list_stats(long=True))
    assert len(short) == len(long_)
    for s, ln in zip(short, long_):
        assert ln.startswith(s[:-1] + ",")


def test_one_client_form_has_only_its_c_and_p_lines():
    host = busy_host()
    full = lines_of(host.list_stats())
    one = lines_of(host.list_stats(cli_id=1))
    assert [ln[:2] for ln in one] == ["C=", "P=", "P=", "P="]
    assert one == [ln for ln in full if ln.startswith(("C=CI:1,", "P=CI:1,"))]
    rc, buf = list_via_hypercall(host, cli_id=2, use_long=0)
    assert rc == 0
    assert c_string(buf) == host.list_stats(cli_id=2, long=False)
    assert [ln[:6] for ln in lines_of(c_string(buf))] == ["C=CI:2", "P=CI:2", "P=CI:2"]


@pytest.mark.parametrize("cli_id", [9, 3])   # no such domain; a domain that never used tmem
def test_unknown_client_is_minus_one_and_writes_nothing(cli_id):
    host = busy_host()
    rc, buf = list_via_hypercall(host, cli_id=cli_id)
    assert rc == -1
    assert buf == bytearray([0xAA]) * 32768
    assert host.list_stats(cli_id=cli_id) == ""


def test_fresh_host_lists_only_the_global_line():
    host = Host(pages=512)
    text = host.list_stats(long=False)
    assert text == "G=" + ",".join(f"{k}:0" for k in G_SHORT) + "\n"


# --- the caller's buffer ------------------------------------------------------------------------
def greedy(lines, buflen):
    """Facts §8.2: a line of n bytes goes in only if sum + n < len, else it is dropped."""
    out, total = [], 0
    for line in lines:
        if total + len(line) < buflen:
            out.append(line)
            total += len(line)
    return "".join(out)


def test_buffer_boundaries_of_the_first_line():
    host = busy_host()
    lines = lines_of(host.list_stats())
    g = len(lines[0])
    rc, buf = list_via_hypercall(host, buflen=g + 1, size=g + 1)
    # the hypercall itself is counted in Tt before the line is written (same number of digits)
    lines = lines_of(host.list_stats())
    assert len(lines[0]) == g
    assert rc == 0 and c_string(buf) == lines[0] and buf[g] == 0
    rc, buf = list_via_hypercall(host, buflen=g, size=g + 50)
    lines = lines_of(host.list_stats())
    assert rc == 0
    assert not c_string(buf).startswith("G=")           # sum + n >= len: dropped
    assert c_string(buf) == greedy(lines, g)


@pytest.mark.parametrize("buflen", [1, 60, 150, 400, 700, 1000, 1500, 32768])
@pytest.mark.parametrize("use_long", [0, 1])
def test_lines_that_do_not_fit_are_dropped_and_the_text_is_nul_terminated(buflen, use_long):
    host = busy_host()
    rc, buf = list_via_hypercall(host, buflen=buflen, use_long=use_long, size=buflen + 64)
    assert rc == 0
    lines = lines_of(host.list_stats(long=bool(use_long)))
    want = greedy(lines, buflen)
    assert c_string(buf) == want
    n = len(want)
    if n:
        assert n < buflen and buf[n] == 0               # NUL right after the text, inside len
    assert buf[buflen:] == bytearray([0xAA]) * 64       # nothing at or beyond len
    assert buf[n + 1:] == bytearray([0xAA]) * (len(buf) - n - 1)  # nothing after the NUL
    assert c_string(buf) == host.list_stats(long=bool(use_long), buflen=buflen)


def test_a_zero_length_buffer_is_left_alone():
    """len 0: no line fits (sum + n >= 0), so Xen copies nothing; not even a NUL may be written
    outside the buffer the caller declared."""
    host = Host(pages=512)
    rc, buf = list_via_hypercall(host, buflen=0, size=16)
    assert rc == 0
    assert buf == bytearray([0xAA]) * 16


def test_a_buffer_shorter_than_declared_is_not_overrun():
    host = busy_host()
    rc, buf = list_via_hypercall(host, buflen=32768, size=300)
    assert rc == 0
    assert len(buf) == 300
    assert c_string(buf) == greedy(lines_of(host.list_stats()), 300)


@pytest.mark.parametrize("cli_id", [ALL, 1, 2])
@pytest.mark.parametrize("use_long", [0, 1])
@pytest.mark.parametrize("buflen", [200, 800, 32768])
def test_list_hypercall_equals_list_stats(cli_id, use_long, buflen):
    host = busy_host()
    rc, buf = list_via_hypercall(host, cli_id=cli_id, buflen=buflen, use_long=use_long)
    assert rc == 0
    assert c_string(buf) == host.list_stats(cli_id=cli_id, long=bool(use_long), buflen=buflen)


def test_list_without_a_buffer_is_efault():
    host = Host(pages=512)
    rc = call(host, 0, TmemOp(cmd=abi.TMEM_CONTROL, subop=abi.TMEMC_LIST, cli_id=ALL,
                              arg1=100, arg2=1, buf=None))
    assert rc == -errno.EFAULT


# --- what each counter means --------------------------------------------------------------------
def stats(host, cli_id=ALL):
    """{"G": {...}, ("C", id): {...}, ("P", id, slot): {...}, ("S", index): {...}} as ints."""
    out = {}
    for line in lines_of(host.list_stats(cli_id=cli_id)):
        f = fields(line)
        vals = {k: (v if k == "PT" else int(v, 16) if k in ("U0", "U1") else int(v))
                for k, v in f.items() if k != "SC"}
        if line.startswith("G="):
            out["G"] = vals
        elif line.startswith("C="):
            out["C", vals["CI"]] = vals
        elif line.startswith("P="):
            out["P", vals["CI"], vals["PI"]] = vals
        elif line.startswith("S="):
            out["S", vals["SI"]] = vals
    return out


def frames_in(host, state):
    return int(np.count_nonzero(host.mem.owner == state))


def test_counters_of_a_scripted_workload():
    host = Host(pages=2048)
    host.create_domain(1, pages=32, max_pages=512)
    E = new_pool(host, 1)                                   # op 1
    P = new_pool(host, 1, persist=True)                     # op 2
    A, B, C, D, X, Y = (page(i) for i in range(6))
    o1, o2, o5 = (1, 0, 0), (2, 0, 0), (5, 0, 0)
    assert put(host, 1, E, o1, 0, A) == 1                   # 3  new page
    assert put(host, 1, E, o1, 1, B) == 1                   # 4  new page, same object
    assert put(host, 1, E, o2, 0, C) == 1                   # 5  new object
    assert put(host, 1, E, o1, 0, D) == 1                   # 6  duplicate put: replaced
    assert get(host, 1, E, o1, 0) == (1, D)                 # 7  hit; private eph: exclusive
    assert get(host, 1, E, o1, 0)[0] == 0                   # 8  miss (page gone)
    assert get(host, 1, E, (9, 0, 0), 0)[0] == 0            # 9  miss (no object)
    assert flush_page(host, 1, E, o2, 0) == 1               # 10 found; object o2 goes
    assert flush_page(host, 1, E, o2, 0) == 1               # 11 not found
    assert flush_object(host, 1, E, o1) == 1                # 12 found (index 1)
    assert flush_object(host, 1, E, o1) == 1                # 13 not found
    assert get(host, 1, E, o1, 1)[0] == -abi.EEMPTY         # 14 pool empty: gets not counted
    assert put(host, 1, P, o5, 0, X) == 1                   # 15 persistent put
    assert put(host, 1, P, o5, 0, Y) == 1                   # 16 duplicate: replaced
    assert get(host, 1, P, o5, 0) == (1, Y)                 # 17 persistent get keeps the page
    assert get(host, 1, P, o5, 0) == (1, Y)                 # 18
    assert flush_page(host, 1, P, o5, 7) == 1               # 19 not found
    s = stats(host)
    # radix tree (Xen's copy of Linux's, facts §2.3): index 0 alone sits in the root, index 1
    # needs one node
    e = {"Pc": 0, "Pm": 3, "Oc": 0, "Om": 2, "Nc": 0, "Nm": 1,
         "ps": 4, "pt": 4, "pd": 0, "pr": 1, "px": 0,     # 4 puts, all good, one of them a dup
         "gs": 1, "gt": 3,                                  # op 14 returned -EEMPTY uncounted
         "fs": 1, "ft": 2, "os": 1, "ot": 2}
    assert {k: s["P", 1, E][k] for k in e} == e
    p = {"Pc": 1, "Pm": 1, "Oc": 1, "Om": 1, "Nc": 0, "Nm": 0,
         "ps": 2, "pt": 2, "pd": 0, "pr": 1, "px": 0, "gs": 2, "gt": 2,
         "fs": 0, "ft": 1, "os": 0, "ot": 0}
    assert {k: s["P", 1, P][k] for k in p} == p
    c = {"CI": 1, "ww": 0, "ca": 0, "co": 0, "fr": 0, "Tc": 0,
         "Ge": 1,            # succ_eph_gets: op 7
         "Pp": 2,            # succ_pers_puts: ops 15 and 16 (a replaced dup counts)
         "Gp": 2,            # succ_pers_gets: ops 17, 18
         "Ec": 0, "Em": 3, "cp": 0, "cb": 0, "cn": 0, "cm": 0}
    assert s["C", 1] == c
    g = s["G"]
    assert g["Tt"] == 19 and g["Te"] == 1                   # every hypercall; op 14 failed
    assert g["Ep"] == 3                                     # tot_good_eph_puts: not the dup
    assert (g["Ec"], g["Em"]) == (0, 3)
    assert (g["Pc"], g["Pm"], g["Oc"], g["Om"]) == (1, 3, 1, 2)
    assert (g["Nc"], g["Nm"]) == (0, 1)
    assert (g["Fc"], g["Fm"]) == (1, 3)                     # raw data frames only
    assert (g["Et"], g["Ea"], g["Rt"], g["Ra"], g["Rx"]) == (0, 0, 0, 0, 0)
    assert (g["Cf"], g["Af"], g["Pf"], g["Lm"], g["Fp"]) == (0, 0, 0, 0, 0)
    assert (g["Sc"], g["Sm"], g["Gd"], g["Zt"], g["Gz"]) == (0, 0, 0, 0, 0)
    # tmem_page_list: the 3 ephemeral data frames and the ephemeral metadata frame came back;
    # the persistent put then took two of them (its metadata frame and its data frame)
    assert g["Ta"] == 2 == frames_in(host, PAGE_LIST)


def test_list_counts_itself_in_tt():
    host = Host(pages=512)
    host.create_domain(1, pages=8)
    new_pool(host, 1)
    call(host, 1, TmemOp(cmd=abi.TMEM_CONTROL, subop=abi.TMEMC_LIST, buf=bytearray(100)))
    rc, buf = list_via_hypercall(host, use_long=0)
    g = fields(lines_of(c_string(buf))[0])
    assert (int(g["Tt"]), int(g["Te"])) == (3, 1)       # NEW_POOL, guest's -EPERM, this LIST


def test_frozen_puts_count_as_the_facts_say():
    host = Host(pages=1024)
    host.create_domain(1, pages=16)
    E = new_pool(host, 1)
    assert put(host, 1, E, (1, 0, 0), 0, page(0)) == 1
    assert control(host, abi.TMEMC_FREEZE, cli_id=1) == 0
    assert put(host, 1, E, (2, 0, 0), 0, page(1)) == -abi.EFROZEN    # new object: pt only
    s = stats(host)["P", 1, E]
    assert (s["pt"], s["ps"], s["px"]) == (2, 1, 0)
    assert put(host, 1, E, (1, 0, 0), 1, page(2)) == -abi.EFROZEN    # new page, old object
    s = stats(host)["P", 1, E]
    assert (s["pt"], s["ps"], s["px"]) == (3, 1, 1)
    assert put(host, 1, E, (1, 0, 0), 0, page(3)) == 1               # dup put still allowed
    s = stats(host)["P", 1, E]
    assert (s["pt"], s["ps"], s["px"], s["pr"]) == (4, 2, 1, 1)
    assert stats(host)["G"]["Te"] == 2


def test_a_full_domain_fails_persistent_puts_and_counts_pf():
    """The data frame cannot be had (the domain is at max_pages): px and Pf count it; the
    descriptor itself was allocated, so Af does not (facts §8.2: Af is sub-page failures)."""
    host = Host(pages=1024)
    d = host.create_domain(1, pages=16, max_pages=18)
    P = new_pool(host, 1, persist=True)
    assert put(host, 1, P, (1, 0, 0), 0, page(0)) == 1     # metadata frame + data frame
    assert d.tot_pages == d.max_pages
    assert put(host, 1, P, (1, 0, 0), 1, page(1)) == -errno.ENOMEM
    s = stats(host)
    assert (s["P", 1, P]["pt"], s["P", 1, P]["ps"], s["P", 1, P]["px"]) == (2, 1, 1)
    assert (s["G"]["Pf"], s["G"]["Af"], s["G"]["Te"]) == (1, 0, 1)
    assert get(host, 1, P, (1, 0, 0), 0) == (1, page(0))


def test_af_counts_sub_page_failures_and_pf_only_whole_pages():
    """Xen counts ``alloc_page_failed`` (Pf) in tmem_alloc_page (data frames) and
    ``alloc_failed`` (Af) in tmem_malloc (descriptors, objects, nodes). A domain at max_pages
    cannot get the first frame of its persistent metadata pool: the object allocation fails,
    which is a sub-page failure only (facts §8.2; X4.12 tmem.c tmem_malloc/tmem_alloc_page)."""
    host = Host(pages=1024)
    host.create_domain(1, pages=16, max_pages=16)
    P = new_pool(host, 1, persist=True)
    assert put(host, 1, P, (1, 0, 0), 0, page(0)) == -errno.ENOMEM
    g = stats(host)["G"]
    assert (g["Af"], g["Pf"]) == (1, 0)


def test_a_put_refused_by_the_1mb_guard_is_not_a_pool_put():
    """4.4+ do_tmem_op: ``if (tmem_ensure_avail_pages()) rc = do_tmem_put(...); else rc =
    -ENOMEM`` — the pool's ``puts``/``no_mem_puts`` are counted inside do_tmem_put (facts §3.1
    step 11, §3.4), so a put the guard refuses moves only Tt and Te."""
    host = Host(pages=260)
    host.create_domain(1, pages=10, max_pages=100)
    P = new_pool(host, 1, persist=True)                     # nothing evictable
    assert len(host.mem.heap) < host.min_free_pages
    assert put(host, 1, P, (1, 0, 0), 0, page(0)) == -errno.ENOMEM
    s = stats(host)
    assert (s["P", 1, P]["pt"], s["P", 1, P]["px"]) == (0, 0)
    assert (s["G"]["Te"], s["G"]["Ea"], s["G"]["Et"]) == (1, 10, 0)   # 10 failed evictions


def test_failed_dup_put_flushes_and_counts_pd():
    """A compressing client: the old copy is compressed; the new data does not compress, so it
    needs a whole frame, which the domain (at max_pages) cannot have — the dup put fails with
    -ENOSPC and the old data is gone (facts §3.5)."""
    host = Host(pages=1024)
    d = host.create_domain(1, pages=16, max_pages=17)
    P = new_pool(host, 1, persist=True)
    assert control(host, abi.TMEMC_SET_COMPRESS, cli_id=1, arg1=1) == 0
    assert put(host, 1, P, (1, 0, 0), 0, cpage(0)) == 1    # compressed, in the metadata frame
    assert d.tot_pages == d.max_pages
    clen = len(host.codec.compress(cpage(0)))
    c = stats(host)["C", 1]
    assert (c["co"], c["cp"], c["cb"], c["cn"]) == (1, 1, clen, 0)
    assert put(host, 1, P, (1, 0, 0), 0, page(1)) == -errno.ENOSPC
    s = stats(host)
    assert {k: s["P", 1, P][k] for k in ("pt", "ps", "pd", "pr", "px", "Pc")} == \
        {"pt": 2, "ps": 1, "pd": 1, "pr": 0, "px": 0, "Pc": 0}
    assert {k: s["C", 1][k] for k in ("cp", "cb", "cn", "Pp")} == \
        {"cp": 0, "cb": 0, "cn": 0, "Pp": 1}    # a dup put never counts compress_poor
    assert s["G"]["Pf"] == 1                                # the whole frame it could not have
    assert get(host, 1, P, (1, 0, 0), 0)[0] == -abi.EEMPTY  # never the old data


def test_evictions_take_the_oldest_pages_and_are_counted():
    host = Host(pages=400)
    host.create_domain(1, pages=16)
    E = new_pool(host, 1)
    n = 400
    for i in range(n):
        assert put(host, 1, E, (1, 0, 0), i, page(i)) == 1
    s = stats(host)
    present = s["P", 1, E]["Pc"]
    g = s["G"]
    assert 0 < g["Et"] == n - present                       # every missing page was evicted
    assert g["Ea"] == g["Et"]                               # no attempt failed
    assert g["Ec"] == present == s["C", 1]["Ec"] == g["Fc"]
    assert g["Em"] == s["C", 1]["Em"] >= present
    pool = host.clients[1].pools[E]
    kept = sorted(i for obj in pool.objects() for i, _ in obj.tree.items())
    assert kept == list(range(n - present, n))              # the oldest went first
    # the guard keeps 1 MB free before each put; the put itself then takes at most a data
    # frame, a descriptor frame and a radix-node frame
    assert len(host.mem.heap) + len(host.mem.page_list) >= host.min_free_pages - 3
    assert g["Ta"] == frames_in(host, PAGE_LIST)


def test_ta_is_the_tmem_page_list():
    host = Host(pages=1024)
    host.create_domain(1, pages=16)
    E = new_pool(host, 1)
    for i in range(8):
        assert put(host, 1, E, (1, 0, 0), i, page(i)) == 1
    assert stats(host)["G"]["Ta"] == 0
    frame = host.clients[1].pools[E].find((1, 0, 0)).tree.lookup(3).data
    assert flush_page(host, 1, E, (1, 0, 0), 3) == 1
    assert frame in host.mem.page_list                      # freed frames go to the page list
    assert stats(host)["G"]["Ta"] == 1 == frames_in(host, PAGE_LIST)
    assert control(host, abi.TMEMC_FLUSH, arg1=0) == 4      # ... until the tools flush it
    assert stats(host)["G"]["Ta"] == 0


def test_query_freeable_mb_is_page_list_plus_ephemeral_frames_over_256():
    host = Host(pages=1024)
    host.create_domain(1, pages=16, max_pages=900)
    E = new_pool(host, 1)
    P = new_pool(host, 1, persist=True)
    for i in range(40):
        assert put(host, 1, P, (1, 0, 0), i, page(i)) == 1
    assert control(host, abi.TMEMC_QUERY_FREEABLE_MB) == 0  # persistent frames never freeable
    for i in range(300):
        assert put(host, 1, E, (2, 0, 0), i, page(i)) == 1
    for i in range(30):
        assert flush_page(host, 1, E, (2, 0, 0), i) == 1
    freeable = frames_in(host, PAGE_LIST) + frames_in(host, ANON)
    assert frames_in(host, PAGE_LIST) >= 30 and freeable >= 256
    assert control(host, abi.TMEMC_QUERY_FREEABLE_MB) == freeable >> 8 == 1


# --- the parser ---------------------------------------------------------------------------------
def test_parser_round_trips_what_list_prints():
    host = busy_host()
    texts = [host.list_stats(long=lg, cli_id=c, buflen=b)
             for lg in (False, True) for c in (ALL, 1, 2) for b in (32768, 500, 90)]
    for text in texts:
        assert unparse_list(parse_list(text)) == text
    rc, buf = list_via_hypercall(host)
    assert unparse_list(parse_list(buf)) == c_string(buf)   # the raw buffer works too


def test_parser_structure_matches_the_host():
    host = busy_host()
    parsed = parse_list(host.list_stats())
    assert parsed["global"]["Tt"] == host.total_tmem_ops
    assert parsed["global"]["Ec"] == host.eph_count == 3 + 3 + 1
    assert parsed["timing"] is None
    (shared,) = parsed["shared"]
    assert shared["SC"] == [1, 2] and (shared["U0"], shared["U1"]) == U_A
    assert shared["PT"] == "ES" and shared["Pc"] == 3
    assert [c["CI"] for c in parsed["clients"]] == [2, 1]
    c1 = parsed["clients"][1]
    assert [(p["PI"], p["PT"], p["Pc"]) for p in c1["pools"]] == \
        [(0, "EP", 3), (1, "PP", 3), (2, "ES", 3)]
    assert c1["Pp"] == 3
    # ephemeral pages are on their pool *owner's* list: dom1 owns the shared pool (facts §4.1)
    assert (c1["Ec"], parsed["clients"][0]["Ec"]) == (3 + 3, 1)


def test_parser_keeps_pools_whose_client_line_was_dropped():
    parsed = parse_list("P=CI:4,PI:2,PT:EP,U0:0,U1:0\n")
    assert parsed["clients"] == [{"CI": 4, "pools": [{"CI": 4, "PI": 2, "PT": "EP",
                                                       "U0": 0, "U1": 0}]}]
    assert unparse_list(parsed) == "P=CI:4,PI:2,PT:EP,U0:0,U1:0\n"


def test_parse_line_rejects_what_the_tool_skips():
    assert parse_line("T\n") is None                        # 4.12's bare T line
    assert parse_line("garbage\n") is None
    assert parse_line("X=Ab:1\n") == ("X", {"Ab": 1})
    assert parse_list("X=Ab:1\nT\n") == {"global": None, "shared": [], "clients": [],
                                          "timing": None}


# --- the tool's output --------------------------------------------------------------------------
SYNTH = (
    "G=Tt:10,Te:1,Cf:2,Af:3,Pf:4,Ta:3,Lm:0,Et:5,Ea:6,Rt:7,Ra:8,Rx:9,Fp:0,Ec:8,Em:9,Oc:1,Om:2,"
    "Nc:0,Nm:1,Pc:5,Pm:6,Fc:2,Fm:3,Sc:2,Sm:4,Ep:3,Gd:1,Zt:100,Gz:5000\n"
    "S=SI:4,PT:ES,U0:2a,U1:ff,SC:3,SC:12,Pc:1,Pm:2,Oc:1,Om:1,Nc:0,Nm:0,ps:2,pt:2,pd:0,pr:0,"
    "px:0,gs:0,gt:0,fs:0,ft:0,os:0,ot:0\n"
    "C=CI:3,ww:5,ca:7,co:1,fr:0,Tc:0,Ge:4,Pp:2,Gp:1,Ec:6,Em:9,cp:4,cb:5000,cn:1,cm:0\n"
    "P=CI:3,PI:0,PT:ES,U0:2a,U1:ff,Pc:1,Pm:2,Oc:1,Om:1,Nc:0,Nm:0,ps:2,pt:2,pd:0,pr:0,px:0,"
    "gs:0,gt:0,fs:0,ft:0,os:0,ot:0\n"
    "P=CI:3,PI:2,PT:PP,U0:0,U1:0,Pc:5,Pm:6,Oc:1,Om:2,Nc:0,Nm:1,ps:7,pt:9,pd:1,pr:2,px:2,gs:1,"
    "gt:3,fs:4,ft:5,os:0,ot:1\n"
    "T=Gn:2,Gt:10,Gx:7,Gm:3,pn:0,pt:5,Fn:3,Ft:0,Fx:0,Fm:0\n"
    "T\n"
)


def test_formatter_prints_the_tools_labels():
    """Expected text written from the tool's format strings (facts §8.3): integer
    percentages (1/3 gets → 33%, 5000 B in 4 pages → 30%), %4.2f dedup/tze/compression
    savings (1/3 → 33.33%, 1 − 2/8 → 75.00%, 1 − 100/8192 → 98.78%, 1 − 5000/8192 → 38.96%),
    the shared pool printed from its S= line and its P= line skipped."""
    want = (
        "total tmem ops=10 (errors=1) -- tmem pages avail=3\n"
        "datastructs: objs=1 (max=2) pgps=5 (max=6) nodes=0 (max=1) pages=2 (max=3) "
        "pcds=2 (max=4) deduped: avg=33.33% (curr=75.00%) tze savings=98.78% "
        "compression savings=38.96% \n"
        "misc: failed_copies=2 alloc_failed=3 alloc_page_failed=4 low_mem=0 evicted=5/6 "
        "relinq=7/8, max_evicts_per_relinq=9, flush_pools=0, eph_count=8, eph_max=9\n"
        "poolid=4[ES] uuid=2a.ff, shared-by:3,12: pgp=1(max=2) obj=1(1) objnode=0(0) "
        "puts=2/2/0(dup=0/0) gets=0/0(0%) flush=0/0 flobj=0/0\n"
        "domid3: weight=5,cap=7,compress=1,frozen=0,total_cycles=0,succ_eph_gets=4,"
        "succ_pers_puts=2,succ_pers_gets=1,eph_count=6,max_eph=9,"
        "compression ratio=30% (samples=4,poor=1,nomem=0)\n"
        "domid3,id2[PP]:pgp=5(max=6) obj=1(2) objnode=0(1) puts=7/9/2(dup=1/2) gets=1/3(33%) "
        "flush=4/5 flobj=0/1\n"
        "succ get cycles: avg=5, max=7, min=3, samples=2\n"
        "flush cycles: avg=0, max=0, min=0, samples=3\n"
    )
    assert format_list_parse(SYNTH) == want
    assert format_list_parse(SYNTH.encode() + b"\0garbage") == want


def test_shared_pool_id_quirk_only_on_request():
    """The tool reads PI, which S= lines never carry, so it prints poolid=0 (facts §8.3)."""
    line = SYNTH.splitlines(keepends=True)[1]
    assert format_list_parse(line).startswith("poolid=4[ES] uuid=2a.ff, shared-by:3,12: ")
    assert format_list_parse(line, quirks=True).startswith("poolid=0[ES] uuid=2a.ff, ")


def test_formatter_reads_tags_as_strstr_does():
    """The tool takes the first place the two letters occur; no ':' after it means 0."""
    out = format_list_parse("C=CI:1,xxEc:5,Ec:9,Ecx:1\n")
    assert "eph_count=5," in out                           # inside another tag, first
    out = format_list_parse("C=CI:1,Emx:4,Em:9\n")
    assert "max_eph=0," in out                             # first hit not followed by ':'
    assert parse_list("C=CI:1,xxEc:5,Ec:9\n")["clients"][0]["Ec"] == 9   # the parser is exact


def test_formatter_wraps_like_unsigned_64_bit_c():
    out = format_list_parse("C=CI:1,ww:-1,co:2\n")
    assert out.startswith(f"domid1: weight={2**64 - 1},cap=0,compress=1,")
    out = format_list_parse(f"P=CI:1,PI:0,PT:EP,gs:{2**62},gt:{2**62}\n")
    assert "gets=%d/%d(%d%%)" % (2**62, 2**62, ((2**62 * 100) % 2**64) // 2**62) in out


def test_formatter_on_a_real_host():
    host = busy_host()
    out = format_list_parse(host.list_stats()).splitlines()
    # G (3 lines), S, then per client its C line and its non-shared P lines
    assert out[0].startswith(f"total tmem ops={host.total_tmem_ops} (errors=0) -- ")
    assert out[3].startswith("poolid=0[ES] uuid=1234abcd.feed, shared-by:1,2: pgp=3(max=3) ")
    assert out[4].startswith("domid2: weight=0,cap=0,compress=0,frozen=0,")
    assert out[5].startswith("domid2,id0[EP]:pgp=1(max=1) ")
    assert out[6].startswith("domid1: ")
    assert out[7].startswith("domid1,id0[EP]:pgp=3(max=3) obj=1(1) ")
    assert out[8].startswith("domid1,id1[PP]:pgp=3(max=3) obj=1(1) ")
    assert len(out) == 9
    # the short form carries no pool statistics: the tool prints zeros
    short = format_list_parse(host.list_stats(long=False)).splitlines()
    assert short[7] == ("domid1,id0[EP]:pgp=0(max=0) obj=0(0) objnode=0(0) puts=0/0/0(dup=0/0) "
                        "gets=0/0(0%) flush=0/0 flobj=0/0")


def test_formatter_reads_long_lines_in_fgets_pieces():
    """fgets(buf, 4096) returns at most 4095 bytes; the rest of a longer line is read as a new
    line (which then starts with neither 'K=')."""
    text = "C=CI:1," + "zz:1," * 900 + "Ge:7\n"
    assert len(text) > listparse.TOOL_BUFSIZE
    out = format_list_parse(text)
    assert out.count("\n") == 1 and "succ_eph_gets=0," in out     # Ge fell into the 2nd piece


def test_a_clock_of_floats_still_times_page_lives():
    # the timestamp is kept as a u64 in the pgp's block: a float clock is truncated, not refused
    t = [1000.75]
    h = Host(pages=512, clock=lambda: t[0])
    h.create_domain(1)
    assert h.do_tmem_op(1, TmemOp(cmd=abi.TMEM_NEW_POOL, flags=abi.pool_flags())) == 0
    page = bytes(range(256)) * 16
    assert h.do_tmem_op(1, TmemOp(cmd=abi.TMEM_PUT_PAGE, oid=(1, 0, 0), page=page)) == 1
    t[0] = 1500.25
    assert h.do_tmem_op(1, TmemOp(cmd=abi.TMEM_FLUSH_PAGE, oid=(1, 0, 0))) == 1
    assert h.clients[1].pools[0].sum_life_cycles == 1500.25 - 1000
    h.check()


def test_page_lives_on_the_default_clock_are_counted_in_hypercalls():
    # the default clock is the count of hypercalls: a page put by the 2nd and flushed by the
    # 6th lived 4 of them, whatever memory its descriptor's block held before
    h = Host(pages=512)
    h.create_domain(1)
    h.mem.words[:] = memoryview(b"\xff" * h.mem.bytes.nbytes).cast("Q")   # dirty memory
    assert h.do_tmem_op(1, TmemOp(cmd=abi.TMEM_NEW_POOL, flags=abi.pool_flags())) == 0
    assert h.do_tmem_op(1, TmemOp(cmd=abi.TMEM_PUT_PAGE, oid=(1, 0, 0),
                                  page=bytes(4096))) == 1
    for i in range(3):
        h.do_tmem_op(1, TmemOp(cmd=abi.TMEM_FLUSH_PAGE, oid=(9, 0, 0), index=i))
    assert h.do_tmem_op(1, TmemOp(cmd=abi.TMEM_FLUSH_PAGE, oid=(1, 0, 0))) == 1
    assert h.clients[1].pools[0].sum_life_cycles == 6 - 2


@pytest.mark.parametrize("clock, err", [(5, TypeError), (lambda: "now", ValueError),
                                        (lambda: -1, ValueError), (lambda: 2 ** 64, ValueError)])
def test_a_clock_that_gives_no_cycles_is_refused_at_construction(clock, err):
    with pytest.raises(err, match="clock"):
        Host(pages=512, clock=clock)
