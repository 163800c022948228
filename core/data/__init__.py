"""Datasets in: load and validate (``load``), counts streamed from .h5ad (``counts``), gene
identifiers (``genes``), the shipped datasets (``datasets``). Above ``core.base`` only.
"""

__all__ = ["counts", "datasets", "genes", "load"]
