"""Without ipywidgets, a notebook shows a static HTML summary of the panel or of a
``ControlPlane`` (like Dask's cluster repr); ipywidgets is hidden by making its import fail."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.widgets.test_panel import LIFECYCLE, _config, text_of
from tidectl.console.control.assemble import assemble
from tidectl.console.fleet import Fleet
from tidectl.widgets import ClusterPanel, PanelError


def _hide_ipywidgets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ipywidgets", None)  # import ipywidgets -> ImportError
    monkeypatch.delitem(sys.modules, "tidectl.widgets.controls", raising=False)


async def test_without_ipywidgets_the_panel_and_the_plane_show_static_html(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = _config(tmp_path, LIFECYCLE)
    fleet = Fleet(config.nodes, config.health)
    plane = await assemble(config, fleet=fleet, in_process_sim=True, interval_s=0.2)
    async with plane:
        _hide_ipywidgets(monkeypatch)
        panel = ClusterPanel.for_plane(plane, fleet, "lab", refresh_s=0.1)
        await panel.ready(10)
        with pytest.raises(ImportError):
            _ = panel.widget
        bundle = panel._repr_mimebundle_()
        assert set(bundle) == {"text/plain", "text/html"}
        shown = text_of(bundle["text/html"])
        assert "tidectl · lab" in shown and "1 nodes" in shown and "burn $0.00/h" in shown
        assert "ipywidgets is not installed" in shown
        assert "burst" in shown  # the pools table
        assert "tidectl · lab" in text_of(plane._repr_html_())
        await panel.aclose()
    assert "tidectl.widgets.controls" not in sys.modules  # it was never imported


async def test_with_ipywidgets_the_panel_displays_as_a_widget(tmp_path: Path) -> None:
    config = _config(tmp_path, LIFECYCLE)
    fleet = Fleet(config.nodes, config.health)
    plane = await assemble(config, fleet=fleet, in_process_sim=True, interval_s=0.2)
    async with plane:
        panel = ClusterPanel.for_plane(plane, fleet, "lab")
        bundle = panel._repr_mimebundle_()
        view = bundle["application/vnd.jupyter.widget-view+json"]
        assert view["model_id"] == panel.widget.model_id
        await panel.aclose()


def test_outside_a_running_loop_the_panel_says_where_it_runs() -> None:
    with pytest.raises(PanelError, match="use it in a Jupyter notebook"):
        ClusterPanel.demo()
