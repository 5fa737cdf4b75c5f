"""Sphinx extension: a bibliography style whose labels are the citation keys.

Why: every page lists its own sources (a ``{bibliography}`` filtered to the page) and
``book/references.md`` lists them all. pybtex's usual labels (``[Mag10]``, ``[Wil16a]``) are made
per list, so one source got different labels on different pages, and different sources the same
label ("duplicate label" warnings). A key (``[xen-a36590e1b5]``) names one source everywhere.

What: registers the pybtex formatting style ``tmemref`` — pybtex's ``unsrt`` entries, labelled
by key — which ``_config.yml`` selects with ``bibtex_default_style``.
"""

from __future__ import annotations

from pybtex.plugin import register_plugin
from pybtex.style.formatting.unsrt import Style as UnsrtStyle
from pybtex.style.labels import BaseLabelStyle


class KeyLabelStyle(BaseLabelStyle):
    """Each entry's label is its citation key."""

    def format_labels(self, sorted_entries):
        for entry in sorted_entries:
            yield entry.key


class KeyStyle(UnsrtStyle):
    """pybtex's unsrt entries with :class:`KeyLabelStyle` labels."""
    default_label_style = KeyLabelStyle


def setup(app):
    register_plugin("pybtex.style.formatting", "tmemref", KeyStyle)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
