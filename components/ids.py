"""Every component ID of the app, in one place: ``<page>-<widget>-<role>``."""
from __future__ import annotations

URL = "app-url"
NAVBAR = "app-navbar"
PAGE_CONTENT = "app-page-content"
STORE_SOURCE = "app-source-store"  # small JSON: the chosen source name only

PICKER_DROPDOWN = "picker-source-dropdown"
PICKER_REFRESH = "picker-source-refresh"
PICKER_CARD = "picker-source-card"

DATA_PAGE = "data-page"
EXPLORER_PAGE = "explorer-page"
STEERING_PAGE = "steering-page"
COMPARE_PAGE = "compare-page"
SIMULATION_PAGE = "simulation-page"
NOT_FOUND_PAGE = "notfound-page"

# --- data page (data-*) ---

# --- explorer page, feature card, search (explorer-*, card-*, search-*) ---

# --- steering page (steer-*) ---

# --- compare page (compare-*) ---

# --- simulation page (sim-*) ---


def nav_link(page: str) -> str:
    return f"app-navlink-{page}"


def all_ids() -> list[str]:
    """Every string ID defined above (for the uniqueness test)."""
    return [v for k, v in globals().items() if k.isupper() and isinstance(v, str)]
