"""The Data & training page in a real browser: train an SAE with a moving progress bar, annotate it,
reload, cancel a job, and uploads (a broken one and a good one)."""
from __future__ import annotations

import time

import pytest
from browser_helpers import assert_bar_moved, record_progress, recorded_progress
from playwright.sync_api import expect

pytestmark = pytest.mark.browser

JOB_TIMEOUT_MS = 240_000  # the 2-core CI machine is shared; these jobs take 10–60 s there


def _open_data_page(page, url):
    page.goto(url + "/data")
    expect(page.locator("#data-page")).to_be_visible(timeout=30_000)
    # the preset callback has filled the SAE fields
    expect(page.locator("#data-epochs-input")).to_have_value("30", timeout=30_000)


@pytest.mark.slow
def test_brd001_train_small_sae_with_live_progress_then_annotate_and_reload(app_server, page, screenshot):
    page.set_viewport_size({"width": 1400, "height": 1000})
    _open_data_page(page, app_server.url)
    expect(page.locator("#data-analysis-name")).to_have_value("pbmc68k-X_pca")
    expect(page.locator("#data-summary")).to_contain_text("No analysis named")
    # "fast" trains without early stopping, so the run lasts all its epochs (a few seconds even on a
    # fast machine: 80 epochs of 200 latents on 700 cells take 0.2 s, too short to see the bar move;
    # CI once saw only 0 → 41.2 → done)
    page.select_option("#data-preset-select", "fast")
    expect(page.locator("#data-epochs-input")).to_have_value("60")
    page.fill("#data-expansion-input", "4")
    expect(page.locator("#data-size-help")).to_contain_text("200 latents for 50 dimensions")
    page.fill("#data-epochs-input", "3000")
    record_progress(page, "#data-train-bar .progress-bar")
    page.click("#data-train-start")
    expect(page.locator("#data-train-start")).to_be_disabled()
    expect(page.locator("#data-train-cancel")).to_be_enabled()
    expect(page.locator("#data-train-status")).to_have_text("Running…")
    # the bar moves while the live chart fills
    expect(page.locator("#data-train-live-chart .js-plotly-plot")).to_be_visible(timeout=60_000)
    expect(page.locator("#data-train-live-chart")).to_contain_text("validation loss", timeout=30_000)
    screenshot("training")
    expect(page.locator("#data-train-alert .alert")).to_be_visible(timeout=JOB_TIMEOUT_MS)
    assert_bar_moved(recorded_progress(page))
    expect(page.locator("#data-train-alert")).to_contain_text("Trained pbmc68k-X_pca", timeout=5_000)
    summary = page.locator("#data-summary")
    expect(summary).to_contain_text("of 200")
    expect(summary).to_contain_text("local / regional / global")
    expect(summary).to_contain_text("not yet (step 3)")
    expect(page.locator("#data-quality-table")).to_contain_text("explained variance")
    expect(page.locator("#data-quality-table")).to_contain_text("expression fidelity")
    expect(page.locator("#data-train-start")).to_be_enabled()
    assert (app_server.analyses / "pbmc68k-X_pca" / "sae.pt").is_file()
    screenshot("trained")

    # annotate (the demo's settings for 700 cells are preset)
    expect(page.locator("#data-annotate-percentile")).to_have_value("90")
    page.click("#data-annotate-start")
    expect(page.locator("#data-annotate-status")).to_have_text("Running…")
    expect(page.locator("#data-annotate-alert")).to_contain_text("Annotated.", timeout=JOB_TIMEOUT_MS)
    expect(summary).to_contain_text("unique terms")
    expect(summary).to_contain_text("% of live")

    # a reload (or a second tab) shows the same analysis, read from disk
    page.reload()
    expect(page.locator("#data-summary")).to_contain_text("unique terms", timeout=30_000)
    expect(page.locator("#data-summary .js-plotly-plot")).to_have_count(2)    # training curves, feature density
    expect(page.locator("#data-quality-density .js-plotly-plot")).to_be_visible()
    screenshot("reloaded")
    # "Open in the other pages" makes the analysis the app's source
    page.click("#data-open-analysis")
    expect(page.locator("#picker-source-card")).to_contain_text("Analysis pbmc68k-X_pca", timeout=30_000)
    expect(page.locator("#data-source-info")).to_contain_text("An analysis keeps the data")
    expect(page.locator("#data-embedding-select")).to_be_disabled()
    assert app_server.proc.poll() is None


def test_brd002_cancel_leaves_nothing_behind(app_server, page):
    _open_data_page(page, app_server.url)
    page.fill("#data-analysis-name", "to-cancel")
    page.press("#data-analysis-name", "Enter")
    page.select_option("#data-preset-select", "paper")          # 10,000 latents, 500 epochs: long enough
    expect(page.locator("#data-epochs-input")).to_have_value("500")
    page.click("#data-train-start")
    expect(page.locator("#data-train-cancel")).to_be_enabled(timeout=10_000)
    expect(page.locator("#data-train-message")).to_contain_text("epoch", timeout=60_000)
    page.click("#data-train-cancel")
    expect(page.locator("#data-train-alert")).to_contain_text("Cancelled", timeout=10_000)
    expect(page.locator("#data-train-start")).to_be_enabled(timeout=10_000)
    expect(page.locator("#data-train-progress-box")).to_be_hidden()
    time.sleep(1.0)
    folder = app_server.analyses / "to-cancel"
    assert not (folder / "sae.pt").exists() and not (folder / "metrics.json").exists()
    assert app_server.proc.poll() is None


def test_brd003_invalid_upload_shows_alert_and_page_keeps_working(app_server, page, screenshot):
    _open_data_page(page, app_server.url)
    page.locator("#data-upload input[type=file]").set_input_files(
        files=[{"name": "fake.h5ad", "mimeType": "application/octet-stream", "buffer": b"a text file, renamed"}])
    alert = page.locator("#data-upload-alert .alert-danger")
    expect(alert).to_contain_text("fake.h5ad is not an HDF5/.h5ad file", timeout=30_000)
    expect(alert).to_contain_text("renamed to .h5ad does not work")
    screenshot("bad-upload")
    assert not (app_server.data / "fake.h5ad").exists()
    assert [p.name for p in app_server.data.iterdir() if p.name.startswith(".upload-")] == []
    # the page still works: the preset changes the form, the picker still answers
    page.select_option("#data-preset-select", "fast")
    expect(page.locator("#data-epochs-input")).to_have_value("60")
    expect(page.locator("#data-size-help")).to_contain_text("10,000 latents")
    page.locator("#picker-source-refresh").click()
    expect(page.locator("#picker-source-card")).to_contain_text("700", timeout=15_000)
    assert app_server.proc.poll() is None


def test_brd004_good_upload_becomes_the_source(app_server, page, tmp_path, rng):
    from helpers import gen_adata

    path = tmp_path / "my cells.h5ad"
    gen_adata(n_cells=120, rng=rng).write_h5ad(path)
    _open_data_page(page, app_server.url)
    page.locator("#data-upload input[type=file]").set_input_files(str(path))
    expect(page.locator("#picker-source-card")).to_contain_text("my_cells.h5ad", timeout=30_000)
    expect(page.locator("#data-source-info")).to_contain_text("120 cells × 40 genes", timeout=30_000)
    expect(page.locator("#data-embedding-select")).to_have_value("X_emb")
    expect(page.locator("#data-analysis-name")).to_have_value("my_cells-X_emb")
    assert (app_server.data / "my_cells.h5ad").read_bytes() == path.read_bytes()
