"""tmemref.cli: the serve protocol, replay and --check, the xl commands, explore, exit codes.

Run both in-process (``Session``, ``main``) and as a user runs it (``python -m tmemref`` in a
subprocess). Expected answers come from the engine called directly, never from the CLI itself.
"""
from __future__ import annotations

import base64
import errno
import importlib.machinery
import io
import json
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest

from tmemref import Host, InvariantError, TmemOp, abi, cli, oracle, xl
from tmemref.progress import progress, wanted

ROOT = Path(__file__).resolve().parent.parent
PAGE = abi.PAGE_SIZE
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "TMEMREF_PROGRESS": "0"}


def tmemref(*args, stdin=None, env=ENV):
    """``python -m tmemref ARGS`` from the repository root: (status, stdout, stderr)."""
    p = subprocess.run([sys.executable, "-m", "tmemref", *args], input=stdin, cwd=ROOT,
                       env=env, capture_output=True, text=True, timeout=120)
    return p.returncode, p.stdout, p.stderr


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


SETUP = ['{"op": "host", "pages": 1024}',
         '{"op": "create_domain", "domid": 1, "pages": 32, "max_pages": 512}',
         '{"dom": 1, "cmd": "NEW_POOL", "flags": 16777216}']


def session(*lines):
    s = cli.Session()
    for line in SETUP + list(lines):
        s.answer(line)
    return s


def ask(s, request) -> dict:
    text = s.answer(request if isinstance(request, str) else json.dumps(request))
    assert text.endswith("\n") and text.count("\n") == 1       # one line per line
    return json.loads(text)


# =================================================================================================
# The protocol, in-process
# =================================================================================================

def test_a_session_answers_as_the_engine_does():
    s = cli.Session()
    assert [ask(s, line) for line in SETUP] == [{"rc": 0}, {"rc": 0}, {"rc": 0}]
    host = Host(pages=1024)                              # the same calls, made directly
    host.create_domain(1, pages=32, max_pages=512)
    assert host.do_tmem_op(1, TmemOp(cmd=abi.TMEM_NEW_POOL, flags=abi.pool_flags())) == 0
    page = oracle.page_of(42)
    put = {"dom": 1, "cmd": "PUT_PAGE", "pool_id": 0, "oid": [7, 0, 0], "index": 3,
           "page": b64(page)}
    assert ask(s, put) == {"rc": host.do_tmem_op(1, TmemOp(
        cmd=abi.TMEM_PUT_PAGE, oid=(7, 0, 0), index=3, page=page))} == {"rc": 1}
    got = ask(s, {"dom": 1, "cmd": 5, "oid": [7, 0, 0], "index": 3})   # cmd as a number
    assert list(got) == ["rc", "page"] and got["rc"] == 1
    assert base64.b64decode(got["page"]) == page
    assert ask(s, {"dom": 1, "cmd": "TMEM_GET_PAGE", "oid": [7, 0, 0], "index": 3}) == \
        {"rc": -abi.EEMPTY}                              # exclusive get; prefix accepted
    s.check()
    assert s.host.list_stats() != host.list_stats()      # (Tt counts differ: 1 more call)


def test_list_answers_the_buffer_text():
    s = session()
    got = ask(s, {"dom": 0, "cmd": "CONTROL", "subop": "LIST", "cli_id": 65535,
                  "arg1": 32768, "arg2": 1})
    assert got["rc"] == 0
    want = xl.tmem_list(s.host, None, long=True)        # one more LIST: Tt one higher
    assert got["buf"].split("\n")[1:] == want[:-1].split("\n")[1:]   # xl adds a newline
    assert got["buf"].startswith("G=Tt:") and "P=CI:1,PI:0,PT:EP" in got["buf"]
    short = ask(s, {"dom": 0, "cmd": "CONTROL", "subop": abi.TMEMC_LIST, "cli_id": 1,
                    "arg1": 40})
    assert short["rc"] == 0 and len(short["buf"]) < 40  # the hypervisor had 40 bytes
    assert ask(s, {"dom": 1, "cmd": "CONTROL", "subop": "LIST"}) == {"rc": -errno.EPERM}


def test_values_go_to_the_hypervisor_and_explain_says_why():
    s = session()
    bad_index = {"dom": 1, "cmd": "PUT_PAGE", "index": 1.5, "page": b64(bytes(PAGE))}
    assert ask(s, bad_index) == {"rc": -errno.EFAULT}
    assert ask(s, {"dom": 1, "cmd": "FLUSH_PAGE", "oid": [1, 2]}) == {"rc": -errno.EFAULT}
    assert ask(s, {"dom": 1, "cmd": "PUT_PAGE", "page": b64(b"short")}) == {"rc": -errno.EFAULT}
    assert ask(s, {"dom": 1, "cmd": 99, "pool_id": 0}) == {"rc": -errno.ENOSYS}
    e = cli.Session(explain=True)
    for line in SETUP:
        e.answer(line)
    assert ask(e, bad_index) == {"rc": -errno.EFAULT, "why": "index: 1.5 is a float, not an int"}
    assert ask(e, {"dom": 1, "cmd": "PUT_PAGE", "page": b64(b"short")}) == \
        {"rc": -errno.EFAULT, "why": "page: 5 bytes, not 4096"}
    assert ask(e, {"dom": 1, "cmd": "GET_PAGE", "pool_id": 9}) == {"rc": -errno.ENODEV}
    e.check()


BAD_LINES = [
    ("not json", "not JSON"),
    ("[1, 2]", "one JSON object"),
    ("7", "one JSON object"),
    ('{"op": "reboot"}', "unknown op 'reboot'"),
    ('{"op": "host", "pages": 64, "colour": 1}', "not colour"),
    ('{"op": "host", "codec": "lzo"}', "not codec"),
    ('{"op": "host", "quota_rule": "fair"}', "quota_rule"),
    ('{"op": "create_domain", "pages": 4}', 'needs "domid"'),
    ('{"op": "create_domain", "domid": 1}', "exists"),
    ('{"op": "create_domain", "domid": 3, "vcpus": 2}', "not vcpus"),
    ('{"op": "destroy_domain", "domid": 9}', "no domain 9"),
    ('{"dom": 1}', 'needs "cmd"'),
    ('{"dom": 1, "cmd": "PUT_PAGES"}', "unknown cmd"),
    ('{"dom": 1, "cmd": "GET_PAGE", "color": 1}', "unknown field 'color'"),
    ('{"dom": 0, "cmd": "CONTROL", "subop": "REBOOT"}', "unknown subop"),
    ('{"dom": 1, "cmd": "PUT_PAGE", "page": 12}', "base64 text"),
    ('{"dom": 1, "cmd": "PUT_PAGE", "page": [1, 2]}', "base64 text"),
    ('{"dom": 1, "cmd": "PUT_PAGE", "page": "not base64!"}', "not base64"),
    ('{"dom": 1, "cmd": "GET_PAGE", "page": "AAAA"}', "supplies the frame"),
    ('{"dom": 5, "cmd": "GET_PAGE"}', "no domain 5"),
    ('{"dom": "1", "cmd": "GET_PAGE"}', "no domain '1'"),
]


@pytest.mark.parametrize("line, words", BAD_LINES, ids=[w for _, w in BAD_LINES])
def test_a_bad_line_answers_an_error_and_the_session_goes_on(line, words):
    s = session('{"dom": 1, "cmd": "PUT_PAGE", "oid": [1, 0, 0], "page": "%s"}'
                % b64(oracle.page_of(1)))
    before = s.host.list_stats()
    got = ask(s, line)
    assert list(got) == ["error"] and words in got["error"], got
    s.check()
    assert s.host.list_stats().split(",")[1:] == before.split(",")[1:]   # nothing changed
    got = ask(s, {"dom": 1, "cmd": "GET_PAGE", "oid": [1, 0, 0]})       # and it goes on
    assert got["rc"] == 1 and base64.b64decode(got["page"]) == oracle.page_of(1)


def test_a_domain_that_does_not_fit():
    s = session()
    got = ask(s, '{"op": "create_domain", "domid": 3, "pages": 100000}')
    assert got["error"].startswith("MemoryError: only ") and 3 not in s.host.mem.domains
    assert ask(s, '{"op": "create_domain", "domid": 3, "pages": 10}') == {"rc": 0}
    s.check()


def test_no_host_yet():
    s = cli.Session()
    for line in ('{"dom": 1, "cmd": "GET_PAGE"}', '{"op": "create_domain", "domid": 1}'):
        assert "no host yet" in ask(s, line)["error"]
    assert ask(s, '{"op": "host"}') == {"rc": 0} and s.host.mem.nframes == 4096


def test_destroy_domain_and_a_new_host_line():
    s = session()
    assert ask(s, '{"op": "destroy_domain", "domid": 1}') == {"rc": 0}
    assert "no domain 1" in ask(s, '{"dom": 1, "cmd": "GET_PAGE"}')["error"]
    assert ask(s, '{"op": "host", "pages": 512, "compress": true}') == {"rc": 0}
    assert s.host.compress and s.host.mem.nframes == 512


def test_page_caches_stay_small_and_right():
    s = session()
    for i in range(1500):                                 # more distinct pages than cached
        assert ask(s, {"dom": 1, "cmd": "PUT_PAGE", "oid": [i % 3, 0, 0], "index": 0,
                       "page": b64(i.to_bytes(2, "little") * (PAGE // 2))})["rc"] == 1
        if i % 499 == 0:
            s.check()
    assert len(s._decoded) <= 1024
    # same ends, different middle: the sample key collides, the whole-page comparison does not
    a, b = bytearray(PAGE), bytearray(PAGE)
    b[2000] = 1
    for data in (a, b):
        assert ask(s, {"dom": 1, "cmd": "PUT_PAGE", "oid": [9, 0, 0], "page": b64(data)}) \
            == {"rc": 1}
        got = ask(s, {"dom": 1, "cmd": "GET_PAGE", "oid": [9, 0, 0]})
        assert base64.b64decode(got["page"]) == data
    s.check()


def test_session_check_catches_each_broken_invariant():
    s = session()
    s.check()
    s.host, real = "a host", s.host
    with pytest.raises(InvariantError, match="invariant 1"):
        s.check()
    s.host = real
    s._frame = bytearray(10)
    with pytest.raises(InvariantError, match="invariant 2"):
        s.check()
    s._frame = bytearray(PAGE)
    text = b64(bytes(PAGE))
    s._decoded[text[-64:]] = (text, b"wrong")
    with pytest.raises(InvariantError, match="invariant 3"):
        s.check()


def test_request_line_replays_every_trace_op():
    trace = oracle.random_trace(150, 11) + [
        (0, TmemOp(cmd=abi.TMEM_CONTROL, subop=abi.TMEMC_FREEZE, cli_id=1)),
        (1, TmemOp(cmd=abi.TMEM_PUT_PAGE, page=oracle.page_of(5))),
        (0, TmemOp(cmd=abi.TMEM_AUTH, arg1=1, flags=1, uuid=(3, 4))),
        (0, TmemOp(cmd=abi.TMEM_CONTROL, subop=abi.TMEMC_LIST, cli_id=1, arg1=PAGE,
                   buf=bytearray(PAGE)))]
    lines = list(oracle.trace_lines(trace, {1: (32, 512), 2: (32, 512)}))
    s = cli.Session()
    rcs = [ask(s, line).get("rc") for line in lines][3:]
    want = oracle.run_trace(oracle.oracle_host, trace, {1: (32, 512), 2: (32, 512)},
                            check=False)
    assert rcs == [w.rc for w in want]
    assert json.loads(lines[-4]) == {"dom": 0, "cmd": "CONTROL", "subop": "FREEZE",
                                     "cli_id": 1}
    assert json.loads(lines[-1]) == {"dom": 0, "cmd": "CONTROL", "subop": "LIST", "cli_id": 1,
                                     "arg1": PAGE}            # the server supplies the buffer


# =================================================================================================
# serve, replay and --check, as a user runs them
# =================================================================================================

@pytest.fixture
def trace_file(tmp_path):
    lines = list(oracle.trace_lines(oracle.random_trace(80, 3))) + [
        '{"dom": 0, "cmd": "CONTROL", "subop": "LIST", "cli_id": 65535, "arg1": 32768}',
        "garbage", '{"dom": 1, "cmd": "PUT_PAGE", "index": -1, "page": "%s"}' % b64(bytes(PAGE))]
    path = tmp_path / "trace.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_serve_and_replay_answer_alike(trace_file):
    text = trace_file.read_text()
    status, served, _ = tmemref("serve", stdin=text)
    assert status == 0
    status, replayed, err = tmemref("replay", str(trace_file))
    assert status == 0 and err == "" and replayed == served
    answers = [json.loads(a) for a in served.splitlines()]
    assert len(answers) == len(text.splitlines())
    assert answers[-2] == {"error": "not JSON: Expecting value: line 1 column 1 (char 0)"}
    assert answers[-1] == {"rc": -errno.EFAULT} and answers[-3]["buf"].startswith("G=")
    status, stdin_replayed, _ = tmemref("replay", "-", stdin=text)
    assert stdin_replayed == served


def test_serve_answers_each_line_before_the_next_arrives():
    p = subprocess.Popen([sys.executable, "-m", "tmemref", "serve"], cwd=ROOT, env=ENV,
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
    try:
        for line, want in zip(SETUP + ['{"dom": 1, "cmd": "FLUSH_OBJECT"}', "{"],
                              [0, 0, 0, 1, None]):
            p.stdin.write(line + "\n")
            p.stdin.flush()
            answer = json.loads(p.stdout.readline())       # would hang if unflushed
            assert answer.get("rc") == want and (want is not None or "error" in answer)
    finally:
        p.stdin.close()
        assert p.wait(timeout=30) == 0
        p.stdout.close()


def test_check_against_an_answers_file(tmp_path, trace_file):
    _, answers, _ = tmemref("replay", str(trace_file))
    good = tmp_path / "good.jsonl"
    good.write_text(answers)
    status, out, _ = tmemref("replay", str(trace_file), "--check", str(good))
    n = len(answers.splitlines())
    assert status == 0 and out == f"{n} recorded answers checked: all agree with tmemref " \
                                  f"({n} lines)\n"
    lines = answers.splitlines()
    k = next(i for i, a in enumerate(lines) if json.loads(a).get("rc") == 1 and i > 5)
    lines[k] = '{"rc": -12}'
    lines[-2] = '{"error": "my own words"}'           # errors agree whatever their text
    bad = tmp_path / "bad.jsonl"
    bad.write_text("\n".join(lines) + "\n")
    status, out, _ = tmemref("replay", str(trace_file), "--check", str(bad))
    request = trace_file.read_text().splitlines()[k]
    assert status == 1
    assert out.splitlines()[0] == f"line {k + 1}: tmemref's answer differs from the recorded one"
    assert out.splitlines()[2] == '  recorded: {"rc": -12}   (-ENOMEM)'
    assert out.splitlines()[3].startswith('  tmemref:  {"rc": 1')
    assert json.loads(out.splitlines()[1].split(":", 1)[1])["dom"] == json.loads(request)["dom"]
    assert "bytes, sha1" in out or '"page"' not in request      # a page is never printed
    short = tmp_path / "short.jsonl"
    short.write_text("\n".join(answers.splitlines()[:5]) + "\n")
    status, out, _ = tmemref("replay", str(trace_file), "--check", str(short))
    assert status == 1 and out.startswith("line 6: ") and "end before this line" in out
    long = tmp_path / "long.jsonl"
    long.write_text(answers + '{"rc": 0}\n')
    status, out, _ = tmemref("replay", str(trace_file), "--check", str(long))
    assert status == 1 and "more recorded answers follow" in out


def test_check_inline_expectations(tmp_path):
    lines = SETUP + [
        json.dumps({"dom": 1, "cmd": "PUT_PAGE", "page": b64(oracle.page_of(1)),
                    "expect": {"rc": 1}}),
        json.dumps({"dom": 1, "cmd": "GET_PAGE",
                    "expect": {"rc": 1, "page": b64(oracle.page_of(1))}}),
        json.dumps({"dom": 1, "cmd": "NOPE", "expect": {"error": "anything"}}),
        json.dumps({"dom": 1, "cmd": "GET_PAGE", "expect": {"rc": 0}})]
    path = tmp_path / "t.jsonl"
    path.write_text("\n".join(lines) + "\n")
    status, out, _ = tmemref("replay", str(path), "--check")
    assert status == 1 and out.startswith("line 7: ")
    assert "recorded: {\"rc\": 0}" in out and "tmemref:  {\"rc\": -1001}   (-EEMPTY)" in out
    path.write_text("\n".join(lines[:-1]) + "\n")
    status, out, _ = tmemref("replay", str(path), "--check")
    assert (status, out) == (0, "3 recorded answers checked: all agree with tmemref (6 lines)\n")
    buf = io.StringIO()                                  # the same, in-process
    assert cli.check(path.read_text().splitlines(keepends=True), buf) == 0


def test_usage_errors_exit_2():
    assert tmemref()[0] == 2
    assert tmemref("replay", "/no/such/file")[0] == 2
    status, out, _ = tmemref("--help")
    assert status == 0 and all(c in out for c in ("serve", "replay", "xl", "explore"))


def test_progress_only_when_wanted(trace_file, monkeypatch):
    monkeypatch.setenv("TMEMREF_PROGRESS", "0")
    items = [1, 2]
    assert progress(items) is items and not wanted()
    monkeypatch.setenv("TMEMREF_PROGRESS", "1")
    bar = progress(items, file=io.StringIO(), desc="x")
    assert bar is not items and list(bar) == items
    monkeypatch.delenv("TMEMREF_PROGRESS")
    assert not wanted(io.StringIO())                     # not a terminal: quiet
    status, quiet, err = tmemref("replay", str(trace_file))
    assert err == ""
    status, loud, err = tmemref("replay", str(trace_file), env={**ENV, "TMEMREF_PROGRESS": "1"})
    assert loud == quiet and "replay" in err and "lines" in err


# =================================================================================================
# xl, explore
# =================================================================================================

def built(trace_file) -> Host:
    s = cli.Session()
    for line in trace_file.read_text().splitlines():
        s.answer(line)
    return s.host


def test_xl_prints_what_xl_printed_for_the_replayed_host(trace_file):
    status, out, err = tmemref("xl", "--trace", str(trace_file), "tmem-list", "-a")
    host = built(trace_file)
    assert status == 0 and out == xl.tmem_list(host, None)     # same calls: same Tt
    assert "1 line(s)" in err and "not JSON" in err           # the garbage line, reported
    status, out, _ = tmemref("xl", "--trace", str(trace_file), "tmem-list", "-l", "1")
    assert status == 0 and out == xl.tmem_list(built(trace_file), 1, long=True)
    status, out, _ = tmemref("xl", "--trace", str(trace_file), "tmem-freeable")
    assert (status, out) == (0, f"{xl.tmem_freeable(built(trace_file))}\n")
    assert tmemref("xl", "--trace", str(trace_file), "tmem-freeze", "1")[:2] == (0, "")


@pytest.mark.parametrize("argv, status, words", [
    (["tmem-list", "-a"], 0, "G=Tt:1,"),
    (["tmem-list"], 1, "You must specify -a or a domain id."),
    (["tmem-list", "7"], 1, "hypercall returned -EPERM"),          # no client: -1
    (["tmem-list", "dom7"], 1, "dom7 is an invalid domain identifier"),
    (["tmem-freeze", "-a"], 0, ""),
    (["tmem-thaw", "-z"], 2, "option `z' not supported."),          # xl prints optopt
    (["tmem-set", "-a"], 1, "No set value specified."),
    (["tmem-set", "-a", "-w", "5"], 1, "-EPERM"),        # no client yet: Xen returns -1
    (["tmem-shared-auth", "-a", "-A", "1"], 1, "No uuid or auth specified."),
    (["tmem-shared-auth", "-a", "-u", "0-0", "-A", "1"], 1, "not a uuid"),
    (["tmem-shared-auth", "-a", "-u", "abcdef01-2345-6789-1234-567890abcdef", "-A", "x"], 1,
     "Invalid auth, valid auth are <0|1>."),
    (["tmem-shared-auth", "-a", "-u", "abcdef01-2345-6789-1234-567890abcdef", "-A", "1"], 0, ""),
    (["tmem-freeable"], 0, "0"),
    (["tmem-frobnicate"], 2, "unknown command"),
    ([], 2, "unknown command"),
    (["tmem-set", "-h"], 0, "Usage: xl tmem-set"),
])
def test_xl_arguments_as_xl_parses_them(argv, status, words):
    out, err = io.StringIO(), io.StringIO()
    host = Host(pages=1024)
    assert xl.run(host, argv, out, err) == status
    assert words in out.getvalue() + err.getvalue()
    host.check()


def test_xl_set_and_freeze_change_the_host():
    host = Host(pages=1024)
    host.create_domain(1, pages=16)
    host.do_tmem_op(1, TmemOp(cmd=abi.TMEM_NEW_POOL, flags=abi.pool_flags()))
    assert xl.run(host, ["tmem-set", "1", "-w", "7", "-p", "1"]) == 0     # options permuted
    assert xl.run(host, ["tmem-freeze", "1"]) == 0
    c = host.clients[1]
    assert (c.weight, c.compress, c.frozen) == (7, True, True)
    assert xl.run(host, ["tmem-set", "-w", "-1", "1"]) == 0              # strtol, as a u32
    assert c.weight == 2**32 - 1
    host.check()


def test_xl_usage_from_the_command_line(tmp_path):
    assert tmemref("xl", "tmem-freeable") == (0, "0\n", "")
    status, _, err = tmemref("xl", "tmem-freeze")
    assert status == 1 and "You must specify -a or a domain id." in err
    empty = tmp_path / "empty.jsonl"
    empty.write_text('{"dom": 1, "cmd": "GET_PAGE"}\n')
    status, _, err = tmemref("xl", "--trace", str(empty), "tmem-list", "-a")
    assert status == 2 and "has no host line" in err
    p = subprocess.run([sys.executable, "-m", "tmemref.xl", "tmem-list", "-a"], cwd=ROOT,
                       env=ENV, capture_output=True, text=True, timeout=60)
    assert p.returncode == 0 and p.stdout.startswith("G=Tt:1,")


def test_explore_dispatches_or_says_it_is_missing(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "tmemref.sim.explore", None)   # as if absent
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "tmemref.sim.explore" else
                        importlib.machinery.PathFinder.find_spec(name))
    assert cli.main(["explore", "--seeds", "3"]) == 2
    assert "tmemref.sim.explore is not part of this installation" in capsys.readouterr().err
    seen = []
    fake = types.ModuleType("tmemref.sim.explore")
    fake.main = lambda argv: seen.append(argv) or 3
    monkeypatch.setitem(sys.modules, "tmemref.sim.explore", fake)
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: object())
    assert cli.main(["explore", "--seeds", "3", "-h"]) == 3 and seen == [["--seeds", "3", "-h"]]
