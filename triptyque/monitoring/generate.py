"""Everything checked in under ``monitoring/`` that a program writes, in one mapping.

``documents(spec)`` maps each path (relative to the repository root) to its text;
``write`` puts them on disk and ``stale`` lists those on disk that differ, which is
what ``python -m triptyque.monitoring generate [--check]`` and the tests call. The
rendering is for ``config.CHECKED_IN_TARGET`` (the production profile).
"""

from __future__ import annotations

from pathlib import Path

from triptyque.monitoring import config, dashboards, files, promtool_tests, rulefiles, rules
from triptyque.spec import ServiceSpec

MONITORING = Path("monitoring")
RULES = MONITORING / "rules" / rulefiles.RECORDING_FILE
ALERTS = MONITORING / "alerts" / rulefiles.ALERTING_FILE
TESTS = MONITORING / "tests" / "triptyque_test.yaml"
DASHBOARDS = MONITORING / "dashboards"


def documents(spec: ServiceSpec) -> dict[Path, str]:
    target = config.CHECKED_IN_TARGET
    rule_texts = rulefiles.documents(spec, target)
    tests = promtool_tests.unit_tests(
        spec, config.profile_for(target),
        rules.recording_groups(spec, target), rules.alerting_groups(spec, target),
        rule_files=[f"../rules/{rulefiles.RECORDING_FILE}", f"../alerts/{rulefiles.ALERTING_FILE}"],
    )
    out = {
        RULES: rule_texts[rulefiles.RECORDING_FILE],
        ALERTS: rule_texts[rulefiles.ALERTING_FILE],
        TESTS: files.to_yaml(tests, rulefiles.header(spec, None) + "\nRun: promtool test rules "
                             f"{TESTS}"),
    }
    for name, board in dashboards.dashboards(spec).items():
        out[DASHBOARDS / f"{name}.json"] = files.to_json(board)
    return out


def write(spec: ServiceSpec, root: Path) -> list[Path]:
    return [files.write(root / path, text) for path, text in documents(spec).items()]


def stale(spec: ServiceSpec, root: Path) -> list[Path]:
    """Generated files that are missing or differ from what the spec renders now."""
    out = []
    for path, text in documents(spec).items():
        on_disk = root / path
        if not on_disk.is_file() or on_disk.read_text(encoding="utf-8") != text:
            out.append(path)
    return out
