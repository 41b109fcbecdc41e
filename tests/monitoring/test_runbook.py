"""The runbook has a section for every alert, and every section says what to check and do."""

from __future__ import annotations

import re

from tests.monitoring.conftest import MONITORING, load_yaml
from tests.support import ROOT
from triptyque.monitoring import generate

RUNBOOK = MONITORING / "runbook.md"


def sections() -> dict[str, str]:
    """Level-2 heading -> its text, up to the next level-2 heading."""
    parts = re.split(r"^## (.+)$", RUNBOOK.read_text(), flags=re.M)
    return {title.strip(): body for title, body in zip(parts[1::2], parts[2::2], strict=True)}


def alert_names() -> set[str]:
    return {r["alert"] for g in load_yaml(ROOT / generate.ALERTS)["groups"] for r in g["rules"]}


def github_anchor(heading: str) -> str:
    return re.sub(r"[^a-z0-9 _-]", "", heading.lower()).replace(" ", "-")


def test_every_alert_has_a_runbook_section() -> None:
    assert alert_names() - set(sections()) == set()


def test_every_alert_section_says_what_to_check_and_what_to_do() -> None:
    thin = [name for name in alert_names()
            if not re.search(r"\*\*What to check\*\*\n\n(- .+\n)+", sections()[name])
            or not re.search(r"\*\*What to do\*\*\n\n(- .+\n)+", sections()[name])]
    assert thin == []


def test_every_runbook_link_lands_on_a_heading() -> None:
    anchors = {github_anchor(h) for h in sections()}
    links = {r["annotations"]["runbook_url"] for g in load_yaml(ROOT / generate.ALERTS)["groups"]
             for r in g["rules"]}
    assert {link.split("#", 1)[1] for link in links} <= anchors
    assert all(link.startswith("monitoring/runbook.md#") for link in links)


def test_the_runbook_has_no_section_for_an_alert_that_does_not_exist() -> None:
    explained = {title for title in sections() if re.fullmatch(r"[A-Z][A-Za-z]+", title)}
    assert explained - alert_names() == set()
