"""Xen: ``tools/misc/xen-tmem-list-parse.c`` — read LIST's two-letter ASCII, print it for people.

``TMEMC_LIST`` (:mod:`tmemref.core.stats`) writes one line per thing, each ``K=`` followed by
comma-separated ``XX:value`` stats: ``G=`` the host, ``S=`` each global shared pool, ``C=`` a
client, ``P=`` one of its pools, ``T=`` timing (only in ``TMEM_PERF`` builds). Xen shipped a small
tool that turns that into text for people; this module does both jobs in Python:

* :func:`parse_list` — the text as a structure: ``{"global": {...}, "shared": [...],
  "clients": [{"CI": 1, ..., "pools": [...]}], "timing": None}``, every tag mapped to an ``int``
  (``U0``/``U1`` read as hex, ``PT`` kept as its two letters, ``SC`` a list of sharer ids);
* :func:`unparse_list` — the structure back to the text (``unparse_list(parse_list(t)) == t``
  for anything LIST writes);
* :func:`format_list_parse` — exactly what ``xen-tmem-list-parse`` prints for that text.

How the tool reads a line, reproduced by :func:`format_list_parse`: it reads stdin with
``fgets`` into a 4096-byte buffer, skips a line unless its second character is ``=``, and looks
each tag up with ``strstr`` — the *first* place the two letters occur, wherever that is; if a
``:`` does not follow, or the tag is missing, the value is 0. Values are read as unsigned 64-bit
decimals (``%llu``; ``U0``/``U1`` as hex), and the sums it prints wrap as C's do. Percentages
are integer divisions (``gets=found/total(pct%)``, ``compression ratio``); only the dedup, tze
and compression savings of the ``G=`` line are ``%4.2f`` floats. Shared pools are printed from
their ``S=`` lines; ``P=`` lines of shared pools are skipped (the tool says "no need to repeat").

Quirks of the tool (Xen 4.1-4.12, byte-identical from 4.3 on):

* **reproduced only with** ``quirks=True``: the ``S=`` printer looks up ``PI``, which an ``S=``
  line never has, so every shared pool prints as ``poolid=0``. By default the line's own ``SI``
  (the pool's index in the global shared-pool table) is printed instead.
* not reproducible, so not reproduced: a missing ``PT`` or ``SC`` tag leaves the C buffers
  uninitialised (garbage is printed); here the text is empty. A number with no digits after its
  ``:`` leaves the C variable uninitialised; here it is 0.

Complexity: O(length of the text) for each function (each tag lookup scans its line).

A small real host (a guest's ephemeral pool, three puts, one get):

>>> from tmemref import Host, TmemOp, abi
>>> host = Host(pages=1024)
>>> _ = host.create_domain(1, pages=64)
>>> pool = host.do_tmem_op(1, TmemOp(cmd=abi.TMEM_NEW_POOL, flags=abi.pool_flags()))
>>> for i in range(3):
...     _ = host.do_tmem_op(1, TmemOp(cmd=abi.TMEM_PUT_PAGE, pool_id=pool, oid=(7, 0, 0),
...                                   index=i, page=bytes([i + 1]) * 4096))
>>> _ = host.do_tmem_op(1, TmemOp(cmd=abi.TMEM_GET_PAGE, pool_id=pool, oid=(7, 0, 0), index=0,
...                               page=bytearray(4096)))
>>> text = host.list_stats()
>>> parse_list(text)["clients"][0]["pools"][0]["Pc"]
2
>>> unparse_list(parse_list(text)) == text
True
>>> print(format_list_parse(text), end="")  # doctest: +NORMALIZE_WHITESPACE
total tmem ops=5 (errors=0) -- tmem pages avail=1
datastructs: objs=1 (max=1) pgps=2 (max=3) nodes=1 (max=1) pages=2 (max=3)
misc: failed_copies=0 alloc_failed=0 alloc_page_failed=0 low_mem=0 evicted=0/0 relinq=0/0, max_evicts_per_relinq=0, flush_pools=0, eph_count=2, eph_max=3
domid1: weight=0,cap=0,compress=0,frozen=0,total_cycles=0,succ_eph_gets=1,succ_pers_puts=0,succ_pers_gets=0,eph_count=2,max_eph=3,compression ratio=0% (samples=0,poor=0,nomem=0)
domid1,id0[EP]:pgp=2(max=3) obj=1(1) objnode=1(1) puts=3/3/0(dup=0/0) gets=1/1(100%) flush=0/0 flobj=0/0
"""
from __future__ import annotations

__all__ = ["parse_list", "unparse_list", "format_list_parse", "parse_line", "TOOL_BUFSIZE"]

#: ``BUFSIZE`` of the tool: ``fgets`` reads at most this many bytes minus one per call.
TOOL_BUFSIZE = 4096
PAGE_SIZE = 4096
U64 = (1 << 64) - 1
#: Tags whose values are hexadecimal (the uuid words of P= and S= lines).
HEX_TAGS = frozenset({"U0", "U1"})
#: Tags whose values are kept as text.
TEXT_TAGS = frozenset({"PT"})
#: Tags that may repeat in one line (S=: one SC per sharer); parsed as a list.
LIST_TAGS = frozenset({"SC"})
KINDS = {"G": "global", "S": "shared", "C": "clients", "P": "pools", "T": "timing"}


# --- structured parsing -------------------------------------------------------------------------
def _text(data) -> str:
    """LIST output as ``str``, cut at the first NUL (the buffer is a C string)."""
    if isinstance(data, (bytes, bytearray, memoryview)):
        data = bytes(data).decode("ascii", errors="replace")
    return data.split("\0", 1)[0]


def _value(tag: str, raw: str):
    if tag in TEXT_TAGS:
        return raw
    try:
        return int(raw, 16) if tag in HEX_TAGS else int(raw, 10)
    except ValueError:
        return raw                                  # not a number: kept as it was written


def parse_line(line: str):
    """One LIST line as ``(kind_letter, {tag: value})``; ``None`` if it is not ``K=...``.

    Tags keep their order; a repeated tag keeps its first value (as the tool's ``strstr``
    would find), except ``SC``, which collects every sharer.

    >>> parse_line("P=CI:1,PI:0,PT:EP,U0:ff,U1:0\\n")
    ('P', {'CI': 1, 'PI': 0, 'PT': 'EP', 'U0': 255, 'U1': 0})
    >>> parse_line("S=SI:3,PT:ES,U0:2a,U1:1,SC:1,SC:2\\n")[1]["SC"]
    [1, 2]
    """
    line = line.rstrip("\n")
    if len(line) < 2 or line[1] != "=":
        return None
    fields: dict = {}
    body = line[2:]
    for item in body.split(",") if body else ():
        tag, sep, raw = item.partition(":")
        if not sep:
            continue                                # not a stat (e.g. an empty field)
        value = _value(tag, raw)
        if tag in LIST_TAGS:
            fields.setdefault(tag, []).append(value)
        elif tag not in fields:
            fields[tag] = value
    return line[0], fields


def parse_list(text) -> dict:
    """Xen LIST output (``str`` or the filled buffer) as a structure. O(len(text)).

    Returns ``{"global": dict | None, "shared": [dict], "clients": [dict], "timing": dict |
    None}``; each client dict carries its pools under ``"pools"``. A ``P=`` line is attached to
    the client with the same ``CI`` (the last one listed); if its ``C=`` line is missing (a
    short buffer drops lines), a client ``{"CI": id, "pools": []}`` stands in for it. Lines
    that are not ``G=``, ``S=``, ``C=``, ``P=`` or ``T=`` are ignored, as the tool ignores them.

    >>> parse_list("C=CI:3,ww:0\\nP=CI:3,PI:1,PT:PP,U0:0,U1:0\\n")["clients"]
    [{'CI': 3, 'ww': 0, 'pools': [{'CI': 3, 'PI': 1, 'PT': 'PP', 'U0': 0, 'U1': 0}]}]
    """
    out = {"global": None, "shared": [], "clients": [], "timing": None}
    by_id: dict = {}
    for line in _text(text).splitlines():
        parsed = parse_line(line)
        if parsed is None:
            continue
        kind, fields = parsed
        if kind == "G":
            out["global"] = fields
        elif kind == "T":
            out["timing"] = fields
        elif kind == "S":
            out["shared"].append(fields)
        elif kind == "C":
            client = dict(fields)
            client["pools"] = []
            out["clients"].append(client)
            by_id[fields.get("CI")] = client
        elif kind == "P":
            client = by_id.get(fields.get("CI"))
            if client is None:
                client = {"CI": fields.get("CI"), "pools": []}
                out["clients"].append(client)
                by_id[fields.get("CI")] = client
            client["pools"].append(fields)
    return out


def _unparse_fields(fields: dict) -> str:
    parts = []
    for tag, value in fields.items():
        if tag == "pools":
            continue
        values = value if tag in LIST_TAGS else [value]
        for v in values:
            if isinstance(v, int) and tag in HEX_TAGS:
                parts.append(f"{tag}:{v:x}")
            else:
                parts.append(f"{tag}:{v}")
    return ",".join(parts)


def unparse_list(parsed: dict) -> str:
    """The LIST text of a :func:`parse_list` structure, lines in LIST's order (G, S, each C
    with its P, T). O(size of the structure).

    >>> t = "G=Tt:4,Te:0\\nC=CI:1,ww:2\\nP=CI:1,PI:0,PT:EP,U0:0,U1:0\\n"
    >>> unparse_list(parse_list(t)) == t
    True
    """
    lines = []
    if parsed.get("global") is not None:
        lines.append("G=" + _unparse_fields(parsed["global"]))
    lines += ["S=" + _unparse_fields(s) for s in parsed.get("shared", ())]
    for client in parsed.get("clients", ()):
        if set(client) - {"CI", "pools"}:           # a stand-in for a dropped C= line has none
            lines.append("C=" + _unparse_fields(client))
        lines += ["P=" + _unparse_fields(p) for p in client.get("pools", ())]
    if parsed.get("timing") is not None:
        lines.append("T=" + _unparse_fields(parsed["timing"]))
    return "".join(line + "\n" for line in lines)


# --- the tool -----------------------------------------------------------------------------------
def _scan_number(s: str, i: int, base: int) -> int:
    """``sscanf`` of ``%llu`` / ``%llx`` at ``s[i:]``: spaces, a sign, (``0x``,) digits.
    Negative numbers wrap to unsigned 64 bits; overflow saturates (glibc). No digits: 0."""
    n = len(s)
    while i < n and s[i] in " \t\n\r\f\v":
        i += 1
    neg = False
    if i < n and s[i] in "+-":
        neg = s[i] == "-"
        i += 1
    digits = "0123456789" if base == 10 else "0123456789abcdefABCDEF"
    if base == 16 and s[i:i + 2] in ("0x", "0X") and i + 2 < n and s[i + 2] in digits:
        i += 2
    j = i
    while j < n and s[j] in digits:
        j += 1
    if j == i:
        return 0
    value = min(int(s[i:j], base), U64)
    return (-value) & U64 if neg else value


def _lookup(s: str, tag: str, base: int = 10) -> int:
    """The tool's ``parse``/``parse_hex``: the first ``tag`` anywhere, then ``:``, a number."""
    i = s.find(tag)
    if i < 0 or s[i + 2:i + 3] != ":":
        return 0
    return _scan_number(s, i + 3, base)


def _lookup_text(s: str, tag: str, length: int) -> str:
    """The tool's ``parse_string``: the ``length`` characters after ``tag:``."""
    i = s.find(tag)
    if i < 0 or s[i + 2:i + 3] != ":":
        return ""
    return s[i + 3:i + 3 + length].split("\0", 1)[0]


def _sharers(s: str, tag: str = "SC") -> str:
    """The tool's ``parse_sharers``: the digits after each ``SC:``, joined by commas."""
    found = []
    i = s.find(tag)
    while i >= 0:
        i += 2
        if s[i:i + 1] != ":":
            break
        i += 1
        j = i
        while j < len(s) and "0" <= s[j] <= "9":
            j += 1
        found.append(s[i:j])
        i = s.find(tag, j)
    return ",".join(found)


def _pct(part: int, whole: int) -> int:
    """``whole ? (part*100LL)/whole : 0`` in unsigned 64-bit arithmetic."""
    return ((part * 100) & U64) // whole if whole else 0


def _format_global(s: str) -> str:
    g = {t: _lookup(s, t) for t in ("Tt", "Te", "Cf", "Af", "Pf", "Ta", "Lm", "Et", "Ea", "Rt",
                                    "Ra", "Rx", "Fp", "Ec", "Em", "Oc", "Om", "Nc", "Nm", "Pc",
                                    "Pm", "Fc", "Fm", "Sc", "Sm", "Zt", "Gz", "Gd", "Ep")}
    out = [f"total tmem ops={g['Tt']} (errors={g['Te']}) -- tmem pages avail={g['Ta']}\n",
           f"datastructs: objs={g['Oc']} (max={g['Om']}) pgps={g['Pc']} (max={g['Pm']}) "
           f"nodes={g['Nc']} (max={g['Nm']}) pages={g['Fc']} (max={g['Fm']}) "]
    pcds, eph, good = g["Sc"], g["Ec"], g["Ep"]
    if g["Sm"] != 0 and eph != 0 and good != 0:
        out.append(f"pcds={pcds} (max={g['Sm']}) ")
        avg = (float(g["Gd"]) / float(good)) * 100
        curr = (1.0 - float(pcds) / float(eph)) * 100
        out.append(f"deduped: avg={avg:4.2f}% (curr={curr:4.2f}%) ")
    if pcds != 0:
        whole = (pcds * PAGE_SIZE) & U64
        if g["Zt"] and g["Zt"] < whole:
            out.append(f"tze savings={(1.0 - float(g['Zt']) / float(whole)) * 100:4.2f}% ")
        if g["Gz"] and g["Gz"] < whole:
            out.append(f"compression savings={(1.0 - float(g['Gz']) / float(whole)) * 100:4.2f}% ")
    out.append("\n")
    out.append(f"misc: failed_copies={g['Cf']} alloc_failed={g['Af']} "
               f"alloc_page_failed={g['Pf']} low_mem={g['Lm']} evicted={g['Et']}/{g['Ea']} "
               f"relinq={g['Rt']}/{g['Ra']}, max_evicts_per_relinq={g['Rx']}, "
               f"flush_pools={g['Fp']}, eph_count={g['Ec']}, eph_max={g['Em']}\n")
    return "".join(out)


#: The T= counters, in the tool's order: (tag letter, label).
TIMING = (("G", "succ get cycles:"), ("P", "succ put cycles:"), ("g", "failed get cycles:"),
          ("p", "failed put cycles:"), ("F", "flush cycles:"), ("O", "flush_obj cycles:"),
          ("C", "page copy cycles:"), ("c", "compression cycles:"),
          ("d", "decompression cycles:"))


def _format_timing(s: str) -> str:
    out = []
    for letter, label in TIMING:
        count, total = _lookup(s, letter + "n"), _lookup(s, letter + "t")
        if count:
            avg = total // count if total else 0
            out.append(f"{label} avg={avg}, max={_lookup(s, letter + 'x')}, "
                       f"min={_lookup(s, letter + 'm')}, samples={count}\n")
    return "".join(out)


def _format_client(s: str) -> str:
    c = {t: _lookup(s, t) for t in ("CI", "ww", "ca", "co", "fr", "Ec", "Em", "cp", "cb", "cn",
                                    "cm", "Tc", "Ge", "Pp", "Gp")}
    cp = c["cp"]
    whole = (cp * PAGE_SIZE) & U64
    ratio = ((c["cb"] * 100) & U64) // whole if cp and whole else 0
    return (f"domid{c['CI']}: weight={c['ww']},cap={c['ca']},compress={1 if c['co'] else 0},"
            f"frozen={1 if c['fr'] else 0},total_cycles={c['Tc']},succ_eph_gets={c['Ge']},"
            f"succ_pers_puts={c['Pp']},succ_pers_gets={c['Gp']},eph_count={c['Ec']},"
            f"max_eph={c['Em']},compression ratio={ratio}% (samples={cp},poor={c['cn']},"
            f"nomem={c['cm']})\n")


POOL_TAGS = ("Pc", "Pm", "Oc", "Om", "Nc", "Nm", "ps", "pt", "px", "pd", "pr", "gs", "gt", "fs",
             "ft", "os", "ot")


def _pool_stats(p: dict) -> str:
    return (f"pgp={p['Pc']}(max={p['Pm']}) obj={p['Oc']}({p['Om']}) "
            f"objnode={p['Nc']}({p['Nm']}) puts={p['ps']}/{p['pt']}/{p['px']}"
            f"(dup={p['pd']}/{p['pr']}) gets={p['gs']}/{p['gt']}({_pct(p['gs'], p['gt'])}%) "
            f"flush={p['fs']}/{p['ft']} flobj={p['os']}/{p['ot']}\n")


def _format_pool(s: str) -> str:
    pool_type = _lookup_text(s, "PT", 2)
    if pool_type[1:2] == "S":
        return ""                                   # printed from its S= line instead
    p = {t: _lookup(s, t) for t in POOL_TAGS}
    return (f"domid{_lookup(s, 'CI')},id{_lookup(s, 'PI')}[{pool_type}]:" + _pool_stats(p))


def _format_shared(s: str, quirks: bool) -> str:
    pool_id = _lookup(s, "PI" if quirks else "SI")
    p = {t: _lookup(s, t) for t in POOL_TAGS}
    return (f"poolid={pool_id}[{_lookup_text(s, 'PT', 2)}] uuid={_lookup(s, 'U0', 16):x}."
            f"{_lookup(s, 'U1', 16):x}, shared-by:{_sharers(s)}: " + _pool_stats(p))


def _fgets_lines(text: str):
    """What successive ``fgets(buf, 4096, stdin)`` calls return: lines, long ones in pieces."""
    limit = TOOL_BUFSIZE - 1
    for line in text.splitlines(keepends=True):
        for i in range(0, len(line), limit):
            yield line[i:i + limit]


def format_list_parse(text, quirks: bool = False) -> str:
    """What ``xen-tmem-list-parse`` prints when LIST's output is piped into it. O(len(text)).

    ``text`` is a ``str`` or the LIST buffer (cut at its first NUL). ``quirks=True`` prints
    ``poolid=0`` for every shared pool, as the tool does (see the module docstring).

    >>> print(format_list_parse("P=CI:2,PI:1,PT:PP,U0:0,U1:0,Pc:3,Pm:3,gs:1,gt:3\\n"), end="")
    domid2,id1[PP]:pgp=3(max=3) obj=0(0) objnode=0(0) puts=0/0/0(dup=0/0) gets=1/3(33%) flush=0/0 flobj=0/0
    """
    if isinstance(text, (bytes, bytearray, memoryview)):
        text = _text(text)                          # xl prints the buffer as a C string
    out = []
    for chunk in _fgets_lines(text):
        if len(chunk) < 2 or chunk[1] != "=":
            continue
        kind, s = chunk[0], chunk[2:].split("\0", 1)[0]
        if kind == "G":
            out.append(_format_global(s))
        elif kind == "T":
            out.append(_format_timing(s))
        elif kind == "C":
            out.append(_format_client(s))
        elif kind == "P":
            out.append(_format_pool(s))
        elif kind == "S":
            out.append(_format_shared(s, quirks))
    return "".join(out)
