"""Concept databases: sparse concepts × genes matrices with term metadata.

Built-in: human Gene Ontology (BP/MF/CC, release 2022-07-01, shipped in data/go_human.npz);
any GMT file as another database. Gene identifiers are matched explicitly (symbols, aliases,
Ensembl, Entrez) with a report.
"""
from core.concepts.db import ConceptDB, GeneMatch, concat
from core.concepts.gmt import read_gmt
from core.concepts.go import GO_FILE, GeneTable, load_gene_table, load_go

__all__ = ["ConceptDB", "GeneMatch", "concat", "read_gmt", "load_go", "load_gene_table", "GeneTable", "GO_FILE"]
