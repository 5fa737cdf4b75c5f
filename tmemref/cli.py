"""The command line: ``tmemref serve | replay | xl | explore`` (also ``python -m tmemref``).

``serve`` speaks a line protocol on stdin/stdout, so that an implementation in any language can
be tested against the reference without Python bindings. One JSON object per line in, one per
line out, in order (every line gets exactly one answer):

* ``{"op": "host", "pages": N, ...}`` — a fresh :class:`~tmemref.Host` (other keywords of
  ``Host`` allowed, except ``codec`` and ``clock``); answers ``{"rc": 0}``. It must come first.
* ``{"op": "create_domain", "domid": D, "pages": P, "max_pages": M}`` (``max_pages`` and
  ``privileged`` optional) and ``{"op": "destroy_domain", "domid": D}`` — answer ``{"rc": 0}``.
* a hypercall, ``{"dom": D, "cmd": "PUT_PAGE", ...}``: ``cmd`` is a ``TMEM_*`` name without
  its prefix, or the number; the other keys are :class:`~tmemref.TmemOp`'s fields —
  ``pool_id``, ``oid`` (a list of three ints), ``index``, ``flags``, ``uuid`` (a list of two),
  ``arg1``, ``arg2``, ``subop`` (a ``TMEMC_*`` name without its prefix, or the number),
  ``cli_id`` — and ``page``, the 4096 bytes of a put in base64. Missing fields take
  ``TmemOp``'s defaults; values go to the hypervisor as they are (a field no C struct can
  hold is -EFAULT, as in Xen). The answer is ``{"rc": R}``, plus ``"page"`` (base64) for a
  GET_PAGE that returned 1 and ``"buf"`` (the text up to its NUL) for a TMEMC_LIST that
  returned 0. A get's frame is supplied by the server; a LIST's buffer has ``arg1`` bytes (at
  most 1 MiB).
* a line that is none of these — not JSON, an unknown ``op``, ``cmd``, field or domain, a
  ``page`` that is not base64, a hypercall before the ``host`` line — answers
  ``{"error": "..."}`` and the session goes on.

``serve --explain`` adds ``"why"`` to a -EFAULT answer: :func:`tmemref.abi.explain` of the op.

``replay FILE`` answers the lines of ``FILE`` (``-``: stdin) exactly as ``serve`` would, and
``replay FILE --check [ANSWERS]`` compares them with recorded answers instead of printing
them, stopping at the first divergence with a report (exit status 1). The recorded answers
are either ``ANSWERS``, a file with one answer per line in the order of ``FILE`` — what
``serve`` (or an implementation speaking the protocol) printed — or, without ``ANSWERS``, an
``"expect"`` key on a request line of ``FILE`` itself holding the answer recorded for it (lines
without one are replayed unchecked). Two error answers agree whatever their text.

``xl [--trace FILE] tmem-...`` runs one of the seed's ``xl tmem-*`` commands
(:func:`tmemref.guest.xl.run`) against the host ``FILE`` builds when replayed (default: a
fresh ``Host()``), printing what xl printed. ``explore ...`` runs
``tmemref.sim.explore.main``. Exit status: 0, 1 (a divergence, or xl's failure), 2 (usage).
"""
from __future__ import annotations

import argparse
import base64
import binascii
import errno
import hashlib
import importlib.util
import inspect
import json
import sys
from typing import Iterable, Iterator, List, Optional, TextIO

from . import abi
from .abi import TmemOp
from .core.host import Host
from .progress import progress

__all__ = ["Session", "BadLine", "request_line", "serve", "replay", "check", "main"]

#: ``TMEM_*`` and ``TMEMC_*`` names without their prefixes, to numbers.
CMDS = {name[5:]: value for value, name in abi.CMD_NAMES.items()}
SUBOPS = {name[6:]: value for value, name in abi.SUBOP_NAMES.items()}
_NAMES = {**CMDS, **{"TMEM_" + k: v for k, v in CMDS.items()}}        # the prefix is allowed
_SUBOP_NAMES = {**SUBOPS, **{"TMEMC_" + k: v for k, v in SUBOPS.items()}}
#: The keys of a hypercall line besides ``dom`` and ``cmd``.
FIELDS = ("pool_id", "uuid", "flags", "arg1", "oid", "index", "page", "subop", "cli_id", "arg2")
#: The keywords of a ``host`` line: every keyword of ``Host`` that JSON can carry.
HOST_KEYWORDS = tuple(p for p in inspect.signature(Host).parameters if p not in ("codec", "clock"))
DOMAIN_KEYWORDS = {"create_domain": ("domid", "pages", "max_pages", "privileged"),
                   "destroy_domain": ("domid",)}
#: The largest LIST buffer the server hands the hypervisor.
LIST_MAX = 1 << 20
_CACHE_MAX = 1024                            # decoded/encoded pages kept, each way
_SAMPLE = 64                                 # characters (bytes) at a page's end: a cache key
_FIELD_SET = frozenset(FIELDS)
_GET, _CONTROL, _LIST = abi.TMEM_GET_PAGE, abi.TMEM_CONTROL, abi.TMEMC_LIST
_OID, _UUID = TmemOp(cmd=0).oid, TmemOp(cmd=0).uuid
_EFAULT = -errno.EFAULT
_dumps, _loads = json.dumps, json.JSONDecoder().decode
_scan = json.JSONDecoder().scan_once


class BadLine(ValueError):
    """A line the protocol cannot take: answered ``{"error": ...}``."""


def request_line(domid: int, op: TmemOp) -> str:
    """The protocol line of the hypercall ``op`` from ``domid`` (without its newline): the
    command by name, the fields that differ from their defaults, a put's page in base64 (a
    get's frame and a LIST's buffer are the server's). The inverse of what :class:`Session`
    reads. O(1).

    >>> request_line(1, TmemOp(cmd=abi.TMEM_GET_PAGE, pool_id=2, oid=(7, 0, 0), index=3))
    '{"dom": 1, "cmd": "GET_PAGE", "pool_id": 2, "oid": [7, 0, 0], "index": 3}'
    """
    cmd = abi.CMD_NAMES.get(op.cmd) if type(op.cmd) is int else None
    out = {"dom": domid, "cmd": cmd[5:] if cmd else op.cmd}
    for name, value in op.set_fields():
        if name == "buf" or (name == "page" and op.cmd == _GET):
            continue                             # the server supplies both
        if name == "page":
            value = base64.b64encode(memoryview(value).tobytes()).decode("ascii")
        elif name == "subop" and type(value) is int and value in abi.SUBOP_NAMES:
            value = abi.SUBOP_NAMES[value][6:]
        elif type(value) is tuple:
            value = list(value)
        out[name] = value
    return _dumps(out)


class Session:
    """One conversation of ``tmemref serve``: the host of the last ``host`` line, and the
    answers to lines (see the module docstring for the protocol).

    ``answer(line)`` returns the answer line (with its newline); ``handle(request)`` the answer
    object of an already parsed request. Pages are decoded (and a get's page encoded) once per
    distinct content, in caches of at most 1024 entries each (about 10 MB each); a get's frame
    is one reused buffer. O(1) per line besides the hypercall.

    Invariants: 1. ``host`` is None (no ``host`` line yet) or a :class:`~tmemref.Host`;
    2. the get frame is a 4096-byte ``bytearray``; 3. each cache holds at most 1024 pages,
    each decoded entry ``(text, page)`` filed under the end of ``text``, ``page`` its
    decoding.

    >>> s = Session()
    >>> s.answer('{"op": "host", "pages": 1024}'), s.answer('{"op": "create_domain", "domid": 1}')
    ('{"rc": 0}\\n', '{"rc": 0}\\n')
    >>> s.answer('{"dom": 1, "cmd": "NEW_POOL", "flags": 16777216}')
    '{"rc": 0}\\n'
    >>> s.answer('{"dom": 1, "cmd": "GET_PAGE", "oid": [1, 0, 0]}')       # pool 0 is empty
    '{"rc": -1001}\\n'
    >>> s.answer('{"dom": 7, "cmd": "GET_PAGE"}')
    '{"error": "no domain 7 on this host"}\\n'
    """

    def __init__(self, *, explain: bool = False):
        self.host: Optional[Host] = None
        self.explain = explain
        self._frame = bytearray(abi.PAGE_SIZE)
        self._decoded = {}                     # end of the text -> (base64 text, page)
        self._encoded = {}                     # end of the page -> (page, answer line)
        self._rc_lines = {}                    # rc -> '{"rc": rc}\n'

    def answer(self, line: str) -> str:
        """The answer line (ending in a newline) to one request line."""
        try:
            request = _parse(line)
            if type(request) is not dict:
                raise BadLine("a line is one JSON object")
            if "op" not in request and "dom" in request:       # a hypercall: the hot path
                rc = self._hypercall(request)
                if type(rc) is str:
                    return rc
                text = self._rc_lines.get(rc)
                if text is None:
                    text = self._rc_lines[rc] = _dumps({"rc": rc}) + "\n"
                return text
            return _dumps(self._session_op(request)) + "\n"
        except Exception as e:              # a bad line never ends the session
            return _dumps({"error": _message(e)}) + "\n"

    def handle(self, request: dict) -> dict:
        """The answer object to a parsed request (a copy of it is used)."""
        return _loads(self.answer(_dumps(request)))

    # --- the lines --------------------------------------------------------------------------
    def _hypercall(self, request: dict):
        """The hypercall of a request line: its rc (an int), or the whole answer line when
        it carries more than the rc."""
        host = self.host
        if host is None:
            raise BadLine('no host yet: the first line is {"op": "host", "pages": N}')
        pop = request.pop
        domid, cmd = pop("dom"), pop("cmd", None)
        if type(cmd) is str:
            cmd = _NAMES.get(cmd)
            if cmd is None:
                raise BadLine(f"unknown cmd: use one of {', '.join(CMDS)}, or a number")
        elif cmd is None:
            raise BadLine('a hypercall line needs "cmd"')
        pool_id, oid, index, page = (pop("pool_id", 0), pop("oid", _OID), pop("index", 0),
                                     pop("page", None))
        if type(oid) is list:                  # JSON has no tuples
            oid = tuple(oid)
        if page is not None:
            if cmd == _GET:
                raise BadLine("a GET_PAGE line carries no page: the server supplies the frame")
            page = self._decode(page)
        op = TmemOp(cmd, pool_id, _UUID, 0, 0, oid, index, page)
        for name, value in request.items():    # the rarer fields
            if name not in _FIELD_SET:
                raise BadLine(f"unknown field {name!r}: the fields are {', '.join(FIELDS)}")
            if type(value) is list:
                value = tuple(value)
            elif name == "subop" and type(value) is str:
                value = _SUBOP_NAMES.get(value)
                if value is None:
                    raise BadLine(f"unknown subop: use one of {', '.join(SUBOPS)}, or a number")
            setattr(op, name, value)
        if cmd == _GET:
            op.page = self._frame
        elif cmd == _CONTROL and op.subop == _LIST:
            size = op.arg1 if type(op.arg1) is int and op.arg1 > 0 else 0
            op.buf = bytearray(min(size, LIST_MAX))
        rc = host.do_tmem_op(domid, op)
        if rc == 1 and cmd == _GET:
            return self._page_answer(self._frame)
        if rc == 0 and op.buf is not None:
            text = bytes(op.buf).split(b"\0", 1)[0].decode("ascii", "replace")
            return _dumps({"rc": rc, "buf": text}) + "\n"
        if rc == _EFAULT and self.explain and abi.explain(op) is not None:
            return _dumps({"rc": rc, "why": abi.explain(op)}) + "\n"
        return rc

    def _session_op(self, request: dict) -> dict:
        what = request.pop("op", None)
        if what == "host":
            _only(request, HOST_KEYWORDS, "a host line")
            self.host = Host(**request)
        elif what in DOMAIN_KEYWORDS:
            if self.host is None:
                raise BadLine('no host yet: the first line is {"op": "host", "pages": N}')
            _only(request, DOMAIN_KEYWORDS[what], f"a {what} line")
            if "domid" not in request:
                raise BadLine(f'a {what} line needs "domid"')
            getattr(self.host, what)(**request)
        else:
            raise BadLine(f"unknown op {what!r}: a line is a hypercall "
                          '({"dom": D, "cmd": ...}) or an op: host, create_domain, '
                          "destroy_domain")
        return {"rc": 0}

    # --- pages ------------------------------------------------------------------------------
    # Each cache is keyed by the end of a page, cheap to hash, and a hit is confirmed by
    # comparing the whole page (a memcmp): hashing 4-5 KB per line would cost more.
    def _decode(self, text) -> bytes:
        if type(text) is not str:
            raise BadLine('"page" is the page in base64 text (a string)')
        hit = self._decoded.get(text[-_SAMPLE:])
        if hit is not None and hit[0] == text:
            return hit[1]
        try:                                   # a JSON escape (``\/``) left in by _parse
            data = base64.b64decode(_loads(f'"{text}"') if "\\" in text else text,
                                    validate=True)
        except (binascii.Error, ValueError) as e:
            raise BadLine(f'"page" is not base64: {e}') from None
        if len(self._decoded) >= _CACHE_MAX:
            self._decoded.clear()
        self._decoded[text[-_SAMPLE:]] = (text, data)
        return data

    def _page_answer(self, frame: bytearray) -> str:
        """The answer line of a get that returned 1 with ``frame``: base64 needs no JSON
        escaping, so the line is built as text, once per distinct page."""
        key = bytes(frame[-_SAMPLE:])
        hit = self._encoded.get(key)
        if hit is not None and hit[0] == frame:
            return hit[1]
        data = bytes(frame)
        line = '{"rc": 1, "page": "' + binascii.b2a_base64(data, newline=False).decode() + '"}\n'
        if len(self._encoded) >= _CACHE_MAX:
            self._encoded.clear()
        self._encoded[key] = (data, line)
        return line

    def check(self) -> None:
        """The invariants above (and the host's own); ``InvariantError`` names the one broken."""
        from .errors import InvariantError
        if self.host is not None:
            if not isinstance(self.host, Host):
                raise InvariantError("Session invariant 1: host is not a Host")
            self.host.check()
        if type(self._frame) is not bytearray or len(self._frame) != abi.PAGE_SIZE:
            raise InvariantError("Session invariant 2: the get frame is not 4096 bytes")
        if len(self._decoded) > _CACHE_MAX or len(self._encoded) > _CACHE_MAX or any(
                base64.b64decode(t) != d or k != t[-_SAMPLE:]
                for k, (t, d) in self._decoded.items()):
            raise InvariantError("Session invariant 3: a page cache is too big or wrong")


def _parse(line: str):
    """``json.loads(line)``, faster: the page's base64 text of a canonical put line (``"page":
    "..."`` after ``{`` or ``, ``) is cut out before the rest is parsed, so the JSON scanner
    does not walk 5 KB per put; a JSON escape it may hold is undone when the page is decoded.
    Anything else — another spelling, a second ``"page"``, a line this cannot cut cleanly —
    is parsed whole, so the request is always what ``json.loads`` gives."""
    i = line.find('"page": "')
    if i > 0 and (line[i - 1] == "{" or line[i - 2:i] == ", "):
        end = line.find('"', i + 9)
        text = line[i + 9:end]
        if end > 0 and text[-1:] != "\\":
            rest = line[:i] + '"page": 0' + line[end + 1:]
            if rest.find('"page"', i + 6) < 0:
                request = _object(rest)
                if type(request) is dict and request.get("page") == 0:
                    request["page"] = text
                    return request
    return _object(line)


def _object(text: str):
    """``json.loads(text)`` without its two whitespace scans when ``text`` is one JSON value
    followed by at most a newline (a line); errors are ``json.loads``'s own."""
    try:
        value, end = _scan(text, 0)
    except StopIteration:
        return _loads(text)
    if end != len(text) and text[end:].strip():
        return _loads(text)
    return value


def _only(request: dict, allowed, what: str) -> None:
    extra = sorted(set(request) - set(allowed))
    if extra:
        raise BadLine(f"{what} takes {', '.join(allowed)}; not {', '.join(extra)}")


def _message(e: Exception) -> str:
    if isinstance(e, json.JSONDecodeError):
        return f"not JSON: {e}"
    return str(e) if type(e) in (BadLine, ValueError) else f"{type(e).__name__}: {e}"


# =================================================================================================
# The commands
# =================================================================================================

def serve(inp: TextIO, out: TextIO, *, explain: bool = False) -> int:
    """Answer every line of ``inp`` on ``out``, flushing after each (a client may wait for
    every answer before it writes the next line). Returns 0 at the end of the input."""
    session = Session(explain=explain)
    for line in inp:
        out.write(session.answer(line))
        out.flush()
    return 0


def replay(lines: Iterable[str], out: TextIO, *, explain: bool = False) -> Session:
    """Write the answer to every line of ``lines`` on ``out`` (unflushed: a file, not a
    conversation); returns the session, whose ``host`` is what the lines built. O(lines)."""
    session = Session(explain=explain)
    answer, write = session.answer, out.write
    for line in lines:
        write(answer(line))
    return session


def check(lines: Iterable[str], out: TextIO, answers: Optional[Iterable[str]] = None, *,
          explain: bool = False) -> int:
    """Replay ``lines`` and compare each answer with the recorded one — line ``i`` of
    ``answers``, or without ``answers`` the ``"expect"`` key of the request line (lines without
    one are unchecked). At the first divergence, print a report on ``out`` and return 1;
    else print how many answers agreed and return 0. Two error answers always agree. O(lines).
    """
    session = Session(explain=explain)
    recorded: Iterator[str] = iter(answers) if answers is not None else iter(())
    n = checked = 0
    for n, line in enumerate(lines, start=1):
        if answers is None:
            try:
                request = _loads(line)
            except ValueError:
                request = None
            want = request.pop("expect", None) if type(request) is dict else None
            if want is not None:
                line = _dumps(request)
        else:
            raw = next(recorded, None)
            if raw is None:
                _report(out, n, line, "(the recorded answers end before this line)", None)
                return 1
            try:
                want = _loads(raw)
            except ValueError:
                want = raw.rstrip("\n")
        got = _loads(session.answer(line))
        if want is None:
            continue
        checked += 1
        if not (got == want or (isinstance(want, dict) and "error" in want and "error" in got)):
            _report(out, n, line, want, got)
            return 1
    if answers is not None and next(recorded, None) is not None:
        _report(out, n + 1, "(end of the trace)", "(more recorded answers follow)", None)
        return 1
    print(f"{checked} recorded answers checked: all agree with tmemref ({n} lines)", file=out)
    return 0


def _brief(obj) -> str:
    """JSON text of a request or answer with every page shown by length and sha1."""
    if isinstance(obj, str):
        try:
            obj = _loads(obj)
        except ValueError:
            return obj.rstrip("\n")
    if isinstance(obj, dict) and isinstance(obj.get("page"), str) and len(obj["page"]) > 64:
        try:
            data = base64.b64decode(obj["page"])
            obj = {**obj, "page": f"<{len(data)} bytes, sha1 "
                                  f"{hashlib.sha1(data).hexdigest()[:8]}>"}
        except binascii.Error:
            obj = {**obj, "page": obj["page"][:20] + "..."}
    return _dumps(obj) if not isinstance(obj, str) else obj


def _report(out: TextIO, n: int, line, want, got) -> None:
    def rc(answer):
        if isinstance(answer, dict) and type(answer.get("rc")) is int and answer["rc"] < 0:
            return f"   ({abi.rc_name(answer['rc'])})"
        return ""
    print(f"line {n}: tmemref's answer differs from the recorded one", file=out)
    print(f"  request:  {_brief(line)}", file=out)
    print(f"  recorded: {_brief(want)}{rc(want)}", file=out)
    if got is not None:
        print(f"  tmemref:  {_brief(got)}{rc(got)}", file=out)


def _open(path: str, parser) -> TextIO:
    if path == "-":
        return sys.stdin
    try:
        return open(path, encoding="utf-8")
    except OSError as e:
        parser.error(f"cannot read {path}: {e.strerror}")


def _explore(argv: List[str]) -> int:
    if importlib.util.find_spec("tmemref.sim.explore") is None:
        print("tmemref explore: tmemref.sim.explore is not part of this installation",
              file=sys.stderr)
        return 2
    from .sim.explore import main as explore_main
    return explore_main(argv) or 0


def _xl(args, parser) -> int:
    from .guest.xl import run
    if args.trace is None:
        host = Host()
    else:
        errors: List[str] = []
        session = Session()
        with _open(args.trace, parser) as f:
            for n, line in enumerate(progress(f, desc="replay", unit=" lines"), start=1):
                answer = session.answer(line)
                if answer.startswith('{"error"'):
                    errors.append(f"line {n}: {_loads(answer)['error']}")
        if errors:
            print(f"tmemref xl: {len(errors)} line(s) of {args.trace} answered an error "
                  f"(first, {errors[0]})", file=sys.stderr)
        if session.host is None:
            parser.error(f"{args.trace} has no host line")
        host = session.host
    return run(host, args.command)


def main(argv: Optional[List[str]] = None) -> int:
    """The ``tmemref`` command: returns its exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["explore"]:
        return _explore(argv[1:])
    parser = argparse.ArgumentParser(
        prog="tmemref", description="Xen's Transcendent Memory, as a reference implementation.")
    sub = parser.add_subparsers(dest="what", required=True, metavar="COMMAND")
    p = sub.add_parser("serve", help="answer protocol lines on stdin (one JSON object each)")
    p.add_argument("--explain", action="store_true", help='add "why" to a -EFAULT answer')
    p = sub.add_parser("replay", help="answer the protocol lines of a file, as serve would")
    p.add_argument("file", help="protocol lines, one JSON object each (- for stdin)")
    p.add_argument("--check", nargs="?", const=True, metavar="ANSWERS",
                   help="compare with recorded answers (a file of answers, or the "
                        '"expect" key of each line) and stop at the first divergence')
    p.add_argument("--explain", action="store_true", help='add "why" to a -EFAULT answer')
    p = sub.add_parser("xl", help="an xl tmem-* command against the host a trace builds")
    p.add_argument("--trace", metavar="FILE", help="protocol lines that build the host")
    p.add_argument("command", nargs=argparse.REMAINDER, help="tmem-list -a, tmem-freeze 1, ...")
    sub.add_parser("explore", help="explore interleavings (tmemref.sim.explore)")
    args = parser.parse_args(argv)
    if args.what == "serve":
        return serve(sys.stdin, sys.stdout, explain=args.explain)
    if args.what == "xl":
        return _xl(args, parser)
    f = _open(args.file, parser)
    try:
        lines = progress(f, desc="replay", unit=" lines")
        if args.check is None:
            replay(lines, sys.stdout, explain=args.explain)
            return 0
        if args.check is True:
            return check(lines, sys.stdout, explain=args.explain)
        with _open(args.check, parser) as answers:
            return check(lines, sys.stdout, answers, explain=args.explain)
    finally:
        if f is not sys.stdin:
            f.close()
