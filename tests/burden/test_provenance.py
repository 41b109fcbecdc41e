"""The report traces every number: input files by path and SHA-256, version, revision, spec hash, overrides."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from tests.support import ROOT
from triptyque.burden.commands import build_report
from triptyque.burden.deployed import read_cloud_deployment
from triptyque.burden.ledger import Ledger
from triptyque.spec import load_spec


def test_the_report_carries_the_hash_of_every_input_and_names_the_figures_file_used(tmp_path: Path) -> None:
    figures = tmp_path / "my-figures.yaml"
    shutil.copy(ROOT / "burden/figures.yaml", figures)
    scenario = tmp_path / "mine.yaml"
    scenario.write_text((ROOT / "burden/scenarios/departmental.yaml").read_text().replace(
        "overrides: {}", "overrides:\n  power.onprem.eur_per_kwh: 0.21\n"
                         "  onprem.colocation_eur_per_rack_month: {value: 1100, source: ACME quote 2026-11}"))
    spec_path = ROOT / "serving/service.yaml"
    spec = load_spec(spec_path)
    comparison, paths = build_report(scenario_path=scenario, out_dir=tmp_path / "out",
                                     ledger=Ledger(tmp_path / "ledger.sqlite"), figures_path=figures,
                                     skills_path=ROOT / "burden/skills.yaml", spec=spec, root=ROOT,
                                     spec_path=spec_path)
    data = json.loads(paths["json"].read_text())
    provenance = data["provenance"]
    assert provenance["version"] and provenance["spec_hash"] == spec.spec_hash()
    assert data["git_revision"] == comparison.git_revision
    for kind, path in (("scenario", scenario), ("figures", figures), ("skills", ROOT / "burden/skills.yaml"),
                       ("spec", spec_path), ("cloud_stack", ROOT / "Pulumi.cloud.yaml")):
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        assert provenance["inputs"][kind] == {"path": str(path), "sha256": digest}
    html, markdown = paths["html"].read_text(), paths["markdown"].read_text()
    assert f"<code>{figures}</code>" in html and f"`{figures}`" in markdown
    assert "burden/figures.yaml" not in html.split("<h2>Summary")[0]
    used = {f["id"]: f for f in data["figures_used"]}
    colocation = used["onprem.colocation_eur_per_rack_month"]
    assert colocation["origin"] == "user override" and colocation["source"] == "ACME quote 2026-11"
    assert colocation["default_value"] == 900 and not colocation["unsourced"]
    assert "user override (default 900), unsourced" not in html and "user override (default 900)" in html


def test_the_cloud_is_priced_from_the_stack_config_it_deploys(tmp_path: Path) -> None:
    comparison, paths = build_report(scenario_path=ROOT / "burden/scenarios/departmental.yaml",
                                     out_dir=tmp_path, ledger=Ledger(tmp_path / "ledger.sqlite"),
                                     figures_path=ROOT / "burden/figures.yaml",
                                     skills_path=ROOT / "burden/skills.yaml", spec=None, root=ROOT)
    stack = read_cloud_deployment(ROOT)
    cloud = comparison.costs["cloud"]
    names = {i.name for i in cloud.items}
    # Every billable resource the stack creates has its line: GPU pool, system pool, model cache, load balancer.
    assert {f"GPU nodes ({stack.gpu_node_type}, billed per minute)", f"system pool ({stack.system_node_type})",
            f"model-cache volume ({stack.volume_class})"} <= names
    assert ("load balancer" in names) == bool(stack.load_balancers)
    if stack.gpu_min >= 1:
        assert cloud.sizing["billed_hours_per_node_month"] == 730
    data = json.loads(paths["json"].read_text())
    assert data["cloud_deployment"]["gpu_min"] == stack.gpu_min
    # The departmental model does not fit an 8 GB edge device: said, not priced.
    assert "edge" not in data["tco"] and "needs" in data["unserved"]["edge"]
    assert any(n.startswith("edge: cannot serve") for n in data["notes"])


def test_every_table_of_the_report_is_exported_as_csv(tmp_path: Path) -> None:
    import csv
    import io
    import re
    from urllib.parse import unquote

    from triptyque.burden.report import CSV_TABLES, tables

    comparison, paths = build_report(scenario_path=ROOT / "burden/scenarios/national-247.yaml", out_dir=tmp_path,
                                     ledger=Ledger(tmp_path / "ledger.sqlite"),
                                     figures_path=ROOT / "burden/figures.yaml",
                                     skills_path=ROOT / "burden/skills.yaml", spec=None, root=ROOT)
    assert tuple(tables(comparison)) == CSV_TABLES
    links = dict(re.findall(r'download="([a-z_]+)\.csv" href="data:text/csv;charset=utf-8,([^"]*)"',
                            paths["html"].read_text()))
    data = json.loads(paths["json"].read_text())
    assert set(links) == set(CSV_TABLES) == set(data["tables"])
    for name, (headers, rows) in tables(comparison).items():
        assert list(csv.reader(io.StringIO(unquote(links[name])))) == [headers, *rows], name
        assert data["tables"][name] == {"headers": headers, "rows": rows}
    summary = {row[0]: row for row in tables(comparison)["summary"][1]}
    onprem = data["tco"]["onprem"]["tco_economic"]
    assert summary["onprem"][2] == f"{onprem:,.0f} EUR"
    assert summary["cloud"][1] == "not priced" and "needs" in summary["cloud"][7]  # the L4 stack cannot hold 70B


def test_whom_each_option_depends_on_comes_from_the_artefacts_and_the_scenario(tmp_path: Path) -> None:
    _comparison, paths = build_report(scenario_path=ROOT / "burden/scenarios/departmental.yaml", out_dir=tmp_path,
                                      ledger=Ledger(tmp_path / "ledger.sqlite"),
                                      figures_path=ROOT / "burden/figures.yaml",
                                      skills_path=ROOT / "burden/skills.yaml", spec=None, root=ROOT)
    data = json.loads(paths["json"].read_text())
    by_option = {o: {d["name"]: d for d in ds} for o, ds in data["dependencies"].items()}
    cloud = by_option["cloud"]
    assert cloud["scaleway"]["jurisdiction"] == "FR (EU)" and cloud["scaleway"]["evidence"].startswith("artefact: ")
    assert "stacks/kapsule.py" in cloud["scaleway"]["evidence"]
    assert by_option["edge"]["ansible"]["evidence"].startswith("artefact: ")  # found in playbooks/pyproject
    assert "scaleway" not in by_option["onprem"] and "api provider" not in by_option["onprem"]
    api = by_option["buy"]["api provider"]
    assert api["vendor"] == "Scaleway SAS (Iliad group)" and "scaleway-mistral-small-3.2" in api["what"]
    assert all(o["model"]["vendor"] == "Mistral AI" and o["model"]["licence"] == "Apache-2.0"
               for o in by_option.values())
    assert data["provenance"]["inputs"]["dependencies"]["path"].endswith("burden/dependencies.yaml")
    assert "Whom each option depends on" in paths["html"].read_text()
    # A plain verdict per lens: cost, SLO, dependency, exit, people.
    verdict = data["decision"]["verdict"]
    for lens in ("Cost: ", "SLO ", "Dependency: ", "Exit: ", "People: "):
        assert any(line.startswith(lens) for line in verdict), lens
    eu_or_open = [d for d in data["dependencies"]["cloud"]
                  if "EU" not in d["jurisdiction"] or "proprietary" in d["licence"]]
    assert f"cloud {len(eu_or_open)}" in next(line for line in verdict if line.startswith("Dependency: "))


def test_fte_per_skill_domain_is_a_range_with_what_drives_it(tmp_path: Path) -> None:
    from triptyque.burden.compare import people_view
    from triptyque.burden.figures import load_figures
    from triptyque.burden.scenario import load_scenario

    comparison, _paths = build_report(scenario_path=ROOT / "burden/scenarios/national-247.yaml", out_dir=tmp_path,
                                      ledger=Ledger(tmp_path / "ledger.sqlite"),
                                      figures_path=ROOT / "burden/figures.yaml",
                                      skills_path=ROOT / "burden/skills.yaml", spec=None, root=ROOT)
    onprem = comparison.people["onprem"]
    # The source note gives on-prem MLOps as "Élevé": the high band, 0.5-1.0 FTE (staffing.high.*); the
    # bottom-up estimate (80 h of model lifecycle + the artefacts' AI items, well under 0.5 FTE) is raised to it.
    assert onprem["fte"]["AI-specific"] == pytest.approx([0.5, 0.5, 1.0])
    level = onprem["levels"]["AI-specific"]
    assert level["level"] == "high" and "packaging" in level["quote"] and level["references"]
    drivers = " ".join(onprem["drivers"])
    assert "model lifecycle 80 h/year" in drivers and "24/7 on-call 0.5 FTE" in drivers  # national-247 is 24/7
    scenario, figures = load_scenario(ROOT / "burden/scenarios/national-247.yaml",
                                      load_figures(ROOT / "burden/figures.yaml"))
    mine = scenario.model_copy(update={"people": scenario.people.model_copy(update={"fte": {"onprem": 2.0}})})
    exact = people_view(mine, figures, comparison.costs)["onprem"]
    assert all(lo == mi == hi for lo, mi, hi in exact["fte"].values())
    assert "the scenario's own figure: 2 FTE" in " ".join(exact["drivers"])
