"""The bad-input corpus: every way a user's file, path or option can be wrong, made on the fly.

Each case is a function ``make(ws) -> Bad`` that writes its bad input into a :class:`Workspace`
(a data folder, an analyses folder and an existing, trained and annotated analysis) and says:

- ``argv``: the ``featurelens`` command line that meets it (expected: exit code 2);
- ``core``: the core call the app makes with the same input, returning the message it shows
  (``describe_source`` for the picker card, the raised error text for jobs);
- ``expect``: words both messages must contain;
- ``env``: extra environment (e.g. ``FEATURELENS_CONFINE=1`` for the confined CLI);
- ``check``: an extra assertion run afterwards (e.g. a pickled payload never ran).

Nothing here is a committed blob: every file is generated from a seeded rng.
"""
from __future__ import annotations

import builtins
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from helpers import gen_adata

__all__ = ["Workspace", "Bad", "CASES", "build_base", "copy_workspace", "snapshot"]

N_CELLS, N_GENES, LATENT = 120, 40, 5


# ----------------------------------------------------------------------------- workspace
@dataclass
class Workspace:
    root: Path
    data: Path          # FEATURELENS_DATA_DIR
    analyses: Path      # FEATURELENS_ANALYSES_DIR
    analysis: Path      # an existing analysis: SAE trained, features annotated with good.gmt
    h5ad: Path          # the analysis's dataset (read-only)
    gmt: Path           # a good GMT over the dataset's genes
    seed: int = 0

    def rng(self) -> np.random.Generator:
        return np.random.default_rng(self.seed)

    def adata(self, *, sparse: bool = True):
        """A fresh, good AnnData (same shape and genes as the analysis's dataset) to break."""
        return gen_adata(N_CELLS, N_GENES, rng=self.rng(), sparse=sparse)

    def write(self, adata, name: str = "bad.h5ad") -> Path:
        import warnings

        path = self.data / name
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # anndata warns about duplicated names; that is the point
            adata.write_h5ad(path)
        return path

    def edit_config(self, change: Callable[[dict], None]) -> None:
        """Edit the existing analysis's analysis.json (as another tool, or a hand edit, would)."""
        cfg_path = self.analysis / "analysis.json"
        cfg = json.loads(cfg_path.read_text())
        change(cfg)
        cfg_path.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")


def build_base(root: Path) -> Workspace:
    """Data folder with good.h5ad + good.gmt, and analyses/base trained and annotated (≈ 4 s)."""
    from core.cli.main import main

    data, analyses = root / "data", root / "analyses"
    data.mkdir(parents=True)
    analyses.mkdir()
    ws = Workspace(root, data, analyses, analyses / "base", data / "good.h5ad", data / "good.gmt")
    ws.write(ws.adata(), "good.h5ad")
    genes = [f"GENE{j}" for j in range(N_GENES)]
    ws.gmt.write_text("".join(f"SET{i}\tset {i}\t" + "\t".join(genes[i * 8:i * 8 + 12]) + "\n" for i in range(4)))
    assert main(["train", str(ws.h5ad), "--embedding", "X_emb", "--out", str(ws.analysis), "--hidden", "10",
                 "--epochs", "3", "--seed", "0"]) == 0
    assert main(["annotate", str(ws.analysis), "--concepts", "", "--gmt", str(ws.gmt), "--percentile", "80",
                 "--n-low", "30", "--min-term-size", "3"]) == 0
    return ws


def copy_workspace(base: Workspace, root: Path) -> Workspace:
    """A private copy of the base workspace (its analysis still points at the base dataset)."""
    shutil.copytree(base.root, root)
    return Workspace(root, root / "data", root / "analyses", root / "analyses" / "base", base.h5ad,
                     root / "data" / "good.gmt")


def snapshot(folder: Path) -> dict[str, str]:
    """``{relative path: sha256}`` of every file under ``folder`` (hidden files included)."""
    import hashlib

    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and not p.is_symlink()}


# ----------------------------------------------------------------------------- cases
@dataclass
class Bad:
    argv: list[str]
    core: Callable[[], str]
    expect: tuple[str, ...]
    env: dict[str, str] = field(default_factory=dict)
    check: Callable[[], None] | None = None


CASES: dict[str, Callable[[Workspace], Bad]] = {}


def case(name: str):
    def register(make):
        assert name not in CASES, name
        CASES[name] = make
        return make
    return register


def picker(value: str) -> Callable[[], str]:
    """The app's picker card for ``value``: its error and fix (what the alert shows)."""
    def call() -> str:
        from core.store.catalog import describe_source

        card = describe_source(value)
        return f"{card['error']}\n  Fix: {card['fix']}" if card["error"] else "(no error shown)"
    return call


def raised(fn: Callable, *args, **kwargs) -> Callable[[], str]:
    """The message of the FeatureLensError that ``fn(*args, **kwargs)`` raises (the job's alert)."""
    def call() -> str:
        from core.base.errors import FeatureLensError

        try:
            fn(*args, **kwargs)
        except FeatureLensError as exc:
            return str(exc)
        return "(no error raised)"
    return call


def _load(path, **kwargs):
    from core.data.load import load_dataset

    return load_dataset(path, **kwargs)


def _train(ws: Workspace, data: Path, *extra: str) -> list[str]:
    return ["train", str(data), "--out", str(ws.analysis), "--hidden", "10", "--epochs", "1", *extra]


def _broken_h5ad(ws: Workspace, change, name: str = "bad.h5ad", **kwargs) -> Path:
    a = ws.adata(**kwargs)
    change(a)
    return ws.write(a, name)


# --- .obsm embeddings ---------------------------------------------------------
@case("obsm key missing")
def _(ws):
    path = ws.write(ws.adata())
    return Bad(_train(ws, path, "--embedding", "X_scvi"), raised(_load, path, embedding="X_scvi"),
               ("embedding key 'X_scvi' not found in .obsm", "X_emb"))


@case("obsm key empty (0 dimensions)")
def _(ws):
    def change(a):
        a.obsm["X_emb"] = np.zeros((a.n_obs, 0), np.float32)
    path = _broken_h5ad(ws, change)
    return Bad(_train(ws, path, "--embedding", "X_emb"), raised(_load, path, embedding="X_emb"), ("0 dimensions",))


def _poke_obsm(value):
    def change(a):
        e = a.obsm["X_emb"].copy()
        e[7, 2] = value
        a.obsm["X_emb"] = e
    return change


@case("NaN in the embedding")
def _(ws):
    path = _broken_h5ad(ws, _poke_obsm(np.nan))
    return Bad(_train(ws, path, "--embedding", "X_emb"), raised(_load, path, embedding="X_emb"),
               ("NaN/Inf", "row 7"))


@case("Inf in the embedding")
def _(ws):
    path = _broken_h5ad(ws, _poke_obsm(np.inf))
    return Bad(_train(ws, path, "--embedding", "X_emb"), raised(_load, path, embedding="X_emb"),
               ("NaN/Inf", "row 7"))


def _train_app(ws: Workspace, source: str, analysis: str = "fresh") -> Callable[[], str]:
    """The Data page's "Train" job on ``source`` (its alert shows the raised message)."""
    def call() -> str:
        from core.views.data import TrainRequest, train_for_source

        return raised(train_for_source, TrainRequest(source=source, analysis=analysis, embedding="X_emb",
                                                     cell_type="none", epochs=1))()
    return call


def _constant_obsm(columns):
    """Make the embedding's ``columns`` (None: all) the same value in every cell."""
    def change(a):
        e = a.obsm["X_emb"].copy()
        cols = range(e.shape[1]) if columns is None else columns
        for j in cols:
            e[:, j] = 0.0 if columns is None else 1.5
        a.obsm["X_emb"] = e
    return change


@case("all-zero embedding")
def _(ws):
    path = _broken_h5ad(ws, _constant_obsm(None))
    return Bad(_train(ws, path, "--embedding", "X_emb"), _train_app(ws, "file:bad.h5ad"),
               ("embedding X_emb is constant", "none of its 5 dimensions varies", "featurelens fit-model"))


@case("embedding with one varying dimension")
def _(ws):
    path = _broken_h5ad(ws, _constant_obsm([0, 2, 3, 4]))
    return Bad(_train(ws, path, "--embedding", "X_emb"), _train_app(ws, "file:bad.h5ad"),
               ("1 non-constant dimension of 5", "dimensions 0, 2–4 are constant", "at least 2 dimensions",
                "the .obsm key is the embedding"))


@case("1-dimensional embedding")
def _(ws):
    def change(a):
        a.obsm["X_emb"] = a.obsm["X_emb"][:, :1].copy()
    path = _broken_h5ad(ws, change)
    return Bad(_train(ws, path, "--embedding", "X_emb"), _train_app(ws, "file:bad.h5ad", "base"),
               ("has only 1 dimension", "at least 2 dimensions"))


# --- counts -------------------------------------------------------------------
@case("negative counts")
def _(ws):
    def change(a):
        a.X = a.X.toarray() - 1.0
    path = _broken_h5ad(ws, change)
    return Bad(["validate", str(path)], picker("file:bad.h5ad"), ("negative values", "not counts"))


@case("NaN counts")
def _(ws):
    def change(a):
        X = a.X.toarray()
        X[0, 0] = np.nan
        a.X = X
    path = _broken_h5ad(ws, change)
    return Bad(["validate", str(path)], picker("file:bad.h5ad"), ("NaN or Inf",))


@case("non-integer counts for the count model")
def _(ws):
    from core.model.api import fit_h5ad

    def change(a):
        a.X = a.X.toarray() * 0.37
    path = _broken_h5ad(ws, change)
    return Bad(["fit-model", str(path), "--epochs", "1"], raised(fit_h5ad, path),
               ("non-integer", "raw counts"))


@case("counts layer missing")
def _(ws):
    path = ws.write(ws.adata())
    return Bad(["validate", str(path), "--counts-layer", "raw"], raised(_load, path, counts_layer="raw"),
               ("layer 'raw' not found",))


# --- names --------------------------------------------------------------------
@case("duplicated cell names")
def _(ws):
    def change(a):
        a.obs_names = [f"cell_{i % 100}" for i in range(a.n_obs)]
    path = _broken_h5ad(ws, change)
    return Bad(_train(ws, path, "--embedding", "X_emb"), picker("file:bad.h5ad"),
               ("20 duplicated cell names", "obs_names_make_unique"))


@case("duplicated gene names")
def _(ws):
    def change(a):
        a.var_names = [f"GENE{j % 30}" for j in range(a.n_vars)]
    path = _broken_h5ad(ws, change)
    return Bad(["validate", str(path)], picker("file:bad.h5ad"), ("10 duplicated gene names", "var_names_make_unique"))


# --- cell types ---------------------------------------------------------------
def _cell_type_case(ws, change, expect):
    path = _broken_h5ad(ws, change)
    return Bad(_train(ws, path, "--embedding", "X_emb", "--cell-type", "cell_type"),
               raised(_load, path, embedding="X_emb", cell_type="cell_type"), expect)


@case("cell-type column with one category")
def _(ws):
    def change(a):
        a.obs["cell_type"] = pd.Categorical(["T cell"] * a.n_obs)
    return _cell_type_case(ws, change, ("single category", "local", "several cell types"))


@case("cell-type column with missing values")
def _(ws):
    def change(a):
        ct = a.obs["cell_type"].astype(object)
        ct.iloc[[3, 9]] = None
        a.obs["cell_type"] = ct
    return _cell_type_case(ws, change, ("2 missing values",))


@case("cell-type column absent")
def _(ws):
    def change(a):
        a.obs = a.obs.rename(columns={"cell_type": "celltype_x"})
    return _cell_type_case(ws, change, ("'cell_type' not found in .obs", "celltype_x"))


@case("cell-type column of numbers")
def _(ws):
    def change(a):
        a.obs["cell_type"] = np.linspace(0, 1, a.n_obs)
    return _cell_type_case(ws, change, ("continuous numbers",))


@case("cell-type column of identifiers")
def _(ws):
    def change(a):
        a.obs["cell_type"] = [f"id{i}" for i in range(a.n_obs)]
    return _cell_type_case(ws, change, ("120 categories for 120 cells", "identifier"))


# --- broken files -------------------------------------------------------------
@case("truncated .h5ad")
def _(ws):
    path = ws.write(ws.adata())
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return Bad(_train(ws, path, "--embedding", "X_emb"), picker("file:bad.h5ad"),
               ("could not be read as AnnData", "truncated or corrupt"))


@case("corrupt .h5ad (bytes flipped)")
def _(ws):
    path = ws.write(ws.adata())
    data = bytearray(path.read_bytes())
    rng = ws.rng()
    for i in rng.integers(512, len(data), 400):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))
    return Bad(["validate", str(path), "--embedding", "X_emb"], picker("file:bad.h5ad"),
               ("could not be read as AnnData",))


@case("CSV renamed to .h5ad")
def _(ws):
    path = ws.data / "bad.h5ad"
    pd.DataFrame(ws.rng().poisson(2, (5, 3)), columns=["A", "B", "C"]).to_csv(path)
    return Bad(_train(ws, path, "--embedding", "X_emb"), picker("file:bad.h5ad"),
               ("not an HDF5/.h5ad file", "renamed to .h5ad"))


@case("empty .h5ad (0 bytes)")
def _(ws):
    path = ws.data / "bad.h5ad"
    path.write_bytes(b"")
    return Bad(["validate", str(path)], picker("file:bad.h5ad"), ("is empty (0 bytes)",))


@case("AnnData with 0 cells")
def _(ws):
    path = ws.write(ws.adata()[:0].copy())
    return Bad(["validate", str(path)], picker("file:bad.h5ad"), ("0 cells",))


@case("file does not exist")
def _(ws):
    path = ws.data / "missing.h5ad"
    return Bad(_train(ws, path, "--embedding", "X_emb"), raised(_load, path), ("does not exist",))


@case("unsupported file type")
def _(ws):
    path = ws.data / "cells.loom"
    path.write_bytes(b"\x00" * 64)
    return Bad(["validate", str(path)], raised(_load, path), ("unsupported file type '.loom'",))


# --- embedding files (.npy / .csv / .pt) --------------------------------------
class _Payload:
    """Pickles to a call that writes ``marker``: proves a loader unpickled it (code execution)."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return builtins.open, (self.marker, "w")


def _no_marker(marker: Path) -> Callable[[], None]:
    def check() -> None:
        assert not marker.exists(), f"a pickled payload ran: {marker} was created"
    return check


@case("pickled object array in .npy")
def _(ws):
    marker = ws.root / "pwned-npy"
    path = ws.data / "emb.npy"
    np.save(path, np.array([_Payload(marker)], dtype=object), allow_pickle=True)
    return Bad(["validate", str(path)], picker("file:emb.npy"), ("not a valid .npy array",), check=_no_marker(marker))


@case("pickled object in .pt")
def _(ws):
    import torch

    marker = ws.root / "pwned-pt"
    path = ws.data / "emb.pt"
    torch.save({"embedding": _Payload(marker)}, path)
    return Bad(["validate", str(path)], picker("file:emb.pt"), ("could not be loaded as a tensor file", "refused"),
               check=_no_marker(marker))


@case(".npy embedding not 2-D")
def _(ws):
    path = ws.data / "emb.npy"
    np.save(path, ws.rng().normal(size=N_CELLS))
    return Bad(["validate", str(path)], picker("file:emb.npy"), ("must be 2-D",))


@case(".npy embedding with NaN")
def _(ws):
    path = ws.data / "emb.npy"
    e = ws.rng().normal(size=(N_CELLS, LATENT))
    e[5, 0] = np.nan
    np.save(path, e)
    return Bad(_train(ws, path), picker("file:emb.npy"), ("NaN/Inf", "row 5"))


@case(".csv embedding with text columns")
def _(ws):
    path = ws.data / "emb.csv"
    pd.DataFrame({"d0": ws.rng().normal(size=4), "d1": ["a", "b", "c", "d"]},
                 index=[f"c{i}" for i in range(4)]).to_csv(path)
    return Bad(["validate", str(path)], picker("file:emb.csv"), ("non-numeric columns",))


@case("embedding rows do not match the metadata")
def _(ws):
    emb, obs = ws.data / "emb.csv", ws.data / "cells.csv"
    pd.DataFrame(ws.rng().normal(size=(6, 2)), index=[f"c{i}" for i in range(6)]).to_csv(emb)
    pd.DataFrame({"cell_type": ["a", "b"] * 3}, index=[f"x{i}" for i in range(6)]).to_csv(obs)
    return Bad(["validate", str(emb), "--obs", str(obs)], raised(_load, emb, obs=obs),
               ("6 of 6 cells in cells.csv have no row in emb.csv",))


# --- paths --------------------------------------------------------------------
CONFINED = {"FEATURELENS_CONFINE": "1"}


@case("path traversal ../../etc/passwd")
def _(ws):
    return Bad(["validate", "../../etc/passwd"], picker("file:../../etc/passwd"),
               ("outside the allowed folders",), env=CONFINED)


@case("absolute path outside the data folder")
def _(ws):
    return Bad(["validate", "/etc/passwd"], picker("file:/etc/passwd"), ("outside the allowed folders",), env=CONFINED)


@case("symlink out of the data folder")
def _(ws):
    outside = ws.root / "outside"
    outside.mkdir()
    target = ws.write(ws.adata(), "secret.h5ad")
    shutil.move(target, outside / "secret.h5ad")
    (ws.data / "link.h5ad").symlink_to(outside / "secret.h5ad")
    return Bad(["validate", str(ws.data / "link.h5ad")], picker("file:link.h5ad"), ("outside the allowed folders",),
               env=CONFINED)


@case("analysis name with ..")
def _(ws):
    return Bad(["annotate", str(ws.analyses / ".." / ".." / "elsewhere")], picker("analysis:../../elsewhere"),
               ("outside the allowed folders",), env=CONFINED)


@case("NUL byte in a path")
def _(ws):
    return Bad(["validate", "bad\x00name.h5ad"], picker("file:bad\x00name.h5ad"), ("invalid path",))


@case("path too long")
def _(ws):
    name = "x" * 5000 + ".h5ad"
    return Bad(["validate", str(ws.data / name)], picker(f"file:{name}"), ("invalid path",))


# --- analysis folders ---------------------------------------------------------
@case("analysis from a future schema version")
def _(ws):
    ws.edit_config(lambda c: c.update(schema_version=99))
    return Bad(["annotate", str(ws.analysis), "--concepts", "", "--gmt", str(ws.gmt)], picker("analysis:base"),
               ("newer FeatureLens", "schema 99", "upgrade"))


@case("analysis.json corrupt")
def _(ws):
    cfg = ws.analysis / "analysis.json"
    cfg.write_text(cfg.read_text()[:-40])
    return Bad(["de", str(ws.analysis), "--feature", "0"], picker("analysis:base"), ("is not valid JSON",))


@case("folder is not an analysis")
def _(ws):
    (ws.analyses / "empty").mkdir()
    return Bad(["annotate", str(ws.analyses / "empty")], picker("analysis:empty"), ("not an analysis folder",))


@case("--out is an analysis of another dataset")
def _(ws):
    a = gen_adata(N_CELLS, N_GENES, rng=np.random.default_rng(ws.seed + 1))
    path = ws.write(a, "other.h5ad")
    return Bad(_train(ws, path, "--embedding", "X_emb"), raised(_open_or_create, ws.analysis, path),
               ("is an analysis of another dataset", "another --out"))


def _open_or_create(analysis: Path, data: Path):
    from core.store.analysis import Analysis

    return Analysis.open_or_create(analysis, dataset=_load(data).source)


@case("--out is a file")
def _(ws):
    from core.store.analysis import Analysis

    out = ws.data / "notes.txt"
    out.write_text("not a folder")
    argv = ["train", str(ws.h5ad), "--embedding", "X_emb", "--out", str(out), "--hidden", "10"]
    return Bad(argv, raised(Analysis.create, out, dataset={}), ("exists and is not a folder",))


@case("feature that does not exist")
def _(ws):
    from core.store.analysis import Analysis
    from core.annotate.single import feature_de

    return Bad(["de", str(ws.analysis), "--feature", "10"], raised(lambda: feature_de(Analysis.open(ws.analysis), 10)),
               ("feature 10 does not exist", "0–9"))


# --- training options ---------------------------------------------------------
@case("fewer latents than input dimensions")
def _(ws):
    from core.sae import VanillaConfig

    return Bad(["train", str(ws.h5ad), "--embedding", "X_emb", "--out", str(ws.analysis), "--hidden", "3"],
               raised(lambda: VanillaConfig(hidden=3).hidden_size(LATENT)), ("hidden", "3"))


@case("--k for an L1 architecture")
def _(ws):
    return Bad(["train", str(ws.h5ad), "--embedding", "X_emb", "--out", str(ws.analysis), "--k", "4"],
               raised(_build_configs, k=4), ("--k does not apply to the vanilla architecture",))


def _build_configs(**changes):
    from core.cli.main import build_parser
    from core.cli.train import sae_request

    args = build_parser().parse_args(["train", "x.h5ad", "--out", "o"])
    vars(args).update(changes)
    return sae_request(args).configs()


# --- concepts -----------------------------------------------------------------
def _annotate_gmt(ws, text: str | bytes, expect, name: str = "sets.gmt") -> Bad:
    from core.concepts import read_gmt

    path = ws.data / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    argv = ["annotate", str(ws.analysis), "--concepts", "", "--gmt", str(path), "--percentile", "80", "--n-low", "30",
            "--min-term-size", "3"]
    return Bad(argv, raised(read_gmt, path), expect)


@case("GMT separated by spaces")
def _(ws):
    return _annotate_gmt(ws, "SET_A\tfine\tGENE1\tGENE2\nSET_B desc GENE3 GENE4\n", ("sets.gmt line 2", "tabs"))


@case("GMT set without genes")
def _(ws):
    return _annotate_gmt(ws, "SET_A\tdesc\tGENE1\nSET_B\tdesc\t\t\n", ("line 2", "'SET_B' has no genes"))


@case("GMT set listed twice")
def _(ws):
    return _annotate_gmt(ws, "SET_A\td\tGENE1\nSET_A\td\tGENE2\n", ("line 2", "appears twice"))


@case("GMT that is binary")
def _(ws):
    return _annotate_gmt(ws, b"\x89PNG\r\n\x1a\n\xff\xfe\x00" * 10, ("not a UTF-8 text file",))


@case("GMT with no gene sets")
def _(ws):
    return _annotate_gmt(ws, "# only a comment\n\n", ("holds no gene sets",))


def _annotate_app(ws, **config) -> Callable[[], str]:
    """The Data page's Annotate job on the existing analysis (``annotate_named``, as the job calls it)."""
    def call() -> str:
        from core.annotate.pipeline import AnnotationConfig
        from core.views.data import annotate_named

        return raised(annotate_named, ws.analysis.name, config=AnnotationConfig(**config))()
    return call


def _unmatched_gmt(ws, name: str, genes: Callable[[int, int], str], expect, *extra) -> Bad:
    path = ws.data / name
    path.write_text("".join(f"SET{i}\td\t" + "\t".join(genes(i, j) for j in range(12)) + "\n" for i in range(3)))
    argv = ["annotate", str(ws.analysis), "--concepts", "", "--gmt", str(path), *extra]
    return Bad(argv, _annotate_app(ws, concepts=(), gmt=(str(path),)), expect)


@case("genes matching no concept")
def _(ws):
    return _unmatched_gmt(ws, "mouse.gmt", lambda i, j: f"Mus{i}_{j}",
                          ("gene-set file mouse.gmt matches none of the data's 40 genes", "its 36 genes",
                           "gene symbols (e.g. GENE0, GENE1, GENE2)", "capitalised like mouse genes",
                           "Fix: use a gene-set file of the data's species"))


@case("GMT of Ensembl IDs on data with symbols")
def _(ws):
    return _unmatched_gmt(ws, "ensembl.gmt", lambda i, j: f"ENSG{i * 100 + j:011d}",
                          ("gene-set file ensembl.gmt matches none", "look like Ensembl IDs (e.g. ENSG00000000000",
                           "the data's identifiers look like gene symbols", "convert the file's identifiers"))


@case("GMT with no set in the term-size range")
def _(ws):
    path = ws.data / "pairs.gmt"
    path.write_text("".join(f"PAIR{i}\td\tGENE{2 * i}\tGENE{2 * i + 1}\n" for i in range(3)))
    argv = ["annotate", str(ws.analysis), "--concepts", "", "--gmt", str(path), "--min-term-size", "3"]
    return Bad(argv, _annotate_app(ws, concepts=(), gmt=(str(path),), min_term_size=3),
               ("gene-set file pairs.gmt: none of its 3 gene sets has 3–500 of the data's genes",
                "lower the minimum term size to 2 (--min-term-size)"))


@case("GO matching none of the data's genes")
def _(ws):
    return Bad(["annotate", str(ws.analysis), "--concepts", "go-bp"], _annotate_app(ws, concepts=("go-bp",)),
               ("none of the 40 genes matches a concept in go-bp", "(e.g. GENE0, GENE1, GENE2)",
                "human gene symbols, Ensembl or Entrez IDs"))


@case("unknown concept database")
def _(ws):
    from core.annotate.pipeline import AnnotationConfig

    return Bad(["annotate", str(ws.analysis), "--concepts", "go-xx"], raised(AnnotationConfig, concepts=("go-xx",)),
               ("unknown concept database 'go-xx'", "go-bp"))


@case("zero live features")
def _(ws):
    import scipy.sparse as sp

    from core.base import io
    from core.store.analysis import Analysis
    from core.annotate.pipeline import AnnotationConfig, annotate_analysis

    io.write_npz_sparse(ws.analysis / "activations.npz", sp.csr_matrix((N_CELLS, 10), dtype=np.float32))
    config = AnnotationConfig(concepts=(), gmt=(str(ws.gmt),), min_term_size=3)
    return Bad(["annotate", str(ws.analysis), "--concepts", "", "--gmt", str(ws.gmt), "--min-term-size", "3"],
               raised(lambda: annotate_analysis(Analysis.open(ws.analysis), config=config)),
               ("no live features", "all 10"))


# --- decoders -----------------------------------------------------------------
def _decoder_case(ws, module, expect, *, script: bool = True) -> Bad:
    import torch

    from core.model.decoders import load_decoder

    path = ws.data / "decoder.pt"
    if script:
        torch.jit.save(torch.jit.script(module), str(path))
    else:
        torch.save(module, path)
    ws.edit_config(lambda c: c.setdefault("settings", {}).update(decoder=str(path)))
    genes = [f"GENE{j}" for j in range(N_GENES)]
    return Bad(["annotate", str(ws.analysis), "--concepts", "", "--gmt", str(ws.gmt), "--expression", "predicted"],
               raised(load_decoder, path, n_latent=LATENT, gene_names=genes), expect)


def _linear(n_in: int, n_out: int, *, nan: bool = False):
    import torch

    class Decoder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(n_in, n_out)

        def forward(self, z: torch.Tensor) -> torch.Tensor:
            return torch.softmax(self.lin(z), dim=-1)

    class NaNDecoder(Decoder):
        def forward(self, z: torch.Tensor) -> torch.Tensor:
            return torch.log(torch.softmax(self.lin(z), dim=-1) - 1.0)

    return NaNDecoder() if nan else Decoder()


@case("decoder with the wrong input size")
def _(ws):
    return _decoder_case(ws, _linear(7, N_GENES), ("fails on a 5-dimensional latent", "first layer takes 7 inputs"))


@case("decoder with the wrong output size")
def _(ws):
    return _decoder_case(ws, _linear(LATENT, 30), ("predicts 30 genes but the data has 40",))


@case("decoder returning NaN")
def _(ws):
    return _decoder_case(ws, _linear(LATENT, N_GENES, nan=True), ("returned NaN/Inf",))


@case("decoder that is a pickle, not TorchScript")
def _(ws):
    marker = ws.root / "pwned-decoder"
    bad = _decoder_case(ws, _Payload(marker), ("could not be loaded as TorchScript",), script=False)
    bad.check = _no_marker(marker)
    return bad


@case("decoder file missing")
def _(ws):
    from core.model.decoders import load_decoder

    path = ws.data / "gone.pt"
    ws.edit_config(lambda c: c.setdefault("settings", {}).update(decoder=str(path)))
    return Bad(["annotate", str(ws.analysis), "--concepts", "", "--gmt", str(ws.gmt), "--expression", "predicted"],
               raised(load_decoder, path, n_latent=LATENT), ("does not exist",))
