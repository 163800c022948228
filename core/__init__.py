"""FeatureLens core: the science and the data model. Never imports dash.

Modules: ``data`` (load/validate), ``analysis`` (the analysis folder), ``io`` (atomic I/O),
``catalog`` (what the app can open), ``cli`` (the ``featurelens`` command).
"""
