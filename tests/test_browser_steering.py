"""The Steering page in a real browser: from a feature card to a steering run (running state, volcano,
terms, latent shift), reload and history, bad input and cancel leave earlier results intact, and a
source that cannot be steered says what to do."""
from __future__ import annotations

import re
import shutil

import pytest
from browser_helpers import lasso_left_half
from conftest import start_server, stop_server
from playwright.sync_api import expect
from steer_page_data import build_steerable

pytestmark = pytest.mark.browser

JOB_MS = 120_000  # the shared 2-core machine: a run takes 3–10 s there
LATENT = "#steer-latent-graph .js-plotly-plot"
VOLCANO = "#steer-volcano-graph .js-plotly-plot"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    base = tmp_path_factory.mktemp("steer-app")
    built = build_steerable(base / "build")
    shutil.copytree(built, base / "analyses" / "planted")
    nodec = build_steerable(base / "nodec", decoder=False, n_per_type=20, n_genes=60)
    shutil.copytree(nodec, base / "analyses" / "nodecoder")
    srv = start_server(base, ["serve"])
    yield srv
    stop_server(srv)


def trace_names(page, sel: str) -> list[str]:
    return page.evaluate(f"() => (document.querySelector('{sel}')._fullData || []).map(d => d.name || '')")


def pick(page, dropdown: str, option: str) -> None:
    """Choose ``option`` in a dcc.Dropdown by clicking it (typing + Enter can pick before the list filters)."""
    page.click(dropdown)
    page.get_by_role("option", name=option, exact=True).click()
    page.keyboard.press("Escape")


def choose_cell_type(page, name: str) -> None:
    pick(page, "#steer-celltypes-select", name)


def run_and_wait(page) -> str:
    page.click("#steer-run-start")
    expect(page.locator("#steer-run-status")).to_have_text("Running…", timeout=10_000)
    expect(page.locator("#steer-run-start")).to_be_disabled()
    expect(page.locator("#steer-run-alert .alert")).to_be_visible(timeout=JOB_MS)
    return page.locator("#steer-run-alert").inner_text()


def test_bst001_card_link_to_steering_run_volcano_terms_then_reload(server, page, screenshot):
    page.set_viewport_size({"width": 1400, "height": 1000})
    # the Explorer's card of feature 0 links to the Steering page with the feature chosen
    page.goto(f"{server.url}/explorer?source=analysis%3Aplanted&feature=0")
    link = page.locator("#card-steer-link")
    expect(link).to_be_visible(timeout=30_000)
    screenshot("1-explorer-card")
    link.click()
    expect(page.locator("#steering-page")).to_be_visible(timeout=30_000)
    expect(page).to_have_url(re.compile(r"/steering\?.*feature=0"))
    expect(page.locator("#steer-features-select")).to_contain_text("0 · top cell type b")
    page.wait_for_function(f"() => document.querySelector('{LATENT}') && "
                           f"document.querySelector('{LATENT}')._fullData.length == 3", timeout=30_000)
    expect(page.locator("#steer-results-summary")).to_have_text("No run yet.")
    screenshot("2-steering-opened")

    # steer it in the cells of type a: running state, then the results
    choose_cell_type(page, "a")
    expect(page.locator("#steer-cells-help")).to_have_text("Cells of: a.")
    outcome = run_and_wait(page)
    assert "Done." in outcome and re.search(r"\d+ genes up", outcome), outcome
    summary = page.locator("#steer-results-summary")
    expect(summary).to_contain_text("Feature 0 → max", timeout=30_000)
    expect(summary).to_contain_text("in 80 cells (cell_type=a)")
    up_terms = page.locator("#steer-terms-up-table .ag-center-cols-container")
    expect(up_terms).to_contain_text("oxygen transport", timeout=30_000)
    link = page.locator("#steer-terms-up-table a[href*='amigo.geneontology.org/amigo/term/GO:0015671']")
    expect(link.first).to_be_visible()
    page.wait_for_function(f"() => (document.querySelector('{VOLCANO}')._fullData || [])"
                           ".some(d => (d.name || '').startsWith('up ('))", timeout=30_000)
    names = trace_names(page, LATENT)
    assert any(n.startswith("steered (80)") for n in names) and any(n.startswith("normal (80)") for n in names)
    expect(page.locator("#steer-moves-table")).to_contain_text("a")
    expect(page.locator("#steer-export-de-button")).to_be_enabled()
    expect(page).to_have_url(re.compile(r"run=f0-"))
    screenshot("3-result")

    # a reload (or a second tab on the same link) shows the same run, read from the analysis folder
    text = summary.inner_text()
    page.reload()
    expect(page.locator("#steer-results-summary")).to_have_text(text, timeout=30_000)
    expect(page.locator("#steer-celltypes-select")).to_contain_text("a")
    expect(page.locator("#steer-history-table .ag-center-cols-container .ag-row")).to_have_count(1)

    # the DE table downloads as CSV
    with page.expect_download() as dl:
        page.click("#steer-export-de-button")
    assert dl.value.suggested_filename.startswith("steering_f0-") and dl.value.suggested_filename.endswith(".csv")


def test_bst002_bad_input_and_cancel_leave_the_shown_run_intact(server, page, screenshot):
    page.set_viewport_size({"width": 1400, "height": 1000})
    page.goto(f"{server.url}/steering?source=analysis%3Aplanted&feature=0")
    summary = page.locator("#steer-results-summary")
    expect(summary).to_contain_text("genes up", timeout=30_000)  # the newest run of feature 0 (test 1)
    before = summary.inner_text()
    # no cell type chosen: an alert in place, nothing else changes
    page.click("#steer-run-start")
    alert = page.locator("#steer-run-alert .alert")
    expect(alert).to_contain_text("no cell type chosen", timeout=JOB_MS)
    expect(alert).to_contain_text("Fix:")
    screenshot("1-bad-input")
    assert summary.inner_text() == before
    expect(page.locator("#steer-run-start")).to_be_enabled()
    # a run cancelled at once: a 'Cancelled' alert, the shown run and the history unchanged
    page.click("text=all cells")
    page.click("#steer-run-start")
    expect(page.locator("#steer-run-cancel")).to_be_enabled(timeout=10_000)
    page.click("#steer-run-cancel")
    expect(page.locator("#steer-run-alert .alert")).to_contain_text("Cancelled", timeout=30_000)
    expect(page.locator("#steer-run-start")).to_be_enabled(timeout=30_000)
    assert summary.inner_text() == before
    expect(page.locator("#steer-history-table .ag-center-cols-container .ag-row")).to_have_count(1)
    screenshot("2-cancelled")


@pytest.mark.slow
def test_bst003_history_click_shows_an_earlier_run(server, page):
    page.set_viewport_size({"width": 1400, "height": 1000})
    page.goto(f"{server.url}/steering?source=analysis%3Aplanted&feature=1")
    expect(page.locator("#steer-results-summary")).to_have_text("No run yet.", timeout=30_000)
    choose_cell_type(page, "c")
    page.click("text=off (0)")
    assert "Done." in run_and_wait(page)
    summary = page.locator("#steer-results-summary")
    expect(summary).to_contain_text("Feature 1 → off", timeout=30_000)
    rows = page.locator("#steer-history-table .ag-center-cols-container .ag-row")
    expect(rows).to_have_count(2)
    page.locator("#steer-history-table .ag-center-cols-container .ag-row", has_text="cell_type=a").first \
        .locator("[col-id=features]").click()
    expect(summary).to_contain_text("Feature 0 → max", timeout=30_000)
    expect(page).to_have_url(re.compile(r"feature=0&run=f0-"))
    expect(page.locator("#steer-celltypes-select")).to_contain_text("a")


def test_bst004_a_source_that_cannot_be_steered_says_what_to_do(server, page, screenshot):
    page.goto(f"{server.url}/steering?source=analysis%3Anodecoder")
    alert = page.locator("#steer-page-alert")
    expect(alert).to_contain_text("cannot be steered", timeout=30_000)
    expect(alert).to_contain_text("steering needs the model's decoder")
    expect(alert).to_contain_text("Fix: fit the built-in model")
    screenshot("1-no-decoder")


@pytest.mark.slow
def test_bst005_cells_lassoed_in_the_explorer_are_steered(server, page, screenshot):
    page.set_viewport_size({"width": 1400, "height": 1000})
    page.goto(f"{server.url}/explorer?source=analysis%3Aplanted&feature=2")
    expect(page.locator("#card-title")).to_have_text("Feature 2", timeout=30_000)
    explorer_latent = "#explorer-latent-graph .js-plotly-plot"
    page.wait_for_function(f"() => (document.querySelector('{explorer_latent}')?.layout?.title?.text || '')"
                           ".startsWith('feature 2')", timeout=30_000)
    lasso_left_half(page, explorer_latent)
    status = page.locator("#explorer-lookup-status")
    expect(status).to_contain_text("cells selected", timeout=15_000)
    n = int(re.search(r"([\d,]+) cells selected", status.inner_text())[1].replace(",", ""))
    assert 0 < n < 240
    button = page.locator("#explorer-steer-cells-button")
    expect(button).to_have_text(f"Steer feature 2 in these {n} cells →")
    screenshot("1-explorer-lasso")
    button.click()

    # the Steering page: feature 2, and the lassoed cells as the cell choice
    expect(page.locator("#steering-page")).to_be_visible(timeout=30_000)
    expect(page).to_have_url(re.compile(r"/steering\?source=analysis%3Aplanted&feature=2&cells=explorer"))
    expect(page.locator("#steer-features-select")).to_contain_text("2 · top cell type")
    choice = page.get_by_label(f"the {n} cells selected in the Explorer")
    expect(choice).to_be_checked(timeout=15_000)
    expect(page.locator("#steer-cells-help")).to_have_text(f"The {n} cells lassoed in the Explorer's latent space.")
    outcome = run_and_wait(page)
    assert "Done." in outcome and f"in {n} cells" in outcome, outcome
    summary = page.locator("#steer-results-summary")
    expect(summary).to_contain_text("Feature 2 → max", timeout=30_000)
    expect(summary).to_contain_text(f"in {n} cells (Explorer selection: {n} cells)")
    page.wait_for_function(f"() => (document.querySelector('{LATENT}')._fullData || [])"
                           f".some(d => (d.name || '').startsWith('steered ({n})'))", timeout=30_000)
    screenshot("2-steered")
    # a reload keeps the carried cells (session storage of this tab) and shows the run
    page.reload()
    expect(page.get_by_label(f"the {n} cells selected in the Explorer")).to_be_checked(timeout=30_000)
    expect(summary).to_contain_text(f"(Explorer selection: {n} cells)", timeout=30_000)


@pytest.mark.slow
def test_bst006_cell_type_mean_target_largest_changes_and_history(server, page, screenshot):
    page.set_viewport_size({"width": 1400, "height": 1000})
    page.goto(f"{server.url}/steering?source=analysis%3Aplanted&feature=0")
    summary = page.locator("#steer-results-summary")
    expect(summary).to_contain_text("Feature 0 → max", timeout=30_000)  # the newest run of feature 0
    pick(page, "#steer-celltypes-select", "c")
    expect(page.locator("#steer-cells-help")).to_have_text("Cells of: c.")
    page.get_by_label("cell-type mean ×").check()
    expect(page.locator("#steer-mean-box")).to_be_visible()
    expect(page.locator("#steer-mean-factor-input")).to_have_value("1.5")
    pick(page, "#steer-mean-celltype-select", "b")
    expect(page.locator("#steer-mean-celltype-select-value")).to_have_text("b")
    assert "Done." in run_and_wait(page)
    expect(summary).to_contain_text("Feature 0 → mean:bx1.5", timeout=30_000)
    expect(summary).to_contain_text("(cell_type=c)")
    # the largest changes are listed under the volcano, significant or not
    changes = page.locator("#steer-changes-table .ag-center-cols-container .ag-row")
    expect(changes.first).to_be_visible(timeout=30_000)
    assert 0 < changes.count() <= 20
    screenshot("1-mean-target")
    # another run from the history changes the form; the mean run's row puts its target back
    rows = page.locator("#steer-history-table .ag-center-cols-container .ag-row")
    rows.filter(has_text="cell_type=a").filter(has_text="max").first.locator("[col-id=features]").click()
    expect(page.get_by_label("maximum", exact=True)).to_be_checked(timeout=30_000)
    expect(page.locator("#steer-mean-box")).to_be_hidden()
    expect(summary).to_contain_text("Feature 0 → max", timeout=30_000)
    rows.filter(has_text="mean:bx1.5").first.locator("[col-id=features]").click()
    expect(page.get_by_label("cell-type mean ×")).to_be_checked(timeout=30_000)
    expect(page.locator("#steer-mean-celltype-select-value")).to_have_text("b")
    expect(page.locator("#steer-mean-factor-input")).to_have_value("1.5")
    expect(page.locator("#steer-celltypes-select")).to_contain_text("c")
    expect(summary).to_contain_text("Feature 0 → mean:bx1.5", timeout=30_000)


# ----------------------------------------------------------------------------- experiment, toward, compare
def pick_matching(page, dropdown: str, text: str) -> None:
    """Choose the first option of a dcc.Dropdown whose label contains ``text``."""
    page.click(dropdown)
    page.get_by_role("option").filter(has_text=text).first.click()
    page.keyboard.press("Escape")


def start_and_wait(page, prefix: str) -> str:
    page.click(f"#{prefix}-start")
    expect(page.locator(f"#{prefix}-alert .alert")).to_be_visible(timeout=JOB_MS)
    expect(page.locator(f"#{prefix}-start")).to_be_enabled(timeout=30_000)
    return page.locator(f"#{prefix}-alert").inner_text()


def test_bst007_sweep_with_controls_from_the_cards_link(server, page, screenshot):
    page.set_viewport_size({"width": 1400, "height": 1100})
    page.goto(f"{server.url}/explorer?source=analysis%3Aplanted&feature=0")
    link = page.locator("#card-steer-experiment-link")
    expect(link).to_be_visible(timeout=30_000)
    link.click()
    # the Steering page opens on the dose–response sweep: strengths and controls instead of a target
    expect(page.locator("#steering-page")).to_be_visible(timeout=30_000)
    expect(page).to_have_url(re.compile(r"/steering\?.*feature=0.*mode=experiment"))
    expect(page.get_by_label("dose–response with controls")).to_be_checked()
    expect(page.locator("#steer-exp-strengths-input")).to_have_value("0.5, 1, 2, 4")
    expect(page.locator("#steer-exp-controls-input")).to_have_value("2")
    expect(page.locator("#steer-target-section")).to_be_hidden()
    expect(page.locator("#steer-run-start")).to_be_hidden()
    choose_cell_type(page, "a")
    screenshot("1-experiment-form")
    # bad strengths: an alert saying what to fix, nothing computed
    page.fill("#steer-exp-strengths-input", "1, two")
    page.keyboard.press("Enter")
    outcome = start_and_wait(page, "steer-exp")
    assert "invalid sweep strength 'two'" in outcome and "Fix:" in outcome, outcome
    # the sweep with its controls: one job, then the dose–response plots and the verdicts
    page.fill("#steer-exp-strengths-input", "0.5, 1, 2, 4")
    page.keyboard.press("Enter")
    page.fill("#steer-exp-hypotheses-input", "GO:0015671")  # oxygen transport, the planted program, as the hypothesis
    page.keyboard.press("Enter")
    page.click("#steer-exp-start")
    expect(page.locator("#steer-exp-status")).to_have_text("Running…", timeout=10_000)
    expect(page.locator("#steer-exp-cancel")).to_be_enabled()
    expect(page.locator("#steer-exp-alert .alert")).to_contain_text("Done.", timeout=JOB_MS)
    outcome = page.locator("#steer-exp-alert").inner_text()
    assert "9 runs in 80 cells" in outcome and "terms specific" in outcome, outcome
    summary = page.locator("#steer-exp-summary")
    expect(summary).to_contain_text("Feature 0 in 80 cells (cell_type=a)", timeout=30_000)
    expect(summary).to_contain_text("2 random directions")
    page.wait_for_function("() => (document.querySelector('#steer-exp-changed-graph .js-plotly-plot')?._fullData "
                           "|| []).map(d => d.name).join('|') === "
                           "'feature 0|control: similar feature (2)|control: random direction (2)'", timeout=30_000)
    expect(summary).to_contain_text("0 of 1 hypotheses")
    expect(summary).to_contain_text("too few live features")  # this SAE has 8: 1/8 is the smallest p against them
    row = page.locator("#steer-exp-verdicts-table .ag-center-cols-container .ag-row", has_text="oxygen transport")
    expect(row.first).to_contain_text("hypothesis", timeout=30_000)
    expect(row.first).to_contain_text("not above control")
    expect(page.locator("#steer-exp-history-table .ag-center-cols-container .ag-row")).to_have_count(1)
    page.locator("#steer-exp-verdicts-table").scroll_into_view_if_needed()
    screenshot("2-dose-response")
    # a reload shows the stored experiment again (the newest of the analysis)
    page.reload()
    expect(page.locator("#steer-exp-summary")).to_contain_text("Feature 0 in 80 cells", timeout=30_000)


def test_bst008_toward_a_cell_type_ranks_then_steers_the_best(server, page, screenshot):
    page.set_viewport_size({"width": 1400, "height": 1100})
    page.goto(f"{server.url}/steering?source=analysis%3Aplanted&mode=toward")
    expect(page.locator("#steer-toward-from-select")).to_be_visible(timeout=30_000)
    # nothing chosen: an alert with the fix
    outcome = start_and_wait(page, "steer-toward-run")
    assert "no cell type chosen for the cells" in outcome and "Fix:" in outcome, outcome
    pick(page, "#steer-toward-from-select", "b")
    pick(page, "#steer-toward-to-select", "a")
    outcome = start_and_wait(page, "steer-toward-rank")
    assert "Ranked." in outcome and "best: feature" in outcome, outcome
    first = page.locator("#steer-toward-table .ag-center-cols-container .ag-row[row-index='0']")
    expect(first).to_be_visible(timeout=30_000)
    best = first.locator("[col-id=feature]").inner_text().strip()
    assert best.isdigit()
    screenshot("1-ranked")
    outcome = start_and_wait(page, "steer-toward-run")
    assert f"Feature {best} steered in 80 cells of b" in outcome, outcome
    summary = page.locator("#steer-results-summary")
    expect(summary).to_contain_text(f"Feature {best} → max", timeout=30_000)
    expect(summary).to_contain_text("(cell_type=b)")
    expect(page).to_have_url(re.compile(rf"run=f{best}-"))
    screenshot("2-steered-toward")


def test_bst009_two_runs_compared_side_by_side(server, page, screenshot):
    """Uses the experiment of test_bst007 (same server)."""
    page.set_viewport_size({"width": 1400, "height": 1100})
    page.goto(f"{server.url}/steering?source=analysis%3Aplanted&mode=compare")
    expect(page.locator("#steer-compare-a-select")).to_be_visible(timeout=30_000)
    expect(page.locator("#steer-compare-alert")).to_contain_text("Choose two stored runs", timeout=30_000)
    pick_matching(page, "#steer-compare-a-select", "feature 0 at 1×")
    pick_matching(page, "#steer-compare-b-select", "control: random direction")
    for side in ("a", "b"):
        page.wait_for_function(f"() => (document.querySelector('#steer-compare-volcano-{side}-graph .js-plotly-plot')"
                               f"?.layout?.title?.text || '').startsWith('{side.upper()}: ')", timeout=30_000)
    terms = page.locator("#steer-compare-terms-table .ag-center-cols-container")
    expect(terms).to_contain_text("oxygen transport", timeout=30_000)
    page.wait_for_function("() => (document.querySelector('#steer-compare-shift-graph .js-plotly-plot')?._fullData "
                           "|| []).map(d => d.name).join('|') === 'A|B'", timeout=30_000)
    screenshot("1-feature-vs-control")
    # 1× vs 4× of the same feature
    pick_matching(page, "#steer-compare-b-select", "feature 0 at 4×")
    page.wait_for_function("() => (document.querySelector('#steer-compare-volcano-b-graph .js-plotly-plot')"
                           "?.layout?.title?.text || '').includes('feature-x4')", timeout=30_000)
    expect(page.locator("#steer-compare-alert")).to_be_empty()
    screenshot("2-1x-vs-4x")
