"""Pictures of tmemref's structures, drawn live from a host or a tree.

Every picture is a ``graphviz.Digraph`` (except :func:`frame_map_figure`, a matplotlib figure)
whose DOT text is deterministic: structures are visited in sorted order and node ids come from
structure identity (``c1``, ``c1p0``, ``c1p0o7.0.0``, ``c1p0o7.0.0i3``, ``f123``), never from
memory addresses. Each sets a graph ``size`` so the SVG fits a book column. graphviz,
ipywidgets and matplotlib are imported only when a picture is made; the core of tmemref never
imports this package.

========================================  ===================================================
:func:`web`                               domains → clients → pools → buckets → rb-trees of
                                          objects → radix trees → pgps → frames; back
                                          pointers and LRU lists
:func:`rbtree`                            one red-black tree, red/black fill
                                          (``label=oid_key_label`` for a pool bucket)
:func:`radix`                             one radix tree, used slots only
:func:`case_pictures`                     before / each named case / after of one insert or
                                          erase (:class:`CasePictures`)
:func:`lru`                               the global and per-client ephemeral lists
:func:`frame_map`, :func:`frame_map_figure`  where every frame is (grid), as graphviz or
                                          matplotlib; :func:`frame_counts` the numbers
:func:`tlsf`                              a TLSF pool: bitmaps, free lists, one row per frame
:func:`explorer`                          kernel-free slider over precomputed pictures
:func:`record`                            apply steps to a host, picture after each
:func:`to_svg`                            inline SVG of any picture
:mod:`.appendix`, :mod:`.admin`           the tables the appendices and chapter 6 show
                                          (imported on their own: ``from tmemref.viz import
                                          appendix``)
:mod:`.dedup`                             the pcd layer of the web, the 256 first-byte trees,
                                          the LRU list as the second chance sees it (imported
                                          on its own)
========================================  ===================================================
"""
from .explore import explorer, record, to_svg
from .frames import frame_counts, frame_map, frame_map_figure, frame_states
from .lists import lru
from .tlsf import tlsf
from .trees import (CasePictures, case_pictures, copy_radix, copy_rbtree, item_text,
                    oid_key_label, radix, rbtree)
from .web import web

__all__ = ["web", "rbtree", "radix", "case_pictures", "CasePictures", "copy_rbtree",
           "copy_radix", "item_text", "oid_key_label", "lru", "frame_map", "frame_map_figure", "frame_states",
           "frame_counts", "tlsf", "explorer", "record", "to_svg"]
