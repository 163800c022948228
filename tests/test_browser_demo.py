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


def test_br011_demo_journey_search_erythrocyte_click_card_then_steer(demo_server, page, screenshot):
    """The issue's journey on the demo: explorer → search "erythrocyte" → hits ringed on the map → click
    the first active in ≥ 1 % of cells → latent view recolours and the card shows its terms → steer it
    in a cell type → volcano and terms."""
    import re

    page.set_viewport_size({"width": 1400, "height": 1000})
    page.goto(f"{demo_server.url}/explorer?source=analysis%3Ademo")
    expect(page.locator("#explorer-page")).to_be_visible(timeout=30_000)
    page.fill("#search-query-input", "erythrocyte")
    expect(page.locator("#search-results-status")).to_contain_text("match “erythrocyte”", timeout=30_000)
    page.wait_for_function("() => (document.querySelector('#explorer-map-graph .js-plotly-plot')?._fullData || [])"
                           ".some(d => (d.name || '').startsWith('search hits') && d._length > 0)", timeout=30_000)
    rows = page.locator("#search-results-grid .ag-center-cols-container .ag-row")
    expect(rows.first).to_be_visible()
    # as a biologist would: the first hit active in ≥ 1 % of the cells (the best p can belong to a
    # feature of a handful of cells; the grid's "active cells" column says so)
    def row(i):
        return page.locator(f"#search-results-grid .ag-center-cols-container .ag-row[row-index='{i}']")

    cells = [int(row(i).locator("[col-id=cells]").inner_text().replace(",", "") or 0)
             for i in range(min(rows.count(), 10))]
    pick = next(i for i, n in enumerate(cells) if n >= 100)
    row(pick).locator("[col-id=match]").click()
    expect(page.locator("#card-title")).to_have_text(re.compile(r"Feature \d+"), timeout=30_000)
    feature = int(re.search(r"\d+", page.locator("#card-title").inner_text())[0])
    # the first opening of the demo starts its UMAP job (a numba compile, ~40 s on two busy cores); the
    # latent view draws meanwhile (the job's result sets the view switch without holding up the view)
    page.wait_for_function("() => /active in [\\d,]+ of 10,?000/.test(document.querySelector("
                           "'#explorer-latent-graph .js-plotly-plot')?.layout?.title?.text || '')", timeout=30_000)
    expect(page.locator("#card-terms-grid .ag-center-cols-container")).to_contain_text("erythro", timeout=30_000)
    screenshot("1-explorer-erythrocyte")

    page.locator("#card-steer-link").click()
    expect(page.locator("#steering-page")).to_be_visible(timeout=30_000)
    expect(page).to_have_url(re.compile(rf"/steering\?.*feature={feature}\b"))
    page.click("#steer-celltypes-select")
    page.keyboard.type("MEP")
    page.keyboard.press("Enter")
    page.keyboard.press("Escape")
    page.click("#steer-run-start")
    expect(page.locator("#steer-run-alert .alert")).to_be_visible(timeout=180_000)
    assert "Done." in page.locator("#steer-run-alert").inner_text()
    expect(page.locator("#steer-results-summary")).to_contain_text(f"Feature {feature}", timeout=30_000)
    page.wait_for_function("() => (document.querySelector('#steer-volcano-graph .js-plotly-plot')?._fullData || [])"
                           ".reduce((n, d) => n + (d._length || 0), 0) > 100", timeout=30_000)
    expect(page.locator("#steer-terms-up-table .ag-center-cols-container .ag-row").first).to_be_visible(timeout=30_000)
    screenshot("2-steered")
