"""FeatureLens web app: ``python app.py`` or ``featurelens serve`` (http://127.0.0.1:8050)."""
from __future__ import annotations

import os

# Before numba/umap can be imported anywhere: the default threading layer can die silently
# inside forked background jobs.
os.environ.setdefault("NUMBA_THREADING_LAYER", "workqueue")

from pathlib import Path  # noqa: E402

import dash  # noqa: E402
import dash_bootstrap_components as dbc  # noqa: E402, F401  (registers the components)

from components import shell  # noqa: E402
from core.catalog import list_sources  # noqa: E402
from core.paths import REPO_ROOT  # noqa: E402

MAX_UPLOAD_BYTES = int(os.environ.get("FEATURELENS_MAX_UPLOAD_MB", "500")) * 1024 * 1024


def background_manager():
    """DiskcacheManager (embedded; nothing to start) in ``FEATURELENS_CACHE_DIR``."""
    import diskcache

    cache_dir = Path(os.environ.get("FEATURELENS_CACHE_DIR", REPO_ROOT / ".cache" / "jobs"))
    cache_dir.mkdir(parents=True, exist_ok=True)
    return dash.DiskcacheManager(diskcache.Cache(str(cache_dir)))


def create_app(*, default_analysis: str | None = None) -> dash.Dash:
    """Build the Dash app. ``default_analysis``: a folder name in the analyses folder to preselect."""
    from callbacks import register_all

    app = dash.Dash(
        __name__,
        title="FeatureLens",
        assets_folder=str(REPO_ROOT / "assets"),
        background_callback_manager=background_manager(),
        suppress_callback_exceptions=True,
    )
    app.server.config["MAX_CONTENT_LENGTH"] = MAX_UPLOAD_BYTES
    options = list_sources()
    default = None
    if default_analysis:
        name = Path(default_analysis).name
        default = next((o["value"] for o in options if o["value"] == f"analysis:{name}"), None)
    if default is None and options:
        default = options[0]["value"]
    app.layout = shell.root_layout(options=options, default_source=default)
    register_all()
    return app


if __name__ == "__main__":
    create_app().run(host="127.0.0.1", port=int(os.environ.get("PORT", "8050")), debug=False)
