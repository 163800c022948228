"""Real-browser journeys: the app as a subprocess, driven by Playwright in the system Chromium."""
from __future__ import annotations

import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.browser


def test_br001_shell_shows_navbar_pages_and_picker(app_server, page, screenshot):
    page.goto(app_server.url)
    expect(page.locator("#app-navbar")).to_contain_text("FeatureLens")
    for title in ("Data & training", "Explorer", "Steering", "Compare", "Simulation lab"):
        expect(page.locator("#app-navbar")).to_contain_text(title)
    expect(page.locator("#data-page")).to_be_visible()
    # the shipped dataset is preselected and its validation summary appears
    expect(page.locator("#picker-source-card")).to_contain_text("X_pca (50 dimensions)", timeout=15000)
    expect(page.locator("#picker-source-card")).to_contain_text("bulk_labels (10 types)")
    screenshot("data-page")


def test_br002_navigation_between_pages(app_server, page):
    page.goto(app_server.url + "/data")
    page.get_by_role("link", name="Explorer").click()
    expect(page.locator("#explorer-page")).to_be_visible()
    assert page.url.endswith("/explorer")
    page.goto(app_server.url + "/no-such-page")
    expect(page.locator("#notfound-page")).to_contain_text("no page at")


def test_br003_bad_file_in_data_folder_shows_alert_and_app_keeps_working(app_server, page, screenshot):
    (app_server.data / "broken.h5ad").write_text("this is not hdf5")
    page.goto(app_server.url)
    page.locator("#picker-source-refresh").click()
    page.locator("#picker-source-dropdown").click()
    page.get_by_text("File · broken.h5ad").click()
    alert = page.locator("#picker-source-card .alert-danger")
    expect(alert).to_contain_text("not an HDF5/.h5ad file", timeout=15000)
    screenshot("bad-file")
    # still works: choose the shipped dataset again
    page.locator("#picker-source-dropdown").click()
    page.get_by_text("Dataset · pbmc68k (shipped)").click()
    expect(page.locator("#picker-source-card")).to_contain_text("X_pca (50 dimensions)", timeout=15000)
    assert app_server.proc.poll() is None


def test_br004_new_file_appears_in_the_picker_on_reload(app_server, page):
    import shutil

    from core.data.datasets import SHIPPED

    page.goto(app_server.url)
    expect(page.locator("#picker-source-card")).to_contain_text("X_pca", timeout=15000)
    shutil.copyfile(SHIPPED["pbmc68k"].path, app_server.data / "added-later.h5ad")
    page.reload()  # the layout is built per page load: no ↻ needed
    page.locator("#picker-source-dropdown").click()
    expect(page.get_by_text("File · added-later.h5ad")).to_be_visible(timeout=15000)
