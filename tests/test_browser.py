"""The built book, opened in a real browser, offline.

A session fixture builds the whole book once (``jupyter-book build --all . -W -n --keep-going``)
into a temporary folder, serves the HTML on 127.0.0.1, and Debian's chromium (driven by the
playwright package, without ``playwright install``) opens every page of the toc. A page fails if:

- an ``<img>`` did not decode (graphviz diagrams are ``<img src=...svg>``);
- a widget view did not render into the page (the widget JavaScript is vendored in
  ``book/_widgetjs``: offline, a CDN-loaded manager draws nothing);
- its text contains a Python traceback, or words about how the project is run (the same
  check as tests/test_book.py's, on what the reader sees, cell outputs included);
- it asked for anything outside localhost (such requests are recorded and blocked, so the test
  runs offline and proves the book does), or a local request failed (404, ...);
- its JavaScript threw an uncaught exception;
- printed output or a table is wider than its box, so part of it would hide behind a scroll
  bar (checked at two window widths);
- it is a notebook page and its download menu does not offer its executed ``.ipynb``.

Nothing is skipped: without chromium the tests fail and say how to install it.
"""

from __future__ import annotations

import functools
import http.server
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from test_book import PROJECT_LANGUAGE, ROOT, entry_path, load_notebook, toc_entries

BUILD_TIMEOUT = 1800  # seconds for the whole book
WIDGET_TIMEOUT_MS = 30_000
LOCAL_HOSTS = {"127.0.0.1", "localhost"}
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--no-first-run",
]
# Lines with "WARNING" in the build log that are not about the book. Each needs a reason.
HARMLESS_LOG_LINES = [
    # ipykernel >= 7 logs this when a kernel starts on the default local TCP transport, which
    # is how nbclient (inside myst-nb) starts every kernel; it is not a Sphinx warning.
    re.compile(r"^\[IPKernelApp\] WARNING \| Kernel is running over TCP without encryption\."),
]
# Window widths at which nothing may be clipped (the second is where the page's right-hand
# table of contents leaves the article narrowest).
WIDTHS = (1280, 1200)


def entry_path_of(page_path: str) -> Path:
    """The source of a built page."""
    return next(entry_path(e) for e in toc_entries()
                if (entry_path(e).relative_to(ROOT)).with_suffix(".html").as_posix() == page_path)


def page_paths() -> list[str]:
    """Built HTML path (relative to the site root) of every page in the toc."""
    paths = []
    for entry in toc_entries():
        source = entry_path(entry)
        rel = (source.relative_to(ROOT) if source else Path(entry)).with_suffix(".html")
        paths.append(rel.as_posix())
    return paths


def start_book_build(out: Path):
    """Start ``jupyter-book build`` of the whole book into ``out`` as a child process; return
    ``(process, out, start time)``. tests/conftest.py calls it as soon as the browser tests are
    collected, so that the build (one core) runs while the other tests run."""
    # the one installed beside this Python (a virtual environment need not be on PATH)
    beside = Path(sys.executable).with_name("jupyter-book")
    jupyter_book = (str(beside) if beside.exists() else shutil.which("jupyter-book")) or pytest.fail(
        "jupyter-book is not installed: pip install -r requirements.txt", pytrace=False
    )
    cmd = [jupyter_book, "build", "--all", str(ROOT), "-W", "-n", "--keep-going",
           "--path-output", str(out)]
    log = open(out / "build.log", "w")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, text=True)
    log.close()
    return proc, out, time.monotonic()


@pytest.fixture(scope="session")
def built_site(request, tmp_path_factory) -> Path:
    """The book built once into a temp dir (started early by tests/conftest.py, or here); the
    folder of its HTML."""
    started = getattr(request.config, "tmemref_book_build", None) or \
        start_book_build(tmp_path_factory.mktemp("book"))
    proc, out, t0 = started
    try:
        proc.wait(timeout=max(1.0, BUILD_TIMEOUT - (time.monotonic() - t0)))
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail(f"book build still running after {BUILD_TIMEOUT} s")
    log = (out / "build.log").read_text()
    print(f"book built in {time.monotonic() - t0:.1f} s (counted from its start); log in "
          f"{out / 'build.log'}", file=sys.stderr)
    assert proc.returncode == 0, f"book build failed (exit {proc.returncode}):\n{log[-8000:]}"
    warnings = [
        line for line in log.splitlines()
        if "WARNING" in line and not any(p.search(line) for p in HARMLESS_LOG_LINES)
    ]
    assert not warnings, "book build log has warnings:\n" + "\n".join(warnings)
    html = out / "_build" / "html"
    assert (html / "index.html").is_file(), f"no index.html in {html}"
    return html


@pytest.fixture(scope="session")
def site_url(built_site) -> str:
    """Serve the built HTML on 127.0.0.1 at a free port, from a thread."""

    class QuietHandler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):  # keep pytest's output clean
            pass

    handler = functools.partial(QuietHandler, directory=str(built_site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="session")
def browser():
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.fail(
            "chromium not found on PATH; the browser test needs Debian's chromium: "
            "apt-get update && apt-get install -y chromium",
            pytrace=False,
        )
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("playwright is not installed: pip install -r requirements.txt", pytrace=False)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        yield b
        b.close()


# Runs in the page: for every widget view script, did the manager put a rendered widget before it?
# (html-manager's embed code inserts a div.widget-subarea before each view script and renders the
# view into it.)
WIDGET_STATUS_JS = """
() => Array.from(document.querySelectorAll(
        'script[type="application/vnd.jupyter.widget-view+json"]')).map((tag) => {
    const area = tag.previousElementSibling;
    const ok = area !== null && area.classList.contains('widget-subarea')
        && area.querySelector('.jupyter-widgets') !== null
        && area.getBoundingClientRect().height > 0;
    let model = '?';
    try { model = JSON.parse(tag.textContent).model_id; } catch (e) {}
    return {model: model, ok: ok};
})
"""

# Runs in the page: printed output (<pre> in a cell output) and tables whose content is wider
# than their box. Boxes that are not displayed (a widget's other states) are skipped.
CLIPPED_JS = """
() => Array.from(document.querySelectorAll('main div.cell_output pre, main table')).map((el) => {
    const box = el.tagName === 'TABLE'
        ? (el.closest('.pst-scrollable-table-container') || el.parentElement) : el;
    if (box.getClientRects().length === 0) return null;
    return box.scrollWidth > box.clientWidth + 1
        ? `${el.tagName.toLowerCase()} ${box.scrollWidth}px in ${box.clientWidth}px: `
          + el.innerText.slice(0, 50).replace(/\\s+/g, ' ')
        : null;
}).filter((x) => x !== null)
"""

# Runs in the page: where the download menu's links point.
DOWNLOADS_JS = """
() => Array.from(document.querySelectorAll('a')).map((a) => a.getAttribute('href') || '')
    .filter((h) => h.includes('_sources/'))
"""

BROKEN_IMAGES_JS = """
() => Array.from(document.images)
    .filter((img) => !img.complete || img.naturalWidth === 0)
    .map((img) => img.currentSrc || img.src)
"""


@pytest.mark.parametrize("page_path", page_paths())
def test_page_renders_offline(browser, site_url, built_site, page_path):
    assert (built_site / page_path).is_file(), f"{page_path} was not built"
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    foreign: list[str] = []
    failed: list[str] = []
    js_errors: list[str] = []
    pending: set[str] = set()                 # requests sent and not yet answered or failed
    page.on("request", lambda r: pending.add(r.url))
    page.on("requestfinished", lambda r: pending.discard(r.url))
    page.on("requestfailed", lambda r: pending.discard(r.url))

    def gate(route):
        url = route.request.url
        parts = urlsplit(url)
        if parts.scheme in ("data", "blob", "about") or parts.hostname in LOCAL_HOSTS:
            route.continue_()
        else:
            foreign.append(url)
            route.abort()

    page.route("**/*", gate)
    page.on("pageerror", lambda exc: js_errors.append(str(exc)))

    def local_failure(url: str, why: str):
        failed.append(f"{why} {url}")

    page.on("response", lambda r: r.status >= 400 and local_failure(r.url, str(r.status)))
    page.on("requestfailed", lambda r: urlsplit(r.url).hostname in LOCAL_HOSTS
            and local_failure(r.url, str(r.failure)))
    try:
        page.goto(f"{site_url}/{page_path}", wait_until="load")
        widgets = page.evaluate(WIDGET_STATUS_JS)
        if widgets:
            try:
                page.wait_for_function(
                    f"() => ({WIDGET_STATUS_JS})().every((w) => w.ok)",
                    timeout=WIDGET_TIMEOUT_MS,
                )
            except Exception:
                pass  # reported below with the list of widgets that did not render
            widgets = page.evaluate(WIDGET_STATUS_JS)
        try:
            page.wait_for_load_state("networkidle")
        except Exception as e:                 # playwright's TimeoutError
            if type(e).__name__ != "TimeoutError":
                raise
            # Chromium's idle signal can be missed on a loaded machine; what matters is that
            # nothing the page asked for is still outstanding.
            page.wait_for_timeout(1000)
            assert not pending, f"requests still pending after 30 s: {sorted(pending)}"
        broken_images = page.evaluate(BROKEN_IMAGES_JS)
        clipped = []
        for width in WIDTHS:
            page.set_viewport_size({"width": width, "height": 900})
            clipped += [f"at {width}px: {c}" for c in page.evaluate(CLIPPED_JS)]
        page.set_viewport_size({"width": WIDTHS[0], "height": 900})
        downloads = page.evaluate(DOWNLOADS_JS)
        notebook = None
        wanted = Path(page_path).with_suffix(".ipynb").as_posix()
        ipynb = [h for h in downloads if h.endswith(wanted)]
        if ipynb:
            reply = page.request.get(f"{site_url}/{page_path.rsplit('/', 1)[0]}/{ipynb[0]}")
            notebook = reply.json() if reply.ok else None
        text = page.inner_text("body")
        shot = built_site.parent.parent / "screenshots" / (page_path.replace("/", "_") + ".png")
        shot.parent.mkdir(exist_ok=True)
        page.screenshot(path=str(shot), full_page=True)
    finally:
        context.close()

    problems = []
    if broken_images:
        problems.append(f"images that did not decode: {broken_images}")
    unrendered = [w["model"] for w in widgets if not w["ok"]]
    if unrendered:
        problems.append(f"{len(unrendered)} of {len(widgets)} widget views did not render "
                        f"(models {unrendered})")
    if "Traceback (most recent call last)" in text:
        problems.append("the page shows a Python traceback")
    project = PROJECT_LANGUAGE.findall(text)
    if project:
        problems.append(f"the page talks about how the project is run: {project}")
    if foreign:
        problems.append(f"requests outside localhost (blocked): {sorted(set(foreign))}")
    if failed:
        problems.append(f"failed local requests: {sorted(set(failed))}")
    if js_errors:
        problems.append(f"uncaught JavaScript errors: {js_errors}")
    if clipped:
        problems.append(f"content wider than its box (partly hidden): {clipped}")
    if load_notebook(entry_path_of(page_path)) is not None:
        if not ipynb:
            problems.append(f"no .ipynb in the download menu (links: {downloads})")
        elif not notebook or not notebook.get("cells"):
            problems.append(f"the offered {ipynb[0]} is not a notebook")
    assert not problems, f"{page_path} (screenshot {shot}):\n  " + "\n  ".join(problems)
