"""Xen: the ``xl tmem-*`` commands (``tools/xl/xl_tmem.c`` → libxl → ``tools/libxc/xc_tmem.c``).

The administrator's side of tmem, implemented once: commands run in a privileged domain (dom0,
itself a Linux guest) that reach the hypervisor as ``TMEM_CONTROL`` with a ``TMEMC_*`` sub-op,
or as ``TMEM_AUTH``. :data:`COMMANDS` lists them with what each sends. Three faces:

* functions, one per command, each returning what ``xl`` printed or the hypercall's value:
  :func:`tmem_list` ``(host, domid=None, long=False)``, :func:`tmem_freeze`,
  :func:`tmem_thaw`, :func:`tmem_set` ``(host, domid, *, weight, cap, compress)``,
  :func:`tmem_shared_auth` ``(host, domid, *, uuid, auth)``, :func:`tmem_freeable`, and
  :func:`tmem_flush`, :func:`tmem_destroy` (sub-ops no ``xl`` command sent: xend's
  ``xm tmem-flush`` / ``xm tmem-destroy`` did); each takes ``trace=`` (a list that receives one
  :class:`~tmemref.guest.ops.Call` per hypercall) and ``caller=`` (the tool's domain, 0);
* :class:`Xl`, the same as methods of one tool's domain;
* :func:`run`, the command line: ``run(host, ["tmem-list", "-a"])`` parses xl's arguments,
  prints what xl printed and returns xl's exit status (``tmemref xl ...``).

The numbering is the classic one (Xen <= 4.7, control through ``tmem_op``); in Xen 4.6+ the
same requests travel as ``XEN_SYSCTL_tmem_op``. A negative hypercall value raises
:class:`XlError` (xl printed an error and exited 1) — among others for a domain that has no
tmem client (Xen returns -1 whether the domain does not exist or has simply never used tmem).

``<Domain>|-a``: a domain id, or ``-a`` for every client — the toolstack passes an invalid
domain id that Xen reads as ``TMEM_CLI_ID_NULL`` (0xFFFF). Here: ``domid=None``.

>>> from tmemref import Host
>>> host = Host(pages=1024)
>>> _ = host.create_domain(1, pages=64, max_pages=128)
>>> xl = Xl(host)
>>> print(xl.tmem_list(), end="")           # the LIST hypercall counts itself in Tt
G=Tt:1,Te:0,Cf:0,Af:0,Pf:0,Ta:0,Lm:0,Et:0,Ea:0,Rt:0,Ra:0,Rx:0,Fp:0
>>> [hex(w) for w in uuid_parse("abcdef01-2345-6789-1234-567890abcdef")]   # (lo, hi)
['0x1234567890abcdef', '0xabcdef0123456789']
"""
from __future__ import annotations

import getopt
import sys
from dataclasses import dataclass
from typing import List, Optional, Sequence, TextIO, Tuple

from .. import abi
from ..abi import TmemOp
from .ops import TmemOps

__all__ = ["ALL", "COMMANDS", "DOM0", "LIST_BUFFER", "OTHER_SENDERS", "Xl", "XlCommand",
           "XlError", "command_for_subop", "command_line", "run", "sender_of", "tmem_destroy",
           "tmem_flush", "tmem_freeable", "tmem_freeze", "tmem_list", "tmem_set",
           "tmem_shared_auth", "tmem_thaw", "uuid_parse"]

ALL = abi.TMEM_CLI_ID_NULL
#: Bytes of the buffer ``xl tmem-list`` hands to TMEMC_LIST.
LIST_BUFFER = 32768
_HEX = "0123456789abcdef"


class XlError(Exception):
    """An ``xl tmem-*`` command failed: the hypercall returned ``rc`` < 0 (xl exits 1)."""

    def __init__(self, command: str, rc: int):
        super().__init__(f"xl {command}: hypercall returned {abi.rc_name(rc)}")
        self.command = command
        self.rc = rc


@dataclass(frozen=True)
class XlCommand:
    """One ``xl`` command and the hypercall(s) it makes."""
    name: str                 # the xl command
    usage: str                # its arguments (xl's command table)
    cmd: int                  # TMEM_* command of the hypercall
    subops: Tuple[int, ...]   # TMEMC_* sub-ops it may issue (empty: not TMEM_CONTROL)
    method: str               # the :class:`Xl` method that runs it
    summary: str              # what it does


#: The ``xl tmem-*`` commands, in xl's order (Xen 4.3 ``xl_cmdtable.c``; Xen's ``docs/man/xl.1.pod.in``).
COMMANDS = (
    XlCommand("tmem-list", "[-l] <Domain>|-a", abi.TMEM_CONTROL, (abi.TMEMC_LIST,),
              "tmem_list", "print the LIST statistics (-l: the long form)"),
    XlCommand("tmem-freeze", "<Domain>|-a", abi.TMEM_CONTROL, (abi.TMEMC_FREEZE,),
              "tmem_freeze", "refuse new puts (-EFROZEN)"),
    XlCommand("tmem-thaw", "<Domain>|-a", abi.TMEM_CONTROL, (abi.TMEMC_THAW,),
              "tmem_thaw", "accept puts again"),
    XlCommand("tmem-set", "<Domain>|-a [-w WEIGHT] [-c CAP] [-p COMPRESS]", abi.TMEM_CONTROL,
              (abi.TMEMC_SET_WEIGHT, abi.TMEMC_SET_CAP, abi.TMEMC_SET_COMPRESS),
              "tmem_set", "set weight, cap or compression, one sub-op per option"),
    XlCommand("tmem-shared-auth", "<Domain>|-a -u UUID -A AUTH", abi.TMEM_AUTH, (),
              "tmem_shared_auth", "let a domain join the shared pool UUID (AUTH 1) or not (0)"),
    XlCommand("tmem-freeable", "", abi.TMEM_CONTROL, (abi.TMEMC_QUERY_FREEABLE_MB,),
              "tmem_freeable", "MB tmem could give back (free list + ephemeral pages)"),
)


#: Sub-ops no ``xl tmem-*`` command sends, and who sent them instead. The save and restore
#: sub-ops were sent by libxc's domain save/restore code up to Xen 4.5; from 4.6 (migration
#: v2) nothing in the toolstack calls ``xc_tmem_save`` / ``xc_tmem_restore`` any more.
OTHER_SENDERS = {
    abi.TMEMC_FLUSH: "xend's API only (XendNode.tmem_flush)",
    abi.TMEMC_DESTROY: "xm tmem-destroy, libxl_tmem_destroy",
    **{s: "save / migrate, Xen <= 4.5 (libxc xc_tmem_save)"
       for s in range(abi.TMEMC_SAVE_BEGIN, abi.TMEMC_SAVE_END + 1)},
    abi.TMEMC_SAVE_GET_NEXT_INV: "live migrate, Xen <= 4.5 (libxc xc_tmem_save_extra)",
    abi.TMEMC_SAVE_END: "live migrate, Xen <= 4.5 (libxc xc_tmem_save_done)",
    abi.TMEMC_RESTORE_BEGIN: "restore / migrate, Xen <= 4.5 (libxc xc_tmem_restore)",
    abi.TMEMC_RESTORE_PUT_PAGE: "restore / migrate, Xen <= 4.5 (libxc xc_tmem_restore)",
    abi.TMEMC_RESTORE_FLUSH_PAGE: "live migrate, Xen <= 4.5 (libxc xc_tmem_restore_extra)",
}


def sender_of(subop: int) -> str:
    """Which tool sends TMEMC sub-op ``subop``: ``xl <command>`` or :data:`OTHER_SENDERS`.

    >>> sender_of(abi.TMEMC_FREEZE), sender_of(abi.TMEMC_RESTORE_BEGIN)
    ('xl tmem-freeze', 'restore / migrate, Xen <= 4.5 (libxc xc_tmem_restore)')
    """
    c = command_for_subop(subop)
    return f"xl {c.name}" if c else OTHER_SENDERS.get(subop, "—")


def command_for_subop(subop: int) -> Optional[XlCommand]:
    """The xl command that issues TMEMC sub-op ``subop``, or None if no xl command does.

    >>> command_for_subop(abi.TMEMC_SET_CAP).name, command_for_subop(abi.TMEMC_DESTROY)
    ('tmem-set', None)
    """
    for c in COMMANDS:
        if subop in c.subops:
            return c
    return None


def uuid_parse(text: str, *, hex_bug: bool = False) -> Tuple[int, int]:
    """Xen: ``xc_tmem_uuid_parse`` — (uuid_lo, uuid_hi) of a textual uuid: the first 16 hex
    digits are ``uuid_hi`` and the last 16 ``uuid_lo``, each read as a big-endian number.

    ``hex_bug=True`` reproduces libxc up to Xen 4.8, which read the letters a-f / A-F as the
    digits 0-5 (fixed in 4.9).

    Xen/Linux: a Linux guest builds its shared pool's words from the same 16 bytes read
    *little-endian* (:func:`tmemref.guest.cleancache.uuid_words`), so for a given uuid the two
    sides name different pools unless the text is written with each half byte-reversed.

    >>> [hex(w) for w in uuid_parse("00000000-0000-0001-0000-0000000000ff")]
    ['0xff', '0x1']
    >>> [hex(w) for w in uuid_parse("abcdef01-2345-6789-1234-567890abcdef", hex_bug=True)]
    ['0x1234567890012345', '0x123450123456789']
    """
    if not isinstance(text, str) or len(text) != 36:
        raise ValueError(f"not a uuid: {text!r} (use xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)")
    words = [0, 0]                        # [hi, lo]: the hi word is filled first
    w = 0
    for i, ch in enumerate(text):
        if i in (8, 13, 18, 23):
            if ch != "-":
                raise ValueError(f"not a uuid: {text!r} (a '-' belongs at position {i})")
            if i == 18:
                w = 1
            continue
        low = ch.lower()
        if low not in _HEX:
            raise ValueError(f"not a uuid: {text!r} ({ch!r} is not a hex digit)")
        digit = _HEX.index(low)
        if hex_bug and digit >= 10:
            digit -= 10
        words[w] = (words[w] << 4) | digit
    return words[1], words[0]


# --- the commands -------------------------------------------------------------------------------
#: The tool's domain: control hypercalls come from domain 0 (privileged).
DOM0 = 0


def _cli_id(domid: Optional[int]) -> int:
    """``<Domain>|-a`` as the hypercall's ``cli_id``: a domain id, or 0xFFFF for ``-a``."""
    if domid is None:
        return ALL
    if type(domid) is not int or not 0 <= domid < ALL:
        raise ValueError(f"not a domain id: {domid!r} (use None for -a, all clients)")
    return domid


def _call(host, op: TmemOp, trace, caller: int) -> int:
    return TmemOps(host, caller, trace if trace is not None else False).call(op)


def _control(host, name: str, subop: int, domid: Optional[int], arg1: int = 0,
             arg2: int = 0, buf=None, *, trace=None, caller: int = DOM0) -> int:
    """One ``TMEM_CONTROL`` hypercall (libxc ``xc_tmem_control``); XlError if it fails."""
    rc = _call(host, TmemOp(cmd=abi.TMEM_CONTROL, subop=subop, cli_id=_cli_id(domid),
                            arg1=arg1, arg2=arg2, buf=buf), trace, caller)
    if rc < 0:
        raise XlError(name, rc)
    return rc


def tmem_list(host, domid: Optional[int] = None, long: bool = False, *, trace=None,
              caller: int = DOM0) -> str:
    """``xl tmem-list [-l] <Domain>|-a`` — what xl prints.

    libxl hands ``TMEMC_LIST`` a 32768-byte buffer (``arg1`` its length, ``arg2`` the
    ``-l`` flag); xl prints the buffer as a C string followed by ``"\\n"``. LIST ends each
    line with a newline already, so the output ends with an empty line. ``domid=None`` (``-a``):
    the ``G=`` line, each shared pool's ``S=`` line, then every client's ``C=`` and ``P=``
    lines; a domain id: only that client's lines. XlError (-1) if the domain has no client.
    """
    buf = bytearray(LIST_BUFFER)
    _control(host, "tmem-list", abi.TMEMC_LIST, domid, LIST_BUFFER, int(bool(long)), buf,
             trace=trace, caller=caller)
    return bytes(buf).split(b"\0", 1)[0].decode("ascii") + "\n"


def tmem_freeze(host, domid: Optional[int] = None, *, trace=None,
                caller: int = DOM0) -> int:
    """``xl tmem-freeze <Domain>|-a`` — TMEMC_FREEZE: the client's new puts fail with
    -EFROZEN (duplicate puts, gets and flushes still work). ``-a`` freezes the clients that
    exist now; a domain that makes its first tmem call later starts thawed. Returns 0."""
    return _control(host, "tmem-freeze", abi.TMEMC_FREEZE, domid, trace=trace, caller=caller)


def tmem_thaw(host, domid: Optional[int] = None, *, trace=None, caller: int = DOM0) -> int:
    """``xl tmem-thaw <Domain>|-a`` — TMEMC_THAW: accept new puts again. Returns 0."""
    return _control(host, "tmem-thaw", abi.TMEMC_THAW, domid, trace=trace, caller=caller)


def tmem_set(host, domid: Optional[int] = None, *, weight: Optional[int] = None,
             cap: Optional[int] = None, compress: Optional[int] = None, trace=None,
             caller: int = DOM0) -> int:
    """``xl tmem-set <Domain>|-a [-w WEIGHT] [-c CAP] [-p COMPRESS]`` (Xen <= 4.7).

    One hypercall per option given, in xl's order: TMEMC_SET_WEIGHT, TMEMC_SET_CAP,
    TMEMC_SET_COMPRESS. The weight steers eviction (``client_over_quota``); the cap is stored
    and listed (``ca:``) but nothing ever reads it — "setting a cap for a client is currently
    a no-op" (tmem-internals.html; retired in Xen 4.8); compress applies to pages put from
    now on. ValueError if no option is given (xl: "No set value specified"). Returns 0.
    """
    todo = [(s, v) for s, v in ((abi.TMEMC_SET_WEIGHT, weight), (abi.TMEMC_SET_CAP, cap),
                                (abi.TMEMC_SET_COMPRESS, compress)) if v is not None]
    if not todo:
        raise ValueError("tmem-set: no set value specified (give weight, cap or compress)")
    rc = 0
    for subop, value in todo:
        if type(value) is not int or not 0 <= value < 1 << 32:
            raise ValueError(f"tmem-set: {value!r} is not a u32")
        rc = _control(host, "tmem-set", subop, domid, value, trace=trace, caller=caller)
    return rc


def tmem_shared_auth(host, domid: Optional[int] = None, *, uuid: str, auth: int,
                     trace=None, caller: int = DOM0) -> int:
    """``xl tmem-shared-auth <Domain>|-a -u UUID -A AUTH`` — ``TMEM_AUTH``.

    ``uuid`` is parsed as libxc's ``xc_tmem_uuid_parse`` does (correctly, as in Xen 4.9+):
    ``uuid_hi`` = the first 16 hex digits, ``uuid_lo`` = the last 16, and the hypercall
    carries ``(uuid_lo, uuid_hi)`` (:func:`tmemref.guest.xl.uuid_parse`). ``auth`` is read as
    the hypervisor reads it: **1 authorises** the domain to join the shared pool with that
    uuid, 0 withdraws the authorisation. For ``-a`` it switches the global "every client is
    authorised" knob.

    Documented disagreement: xl's help text (<= 4.8) and the man page, to Xen 4.12, say
    "0=auth,1=deauth"; the hypervisor always took 1 = authorise, 0 = de-authorise (facts
    §8.4; :data:`tmemref.fidelity.NOTES`, "TMEM_AUTH flag value"). This function follows the
    hypervisor.

    Returns 1 (done) or 0 (nothing to withdraw). XlError: -EINVAL for a domain that does not
    exist, -ENOMEM when the domain already holds 16 authorisations. ValueError for a
    malformed uuid or an ``auth`` that is not 0 or 1.
    """
    if auth not in (0, 1) or type(auth) is not int:
        raise ValueError(f"tmem-shared-auth: auth must be 0 or 1, not {auth!r}")
    lo, hi = uuid_parse(uuid)
    rc = _call(host, TmemOp(cmd=abi.TMEM_AUTH, uuid=(lo, hi), flags=auth,
                            arg1=_cli_id(domid)), trace, caller)
    if rc < 0:
        raise XlError("tmem-shared-auth", rc)
    return rc


def tmem_freeable(host, *, trace=None, caller: int = DOM0) -> int:
    """``xl tmem-freeable`` — TMEMC_QUERY_FREEABLE_MB: whole megabytes tmem could hand back,
    ``(frames on tmem_page_list + ephemeral frames) >> 8``. Persistent pages are not
    freeable: they are billed to their guests. (Xen 4.3's libxl returned the value, which xl
    printed; 4.12's returned 0 on success — facts §8.4.)"""
    return _control(host, "tmem-freeable", abi.TMEMC_QUERY_FREEABLE_MB, None, trace=trace,
                    caller=caller)


def tmem_flush(host, kb: int, domid: Optional[int] = None, *, trace=None,
               caller: int = DOM0) -> int:
    """TMEMC_FLUSH of ``kb`` kilobytes — no ``xl`` command sent it (xend's API and
    ``xm tmem-flush`` did; libxc's ``xc_tmem_control``).

    Evicts ephemeral pages until ``ceil(kb / 4)`` frames sit on tmem_page_list (or eviction
    fails), then scrubs **every** frame on that list and gives it to the heap. Returns the KB
    given back, which may be more than asked. Only "all clients" is implemented in Xen: a
    domain id gives -1 (XlError)."""
    if type(kb) is not int or not 0 <= kb < 1 << 32:
        raise ValueError(f"flush: {kb!r} KB is not a u32")
    return _control(host, "tmem-flush", abi.TMEMC_FLUSH, domid, kb, trace=trace, caller=caller)


def tmem_destroy(host, domid: Optional[int] = None, *, trace=None,
                 caller: int = DOM0) -> int:
    """TMEMC_DESTROY — no ``xl`` command (``xm tmem-destroy``, ``libxl_tmem_destroy``).
    Despite its name it destroys nothing: Xen's ``tmemc_freeze_pools`` prints "destroyed"
    and **thaws** the client. Returns 0."""
    return _control(host, "tmem-destroy", abi.TMEMC_DESTROY, domid, trace=trace, caller=caller)


def command_line(name: str, domid: Optional[int] = None, **opts) -> str:
    """The command an administrator typed for :func:`tmem_<name>`, for transcripts.

    >>> command_line("list", None, long=True)
    'xl tmem-list -l -a'
    >>> command_line("set", 3, weight=5, compress=1)
    'xl tmem-set 3 -w 5 -p 1'
    >>> command_line("shared_auth", 1, uuid="abcdef01-2345-6789-1234-567890abcdef", auth=1)
    'xl tmem-shared-auth 1 -u abcdef01-2345-6789-1234-567890abcdef -A 1'
    >>> command_line("flush", kb=4096)
    'xm tmem-flush -a   # TMEMC_FLUSH 4096 KB: no xl command'
    """
    target = "-a" if domid is None else str(domid)
    if name == "list":
        return f"xl tmem-list {'-l ' if opts.get('long') else ''}{target}"
    if name in ("freeze", "thaw"):
        return f"xl tmem-{name} {target}"
    if name == "set":
        flags = "".join(f" -{letter} {opts[key]}" for letter, key in
                        (("w", "weight"), ("c", "cap"), ("p", "compress"))
                        if opts.get(key) is not None)
        return f"xl tmem-set {target}{flags}"
    if name == "shared_auth":
        return f"xl tmem-shared-auth {target} -u {opts['uuid']} -A {opts['auth']}"
    if name == "freeable":
        return "xl tmem-freeable"
    if name == "flush":
        return f"xm tmem-flush {target}   # TMEMC_FLUSH {opts['kb']} KB: no xl command"
    if name == "destroy":
        return f"xm tmem-destroy {target}   # TMEMC_DESTROY: no xl command"
    raise ValueError(f"unknown command {name!r}")


class Xl:
    """Xen: ``xl tmem-*`` from a privileged domain (default dom0): one method per command.

    ``Xl(host, domid=0, trace=False)``. Each method makes the hypercall(s) :data:`COMMANDS`
    lists and returns the last value, or raises :class:`XlError` when one is negative (xl
    prints an error and exits with failure). ``domid=None`` means ``-a`` (all clients).
    Complexity: one hypercall per sub-op.

    Xen/Linux: the man page (and xl's help up to 4.8) says ``tmem-shared-auth -A``
    "0=auth,1=deauth"; the hypervisor always took 1 = authorise, 0 = revoke, and so does
    :meth:`tmem_shared_auth`. (Xen's man page, ``docs/man/xl.1.pod.in``, even names the option ``-a``, which is
    already "all domains"; xl's command table says ``-A``.)
    """

    def __init__(self, host, domid: int = 0, trace=False):
        self.ops = TmemOps(host, domid, trace)   # hypercalls from the tool's domain

    def _run(self, fn, *args, **kw):
        """Run the command function ``fn`` from this tool's domain, recording into its trace."""
        return fn(self.ops.host, *args, trace=self.ops.trace, caller=self.ops.domid, **kw)

    def tmem_list(self, domid: Optional[int] = None, long: bool = False) -> str:
        """``xl tmem-list [-l] <Domain>|-a`` — TMEMC_LIST into a 32768-byte buffer; the
        text up to its terminating NUL (without the newline xl adds when printing)."""
        return self._run(tmem_list, domid, long)[:-1]

    def tmem_freeze(self, domid: Optional[int] = None) -> int:
        """``xl tmem-freeze <Domain>|-a`` — TMEMC_FREEZE: new puts get -EFROZEN."""
        return self._run(tmem_freeze, domid)

    def tmem_thaw(self, domid: Optional[int] = None) -> int:
        """``xl tmem-thaw <Domain>|-a`` — TMEMC_THAW."""
        return self._run(tmem_thaw, domid)

    def tmem_set(self, domid: Optional[int] = None, *, weight: Optional[int] = None,
                 cap: Optional[int] = None, compress: Optional[int] = None) -> int:
        """``xl tmem-set <Domain>|-a [-w W] [-c C] [-p P]`` — SET_WEIGHT, SET_CAP,
        SET_COMPRESS for the options given, in that order."""
        return self._run(tmem_set, domid, weight=weight, cap=cap, compress=compress)

    def tmem_shared_auth(self, domid: Optional[int], uuid: str, auth: int = 1) -> int:
        """``xl tmem-shared-auth <Domain>|-a -u UUID -A AUTH`` — TMEM_AUTH: with ``auth`` 1
        the domain may join the shared pool ``uuid`` (parsed by :func:`uuid_parse`); 0
        withdraws that. For ``-a`` it switches "every domain is authorised" on or off.
        Returns 1 (done) or 0 (nothing to withdraw)."""
        return self._run(tmem_shared_auth, domid, uuid=uuid, auth=auth)

    def tmem_freeable(self) -> int:
        """``xl tmem-freeable`` — TMEMC_QUERY_FREEABLE_MB: whole MB of memory tmem could
        release (its free list plus every ephemeral page)."""
        return self._run(tmem_freeable)

    def __repr__(self):
        return f"<Xl dom{self.ops.domid}>"


# --- the command line ----------------------------------------------------------------------------
#: Each command's option letters, as xl's ``getopt`` string (``-h`` is added to all).
_OPTIONS = {"tmem-list": "al", "tmem-freeze": "a", "tmem-thaw": "a", "tmem-set": "aw:c:p:",
            "tmem-shared-auth": "au:A:", "tmem-freeable": ""}


def _strtol(text: str) -> int:
    """C's ``strtol(text, NULL, 10)`` cast to ``uint32_t``: the leading decimal number (0 if
    there is none), wrapped to 32 bits — what xl does with ``-w abc`` or ``-w -1``."""
    head = text.strip()
    sign, digits = (-1, head[1:]) if head[:1] == "-" else (1, head.lstrip("+"))
    n = len(digits) - len(digits.lstrip("0123456789"))
    return sign * int(digits[:n] or "0") & 0xFFFFFFFF


def run(host, argv: Sequence[str], out: Optional[TextIO] = None,
        err: Optional[TextIO] = None) -> int:
    """``xl ARGV`` for the six ``tmem-*`` commands, against ``host`` from dom0: prints what xl
    printed to ``out`` (default stdout) and its complaints to ``err`` (stderr); returns xl's
    exit status — 0, 1 (a failed hypercall, no domain or no value given, a bad uuid or auth)
    or 2 (an unknown command or option). Options may follow the domain (xl permutes them).
    One hypercall per sub-op.

    >>> from tmemref import Host
    >>> run(Host(pages=1024), ["tmem-list", "-a"])
    G=Tt:1,Te:0,Cf:0,Af:0,Pf:0,Ta:0,Lm:0,Et:0,Ea:0,Rt:0,Ra:0,Rx:0,Fp:0
    <BLANKLINE>
    0
    >>> run(Host(pages=1024), ["tmem-freeze"], err=sys.stdout)
    You must specify -a or a domain id.
    <BLANKLINE>
    Usage: xl tmem-freeze <Domain>|-a
    1
    """
    out = sys.stdout if out is None else out
    err = sys.stderr if err is None else err
    name, args = (argv[0], list(argv[1:])) if argv else ("", [])
    command = next((c for c in COMMANDS if c.name == name), None)
    if command is None:
        print(f"xl: unknown command {name!r} (tmem commands: "
              f"{', '.join(c.name for c in COMMANDS)})", file=err)
        return 2
    usage = f"Usage: xl {name} {command.usage}".rstrip()
    try:
        opts, rest = getopt.gnu_getopt(args, "h" + _OPTIONS[name])
    except getopt.GetoptError as e:
        print(f"option `{e.opt}' not supported.", file=err)
        return 2
    opt = dict(opts)
    if "-h" in opt:
        print(f"{usage}\n\n{command.summary}", file=out)
        return 0
    try:
        if name == "tmem-freeable":
            print(tmem_freeable(host), file=out)
            return 0
        if not rest and "-a" not in opt:
            print(f"You must specify -a or a domain id.\n\n{usage}", file=err)
            return 1
        domid = None if "-a" in opt else _domain(rest[0])
        if name == "tmem-list":
            out.write(tmem_list(host, domid, long="-l" in opt))
        elif name == "tmem-freeze":
            tmem_freeze(host, domid)
        elif name == "tmem-thaw":
            tmem_thaw(host, domid)
        elif name == "tmem-set":
            values = {k: _strtol(opt[f]) for k, f in (("weight", "-w"), ("cap", "-c"),
                                                      ("compress", "-p")) if f in opt}
            if not values:
                print(f"No set value specified.\n\n{usage}", file=err)
                return 1
            tmem_set(host, domid, **values)
        else:
            if "-u" not in opt or "-A" not in opt:
                print(f"No uuid or auth specified.\n\n{usage}", file=err)
                return 1
            if opt["-A"] not in ("0", "1"):
                print("Invalid auth, valid auth are <0|1>.", file=err)
                return 1
            tmem_shared_auth(host, domid, uuid=opt["-u"], auth=int(opt["-A"]))
    except (XlError, ValueError) as e:
        print(e, file=err)
        return 1
    return 0


def _domain(text: str) -> int:
    """xl's ``find_domain`` for a numeric id: ValueError for anything else."""
    if not text.isdigit() or not 0 <= int(text) < ALL:
        raise ValueError(f"{text} is an invalid domain identifier (rc=-6)")
    return int(text)
