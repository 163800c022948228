"""What each app page computes, without dash: one module per page, named as in ``components/``
(``<page>_page.py``) and ``callbacks/`` (``<page>.py``): ``data`` (+ ``data_sources``), ``explorer``,
``steering``, ``compare``, ``simulation``.
"""

__all__ = ["compare", "data", "data_sources", "explorer", "simulation", "steering"]
