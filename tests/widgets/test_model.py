"""The panel's words without widgets or a control plane: the summary, the folded table, the
node detail, the drain preview and the Adaptive words, from a fleet of simulated nodes."""

from __future__ import annotations

from dataclasses import replace

from tests.console.lifecycle.world import POOL
from tests.console.tui.helpers import fed_fleet
from tidectl.console.config.model import PoolPolicy
from tidectl.console.control.errors import Failed, Refused
from tidectl.console.scheduler.base import Job, JobState
from tidectl.widgets.model import PanelModel, error_words, option_label


def test_the_summary_counts_nodes_gpus_and_health() -> None:
    fleet, _, _ = fed_fleet(6)
    html = PanelModel(fleet, "lab").summary_html()
    assert "tidectl · lab" in html
    assert "6 nodes" in html
    assert "GPUs 48" in html  # the sim nodes have 8 GPUs each
    assert "in use" in html and "ok" in html


def test_the_table_folds_alike_nodes_into_one_set_and_unfolds() -> None:
    fleet, _, _ = fed_fleet(6)
    model = PanelModel(fleet, "lab")
    folded = model.lines()
    assert [line.kind for line in folded] == ["fold"]
    assert folded[0].text.startswith("gpu[001-006] (6)")
    assert folded[0].nodes == tuple(f"gpu00{i}" for i in range(1, 7))
    model.table.toggle_fold()
    unfolded = model.lines()
    assert [line.key for line in unfolded] == [f"gpu00{i}" for i in range(1, 7)]
    assert "✔ ok" in unfolded[0].text and "streaming" in unfolded[0].text
    assert model.heading().split()[:3] == ["NODE", "HEALTH▼", "FINDINGS"]


def test_a_nodes_detail_shows_its_gpus_ib_ports_filesystems_and_findings() -> None:
    fleet, _, _ = fed_fleet(2)
    model = PanelModel(fleet, "lab")
    model.table.toggle_fold()
    line = model.lines()[0]
    html = model.detail_html(line)
    for section in ("GPUs", "InfiniBand", "Filesystems", "No findings"):
        assert section in html, section
    assert "select a node" in model.detail_html(None).lower()
    folded_detail = PanelModel(fleet, "lab")
    assert "Turn Fold off" in folded_detail.detail_html(folded_detail.lines()[0])


def test_the_drain_preview_lists_the_jobs_that_finish_first() -> None:
    fleet, _, _ = fed_fleet(2)
    model = PanelModel(fleet, "lab")
    model.table.toggle_fold()
    line = model.lines()[0]
    job = Job("1234", "llama-ft", "alice", JobState.RUNNING, "gpu", 1, 8, nodes=(line.key,))
    asking = model.drain_words(line, None, None)
    assert not asking.ready and "asking the scheduler" in asking.text
    words = model.drain_words(line, [job], None)
    assert words.ready
    assert (
        "run to completion first" in words.text and "1234  llama-ft  (alice, 8 GPUs" in words.text
    )
    assert not model.drain_words(None, None, None).ready


def test_the_adaptive_words_say_what_the_policy_does() -> None:
    on = replace(POOL, max_nodes=6, policy=PoolPolicy(min_nodes=1, burst_on_pressure=True))
    assert PanelModel.adaptive_words(on) == (
        "Adaptive: the policy keeps pool gpu between 1 and 6 node(s): it bursts when jobs wait "
        "and drains idle nodes."
    )
    floor = replace(POOL, policy=PoolPolicy(min_nodes=2))
    assert "bursts on its own only to keep 2 node(s)" in PanelModel.adaptive_words(floor)
    assert PanelModel.adaptive_words(POOL).startswith(
        "Adaptive off: pool gpu bursts only when asked"
    )


def test_errors_read_as_one_line_and_options_keep_their_columns() -> None:
    assert error_words(Refused("vic may not burst", request_id="r1")) == (
        "Refused (request r1): vic may not burst"
    )
    assert error_words(Failed("the cloud said no", request_id="")) == "Failed: the cloud said no"
    assert option_label("a  b") == "a\u00a0\u00a0b"
