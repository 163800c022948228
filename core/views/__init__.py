"""What each app page computes, without dash: one module per page, named as in ``components/``
(``<page>_page.py``) and ``callbacks/`` (``<page>.py``): ``data`` (+ ``data_sources``), ``explorer``,
``steering``, ``compare``, ``simulation``; ``latent`` holds the Explorer's UMAP view and the choice of
the default 2-D view. Each page module has one ``<page>_page_data(source, *, query)``
that does every disk read of its layout and returns a frozen dataclass (a bad source becomes a
:class:`core.views.problem.PageProblem`, never an exception); ``components/`` only renders it.
"""

__all__ = ["compare", "data", "data_sources", "explorer", "latent", "problem", "simulation", "steering"]
