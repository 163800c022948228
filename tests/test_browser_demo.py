"""`featurelens demo` (what `make demo` runs) serves the default demo analysis and the page shows it.

The demo is built once per session (the ``demo_analysis`` fixture); ``featurelens demo --out`` on
it then reuses every cached step and starts within seconds — the "every later start" path.
"""
from __future__ import annotations

import pytest
from conftest import start_server, stop_server
from playwright.sync_api import expect

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture(scope="module")
def demo_server(demo_analysis):
    base = demo_analysis.parent.parent             # <tmp>/analyses/demo → <tmp>
    server = start_server(base, ["demo", "--out", str(demo_analysis)], timeout=120)
    yield server
    stop_server(server)


def test_br010_demo_serves_its_analysis(demo_server, page, screenshot):
    page.goto(demo_server.url)
    card = page.locator("#picker-source-card")
    expect(page.locator("#picker-source-dropdown")).to_contain_text("Analysis · demo")
    expect(card).to_contain_text("Analysis demo", timeout=15000)
    expect(card).to_contain_text("simulated-haematopoiesis.h5ad")
    expect(card).to_contain_text("live features")
    expect(card).to_contain_text("annotated features")
    expect(card).to_contain_text("annotate, planted, predicted_expression, sae")
    screenshot("demo")
    log = demo_server.log.read_text()
    assert "planted GO programs recovered" in log
