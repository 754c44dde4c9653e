"""``view.recording``: a session's actions as playbook YAML the playbook loader accepts —
node names folded, bursts as the size reached, a new file name rather than an overwrite."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from tidectl.console.view.recording import SessionRecording
from tidectl.playbooks import load


def test_a_recording_is_a_valid_playbook_and_never_overwrites(tmp_path: Path) -> None:
    recording = SessionRecording(started=datetime(2026, 11, 29, 8, 15, tzinfo=UTC))
    recording.burst("h100", 4)
    recording.drain(["gpu002", "gpu001", "gpu003"], "firmware")
    recording.resume(["gpu001"])
    recording.terminate(["h100-ab-1"], "done")
    cluster = tmp_path / "cluster.toml"
    first = recording.save(tmp_path, cluster, "ana")
    second = recording.save(tmp_path, cluster, "ana")
    assert first.name == "tidectl-session-20261129-081500.yaml"
    assert second.name == "tidectl-session-20261129-081500-2.yaml"
    text = first.read_text()
    assert text.startswith("# Recorded by the tidectl console.")
    assert "nodes: gpu[001-003]" in text and "description: what ana did" in text
    book = load(first)
    assert [step.name for step in book.steps] == [
        "ensure 4 node(s) in h100",
        "drain gpu[001-003]",
        "resume gpu001",
        "terminate h100-ab-1",
    ]
