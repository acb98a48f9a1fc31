"""The growth report open in a real headless Chromium (Debian's `chromium`, driven by Playwright): the `browser`
fixture (a pytest plugin of conftest.py, one browser per module) and OpenPage, a tab that records every script
error and request."""

from __future__ import annotations

from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    assert CHROMIUM.exists(), "install Debian's chromium (make browser: apt-get install -y chromium)"
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        try:
            yield chromium
        finally:
            chromium.close()


class OpenPage:
    """The report open in a fresh tab, with every script error and request recorded."""

    def __init__(self, browser, path: Path) -> None:
        self.problems: list[str] = []
        self.requests: list[str] = []
        self.page = browser.new_page(viewport={"width": 1400, "height": 1100})
        self.page.on("console", lambda m: self.problems.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda error: self.problems.append(str(error)))
        self.page.on("request", lambda request: self.requests.append(request.url))
        self.page.goto(path.as_uri())
        self.page.wait_for_selector("body[data-ready=true]", timeout=60_000)

    def text(self, selector: str) -> str:
        return self.page.locator(selector).text_content()

    def table(self, table_id: str) -> list[dict]:
        return self.page.evaluate(
            """(id) => Array.from(document.querySelectorAll("#" + id + " tbody tr")).map((row) => ({
                key: row.dataset.segment || null,
                cells: Array.from(row.children).map((cell) => cell.textContent),
            }))""",
            table_id,
        )

    def chart(self) -> dict:
        return self.page.evaluate(
            """() => {
                const chart = document.getElementById("growth-chart");
                const full = chart._fullLayout;
                const labels = (axis) => Array.from(document.querySelectorAll(
                    "#growth-chart ." + axis + "tick text")).map((t) => t.textContent);
                return {
                    segment: chart.dataset.segment,
                    x: chart.data[1].x, added: chart.data[1].y, totals: chart.data[0].y,
                    patterns: (chart.data[1].marker.pattern || {}).shape || null, hover: chart.data[1].text || null,
                    xticks: full.xaxis._vals.map((tick) => tick.x),
                    yticks: labels("y"), y2ticks: labels("y2"),
                };
            }"""
        )

    def close(self) -> None:
        self.page.close()
