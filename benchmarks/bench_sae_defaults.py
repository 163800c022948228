"""Do the SAE defaults give sparse, faithful features on embeddings nobody tuned them on?

Embeddings (12 in all, 10–50 dimensions, 4,000–8,000 cells, each with its own seed):

- **atoms** (``core.sae.planted_sparse_data``): a known dictionary of unit directions, a few per
  cell (d = 10, 20, 50; 24, 100 and 300 atoms; the 20-d one with Zipf-like atom frequencies);
- **programs** (``core.sae.planted_programs``): program activities and cell-type indicators mixed
  linearly into d = 10 and 50, and through a saturating non-linearity into d = 20;
- **simulator, planted mix**: the planted-program count simulator (``core.demo.data``,
  three datasets of ``bench_calibration``), its ground-truth activities X″ and cell types mixed
  into 10 dimensions;
- **simulator, model**: the same counts through the built-in expression model (`featurelens
  fit-model`, 20 dimensions), as a user without an embedding would do.

Settings: ``default`` (the default preset), ``previous`` (the default before 2026-12-01: tied init,
lr decaying linearly to 0, early stopping, no gradient clipping), ``default+key=value+…`` and
``previous+key=value+…`` (either with changes to the SAE or training config, e.g.
``previous+init=torch``), ``auto`` (the sweep + knee), ``tanh`` (the default
with the tanh penalty, l1 = 0.02), ``before`` (the default before the sparse defaults: the reference's L1 on
mean|z|, l1 = 1e-3, no resampling), and ``april`` (Anthropic's April 2024 recipe: input scaled
so E‖x‖² = d, L1 weighted by decoder norms with no unit-norm constraint, decoder columns
initialised at norm 0.1 with the encoder their transpose, L1 warmed up over the first 5 % of
steps, lr decayed linearly to 0 over the last 20 %, gradient norm clipped at 1, no resampling,
no early stopping, :data:`APRIL_STEPS` steps at least; ``april@0.4`` sets its strength, default
:data:`APRIL_L1`), ``topk`` (TopK with AuxK, k = d, the default preset's training; ``topk@K``:
K a number, ``d`` or ``d/N``), ``matryoshka`` (Matryoshka TopK, ``core.sae.MatryoshkaConfig``,
k = d and the paper's prefixes 1/16, 1/8, 1/4, 1/2 of the latents; ``matryoshka@K`` as topk;
``matryoshka-d@K``: prefixes doubling from d latents, 1/50, 2/50, … 32/50; ``matryoshka-batch@K``:
BatchTopK selection, as the paper; ``batchtopk@K``: BatchTopK; ``jumprelu@L0`` (JumpReLU,
``core.sae.JumpReLUConfig``, L0 cost default 0.02, no resampling, the default training for at least
:data:`APRIL_STEPS` steps without early stopping; ``jumprelu-narrow@L0``: kernel bandwidth 0.01);
``topk-nostop``,
``matryoshka-nostop@K`` …: the same without early stopping, all planned steps). Per run: L0 as a
share of latents (target ≤ 5 %), dead share (≤ 20 %), FVU on all cells (≤ 0.15), the median over
planted variables of the best single-latent |Pearson r| (≥ 0.75), for atoms the share of planted
directions some decoder direction matches with cosine ≥ 0.9, the time, and for Matryoshka the
FVU of the first prefix alone.

Run: ``python benchmarks/bench_sae_defaults.py [--quick] [--skip-model] [--cache DIR]`` →
benchmarks/results/sae_defaults.json and a markdown table on stdout (``--cache DIR`` keeps the
simulated datasets and their fitted-model embeddings in DIR and reuses them).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
RESULTS = ROOT / "benchmarks" / "results" / "sae_defaults.json"
TARGETS = {"l0_fraction": 0.05, "dead_fraction": 0.20, "fvu": 0.15, "median_best_r": 0.75}
APRIL_L1 = 0.2      # l1 per unit of input norm: Anthropic's λ = 5 on a 512-d input is l1 ≈ 0.22
APRIL_STEPS = 3000  # "longer training": twice the default preset's floor


def synthetic_cases(quick: bool):
    from core.sae import planted_programs, planted_sparse_data

    n = 0.25 if quick else 1.0

    def atoms(cells, **kw):
        p = planted_sparse_data(int(cells * n), **kw)
        return p.x, p.codes.toarray(), p.dictionary

    yield "atoms d10", lambda: atoms(4000, d=10, n_atoms=24, active=2, seed=11, max_cosine=0.9, noise=0.02)
    yield "atoms d20 zipf", lambda: atoms(8000, d=20, n_atoms=100, active=3, frequency_decay=1.0, seed=12,
                                          noise=0.02)
    yield "atoms d50", lambda: atoms(6000, d=50, n_atoms=300, active=5, seed=13, offset=3.0, noise=0.02)
    def programs(cells, **kw):
        return (*planted_programs(int(cells * n), **kw), None)

    yield "programs d10", lambda: programs(4000, d=10, seed=14)
    yield "programs d20 nonlinear", lambda: programs(8000, d=20, n_programs=20, n_types=8, nonlinear=True, seed=15)
    yield "programs d50", lambda: programs(5000, d=50, n_programs=30, n_types=6, seed=16)


def simulator_cases(folder: Path, quick: bool, with_model: bool, *, cache: Path | None = None):
    import anndata as ad

    from bench_calibration import DATASETS

    for name, n_cells, n_genes, seed, effect, connect in DATASETS:
        if quick:
            n_cells = n_cells // 4
        path = simulated_file(cache or folder, (name, n_cells, n_genes, seed, effect, connect), with_model=with_model)
        adata = ad.read_h5ad(path)
        types = pd.get_dummies(adata.obs["cell_type"]).to_numpy(np.float64)
        truth = np.hstack([np.asarray(adata.obsm["truth_activity"], np.float64), types])
        yield f"simulator {name} planted mix d10", (lambda a=adata, t=truth: (np.asarray(a.obsm["X_planted"]), t, None))
        if with_model:
            yield f"simulator {name} model d20", (lambda a=adata, t=truth: (np.asarray(a.obsm["X_model"]), t, None))


def simulated_file(folder: Path, spec: tuple, *, with_model: bool) -> Path:
    """The simulated dataset ``spec`` (a ``bench_calibration.DATASETS`` row) as an h5ad in its own
    sub-folder of ``folder``, with the built-in model's embedding ``X_model`` when ``with_model``.
    Reused when it is already there (``--cache``): the data are seeded, so the same spec gives the
    same file; the fitted model is the slow part of a run."""
    import h5py

    from bench_calibration import make_data, run_cli

    name, n_cells, n_genes, seed, effect, connect = spec
    home = folder / f"{name}-{n_cells}x{n_genes}-seed{seed}-effect{effect:g}-connect{connect:g}"
    path = home / f"{name}.h5ad"
    if not path.is_file():
        part = home.with_name(home.name + ".part")
        part.mkdir(parents=True, exist_ok=True)
        make_data(part, *spec)
        part.replace(home)
    if with_model:
        with h5py.File(path, "r") as f:
            fitted = "X_model" in f.get("obsm", {})
        if not fitted:
            run_cli(["fit-model", path, "--key", "X_model", "--overwrite"])
    return path


def settings():
    from core.sae import TrainConfig, VanillaConfig
    from core.sae.sweep import SweepConfig

    from core.sae import preset

    sae, train = preset("default")
    before = VanillaConfig(l1=1e-3, penalty="l1", l1_scale="mean", resample_dead=False)
    previous = (sae.replace(init="tied"), train.replace(lr_schedule="linear_decay", patience=5, grad_clip=None), None)
    return {"default": (sae, train, None),
            "previous": previous,
            "auto": (sae, train, SweepConfig()),
            "tanh": (sae.replace(penalty="tanh", l1=0.02), train, None),
            "before": (before, TrainConfig(), None),
            "april": april(APRIL_L1),
            "topk": topk("d", train),
            "matryoshka": matryoshka("d", train)}


def _k_rule(k: str):
    """``d_in -> k`` for a setting's ``@K``: a number, ``d`` (the input dimension) or ``d/N``."""
    if k == "d":
        return lambda d: d
    if k.startswith("d/"):
        return lambda d, n=float(k[2:]): max(1, int(round(d / n)))
    return lambda d, n=int(k): n


def topk(k: str, train, *, batch: bool = False):
    """TopK (``batch``: BatchTopK) with AuxK (default train), ``k`` as :func:`_k_rule` reads it."""
    from core.sae import BatchTopKConfig, TopKConfig

    rule, cls = _k_rule(k), BatchTopKConfig if batch else TopKConfig
    return (lambda d: cls(k=rule(d))), train, None


def matryoshka(k: str, train, prefixes: str | None = None, *, batch: bool = False):
    """Matryoshka TopK (default train, the paper's prefixes unless ``prefixes``: ``d`` doubles
    from d_in latents, 1/50, 2/50, … of 50 × d_in; ``batch``: BatchTopK selection)."""
    from core.sae import MatryoshkaConfig

    rule = _k_rule(k)
    extra = {} if prefixes is None else {"prefixes": MATRYOSHKA_PREFIXES[prefixes]}
    selection = "batch" if batch else "sample"
    return (lambda d: MatryoshkaConfig(k=rule(d), selection=selection, **extra)), train, None


def jumprelu(l0: float, train, *, bandwidth: float | None = None):
    """JumpReLU at L0 cost ``l0`` (``bandwidth`` None: the library's), trained as the paper:
    long (≥ :data:`APRIL_STEPS` steps), no early stopping, no resampling (``-nostop`` is implied)."""
    from core.sae import JumpReLUConfig

    extra = {} if bandwidth is None else {"bandwidth": bandwidth}
    train = train.replace(min_steps=max(train.min_steps or 0, APRIL_STEPS), patience=None)
    return JumpReLUConfig(l0=l0, **extra), train, None


MATRYOSHKA_PREFIXES = {"d": (0.02, 0.04, 0.08, 0.16, 0.32)}  # d_in, 2 d_in, … latents at 50 ×


def april(l1: float):
    """Anthropic's April 2024 recipe at strength ``l1`` (see the module docstring)."""
    from core.sae import TrainConfig, VanillaConfig

    sae = VanillaConfig(l1=l1, decoder_norm="l1_weighted", init_scale=0.1, resample_dead=False)
    train = TrainConfig(min_steps=APRIL_STEPS, l1_warmup=0.05, lr_schedule="linear_decay", decay_fraction=0.2,
                        grad_clip=1.0, patience=None, restore_best=False)
    return sae, train, None


def _override_value(text: str):
    """``true``/``false``/``none``, a number, or the text itself (a setting's ``+key=value``)."""
    low = text.lower()
    if low in ("true", "false", "none"):
        return {"true": True, "false": False, "none": None}[low]
    try:
        return int(text)
    except ValueError:
        try:
            return float(text)
        except ValueError:
            return text


def with_overrides(base: tuple, overrides: list[str]) -> tuple:
    """``base`` (a Vanilla setting) with ``key=value`` changes, each to the SAE config when it has
    the field, else to the training config (``default+init=tied+patience=5``)."""
    from dataclasses import fields

    config, train, sweep = base
    sae_fields = {f.name for f in fields(config)}
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep:
            raise SystemExit(f"bad override {item!r}: use key=value")
        value = _override_value(text)
        if key in sae_fields:
            config = config.replace(**{key: value})
        else:
            train = train.replace(**{key: value})
    return config, train, sweep


def pick_settings(names: str) -> dict:
    """The settings named in ``names`` (comma-separated; ``april@L1`` for the April recipe at L1;
    ``default+key=value…`` or ``previous+key=value…`` for the default or previous default with changes)."""
    known = settings()
    out = {}
    for name in names.split(","):
        if "+" in name:
            base, *overrides = name.split("+")
            if base not in ("default", "previous"):
                raise SystemExit(f"overrides apply to default or previous, not {base!r}")
            out[name] = with_overrides(known[base], overrides)
            continue
        base, _, value = name.partition("@")
        train = known["default"][1]
        if base.endswith("-nostop") and base != "april-nostop":  # the default training without early stopping
            base, train = base[: -len("-nostop")], train.replace(patience=None)
        if base == "april" and value:
            out[name] = april(float(value))
        elif base in ("topk", "batchtopk"):
            out[name] = topk(value or "d", train, batch=base == "batchtopk")
        elif base in ("matryoshka", "matryoshka-d", "matryoshka-batch"):
            out[name] = matryoshka(value or "d", train, prefixes="d" if base == "matryoshka-d" else None,
                                   batch=base == "matryoshka-batch")
        elif base in ("jumprelu", "jumprelu-narrow"):
            out[name] = jumprelu(float(value) if value else 0.02, train, bandwidth=0.01 if base != "jumprelu" else None)
        elif name in known:
            out[name] = known[name]
        else:
            raise SystemExit(f"unknown setting {name!r}: use {', '.join(known)}, april@L1, topk@K, "
                             "batchtopk@K, matryoshka@K, matryoshka-d@K, matryoshka-batch@K (K: a number, d or "
                             "d/N; default d), jumprelu@L0, jumprelu-narrow@L0; -nostop after any of them: no "
                             "early stopping")
    return out


def run_one(x: np.ndarray, truth: np.ndarray, dictionary, *, config, train, sweep) -> dict:
    from core.sae import encode_activations, sae_metrics, train_sae
    from core.simulate.metrics import pearson_matrix
    from core.sae.synthetic import atom_recovery
    from core.sae.sweep import sparsity_sweep

    t0 = time.perf_counter()
    chosen = None
    if callable(config):  # settings whose k depends on the input dimension
        config = config(x.shape[1])
    if sweep is not None:
        swept = sparsity_sweep(x, config=config, train=train, sweep=sweep)
        chosen = swept["chosen_l1"]
        config = config.replace(l1=chosen)
    res = train_sae(x, config=config, train=train)
    seconds = time.perf_counter() - t0
    acts = encode_activations(res.sae, x)
    s, _ = sae_metrics(res.sae, x, activations=acts)
    truth = truth[:, truth.std(0) > 0]
    r = np.nan_to_num(np.nanmax(np.abs(pearson_matrix(acts, truth)), axis=0))  # best single latent per variable
    row = {"d": int(x.shape[1]), "cells": int(x.shape[0]), "hidden": s["hidden"], "l0": s["l0"],
           "l0_fraction": s["l0"] / s["hidden"], "dead_fraction": s["dead_fraction"], "fvu": s["fvu"],
           "median_best_r": float(np.median(r)), "seconds": seconds, "chosen_l1": chosen,
           "atoms_recovered": None if dictionary is None else
           atom_recovery(res.sae.feature_directions().numpy(), dictionary, threshold=0.9)[0],
           "k": getattr(res.sae, "k", None), "first_prefix_fvu": first_prefix_fvu(res.sae, x)}
    row["passes"] = {"l0_fraction": row["l0_fraction"] <= TARGETS["l0_fraction"],
                     "dead_fraction": row["dead_fraction"] <= TARGETS["dead_fraction"],
                     "fvu": row["fvu"] <= TARGETS["fvu"],
                     "median_best_r": row["median_best_r"] >= TARGETS["median_best_r"]}
    return row


def first_prefix_fvu(sae, x: np.ndarray) -> float | None:
    """Matryoshka only: the FVU of the first prefix alone (its latents, the others zeroed)."""
    if not hasattr(sae, "prefix_mse"):
        return None
    import torch

    with torch.no_grad():
        xn = sae.normalize(torch.as_tensor(x, dtype=torch.float32))
        return float(sae.prefix_mse(xn)[0] / (xn - xn.mean(0)).pow(2).mean())


def table(rows: list[dict], setting: str) -> str:
    head = ("| embedding | d | latents | L0 (% of latents) | dead % | FVU | median best \\|r\\| | atoms found | s |\n"
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    lines = [head]
    for r in rows:
        if r["setting"] != setting:
            continue
        p = r["passes"]

        def mark(key, text):
            return text if p[key] else f"**{text}** ✗"
        l0 = mark("l0_fraction", f"{100 * r['l0_fraction']:.1f}")
        dead = mark("dead_fraction", f"{100 * r['dead_fraction']:.0f}")
        fvu = mark("fvu", f"{r['fvu']:.3f}")
        best = mark("median_best_r", f"{r['median_best_r']:.2f}")
        atoms = "–" if r.get("atoms_recovered") is None else f"{100 * r['atoms_recovered']:.0f} %"
        lines.append(f"| {r['embedding']} | {r['d']} | {r['hidden']:,} | {l0} | {dead} | {fvu} | {best} "
                     f"| {atoms} | {r['seconds']:.0f} |")
    sub = [r for r in rows if r["setting"] == setting]
    all_pass = sum(all(r["passes"].values()) for r in sub)
    per = {k: sum(r["passes"][k] for r in sub) for k in TARGETS}
    lines.append(f"\n{setting}: {all_pass}/{len(sub)} embeddings meet all four targets; per target: "
                 + ", ".join(f"{k} {v}/{len(sub)}" for k, v in per.items()))
    return "\n".join(lines)


SUMMARY_HEAD = ("| setting | L0, % of latents (median; range) | dead % (median; max) | FVU (median; max) "
                "| best single-latent \\|r\\| (median; min) | planted atoms matched (d = 10, 20, 50) | all 4 targets "
                "| per target (L0, dead, FVU, \\|r\\|) |\n|---|---:|---:|---:|---:|---:|---:|---:|")


def summary_row(rows: list[dict], setting: str) -> str:
    """One line of the summary table (sae_defaults.md) for ``setting``."""
    sub = [r for r in rows if r["setting"] == setting]
    col = {k: np.array([r[k] for r in sub], float) for k in ("l0_fraction", "dead_fraction", "fvu", "median_best_r")}
    atoms = [f"{100 * r['atoms_recovered']:.0f} %" for r in sub if r.get("atoms_recovered") is not None]
    per = ", ".join(str(sum(r["passes"][k] for r in sub)) for k in TARGETS)
    l0, dead = 100 * col["l0_fraction"], 100 * col["dead_fraction"]
    return (f"| {setting} | {np.median(l0):.1f}; {l0.min():.1f}–{l0.max():.1f} | {np.median(dead):.0f}; {dead.max():.0f} "
            f"| {np.median(col['fvu']):.3f}; {col['fvu'].max():.3f} "
            f"| {np.median(col['median_best_r']):.2f}; {col['median_best_r'].min():.2f} | {', '.join(atoms) or '–'} "
            f"| {sum(all(r['passes'].values()) for r in sub)}/{len(sub)} | {per} |")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a quarter of the cells (a smoke run)")
    parser.add_argument("--skip-model", action="store_true", help="skip the fitted-model embeddings (slow)")
    parser.add_argument("--skip-simulator", action="store_true", help="only the synthetic embeddings")
    parser.add_argument("--settings", default="default,auto,tanh,before",
                        help="comma-separated: default,auto,tanh,before,april (april@0.4: the April recipe at l1 0.4)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--cache", type=Path, metavar="DIR",
                        help="keep the simulated datasets and their fitted-model embeddings here and reuse them")
    args = parser.parse_args(argv)
    os.environ.setdefault("NUMBA_THREADING_LAYER", "workqueue")
    import torch

    torch.set_num_threads(1)
    chosen = pick_settings(args.settings)
    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        cases = list(synthetic_cases(args.quick))
        if not args.skip_simulator:
            cases += list(simulator_cases(Path(tmp), args.quick, not args.skip_model, cache=args.cache))
        for name, make in cases:
            x, truth, dictionary = make()
            for setting, (config, train, sweep) in chosen.items():
                row = {"embedding": name, "setting": setting,
                       **run_one(x, truth, dictionary, config=config, train=train, sweep=sweep)}
                rows.append(row)
                print(json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()}),
                      file=sys.stderr, flush=True)
    out = {"targets": TARGETS, "quick": args.quick, "rows": rows,
           "machine": {"cpus": os.cpu_count(), "load_average_end": os.getloadavg()[0]}}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = args.out.with_suffix(".tmp")
    tmp_out.write_text(json.dumps(out, indent=1))
    tmp_out.replace(args.out)
    print(SUMMARY_HEAD)
    for setting in chosen:
        print(summary_row(rows, setting))
    for setting in chosen:
        print(f"\n### {setting}\n\n" + table(rows, setting))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
