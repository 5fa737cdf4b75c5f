"""Sphinx extension: drop the second copy of inline scripts that Sphinx 7.4 emits twice.

Why: an extension that calls ``app.add_js_file(None, body=...)`` after the HTML builder started
(sphinx-thebe and sphinx-togglebutton do, from ``env-before-read-docs``) gets its script stored
twice: ``Sphinx.add_js_file`` hands the builder ``filename=None``, and
``StandaloneHTMLBuilder.prepare_writing`` re-adds every registered script with ``filename=''``.
The two ``_JavaScript`` objects compare unequal, so every page carries both. The duplicate of
sphinx-thebe's ``const THEBE_JS_URL = ...`` then throws "Identifier 'THEBE_JS_URL' has already
been declared" on every page, which tests/test_browser.py (rightly) reports as a JavaScript error.

What: before each page is rendered, keep only the first of scripts with the same file name (None
and '' counted as equal) and the same attributes (including the inline body). Order is kept.
Remove this extension once the pinned Sphinx no longer duplicates (test_browser.py will tell).
"""

from __future__ import annotations


def _dedup_scripts(app, pagename, templatename, context, doctree):
    scripts = context.get("script_files")
    if not scripts:
        return
    seen = set()
    kept = []
    for js in scripts:
        filename = getattr(js, "filename", js) or ""
        attributes = tuple(sorted(getattr(js, "attributes", {}).items()))
        key = (filename, attributes)
        if key in seen:
            continue
        seen.add(key)
        kept.append(js)
    scripts[:] = kept  # the builder restores its own list after each page


def setup(app):
    # Run before the theme's handlers, which read script_files to render the page.
    app.connect("html-page-context", _dedup_scripts, priority=100)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
