"""Sphinx extension: offer every executed MyST notebook as an ``.ipynb`` download.

Why: sphinx-book-theme puts an ``.ipynb`` entry in its download menu only when the page context
has ``ipynb_source``, and only its launch-button code sets that — when a Binder, JupyterHub,
Colab or Thebe URL is configured. This book configures none (it must work offline), so a reader
could download a chapter's MyST source but not the notebook.

What: for each page that myst-nb executed (its notebook is in ``<build>/jupyter_execute/``),
copy that notebook, outputs and widget state included, to ``_sources/<page>.ipynb`` in the
HTML output and set ``ipynb_source``, before the theme builds its header buttons. Plain
Markdown pages have no executed notebook and get no ``.ipynb`` entry.
"""

from __future__ import annotations

import shutil
from pathlib import Path


def _offer_notebook(app, pagename, templatename, context, doctree):
    if context.get("ipynb_source") or app.builder.format != "html":
        return
    executed = Path(app.outdir).parent / "jupyter_execute" / f"{pagename}.ipynb"
    if not executed.is_file():
        return
    target = Path(app.outdir) / "_sources" / f"{pagename}.ipynb"
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(executed, target)
    context["ipynb_source"] = f"{pagename}.ipynb"


def setup(app):
    # sphinx-book-theme reads ipynb_source in add_header_buttons, connected at priority 501.
    app.connect("html-page-context", _offer_notebook, priority=400)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
