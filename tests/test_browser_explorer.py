"""The Explorer in a real browser: search → highlight → click → recolour + card; reload restores the view;
map click, lasso reverse lookup, exports, bad input shown in place; the cell type × feature heatmap
and the card's technical-variable flags."""
from __future__ import annotations

import re
import shutil

import pandas as pd
import pytest
from browser_helpers import lasso_left_half
from conftest import ARTIFACTS, start_server, stop_server
from explore_data import small_analysis_path
from playwright.sync_api import expect

pytestmark = [pytest.mark.browser, pytest.mark.slow]

QUERY = "antigen processing"  # PBMC has few erythroid terms; MHC class II antigen presentation it has
LATENT = "#explorer-latent-graph .js-plotly-plot"
MAP = "#explorer-map-graph .js-plotly-plot"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    built = small_analysis_path(tmp_path_factory)
    base = tmp_path_factory.mktemp("explorer-app")
    shutil.copytree(built, base / "analyses" / "pbmc-small")
    plant_technical_row(built, base / "analyses" / "pbmc-tech")
    srv = start_server(base, ["serve"])
    yield srv
    stop_server(srv)


TECH_FEATURE = 5


def plant_technical_row(built, out) -> None:
    """A copy of the analysis whose ``confounders.parquet`` says feature :data:`TECH_FEATURE` tracks
    library size (r = 0.82): a doctored row to check what the card shows; the rule itself is tested
    in tests/test_confounders.py and tests/test_explore_core.py."""
    shutil.copytree(built, out)
    conf = pd.read_parquet(out / "confounders.parquet")
    hit = conf["feature"] == TECH_FEATURE
    conf.loc[hit, "library_size_r"], conf.loc[hit, "tracks"] = 0.82, "library_size"
    conf.to_parquet(out / "confounders.parquet")


def explorer_url(server, source: str = "analysis:pbmc-small", **query) -> str:
    from urllib.parse import urlencode

    return f"{server.url}/explorer?" + urlencode({"source": source, **query})


def latent_title(page) -> str:
    return page.evaluate(f"() => document.querySelector('{LATENT}')?.layout?.title?.text || ''")


def n_points(page, graph: str, trace) -> int:
    """Points drawn by a trace (by index, or the first whose name starts with a string)."""
    return page.evaluate("""([sel, trace]) => {
        const gd = document.querySelector(sel);
        const t = typeof trace === 'number' ? gd._fullData[trace]
                                            : gd._fullData.find(d => (d.name || '').startsWith(trace));
        return t ? t._length : -1; }""", [graph, trace])


def wait_for_graph(page, sel: str) -> None:
    page.wait_for_function(f"() => {{ const gd = document.querySelector('{sel}');"
                           " return gd && gd._fullData && gd._fullData.length > 1; }", timeout=30000)


def test_bx001_search_highlight_click_recolour_card_and_reload(server, page, screenshot):
    page.set_viewport_size({"width": 1400, "height": 1000})
    page.goto(explorer_url(server))
    expect(page.locator("#explorer-page")).to_be_visible()
    wait_for_graph(page, MAP)
    wait_for_graph(page, LATENT)
    expect(page.locator("#picker-source-dropdown")).to_contain_text("Analysis · pbmc-small")
    assert "no feature selected" in latent_title(page)
    screenshot("1-opened")

    # search: suggestions, ranked results, rings on the map, query in the URL
    page.fill("#search-query-input", QUERY)
    expect(page.locator("#search-results-status")).to_contain_text(f"match “{QUERY}”", timeout=15000)
    rows = page.locator("#search-results-grid .ag-center-cols-container .ag-row")
    expect(rows.first).to_be_visible()
    assert page.locator("#search-query-suggestions option").count() > 0
    page.wait_for_function(f"() => (document.querySelector('{MAP}')?._fullData || [])"
                           ".some(d => (d.name || '').startsWith('search hits') && d._length > 0)")
    hits = n_points(page, MAP, "search hits")
    n_found = int(re.search(r"(\d+)\+? features? match", page.locator("#search-results-status").inner_text())[1])
    assert hits == n_found > 0
    expect(page).to_have_url(re.compile(r"q=antigen\+processing"))
    screenshot("2-search")

    # click the best result: the latent view recolours, the card shows the feature and its terms
    first = rows.first.locator("[col-id=feature]").inner_text().strip()
    rows.first.locator("[col-id=match]").click()
    expect(page.locator("#card-title")).to_have_text(f"Feature {first}", timeout=15000)
    page.wait_for_function(f"() => (document.querySelector('{LATENT}')?.layout?.title?.text || '')"
                           f".startsWith('feature {first}: active in')", timeout=15000)
    n_active = int(re.search(r"active in (\d+) of", latent_title(page))[1])
    assert n_points(page, LATENT, 1) == n_active > 0
    assert n_points(page, MAP, "selected") == 1
    terms = page.locator("#card-terms-grid .ag-center-cols-container")
    expect(terms).to_contain_text("antigen processing", timeout=15000)
    expect(page.locator("#card-de-grid .ag-row").first).to_be_visible(timeout=20000)
    expect(page.locator("#card-feature-header")).to_contain_text(re.compile(r"local|global"))
    expect(page.locator("#card-stability")).to_contain_text("train with 3 seeds to measure")  # a one-seed SAE
    steer = page.locator("#card-steer-link")
    assert steer.get_attribute("href") == f"/steering?source=analysis%3Apbmc-small&feature={first}"
    expect(page).to_have_url(re.compile(rf"feature={first}\b"))
    screenshot("3-feature")
    ARTIFACTS.mkdir(exist_ok=True)
    page.locator("#card-feature").screenshot(path=str(ARTIFACTS / "test_bx001-card.png"))

    # reload: the URL restores the search and the feature
    page.reload()
    wait_for_graph(page, LATENT)
    expect(page.locator("#card-title")).to_have_text(f"Feature {first}", timeout=20000)
    expect(page.locator("#search-query-input")).to_have_value(QUERY)
    expect(page.locator("#search-results-status")).to_contain_text(f"match “{QUERY}”", timeout=15000)
    page.wait_for_function(f"() => (document.querySelector('{LATENT}')?.layout?.title?.text || '')"
                           f".startsWith('feature {first}: active in {n_active} of')", timeout=15000)
    screenshot("4-reloaded")


def _point_on_map(page) -> tuple[float, float, int]:
    """Viewport position and feature of the map point farthest from any other (so a click hits it)."""
    page.locator(MAP).scroll_into_view_if_needed()
    return page.evaluate("""(sel) => {
        const gd = document.querySelector(sel), fl = gd._fullLayout, xa = fl.xaxis, ya = fl.yaxis;
        const box = gd.getBoundingClientRect(), pts = [];
        gd._fullData.forEach(t => { if (t.hoverinfo === 'skip') return;
            for (let i = 0; i < t._length; i++) pts.push([xa._offset + xa.l2p(t.x[i]), ya._offset + ya.l2p(t.y[i]),
                                                          t.customdata[i]]); });
        let best = null, bestD = -1;
        for (const p of pts) { let d = Infinity;
            for (const q of pts) if (q !== p) d = Math.min(d, Math.hypot(p[0] - q[0], p[1] - q[1]));
            if (d > bestD) { bestD = d; best = p; } }
        return [box.left + best[0], box.top + best[1], best[2]]; }""", MAP)


def test_bx002_map_click_and_lasso_reverse_lookup(server, page, screenshot):
    page.set_viewport_size({"width": 1400, "height": 1000})
    page.goto(explorer_url(server))
    wait_for_graph(page, MAP)
    wait_for_graph(page, LATENT)
    x, y, feature = _point_on_map(page)
    page.mouse.click(x, y)
    expect(page.locator("#card-title")).to_have_text(f"Feature {feature}", timeout=15000)
    page.wait_for_function(f"() => (document.querySelector('{LATENT}')?.layout?.title?.text || '')"
                           f".startsWith('feature {feature}:')", timeout=15000)

    # a box on the map selects several features: chips, and the latent view shows their sum
    mbox = page.evaluate("""(sel) => { const gd = document.querySelector(sel), s = gd._fullLayout._size,
        r = gd.getBoundingClientRect(); return [r.left + s.l, r.top + s.t, s.w, s.h]; }""", MAP)
    page.mouse.move(mbox[0] + 5, mbox[1] + 5)
    page.mouse.down()
    page.mouse.move(mbox[0] + mbox[2] * 0.6, mbox[1] + mbox[3] * 0.6, steps=10)
    page.mouse.up()
    expect(page.locator("#explorer-selection-chips")).to_contain_text("features selected", timeout=15000)
    page.wait_for_function(f"() => (document.querySelector('{LATENT}')?.layout?.title?.text || '').startsWith('Σ ')",
                           timeout=15000)
    screenshot("box")

    lasso_left_half(page, LATENT)
    status = page.locator("#explorer-lookup-status")
    expect(status).to_contain_text("cells selected", timeout=15000)
    expect(page.locator("#explorer-lookup-features-grid .ag-row").first).to_be_visible()
    n_cells = int(re.search(r"([\d,]+) cells selected", status.inner_text())[1].replace(",", ""))
    assert 10 < n_cells < 700
    screenshot("lasso")
    # open a characteristic feature from the lookup table
    row = page.locator("#explorer-lookup-features-grid .ag-center-cols-container .ag-row").first
    f = row.locator("[col-id=feature]").inner_text().strip()
    row.locator("[col-id=top_terms]").click()
    expect(page.locator("#card-title")).to_have_text(f"Feature {f}", timeout=15000)

    # colour by cell type: one trace per type
    page.get_by_text("cell type", exact=True).click()
    page.wait_for_function(f"() => document.querySelector('{LATENT}')?._fullData?.length > 2", timeout=15000)
    screenshot("celltypes")


def test_bx003_gene_search_feature_ids_and_export(server, page, screenshot):
    page.goto(explorer_url(server, mode="gene", q="CD79A"))
    expect(page.locator("#search-results-status")).to_contain_text("match “CD79A”", timeout=30000)
    expect(page.locator("#search-results-grid .ag-row").first).to_contain_text("CD79A: rank")
    # feature ids, including a bad one shown in place
    page.locator("label", has_text="feature id").click()
    page.fill("#search-query-input", "abc")
    expect(page.locator("#search-results-status .alert")).to_contain_text("not a feature number", timeout=15000)
    ann = pd.read_parquet(server.analyses / "pbmc-small" / "annotations.parquet")
    f1, f2 = sorted(set(ann.loc[ann["reported"], "feature"].tolist()))[:2]  # features with reported terms
    page.fill("#search-query-input", f"{f1}, {f2}")
    expect(page.locator("#search-results-status")).to_contain_text("2 features match", timeout=15000)
    page.locator("#search-results-grid .ag-center-cols-container .ag-row").first.locator("[col-id=match]").click()
    expect(page.locator("#card-title")).to_have_text(f"Feature {f1}", timeout=15000)
    expect(page).to_have_url(re.compile(r"mode=feature"))
    expect(page.locator("#card-export-terms-button")).to_be_enabled(timeout=15000)
    with page.expect_download() as dl:
        page.locator("#card-export-terms-button").click()
    text = open(dl.value.path()).read()
    assert dl.value.suggested_filename == f"feature{f1}_terms.csv" and text.startswith("term_id,term_name")
    screenshot("ids")


def test_bx004_bad_links_and_sources_show_alerts(server, page, screenshot):
    page.goto(explorer_url(server, feature="99999"))
    expect(page.locator("#card-feature-alert")).to_contain_text("feature 99999 does not exist", timeout=20000)
    wait_for_graph(page, LATENT)  # the rest of the page works
    screenshot("bad-feature")
    page.goto(f"{server.url}/explorer?source=analysis:nope")
    expect(page.locator("#explorer-page-alert")).to_contain_text("cannot be opened", timeout=15000)
    screenshot("bad-source")
    # picking a dataset writes it into the URL; the Explorer explains what it needs
    page.goto(explorer_url(server))
    wait_for_graph(page, MAP)
    page.locator("#picker-source-dropdown").click()
    page.get_by_text("Dataset · pbmc68k (shipped)").click()
    expect(page).to_have_url(re.compile(r"source=shipped%3Apbmc68k"))
    expect(page.locator("#explorer-page-alert")).to_contain_text("The Explorer shows analyses", timeout=15000)
    screenshot("dataset-picked")
    assert server.proc.poll() is None


def test_bx005_back_and_forward_restore_the_feature_and_the_search(server, page, screenshot):
    page.set_viewport_size({"width": 1400, "height": 1000})
    page.goto(explorer_url(server, mode="feature", q="4, 6"))
    wait_for_graph(page, LATENT)
    status = page.locator("#search-results-status")
    expect(status).to_contain_text("2 features match", timeout=30000)
    rows = page.locator("#search-results-grid .ag-center-cols-container .ag-row")
    card = page.locator("#card-title")

    def open_row(feature: int) -> None:
        rows.filter(has=page.locator("[col-id=feature]", has_text=str(feature))).locator("[col-id=match]").click()
        expect(card).to_have_text(f"Feature {feature}", timeout=15000)
        expect(page).to_have_url(re.compile(rf"feature={feature}\b"))

    def shows(feature: int) -> None:
        expect(card).to_have_text(f"Feature {feature}", timeout=15000)
        expect(page).to_have_url(re.compile(rf"feature={feature}\b"))
        page.wait_for_function(f"() => (document.querySelector('{LATENT}')?.layout?.title?.text || '')"
                               f".startsWith('feature {feature}: active in')", timeout=15000)

    open_row(4)   # feature A
    open_row(6)   # feature B
    page.go_back()
    shows(4)
    screenshot("1-back")
    page.go_forward()
    shows(6)
    # a new search, then back: the earlier search comes back with its results, the feature stays
    page.fill("#search-query-input", "10-12")
    expect(status).to_contain_text("3 features match", timeout=15000)
    expect(page).to_have_url(re.compile(r"q=10-12"))
    page.go_back()
    expect(page.locator("#search-query-input")).to_have_value("4, 6", timeout=15000)
    expect(status).to_contain_text("2 features match", timeout=15000)
    shows(6)
    # back to before any click: no feature selected
    page.go_back()
    page.go_back()
    expect(page).not_to_have_url(re.compile(r"feature="))
    page.wait_for_function(f"() => (document.querySelector('{LATENT}')?.layout?.title?.text || '')"
                           ".startsWith('no feature selected')", timeout=15000)
    screenshot("2-back-to-start")
    assert server.proc.poll() is None


HEATMAP = "#explorer-heatmap-graph .js-plotly-plot"


def _heatmap_point(page, trace: int, row: int, col: int) -> tuple[float, float]:
    """Viewport position of cell (row, col) of heatmap trace 0 (features) or 1 (the cell-type strip)."""
    page.locator(HEATMAP).scroll_into_view_if_needed()
    return page.evaluate("""([sel, trace, row, col]) => {
        const gd = document.querySelector(sel), fl = gd._fullLayout, box = gd.getBoundingClientRect();
        const xa = trace === 1 ? fl.xaxis2 : fl.xaxis, ya = fl.yaxis;
        return [box.left + xa._offset + xa.l2p(col), box.top + ya._offset + ya.l2p(row)]; }""",
                         [HEATMAP, trace, row, col])


def test_bx006_heatmap_click_opens_a_feature_and_lists_a_cell_types_features(server, page, screenshot):
    page.set_viewport_size({"width": 1400, "height": 1000})
    page.goto(explorer_url(server))
    wait_for_graph(page, HEATMAP)
    title = page.evaluate(f"() => document.querySelector('{HEATMAP}')?.layout?.title?.text")
    assert "live features" in title and "grouped by top cell type" in title
    n_shown = page.evaluate(f"() => document.querySelector('{HEATMAP}').data[0].customdata[0].length")
    assert 0 < n_shown <= 300
    screenshot("1-heatmap")
    # a cell opens its feature: the card, the latent colouring and the red frame on the heatmap
    row, col = 1, n_shown // 2
    feature = page.evaluate(f"() => document.querySelector('{HEATMAP}').data[0].customdata[{row}][{col}][0]")
    page.mouse.click(*_heatmap_point(page, 0, row, col))
    expect(page.locator("#card-title")).to_have_text(f"Feature {feature}", timeout=15000)
    page.wait_for_function(f"() => (document.querySelector('{LATENT}')?.layout?.title?.text || '')"
                           f".startsWith('feature {feature}: active in')", timeout=15000)
    page.wait_for_function(f"() => (document.querySelector('{HEATMAP}')?.layout?.shapes || [])"
                           ".some(s => s.type === 'rect')", timeout=15000)
    expect(page).to_have_url(re.compile(rf"feature={feature}\b"))
    # the card: up terms, down terms, stability, technical variables, in that order
    for sel in ("#card-up-terms-section", "#card-down-terms-section", "#card-stability", "#card-confounder-table"):
        expect(page.locator(sel)).to_be_visible(timeout=15000)
    tops = [page.locator(sel).bounding_box()["y"] for sel in
            ("#card-up-terms-section", "#card-down-terms-section", "#card-stability", "#card-confounder-table",
             "#card-profiles-section", "#card-de-section")]
    assert tops == sorted(tops)
    expect(page.locator("#card-confounder-table")).to_contain_text("library size")
    expect(page.locator("#card-technical-alert")).to_have_count(0)
    screenshot("2-feature-from-heatmap")
    # a cell type (the grey strip) lists its features in the search results
    cell_type = page.evaluate(f"() => document.querySelector('{HEATMAP}').data[1].y[{row}]")
    page.mouse.click(*_heatmap_point(page, 1, row, 0))
    expect(page.locator("#search-results-status")).to_contain_text(f"with top cell type {cell_type}", timeout=15000)
    first = page.locator("#search-results-grid .ag-center-cols-container .ag-row").first
    expect(first).to_contain_text(f"top cell type {cell_type}")
    screenshot("3-cell-type-features")
    assert server.proc.poll() is None


def test_bx007_card_warns_when_a_feature_tracks_library_size(server, page, screenshot):
    page.set_viewport_size({"width": 1400, "height": 1000})
    page.goto(explorer_url(server, source="analysis:pbmc-tech", feature=str(TECH_FEATURE)))
    expect(page.locator("#card-title")).to_have_text(f"Feature {TECH_FEATURE}", timeout=20000)
    expect(page.locator("#card-technical-badge")).to_have_text("may be technical", timeout=15000)
    expect(page.locator("#card-technical-alert")).to_contain_text("Mostly tracks library size: may be technical")
    expect(page.locator("#card-confounder-table")).to_contain_text("0.82")
    assert "|r| ≥ 0.5" in page.locator("#card-confounder-table").get_attribute("title")
    page.locator("#card-confounders-section").scroll_into_view_if_needed()
    screenshot("technical")
    ARTIFACTS.mkdir(exist_ok=True)
    page.locator("#card-feature").screenshot(path=str(ARTIFACTS / "test_bx007-card.png"))


def axis_title(page) -> str:
    return page.evaluate(f"() => document.querySelector('{LATENT}').layout.xaxis.title.text || ''")


def first_x(page) -> float:
    return page.evaluate(f"() => Number(document.querySelector('{LATENT}')._fullData[0].x[0])")


def test_bx008_one_line_source_bar_details_and_pca_umap_switch(server, page, screenshot):
    page.set_viewport_size({"width": 1400, "height": 900})
    page.goto(explorer_url(server, feature="5"))
    # the source bar is one line; its facts table opens on demand
    bar = page.locator("#picker-source-bar")
    expect(page.locator("#picker-source-card")).to_contain_text("700 cells", timeout=15000)
    expect(page.locator("#picker-source-card")).to_contain_text("annotated")
    assert bar.bounding_box()["height"] < 60
    table = page.locator("#picker-source-details table")
    expect(table).to_be_hidden()
    page.locator("#picker-source-details summary").click()
    expect(table).to_be_visible()
    expect(table).to_contain_text("steps done")
    page.locator("#picker-source-details summary").click()
    expect(table).to_be_hidden()
    wait_for_graph(page, MAP)
    top = page.evaluate("() => document.querySelector('#explorer-map-graph').getBoundingClientRect().top")
    assert top < 900  # the concept map starts on the first screen

    # the background job stores the views; the data's own UMAP (pbmc68k_reduced has X_umap) is offered
    switch = page.locator("#explorer-latent-view")
    expect(switch).to_contain_text("UMAP (from the data)", timeout=60000)
    note = page.locator("#explorer-latent-view-note")
    expect(note).to_contain_text("kNN cell-type agreement")
    wait_for_graph(page, LATENT)
    shown = "UMAP1" if note.inner_text().startswith("UMAP") else "PC1"  # "… chosen: kNN …"
    page.wait_for_function(f"() => (document.querySelector('{LATENT}')?.layout?.xaxis?.title?.text || '')"
                           f".startsWith('{shown}')", timeout=15000)
    page.wait_for_function(f"() => document.querySelector('{LATENT}')?._fullData?.[1]?._length > 0", timeout=15000)
    active = n_points(page, LATENT, 1)
    before_x = first_x(page)
    screenshot("1-default-view")

    # switch to the other view: the plot changes, the feature's colouring stays
    other, other_axis = ("PCA", "PC1") if shown == "UMAP1" else ("UMAP (from the data)", "UMAP1")
    switch.locator("label", has_text=other).click()
    page.wait_for_function(f"() => (document.querySelector('{LATENT}')?.layout?.xaxis?.title?.text || '')"
                           f".startsWith('{other_axis}')", timeout=15000)
    assert first_x(page) != before_x
    assert n_points(page, LATENT, 1) == active > 0
    assert "feature 5" in latent_title(page)
    screenshot("2-other-view")
    # and back
    switch.locator("label", has_text="PCA" if other != "PCA" else "UMAP").click()
    page.wait_for_function(f"() => (document.querySelector('{LATENT}')?.layout?.xaxis?.title?.text || '')"
                           f".startsWith('{shown}')", timeout=15000)
    assert first_x(page) == pytest.approx(before_x)
    # the data's own clustering (obs['louvain']) is offered next to the cell types
    page.locator("#explorer-latent-colour label", has_text="louvain").click()
    page.wait_for_function(f"() => (document.querySelector('{LATENT}')?.layout?.title?.text || '')"
                           ".includes('cells by louvain')", timeout=15000)


PAGES = ("data", "explorer", "steering", "trajectories", "compare", "simulation")


def test_bx009_full_page_screenshot_of_every_page(server, page):
    """A full-page screenshot of each of the six pages into test-artifacts/screenshots/ (attached to the test run)."""
    page.set_viewport_size({"width": 1400, "height": 900})
    out = ARTIFACTS / "screenshots"
    out.mkdir(parents=True, exist_ok=True)
    for slug in PAGES:
        page.goto(f"{server.url}/{slug}?source=analysis%3Apbmc-small")
        expect(page.locator(f"#{slug}-page")).to_be_visible(timeout=30000)
        expect(page.locator("#picker-source-card")).to_contain_text("700 cells", timeout=15000)
        page.wait_for_timeout(2000)  # the page's figures render (Dash polls jobs, so no network idle)
        if slug == "explorer":
            wait_for_graph(page, MAP)
        path = out / f"{slug}.png"
        page.screenshot(path=str(path), full_page=True)
        assert path.stat().st_size > 10_000
