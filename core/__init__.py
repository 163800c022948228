"""FeatureLens core: the science and the data model. Never imports dash.

Modules: ``data`` (load/validate), ``analysis`` (the analysis folder), ``io`` (atomic I/O),
``catalog`` (what the app can open), ``cli`` (the ``featurelens`` command).
"""

import os as _os
import sys as _sys

# Idle OpenMP threads sleep instead of spinning. Spinning threads made torch 2–4× slower with two
# threads on a 2-core machine where another process was busy (measured; see core.threads). libgomp
# reads this when torch loads it, so it only takes effect when core is imported before torch.
if "torch" not in _sys.modules:
    _os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
