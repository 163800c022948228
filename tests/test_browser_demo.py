"""`featurelens demo` (what `make demo` runs): builds the demo analysis, serves it, and the page shows it."""
from __future__ import annotations

import pytest
from conftest import start_server, stop_server
from playwright.sync_api import expect

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture(scope="module")
def demo_server(tmp_path_factory):
    base = tmp_path_factory.mktemp("demo")
    out = base / "analyses" / "demo-pbmc68k"
    server = start_server(base, ["demo", "--out", str(out)], timeout=240)
    yield server
    stop_server(server)


def test_br010_demo_serves_its_analysis(demo_server, page, screenshot):
    page.goto(demo_server.url)
    card = page.locator("#picker-source-card")
    expect(page.locator("#picker-source-dropdown")).to_contain_text("Analysis · demo-pbmc68k")
    expect(card).to_contain_text("Analysis demo-pbmc68k", timeout=15000)
    expect(card).to_contain_text("live features")
    expect(card).to_contain_text("annotated features")
    expect(card).to_contain_text("annotate, predicted_expression, sae")
    screenshot("demo")
    assert (demo_server.analyses / "demo-pbmc68k" / "concept_map.parquet").is_file()
