"""Chapters as live notebooks: every page opens as a notebook through jupytext (what JupyterLab
does with `jupyter lab book/<page>.md`), and the sliders drive the kernel (live_explorer)."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import pytest

from test_book import ROOT, entry_path, load_notebook, toc_entries
from tmemref.viz import scenes
from tmemref.viz.live import HINT, live_explorer, replayer


def _run(coroutine):
    """Run a coroutine to completion in a thread of its own (the browser tests keep an event
    loop running in this one)."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


def _notebook_pages():
    return [e for e in toc_entries() if load_notebook(entry_path(e)) is not None]


def test_every_notebook_page_opens_as_a_notebook_through_jupytext():
    from jupyter_server.services.contents.largefilemanager import AsyncLargeFileManager
    from jupytext.async_contentsmanager import build_async_jupytext_contents_manager_class
    manager = build_async_jupytext_contents_manager_class(AsyncLargeFileManager)(
        root_dir=str(ROOT))
    pages = _notebook_pages()
    assert len(pages) >= 8
    for entry in pages:
        path = entry_path(entry).relative_to(ROOT).as_posix()
        model = _run(manager.get(path))
        assert model["type"] == "notebook", path
        nb = model["content"]
        assert nb["metadata"]["kernelspec"]["name"] == "python3", path
        ours = [c.source for c in load_notebook(entry_path(entry)).cells
                if c.cell_type == "code"]
        theirs = [c["source"] for c in nb["cells"] if c["cell_type"] == "code"]
        assert theirs == ours, f"{path}: jupytext reads other code cells than the book build"


def test_every_chapter_slider_drives_the_kernel():
    """Each explorer in a notebook page is a live_explorer (the static-only explorer would
    leave the kernel idle when the slider moves)."""
    static_only = []
    for entry in _notebook_pages():
        for cell in load_notebook(entry_path(entry)).cells:
            if cell.cell_type == "code" and "explorer(" in cell.source.replace(
                    "live_explorer(", ""):
                static_only.append(entry)
    assert not static_only, f"sliders without a live kernel callback: {static_only}"


def test_moving_the_slider_runs_live_in_the_kernel():
    tour = scenes.tour()
    states = [(caption, f"state {i}") for i, (caption, _) in
              enumerate([("initial", None)] + tour.pairs())]
    calls = []

    def fresh():
        t = scenes.tour()
        return t.host, t.pairs()

    def view(host):
        calls.append(host)
        return f"{host.eph_count} ephemeral pages"

    box = live_explorer(states, replayer(fresh, view))
    slider, stack, pane = box.children
    assert HINT in pane.value and not calls            # nothing runs until the slider moves
    slider.value = 5
    assert len(calls) == 1
    expected = scenes.tour()
    for _, fn in expected.pairs()[:5]:
        fn(expected.host)
    assert f"{expected.host.eph_count} ephemeral pages" in pane.value
    assert calls[0] is not tour.host                     # a fresh host, not the drawn one
    slider.value = 0
    assert "0 ephemeral pages" in pane.value and len(calls) == 2


def test_live_explorer_keeps_the_static_link():
    """The browser-side link (what the static book uses) is still there, slider -> stack."""
    from ipywidgets.widgets.widget import _instances
    from ipywidgets.widgets.widget_link import Link
    box = live_explorer([("a", "<b>a</b>"), ("b", "<b>b</b>")], lambda i: str(i))
    slider, stack, _ = box.children
    assert (slider.max, len(stack.children)) == (1, 2)
    links = [w for w in _instances.values() if isinstance(w, Link)
             and w.source[0] is slider and w.target[0] is stack]
    assert [(w.source[1], w.target[1]) for w in links] == [("value", "selected_index")]


def test_bad_arguments():
    with pytest.raises(TypeError):
        live_explorer([("a", "x")], "not callable")
    with pytest.raises(TypeError):
        replayer(None, str)
    live = replayer(lambda: (scenes.new_host(1), []), lambda h: "ok")
    assert live(0) == "ok"
    with pytest.raises(ValueError):
        live(1)
