"""Real page-access traces: which pages of which files real programs read, recorded on a machine.

Not a Xen concept: the input cleancache would hand tmem. A guest's page cache is filled by
``read``/``pread`` system calls; every page such a call touches is a page-cache access, and the
ones the guest's own cache misses reach tmem as gets. :func:`record` runs a few real programs
under ``strace`` (which must be installed), follows each file descriptor's offset through
``openat``, ``read``, ``pread64``, ``lseek`` and ``close``, and turns every byte range read into
the 4096-byte pages it covers. Two consecutive accesses to the same page of the same file count
once (the kernel copies a page it has in hand). Pages of memory-mapped files (shared libraries)
are not seen: they are mapped, not read. The content of every page read is hashed
(BLAKE2b, 8 bytes) so that identical pages — the same licence text in two files, zero-filled
database pages — share one *content id*, which deduplication needs.

:data:`PROGRAMS` names what is recorded, each deterministic (fixed inputs, seeded choices,
sorted file lists), so the same machine gives the same trace every time:

==============  =================================================================================
``python``      40 runs of Debian's ``/usr/bin/python3 -I``, each importing 8 standard-library
                modules drawn with Zipf popularity (seeded): the ``.pyc`` files of popular
                modules and of start-up are read again and again
``grep``        ``grep -r`` over ten directories of the standard library's sources, six
                patterns in turn (a loop over one tree), and after every second one a
                ``grep -r`` of the whole library (a scan of a larger tree)
``sqlite``      ``sqlite3`` with a 64 KiB cache answering 4,000 point queries on a 20,000-row
                table (keys Zipf-popular, seeded) with a full-table scan after every 1,000: a
                database's reads below its own buffer cache
``copyrights``  ``cat`` of every ``/usr/share/doc/*/copyright``, twice: many identical pages
==============  =================================================================================

:func:`save` writes recorded traces to one compressed ``.npz``; :func:`load` reads them back as
:class:`Trace` objects (the book commits the file, so its results do not depend on the reader's
machine). ``python -m tmemref.sim.study --record-traces`` re-records them.

>>> t = parse_strace(['7 openat(AT_FDCWD, "/x", O_RDONLY) = 3',
...                   '7 read(3, ""..., 8192) = 8192', '7 pread64(3, ""..., 100, 400) = 100',
...                   '7 close(3) = 0'], keep=lambda path: True)
>>> t
[('/x', 0, 8192), ('/x', 400, 100)]
>>> [(path, page) for path, page in pages_of(t)]
[('/x', 0), ('/x', 1), ('/x', 0)]
"""
from __future__ import annotations

import glob
import hashlib
import os
import random
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InvariantError

__all__ = ["Trace", "PROGRAMS", "TRACED", "record", "record_all", "parse_strace", "pages_of",
           "save", "load"]

PAGE = 4096

#: The programs :func:`record` knows, by trace name (see the module docstring).
PROGRAMS = ("python", "grep", "sqlite", "copyrights")

_PY_MODULES = (
    "json", "email.mime.text", "http.client", "xml.dom.minidom", "sqlite3", "argparse", "csv",
    "decimal", "fractions", "statistics", "asyncio", "unittest", "logging.handlers",
    "concurrent.futures", "multiprocessing.pool", "urllib.request", "tarfile", "zipfile",
    "shutil", "tempfile", "subprocess", "pathlib", "dataclasses", "typing", "inspect", "ast",
    "dis", "pydoc", "difflib", "textwrap", "calendar", "random", "hashlib", "hmac", "secrets",
    "uuid", "ipaddress", "socket", "selectors", "ssl", "smtplib", "imaplib", "ftplib",
    "mailbox", "mimetypes", "base64", "gzip", "bz2", "lzma", "pickle", "shelve", "pprint",
    "graphlib", "configparser", "tomllib", "netrc", "plistlib", "html.parser",
    "xml.etree.ElementTree", "xmlrpc.client", "wsgiref.simple_server", "http.server",
    "cProfile", "pstats", "timeit", "trace", "tracemalloc", "doctest", "zipapp", "compileall",
    "filecmp", "glob", "tokenize", "symtable", "locale", "gettext", "unicodedata")
_GREP_DIRS = ("email", "json", "http", "xml", "asyncio", "unittest", "logging", "concurrent",
              "importlib", "multiprocessing")
_GREP_PATTERNS = ("def ", "import ", "class ", "return None", "raise ", "self.")


@dataclass(frozen=True, eq=False)
class Trace:
    """One recorded trace: the pages read, in order, as parallel ``int64`` arrays.

    Invariants (:meth:`check` raises :class:`~tmemref.errors.InvariantError`; built from bad
    arrays, a trace raises ``ValueError``):

    1. ``file``, ``page`` and ``content`` are 1-d arrays of one length;
    2. ``0 <= file < len(paths)``, ``page >= 0``, ``content >= 0``;
    3. two accesses to the same (file, page) have the same content id.
    """
    name: str            # the program (one of PROGRAMS)
    file: np.ndarray     # index into paths, in order of first access
    page: np.ndarray     # page number in the file (offset // 4096)
    content: np.ndarray  # content id: equal ids, equal bytes
    paths: tuple         # the files, as read

    def __post_init__(self):
        for f in ("file", "page", "content"):
            object.__setattr__(self, f, np.ascontiguousarray(getattr(self, f), dtype=np.int64))
        try:
            self.check()
        except InvariantError as e:
            raise ValueError(str(e)) from None

    def check(self) -> None:
        """Raise :class:`~tmemref.errors.InvariantError` unless the invariants hold.
        O(n log n)."""
        f, p, c = self.file, self.page, self.content
        if f.ndim != 1 or f.shape != p.shape or f.shape != c.shape:
            raise InvariantError(f"trace {self.name}: invariant 1: file, page and content "
                                 "must be 1-d arrays of one length")
        if len(f) and (f.min() < 0 or f.max() >= len(self.paths) or p.min() < 0 or c.min() < 0):
            raise InvariantError(f"trace {self.name}: invariant 2: file ids must index paths, "
                                 "pages and contents must be >= 0")
        key = f * (int(p.max()) + 1 if len(p) else 1) + p
        k, first = np.unique(key, return_index=True)
        if len(f) and not np.array_equal(c[first][np.searchsorted(k, key)], c):
            raise InvariantError(f"trace {self.name}: invariant 3: one (file, page) with two "
                                 "content ids")

    def __len__(self) -> int:
        return len(self.file)


# --- parsing ------------------------------------------------------------------------------------
_LINE = re.compile(r"^(?:\d+\s+)?(\w+)\((.*)\)\s+=\s+(-?\d+)")


_DUPS = ("dup", "dup2", "dup3", "fcntl")
#: The system calls recorded (``strace -e trace=...``).
TRACED = "openat,open,read,pread64,lseek,close,dup,dup2,dup3,fcntl"


def _regular(path: str) -> bool:
    return not path.startswith(("/proc/", "/sys/", "/dev/")) and os.path.isfile(path)


def parse_strace(lines, keep=_regular, cwd: str = "/") -> list:
    """The file reads in ``strace`` output lines (``-e trace=`` :data:`TRACED`, one process or
    ``-f``): a list of ``(path, offset, bytes)`` for every successful read of a
    file whose path ``keep`` accepts. Relative paths are resolved against the directory
    descriptor they were opened from, or ``cwd``. Offsets follow each descriptor through ``read`` (advances),
    ``pread64`` (its own offset) and ``lseek`` (the offset it returns); a ``dup`` (or ``fcntl``
    ``F_DUPFD``) shares its descriptor's file and offset. Interrupted
    (``unfinished``/``resumed``) and failed calls are ignored. O(lines)."""
    fds: dict = {}                 # (pid, fd) -> [path, offset]
    out = []
    for line in lines:
        pid = line.split(None, 1)[0] if line[:1].isdigit() else ""
        m = _LINE.match(line)
        if not m:
            continue
        call, args, ret = m.group(1), m.group(2), int(m.group(3))
        if ret < 0:
            continue
        if call in ("openat", "open"):
            path = re.search(r'"((?:[^"\\]|\\.)*)"', args)
            if path:
                name = path.group(1)
                base = args.split(",", 1)[0] if call == "openat" else "AT_FDCWD"
                if not name.startswith("/"):
                    where = cwd if base == "AT_FDCWD" else fds.get((pid, int(base)), [None])[0]
                    if where is None:
                        continue
                    name = os.path.normpath(os.path.join(where, name))
                fds[pid, ret] = [name, 0]
            continue
        fd = int(args.split(",", 1)[0])
        state = fds.get((pid, fd))
        if call in _DUPS:
            if state is not None and (call != "fcntl" or "F_DUPFD" in args):
                fds[pid, ret] = state          # one open file: the offset is shared
        elif call == "close":
            fds.pop((pid, fd), None)
        elif state is None:
            continue
        elif call == "read":
            if ret and keep(state[0]):
                out.append((state[0], state[1], ret))
            state[1] += ret
        elif call == "pread64":
            offset = int(args.rsplit(",", 1)[1])
            if ret and keep(state[0]):
                out.append((state[0], offset, ret))
        elif call == "lseek":
            state[1] = ret
    return out


def pages_of(reads):
    """``(path, page)`` for every page the reads touch, in order, two consecutive accesses to
    one page of one file counted once. O(pages)."""
    last = None
    for path, offset, size in reads:
        for page in range(offset // PAGE, (offset + size - 1) // PAGE + 1):
            if (path, page) != last:
                last = (path, page)
                yield last


def _trace(name: str, reads, work: str = "", contents: dict | None = None) -> Trace:
    ids, paths = {}, []
    contents = {} if contents is None else contents
    files, pages, cids = [], [], []
    data: dict = {}
    for path, page in pages_of(reads):
        f = ids.get(path)
        if f is None:
            f = ids[path] = len(paths)
            paths.append(path)
            with open(path, "rb") as fh:
                data[f] = fh.read()
        chunk = data[f][page * PAGE:(page + 1) * PAGE].ljust(PAGE, b"\0")
        digest = hashlib.blake2b(chunk, digest_size=8).digest()
        files.append(f)
        pages.append(page)
        cids.append(contents.setdefault(digest, len(contents)))
    shown = tuple(p.replace(work, "<work>", 1) if work else p for p in paths)
    return Trace(name, np.array(files), np.array(pages), np.array(cids), shown)


# --- recording ----------------------------------------------------------------------------------
def _commands(name: str, work: Path) -> list:
    """The command lines of program ``name``; files it needs are made in ``work``."""
    py = "/usr/bin/python3"
    lib = sorted(glob.glob("/usr/lib/python3.[0-9]*"))
    if name == "python":
        rng = np.random.default_rng(2010)
        from .workloads import zipf_probabilities
        p = zipf_probabilities(len(_PY_MODULES), 1.0)
        runs = [sorted(set(np.array(_PY_MODULES)[rng.choice(len(_PY_MODULES), 8, p=p)]))
                for _ in range(40)]
        return [[py, "-I", "-c", "import " + ", ".join(mods)] for mods in runs]
    if name == "grep":
        dirs = [d for d in (f"{lib[-1]}/{x}" for x in _GREP_DIRS) if os.path.isdir(d)]
        grep = ["grep", "-r", "-c", "--include=*.py", "--exclude-dir=test*"]
        cmds = []
        for i, pat in enumerate(_GREP_PATTERNS):
            cmds.append([*grep, pat, *dirs])
            if i % 2:
                cmds.append([*grep, pat, lib[-1]])
        return cmds
    if name == "sqlite":
        import sqlite3
        rng = random.Random(2010)
        db = work / "t.db"
        with sqlite3.connect(db) as con:
            con.execute("CREATE TABLE t(k INTEGER PRIMARY KEY, v TEXT)")
            con.executemany("INSERT INTO t VALUES (?, ?)", (
                (k, "".join(rng.choice("abcdefghij") for _ in range(rng.randint(50, 300))))
                for k in range(20000)))
        con.close()
        from .workloads import zipf_probabilities
        keys = np.random.default_rng(2010).permutation(20000)[np.random.default_rng(7).choice(
            20000, 4000, p=zipf_probabilities(20000, 0.9))]
        sql = ["PRAGMA cache_size=-64;"]
        for i, k in enumerate(keys.tolist()):
            sql.append(f"SELECT length(v) FROM t WHERE k = {k};")
            if (i + 1) % 1000 == 0:
                sql.append("SELECT count(*) FROM t WHERE v LIKE '%abcab%';")
        (work / "q.sql").write_text("\n".join(sql) + "\n")
        return [["sh", "-c", f"sqlite3 {db} < {work / 'q.sql'}"]]
    if name == "copyrights":
        files = sorted(f for f in glob.glob("/usr/share/doc/*/copyright") if _regular(f))
        return [["cat", *files]] * 2
    raise ValueError(f"no program {name!r}; known: {', '.join(PROGRAMS)}")


def record_all() -> list:
    """:func:`record` every program of :data:`PROGRAMS`, numbering contents across all of them
    (one content id, one content, whichever trace read it). Seconds to a minute."""
    contents: dict = {}
    return [record(name, contents) for name in PROGRAMS]


def record(name: str, contents: dict | None = None) -> Trace:
    """Run program ``name`` (one of :data:`PROGRAMS`) under ``strace`` and return its trace.
    ``contents`` (digest -> id) numbers contents across several recordings. Needs ``strace``;
    raises ``RuntimeError`` if a command fails. Deterministic on one machine.
    O(pages read), plus the programs' own time (seconds)."""
    if name not in PROGRAMS:
        raise ValueError(f"no program {name!r}; known: {', '.join(PROGRAMS)}")
    if shutil.which("strace") is None:
        raise RuntimeError("recording traces needs strace (apt-get install strace)")
    reads = []
    with tempfile.TemporaryDirectory(prefix="tmemref-trace-") as tmp:
        work = Path(tmp)
        env = {"PATH": "/usr/bin:/bin", "LC_ALL": "C", "HOME": tmp,
               "PYTHONDONTWRITEBYTECODE": "1"}
        for cmd in _commands(name, work):
            log = work / "strace.txt"
            run = subprocess.run(["strace", "-f", "-qq", "-s", "0", "-o", str(log), "-e",
                                  "trace=" + TRACED, *cmd],
                                 env=env, cwd=tmp, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.PIPE, text=True)
            if run.returncode not in (0, 1):       # grep -c: 1 when a pattern is absent
                raise RuntimeError(f"{cmd[0]} failed ({run.returncode}): {run.stderr[-300:]}")
            with open(log) as fh:
                reads += parse_strace(fh, keep=lambda p: _regular(p) and (
                    not p.startswith(tmp) or p == str(work / "t.db")), cwd=tmp)
        return _trace(name, reads, tmp, contents)


# --- storage ------------------------------------------------------------------------------------
def save(path, traces) -> None:
    """Write ``traces`` (an iterable of :class:`Trace`) to one compressed ``.npz``. O(total)."""
    arrays = {}
    for t in traces:
        arrays[f"{t.name}/file"] = t.file.astype(np.int32)
        arrays[f"{t.name}/page"] = t.page.astype(np.int32)
        arrays[f"{t.name}/content"] = t.content.astype(np.int32)
        arrays[f"{t.name}/paths"] = np.array(t.paths, dtype=str)
    np.savez_compressed(path, **arrays)


def load(path) -> dict:
    """The traces of a file written by :func:`save`: ``{name: Trace}``, sorted. O(total)."""
    with np.load(path) as z:
        names = sorted({k.split("/")[0] for k in z.files})
        return {n: Trace(n, z[f"{n}/file"], z[f"{n}/page"], z[f"{n}/content"],
                         tuple(z[f"{n}/paths"].tolist())) for n in names}
