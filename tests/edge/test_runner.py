"""Every Ansible event is kept, and the interesting ones become progress lines."""

from __future__ import annotations

import json

from triptyque.edge.runner import RunSummary, _Recorder
from triptyque.targets.edge import parse_units


def event(kind: str, **data: object) -> dict[str, object]:
    return {"event": kind, "event_data": data}


def test_the_recorder_keeps_every_event_and_narrates_tasks_changes_and_failures(tmp_path):
    lines: list[str] = []
    summary = RunSummary(ident="x", playbook="site.yml")
    recorder = _Recorder(tmp_path / "events.jsonl", lines.append, summary)
    events = [
        event("playbook_on_play_start", play="Stage"),
        event("playbook_on_task_start", task="Install | Copy"),
        event("runner_on_ok", host="edge1", task="Install | Copy", res={"changed": True},
              duration=1.5),
        event("runner_on_failed", host="edge2", task="Install | Copy",
              res={"results": [{"failed": True, "msg": "disk full"}, {"failed": False}]}),
        event("runner_on_ok", host="edge1", task="Status | Report",
              res={"ansible_facts": {"triptyque_node_status": {"current": "r-1"}}}),
        event("playbook_on_stats", ok={"edge1": 2}, changed={"edge1": 1}, failures={"edge2": 1}),
    ]
    for item in events:
        assert recorder(item) is True
    recorder.close()
    kept = [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]
    assert kept == events
    assert lines == ["play: Stage", "Install | Copy", "edge1: Install | Copy (changed)",
                     "edge2: Install | Copy: failed: disk full"]
    assert summary.failures == ["edge2: Install | Copy: failed: disk full"]
    assert summary.hosts["edge1"].changed == 1 and summary.hosts["edge2"].failed == 1
    assert summary.changed() == 1
    copy = summary.result("edge1", "Install | Copy")
    assert copy is not None and copy.status == "changed" and copy.seconds == 1.5
    report = summary.result("edge1", "Status | Report")
    assert report is not None and report.facts["triptyque_node_status"]["current"] == "r-1"


def test_systemctl_show_output_becomes_one_mapping_per_unit():
    text = ("Id=triptyque-engine.service\nActiveState=active\nNRestarts=2\n\n"
            "Id=triptyque-gateway.service\nActiveState=failed\nNRestarts=0\n")
    assert parse_units(text) == {
        "triptyque-engine.service": {"ActiveState": "active", "NRestarts": "2"},
        "triptyque-gateway.service": {"ActiveState": "failed", "NRestarts": "0"},
    }
