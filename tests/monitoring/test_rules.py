"""Rules and alerts: generated from the spec, checked and unit-tested by promtool."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from tests.monitoring.conftest import load_yaml, run
from tests.support import ROOT
from triptyque.monitoring import capture, config, files, generate, promtool_tests, rulefiles, rules
from triptyque.spec import ServiceSpec

ALERTS = ROOT / generate.ALERTS
RULES = ROOT / generate.RULES
TESTS = ROOT / generate.TESTS


def alert_rules(groups: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def test_the_checked_in_files_are_what_the_spec_renders_now(spec: ServiceSpec) -> None:
    stale = generate.stale(spec, ROOT)
    assert stale == [], f"stale: {stale}; run: python -m triptyque.monitoring generate"


def test_every_production_target_renders_the_checked_in_rules(spec: ServiceSpec) -> None:
    from triptyque.spec import load_spec

    checked_in = load_yaml(ALERTS)["groups"] + load_yaml(RULES)["groups"]
    for target in ("edge", "onprem", "cloud"):
        target_spec = load_spec(ROOT / "serving/service.yaml", target=target)
        rendered = rules.alerting_groups(target_spec, target) + rules.recording_groups(
            target_spec, target)
        assert rendered == checked_in, f"{target} differs from the checked-in rules"


def test_the_local_target_differs_from_production_only_in_for_durations(
    spec: ServiceSpec, local_spec: ServiceSpec
) -> None:
    local, production = rules.rule_groups(local_spec, "local"), rules.rule_groups(spec, "edge")
    assert [g["name"] for g in local] == [g["name"] for g in production]

    def without_for(groups: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [{k: v for k, v in r.items() if k != "for"} for g in groups for r in g["rules"]
                if not (r.get("alert") == "ScrapeJobAbsent" and r["labels"]["job"] == "node")]

    assert without_for(local) == without_for(production)
    local_holds = {r["alert"]: r["for"] for r in alert_rules(local)}
    assert config.seconds(local_holds["KillSwitchEngaged"]) + 2 * 2 <= 15
    assert config.seconds(local_holds["EngineDown"]) + 2 * 2 <= 30


def test_promtool_accepts_the_checked_in_rule_files(promtool: str) -> None:
    result = run([promtool, "check", "rules", str(RULES), str(ALERTS)])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_promtool_rejects_a_broken_rule_file(promtool: str, tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text(ALERTS.read_text().replace("== 1", "== ", 1))
    assert run([promtool, "check", "rules", str(broken)]).returncode != 0


def test_the_checked_in_promtool_unit_tests_pass(promtool: str) -> None:
    result = run([promtool, "test", "rules", str(TESTS)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_promtool_unit_tests_pass_with_the_local_profiles_short_windows(
    promtool: str, local_spec: ServiceSpec, tmp_path: Path
) -> None:
    rule_paths = rulefiles.write(local_spec, "local", tmp_path / "rules")
    tests = promtool_tests.unit_tests(
        local_spec, config.LOCAL, rules.recording_groups(local_spec, "local"),
        rules.alerting_groups(local_spec, "local"), [str(p) for p in rule_paths],
    )
    test_file = files.write(tmp_path / "local_test.yaml", files.to_yaml(tests))
    result = run([promtool, "test", "rules", str(test_file)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_an_alert_that_fires_one_step_early_fails_its_unit_test(
    promtool: str, tmp_path: Path
) -> None:
    text = ALERTS.read_text()
    start = text.index("alert: KillSwitchEngaged")
    early = tmp_path / "early.yaml"
    early.write_text(text[:start] + text[start:].replace("for: 1m", "for: 30s", 1))
    tests = load_yaml(TESTS)
    tests["tests"] = [t for t in tests["tests"] if t["name"].startswith("KillSwitchEngaged")]
    assert len(tests["tests"]) == 1
    tests["rule_files"] = [str(RULES), str(ALERTS)]
    as_is = files.write(tmp_path / "as_is.yaml", files.to_yaml(tests))
    tests["rule_files"] = [str(RULES), str(early)]
    mutated = files.write(tmp_path / "mutated.yaml", files.to_yaml(tests))
    assert run([promtool, "test", "rules", str(as_is)]).returncode == 0
    result = run([promtool, "test", "rules", str(mutated)])
    assert result.returncode != 0
    assert "KillSwitchEngaged" in result.stdout + result.stderr


def _expand(values: str) -> list[str]:
    """promtool's expanding notation, as far as the generated tests use it."""
    out: list[str] = []
    for token in values.split():
        if "x" in token and token != "stale":
            value, times = token.rsplit("x", 1)
            out += [value] * (int(times) + 1)
        else:
            out.append(token)
    return out


def _trouble_starts(group: dict[str, Any]) -> int:
    """The first step at which any input series changes value."""
    starts = []
    for series in group["input_series"]:
        points = _expand(series["values"])
        starts += [i for i in range(1, len(points)) if points[i] != points[0]][:1]
    return min(starts)


def test_every_alert_rule_is_bracketed_by_its_for_window() -> None:
    """Silent one evaluation before `for:` ends, exact labels and annotations at its end."""
    tests = load_yaml(TESTS)
    step = config.seconds(tests["evaluation_interval"])
    unbracketed = []
    for rule in alert_rules(load_yaml(ALERTS)["groups"]):
        hold = config.seconds(rule["for"])
        found = False
        for group in tests["tests"]:
            checks = group.get("alert_rule_test", [])
            firing = [c for c in checks if c["alertname"] == rule["alert"] and any(
                a["exp_labels"].items() >= rule["labels"].items() for a in c["exp_alerts"])]
            for check in firing:
                at = _parse_duration(check["eval_time"])
                silent = [c for c in checks if c["alertname"] == rule["alert"]
                          and not c["exp_alerts"] and _parse_duration(c["eval_time"]) == at - step]
                starts = _trouble_starts(group) * config.seconds(group["interval"])
                if silent and at == starts + hold:
                    found = True
        if not found:
            unbracketed.append((rule["alert"], rule["labels"]))
    assert unbracketed == []


def _parse_duration(text: str) -> float:
    return sum(config.seconds(part) for part in re.findall(r"\d+[smhd]", text))


def test_every_alert_says_what_happened_how_bad_and_where_to_read_about_it() -> None:
    problems = []
    for rule in alert_rules(load_yaml(ALERTS)["groups"]):
        name = rule["alert"]
        if rule["labels"].get("severity") not in ("critical", "warning"):
            problems.append(f"{name}: severity")
        annotations = rule.get("annotations", {})
        for key in ("summary", "description"):
            if len(annotations.get(key, "")) < 15:
                problems.append(f"{name}: {key}")
        if annotations.get("runbook_url") != f"monitoring/runbook.md#{name.lower()}":
            problems.append(f"{name}: runbook_url")
    assert problems == []


def test_every_for_window_is_a_whole_number_of_evaluations_in_every_profile() -> None:
    for profile in (config.PRODUCTION, config.LOCAL):
        step = config.seconds(profile.evaluation_interval)
        holds = [*profile.holds.values(), *(w.hold for w in profile.burn_windows)]
        assert all(config.seconds(h) % step == 0 and config.seconds(h) > 0 for h in holds), profile


def test_every_profile_sets_a_for_window_for_the_same_alerts() -> None:
    assert set(config.LOCAL.holds) == set(config.PRODUCTION.holds)
    assert [(w.long, w.short) for w in config.LOCAL.burn_windows] == [
        (w.long, w.short) for w in config.PRODUCTION.burn_windows]


def test_burn_rate_thresholds_match_the_sre_workbook_for_a_30_day_window(
    spec: ServiceSpec,
) -> None:
    thirty = spec.model_copy(update={"slo": spec.slo.model_copy(update={"window_days": 30})})
    factors = [round(rules.burn_factor(w, thirty), 6) for w in config.PRODUCTION_BURN]
    assert factors == [14.4, 6.0, 3.0, 1.0]


def test_the_objectives_in_the_alerts_come_from_the_spec(spec: ServiceSpec) -> None:
    stricter = spec.model_copy(update={"slo": spec.slo.model_copy(update={
        "availability": 0.999, "ttft_p95_seconds": 0.5})})
    groups = rules.rule_groups(stricter, "edge")
    text = files.to_yaml(groups)
    assert "(13.44 * 0.001)" in text
    assert 'le=~"0\\\\.5"' in text
    assert "99.9% of API requests succeed" in text


@pytest.mark.parametrize(("bound", "matches", "rejects"), [
    (2.0, ["2", "2.0"], ["20", "2.5", "12"]),
    (0.5, ["0.5"], ["0.50", "005"]),
    (10, ["10", "10.0"], ["1", "100"]),
])
def test_the_bucket_matcher_accepts_both_client_spellings_of_a_bound(
    bound: float, matches: list[str], rejects: list[str]
) -> None:
    promql = rules.le_matcher(bound)
    pattern = promql.removeprefix('le=~"').removesuffix('"').replace("\\\\", "\\")
    assert all(re.fullmatch(pattern, m) for m in matches)
    assert not any(re.fullmatch(pattern, r) for r in rejects)


def test_the_gateway_has_a_histogram_bucket_at_each_latency_objective(
    local_spec: ServiceSpec,
) -> None:

    text = capture.capture_gateway(local_spec, 0)
    for metric, bound in (
        ("triptyque_gateway_time_to_first_token_seconds", local_spec.slo.ttft_p95_seconds),
        ("triptyque_gateway_request_duration_seconds", local_spec.slo.latency_p95_seconds),
    ):
        bounds = {float(le) for le in re.findall(rf'^{metric}_bucket{{.*le="([^"]+)"', text, re.M)}
        assert float(bound) in bounds, f"{metric} has no bucket at {bound}: {sorted(bounds)}"
