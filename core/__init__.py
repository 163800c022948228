"""FeatureLens core: the science and the data model. Never imports dash.

The notebook API (imported on first use, so ``import core`` stays light)::

    import core
    ds = core.load_dataset("pbmc.h5ad", embedding="X_scVI")          # load: a validated Dataset
    analysis = core.Analysis.create("analyses/pbmc", dataset=ds.source)
    core.train_into_analysis(analysis, ds.embedding, ...)            # train: the SAE and its features
    core.annotate_analysis(analysis)                                 # annotate: GO terms of every feature
    core.steer_into_analysis(analysis, core.steer.SteerRequest(features=(12,), cells="cell_type=B cell"))
    view = core.explorer_data(analysis.path)                         # explore: what the Explorer shows

The functions keep the names they have where they are defined; packages (``core.steer``, …) are
imported on first use too.

Packages, in layer order (each imports only from those before it; tests/test_layout.py checks):
``base`` (errors, progress, atomic I/O, paths, threads) → ``data`` (load, counts, genes) → ``store``
(the analysis folder, catalog, export, uploads) → ``concepts``, ``model`` (expression models) →
``sae`` → ``annotate`` → ``steer`` → ``simulate`` (the paper's lab) → ``demo``, ``runtime`` (jobs)
→ ``views`` (what each app page computes) → ``cli`` (the ``featurelens`` command).
"""

import os as _os
import sys as _sys

# Idle OpenMP threads sleep instead of spinning. Spinning threads made torch 2–4× slower with two
# threads on a 2-core machine where another process was busy (measured; see core.base.threads). libgomp
# reads this when torch loads it, so it only takes effect when core is imported before torch.
if "torch" not in _sys.modules:
    _os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

_API = {
    "load_dataset": ("core.data.load", "load_dataset"),
    "Analysis": ("core.store.analysis", "Analysis"),
    "train_into_analysis": ("core.sae.pipeline", "train_into_analysis"),
    "annotate_analysis": ("core.annotate.pipeline", "annotate_analysis"),
    "steer_into_analysis": ("core.steer.request", "steer_into_analysis"),
    "explorer_data": ("core.views.explorer", "explorer_data"),
}
_PACKAGES = ("base", "data", "store", "concepts", "model", "sae", "annotate", "steer", "simulate", "demo",
             "runtime", "views", "cli")
__all__ = list(_API)


def __getattr__(name: str):
    import importlib

    if name in _PACKAGES:
        return importlib.import_module(f"core.{name}")
    if name not in _API:
        raise AttributeError(f"module 'core' has no attribute {name!r}")
    module, attr = _API[name]
    return getattr(importlib.import_module(module), attr)
