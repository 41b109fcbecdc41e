"""Open a report in a real headless Chromium (Debian's, driven by Playwright) and look at it."""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

CHARTS = {"tco", "phases", "recovery", "fte", "exit"}
# What decides, for the departmental scenario: the break-even chart and one tornado per
# priced option (edge cannot hold that scenario's model, so it has none).
DECISION_CHARTS = {"break-even", "tornado-onprem", "tornado-cloud", "tornado-buy"}
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


@dataclass
class Seen:
    charts: list[dict[str, Any]]
    errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)


def chromium() -> str:
    path = shutil.which("chromium")
    if path is None:
        pytest.fail("chromium not found: apt-get install chromium (the browser test needs Debian's build)")
    return path


def open_report(html: Path, screenshot: Path) -> Seen:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium(), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            errors: list[str] = []
            requests: list[str] = []
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("request", lambda r: requests.append(r.url))
            page.goto(html.as_uri(), wait_until="load")
            charts = page.eval_on_selector_all("svg.chart", """els => els.map(e => {
                const box = e.getBoundingClientRect();
                const marks = [...e.querySelectorAll('[data-value]')].map(m => m.getBoundingClientRect());
                return {name: e.dataset.chart, width: box.width, height: box.height, marks: marks.length,
                        visible_marks: marks.filter(r => r.width > 0 && r.height > 0).length};
            })""")
            page.screenshot(path=str(screenshot), full_page=True)
        finally:
            browser.close()
    return Seen(charts, errors, requests)


def non_blank(screenshot: Path) -> dict[str, float]:
    """How much of the picture is not background, and how many pixels carry the charts' colours."""
    image = Image.open(screenshot).convert("RGB")
    pixels: list[tuple[int, int, int]] = list(image.get_flattened_data())  # type: ignore[arg-type]
    inked = sum(1 for p in pixels if sum(p) < 720)
    blue = sum(1 for r, g, b in pixels if abs(r - 0x2F) < 12 and abs(g - 0x66) < 12 and abs(b - 0x90) < 12)
    return {"width": image.width, "height": image.height, "inked": inked / len(pixels), "chart_blue": blue}


def check_in_browser(html: Path, screenshot: Path) -> None:
    """No console error, no request leaving the file, every chart drawn, a screenshot with ink in it."""
    seen = open_report(html, screenshot)
    assert seen.errors == []
    assert all(url.startswith(("file://", "data:")) for url in seen.requests), seen.requests
    assert {c["name"] for c in seen.charts} == CHARTS | DECISION_CHARTS
    for chart in seen.charts:
        assert chart["width"] > 300 and chart["height"] > 80, chart
        assert chart["visible_marks"] >= 1 and chart["visible_marks"] == chart["marks"], chart
    picture = non_blank(screenshot)
    assert picture["height"] > 2000
    assert picture["inked"] > 0.03, picture
    assert picture["chart_blue"] > 500, picture
