"""Gene identifier detection: symbols, Ensembl or Entrez IDs."""
from __future__ import annotations

import re
from dataclasses import dataclass, field

__all__ = ["GeneIdReport", "detect_gene_ids", "symbol_case"]

_ENSEMBL = re.compile(r"^ENS[A-Z]*G\d{6,}(\.\d+)?$")
_ENTREZ = re.compile(r"^\d+$")
_SYMBOL = re.compile(r"^[A-Za-z][A-Za-z0-9\-\.@/_]*$")
_LABELS = {"symbol": "gene symbols", "ensembl": "Ensembl IDs", "entrez": "Entrez IDs",
           "unknown": "unrecognised identifiers"}


@dataclass(frozen=True)
class GeneIdReport:
    """What kind of gene identifiers a list holds.

    ``kind`` is ``"symbol"``, ``"ensembl"``, ``"entrez"`` or ``"unknown"``; ``counts`` maps each
    kind to how many identifiers look like it.
    """

    kind: str
    n_genes: int
    counts: dict = field(default_factory=dict)
    examples: tuple = ()

    @property
    def fraction(self) -> float:
        return self.counts.get(self.kind, 0) / self.n_genes if self.n_genes else 0.0

    @property
    def label(self) -> str:
        """The kind in words: "gene symbols", "Ensembl IDs", "Entrez IDs" or "unrecognised identifiers"."""
        return _LABELS.get(self.kind, self.kind)

    def describe(self) -> str:
        if self.kind == "unknown":
            return f"gene identifiers not recognised (e.g. {', '.join(self.examples[:3])})"
        return f"{self.counts[self.kind]}/{self.n_genes} gene identifiers look like {self.label}"


def classify_gene_id(name: str) -> str:
    name = str(name).strip()
    if _ENSEMBL.match(name):
        return "ensembl"
    if _ENTREZ.match(name):
        return "entrez"
    if _SYMBOL.match(name):
        return "symbol"
    return "unknown"


def detect_gene_ids(names, *, min_fraction: float = 0.8) -> GeneIdReport:
    """Classify identifiers; the kind is the majority kind if it covers ``min_fraction`` of them."""
    names = [str(n) for n in names]
    counts: dict[str, int] = {}
    for n in names:
        k = classify_gene_id(n)
        counts[k] = counts.get(k, 0) + 1
    kind = "unknown"
    if names:
        best = max((k for k in counts if k != "unknown"), key=counts.get, default=None)
        if best is not None and counts[best] / len(names) >= min_fraction:
            kind = best
    return GeneIdReport(kind=kind, n_genes=len(names), counts=counts, examples=tuple(names[:5]))


def symbol_case(names, *, min_fraction: float = 0.8) -> str:
    """How gene symbols are written: ``"upper"`` (human style, CD3E), ``"capitalised"`` (mouse and
    rat style, Cd3e) or ``"mixed"``, by the majority covering ``min_fraction`` of those with letters."""
    upper = capitalised = n = 0
    for name in names:
        letters = [c for c in str(name) if c.isalpha()]
        if not letters:
            continue
        n += 1
        if all(c.isupper() for c in letters):
            upper += 1
        elif letters[0].isupper() and any(c.islower() for c in letters[1:]):
            capitalised += 1
    if n and upper / n >= min_fraction:
        return "upper"
    if n and capitalised / n >= min_fraction:
        return "capitalised"
    return "mixed"
