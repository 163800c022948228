"""The Trajectories page in a real browser: open it from the navbar, choose a lineage in order, find
the rising features (a background job), click a row to see its stage-by-stage plot, follow the
card link to the Explorer; reload keeps the lineage; an analysis without a decoder still lists the
features and says why there is no steering ranking."""
from __future__ import annotations

import re
import shutil

import pytest
from conftest import start_server, stop_server
from playwright.sync_api import expect
from trajectory_data import RISING, STAGES, build_trajectory_analysis

pytestmark = pytest.mark.browser

JOB_MS = 120_000  # the shared 2-core machine
PLOT = "#trajectories-stage-graph .js-plotly-plot"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    base = tmp_path_factory.mktemp("traj-app")
    shutil.copytree(build_trajectory_analysis(base / "build"), base / "analyses" / "traj")
    shutil.copytree(build_trajectory_analysis(base / "nodec", decoder=False), base / "analyses" / "nodecoder")
    srv = start_server(base, ["serve"])
    yield srv
    stop_server(srv)


def choose_stages(page, stages) -> None:
    """Pick ``stages`` one by one in the ordered multi-select (selection order = lineage order)."""
    for s in stages:
        option = page.get_by_role("option", name=s, exact=True)
        if not option.is_visible():  # the menu may stay open after a pick, or close
            page.click("#trajectories-stages-select")
        option.click()
    page.keyboard.press("Escape")


def find_and_wait(page) -> str:
    page.click("#trajectories-find-start")
    expect(page.locator("#trajectories-find-alert .alert")).to_be_visible(timeout=JOB_MS)
    return page.locator("#trajectories-find-alert").inner_text()


def test_btr001_lineage_find_click_row_plot_then_card(server, page, screenshot):
    page.set_viewport_size({"width": 1400, "height": 1000})
    page.goto(f"{server.url}/data?source=analysis%3Atraj")
    page.click("#app-navlink-trajectories")
    expect(page.locator("#trajectories-page")).to_be_visible(timeout=30_000)
    # no known chain among s0..s3: the stages start empty; the order is shown as chosen
    expect(page.locator("#trajectories-order-text")).to_have_text("Choose at least two stages, first stage first.")
    choose_stages(page, list(STAGES))
    expect(page.locator("#trajectories-order-text")).to_have_text("Lineage: s0 → s1 → s2 → s3")
    expect(page).to_have_url(re.compile(r"lineage=s0%2Cs1%2Cs2%2Cs3"))
    screenshot("1-lineage-chosen")

    outcome = find_and_wait(page)
    assert "Found." in outcome and "rise along s0 → s1 → s2 → s3" in outcome and "Ranked by steering" in outcome
    grid = page.locator("#trajectories-table")
    first_row = grid.locator(".ag-center-cols-container .ag-row[row-index='0']")
    expect(first_row).to_be_visible(timeout=15_000)
    # ranked by the steering shift: the planted feature is first, with rank 1
    expect(grid.locator(f".ag-row[row-id='{RISING}'] [col-id='shift_rank']")).to_have_text("1")
    expect(grid.locator(".ag-row[row-index='0'] [col-id='feature']")).to_have_text(str(RISING))

    grid.locator(f".ag-row[row-id='{RISING}'] [col-id='top_terms']").click()
    page.wait_for_function(f"() => {{ const g = document.querySelector('{PLOT}');"
                           " return g && g._fullData.length == 1 && g._fullData[0].x.length == 4; }",
                           timeout=15_000)
    xs = page.evaluate(f"() => Array.from(document.querySelector('{PLOT}')._fullData[0].x)")
    assert xs == list(STAGES)
    ys = page.evaluate(f"() => Array.from(document.querySelector('{PLOT}')._fullData[0].y)")
    assert ys == sorted(ys)
    link = page.locator("#trajectories-card-link")
    expect(link).to_be_visible()
    expect(link).to_have_text(f"Open feature {RISING}'s card in the Explorer →")
    screenshot("2-stage-plot")

    # reload: the lineage comes back from the URL
    page.reload()
    expect(page.locator("#trajectories-order-text")).to_have_text("Lineage: s0 → s1 → s2 → s3", timeout=30_000)

    find_and_wait(page)
    grid.locator(f".ag-row[row-id='{RISING}'] [col-id='top_terms']").click()
    expect(link).to_be_visible(timeout=15_000)
    link.click()
    expect(page.locator("#explorer-page")).to_be_visible(timeout=30_000)
    expect(page).to_have_url(re.compile(rf"/explorer\?.*feature={RISING}"))
    expect(page.locator("#card-title")).to_have_text(f"Feature {RISING}", timeout=30_000)
    screenshot("3-explorer-card")


def test_btr002_without_decoder_lists_features_and_says_why(server, page, screenshot):
    page.goto(f"{server.url}/trajectories?source=analysis%3Anodecoder&lineage=s0,s1,s2,s3")
    expect(page.locator("#trajectories-order-text")).to_have_text("Lineage: s0 → s1 → s2 → s3", timeout=30_000)
    outcome = find_and_wait(page)
    assert "Ordered by rise, not by steering" in outcome, outcome
    expect(page.locator("#trajectories-summary")).to_contain_text("No steering ranking:")
    expect(page.locator("#trajectories-summary")).to_contain_text("decoder")
    expect(page.locator(f"#trajectories-table .ag-row[row-id='{RISING}']")).to_be_visible(timeout=15_000)
    screenshot("no-decoder")


def test_btr003_one_stage_is_refused_in_place(server, page):
    page.goto(f"{server.url}/trajectories?source=analysis%3Atraj")
    expect(page.locator("#trajectories-page")).to_be_visible(timeout=30_000)
    choose_stages(page, ["s1"])
    outcome = find_and_wait(page)
    assert "Error:" in outcome and "at least two" in outcome and "other" in outcome, outcome
    expect(page.locator("#trajectories-results")).to_be_hidden()
