"""Xen: the ``xl tmem-*`` commands (``tools/xl/xl_tmem.c`` → ``tools/libxc/xc_tmem.c``).

The administrator's side of tmem: commands run in a privileged domain (dom0, itself a Linux
guest) that reach the hypervisor as ``TMEM_CONTROL`` with a ``TMEMC_*`` sub-op, or as
``TMEM_AUTH``. :data:`COMMANDS` lists them with what each sends; :class:`Xl` runs them against
a :class:`~tmemref.Host`. The numbering is the classic one (Xen <= 4.7, control through
``tmem_op``); in Xen 4.6+ the same requests travel as ``XEN_SYSCTL_tmem_op``.

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

from dataclasses import dataclass
from typing import Optional, Tuple

from .. import abi
from .ops import TmemOps

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

    def _run(self, name: str, *args, **kw):
        """Run :func:`tmemref.xl.tmem_<name>` from this tool's domain, recording into its trace
        (the commands live there once; this class is their object-shaped front)."""
        from .. import xl                       # tmemref.xl imports this module
        return getattr(xl, "tmem_" + name)(self.ops.host, *args, trace=self.ops.trace,
                                          caller=self.ops.domid, **kw)

    def tmem_list(self, domid: Optional[int] = None, long: bool = False) -> str:
        """``xl tmem-list [-l] <Domain>|-a`` — TMEMC_LIST into a 32768-byte buffer; the
        text up to its terminating NUL (without the newline xl adds when printing)."""
        return self._run("list", domid, long)[:-1]

    def tmem_freeze(self, domid: Optional[int] = None) -> int:
        """``xl tmem-freeze <Domain>|-a`` — TMEMC_FREEZE: new puts get -EFROZEN."""
        return self._run("freeze", domid)

    def tmem_thaw(self, domid: Optional[int] = None) -> int:
        """``xl tmem-thaw <Domain>|-a`` — TMEMC_THAW."""
        return self._run("thaw", domid)

    def tmem_set(self, domid: Optional[int] = None, *, weight: Optional[int] = None,
                 cap: Optional[int] = None, compress: Optional[int] = None) -> int:
        """``xl tmem-set <Domain>|-a [-w W] [-c C] [-p P]`` — SET_WEIGHT, SET_CAP,
        SET_COMPRESS for the options given, in that order."""
        return self._run("set", domid, weight=weight, cap=cap, compress=compress)

    def tmem_shared_auth(self, domid: Optional[int], uuid: str, auth: int = 1) -> int:
        """``xl tmem-shared-auth <Domain>|-a -u UUID -A AUTH`` — TMEM_AUTH: with ``auth`` 1
        the domain may join the shared pool ``uuid`` (parsed by :func:`uuid_parse`); 0
        withdraws that. For ``-a`` it switches "every domain is authorised" on or off.
        Returns 1 (done) or 0 (nothing to withdraw)."""
        return self._run("shared_auth", domid, uuid=uuid, auth=auth)

    def tmem_freeable(self) -> int:
        """``xl tmem-freeable`` — TMEMC_QUERY_FREEABLE_MB: whole MB of memory tmem could
        release (its free list plus every ephemeral page)."""
        return self._run("freeable")

    def __repr__(self):
        return f"<Xl dom{self.ops.domid}>"
