"""`featurelens train`: train a sparse autoencoder on an embedding and store it in an analysis.

Writes ``sae.pt``, ``sae.json``, ``metrics.json``, ``features.parquet`` and ``activations.npz``
into the analysis folder (atomically, as one step). Re-running with identical data and
settings reuses the stored result unless ``--force`` is given.
"""
from __future__ import annotations

import argparse
from typing import Any

HELP = "Train a sparse autoencoder on an embedding (writes sae.pt, metrics, features, activations)."
DESCRIPTION = """Train a sparse autoencoder (SAE) on a cell embedding.

examples:
  featurelens train data.h5ad --embedding X_multiDGD --out analyses/bm
  featurelens train data.h5ad --embedding X_scVI --out analyses/bm --preset paper
  featurelens train data.h5ad --embedding X_scVI --out analyses/bm --arch topk --k 32 --expansion 50
  featurelens train data.h5ad --embedding X_scVI --out analyses/bm --seeds 0,42,9307
  featurelens train data.h5ad --scvi-model scvi_model/ --out analyses/bm    # scvi-tools latent + decoder

presets: default (good practice: L1 independent of the number of latents, centred/scaled input,
unit-norm decoder, dead latents resampled, early stopping), auto (the default with the L1 strength
chosen by a short sweep: the knee of the FVU–L0 frontier), fast (the paper's objective reached in
minutes), paper (the paper's case study exactly)."""

ARCHS = ("vanilla", "relu", "topk", "batchtopk", "matryoshka", "jumprelu")

def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("data", help="AnnData .h5ad (or an embedding .npy/.csv/.pt)")
    parser.add_argument("--embedding", metavar="KEY", help=".obsm key of the embedding (for .h5ad input)")
    parser.add_argument("--out", required=True, metavar="ANALYSIS", help="analysis folder (created if missing)")
    parser.add_argument("--scvi-model", metavar="DIR",
                        help="a saved scvi-tools SCVI/LinearSCVI model folder (model.save(DIR)): its latent is the "
                             "embedding (.obsm[--embedding], default X_scVI, written there if missing) and its "
                             "generative model the decoder of annotate and steer (needs featurelens[scvi])")
    parser.add_argument("--cell-type", metavar="COL",
                        help=".obs column of cell types for local/regional/global characterisation "
                             "(default: auto-detect)")
    parser.add_argument("--max-regional-types", type=int, metavar="K",
                        help="a feature higher in 2..K cell types is regional, in more is global "
                             "(default: a quarter of the cell types, at least 2; 1 = local/global only)")
    parser.add_argument("--preset", choices=("default", "auto", "fast", "paper"), default="default",
                        help="starting settings; the options below override them (default: default; "
                             "auto: choose the L1 strength by a short sweep, the knee of FVU against L0)")
    parser.add_argument("--sweep-l1", metavar="W1,W2,...",
                        help="L1 strengths the auto preset tries (default 0.03,0.1,0.2,0.3,0.6,1)")
    parser.add_argument("--arch", choices=ARCHS, help="SAE architecture (default: the preset's, vanilla)")
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--hidden", type=int, metavar="N", help="number of latents")
    size.add_argument("--expansion", type=float, metavar="F", help="latents = F × embedding dimension")
    parser.add_argument("--l1", type=float, metavar="W",
                        help="L1 strength (vanilla, relu): per unit of input norm (default 0.2); on mean |z| "
                             "with the fast and paper presets")
    parser.add_argument("--penalty", choices=("l1", "tanh"),
                        help="sparsity penalty (vanilla, relu; default l1; tanh: sparser, try --l1 0.02)")
    parser.add_argument("--l1-scale", choices=("input", "mean"),
                        help="what --l1 multiplies: input (per unit of input norm, default) or mean (the paper's mean|z|)")
    parser.add_argument("--k", type=int, metavar="K", help="active latents per cell (topk, batchtopk, matryoshka; matryoshka default: the embedding dimension)")
    parser.add_argument("--decoder-norm", choices=("unit", "l1_weighted", "none"),
                        help="decoder-norm handling (default: the preset's)")
    parser.add_argument("--no-center", action="store_true", help="do not centre the input")
    parser.add_argument("--no-scale", action="store_true", help="do not rescale the input")
    parser.add_argument("--epochs", type=int, metavar="E", help="training epochs")
    parser.add_argument("--max-steps", type=int, metavar="N", help="cap on optimiser steps")
    parser.add_argument("--lr", type=float, help="Adam learning rate")
    parser.add_argument("--batch-size", type=int, metavar="B", help="cells per step")
    parser.add_argument("--val-fraction", type=float, metavar="F", help="held-out fraction (default 0.1)")
    parser.add_argument("--patience", type=int, metavar="P",
                        help="evaluations without improvement before stopping; 0 = never stop early")
    parser.add_argument("--no-shuffle", action="store_true",
                        help="visit training cells in file order every epoch (as the reference code does)")
    parser.add_argument("--seed", type=int, help="seed for init, split and shuffling (default 0)")
    parser.add_argument("--seeds", metavar="S1,S2,...",
                        help="train one SAE per seed and report their stability (the first is kept)")
    parser.add_argument("--device", help="auto (default), cpu, cuda, cuda:N or mps")
    parser.add_argument("--threads", type=int, metavar="N", help="CPU threads for torch (default: automatic; 1 on ≤ 2 cores or for small layers)")
    parser.add_argument("--force", action="store_true", help="re-train even if the analysis has this exact SAE")


def sae_request(args: argparse.Namespace):
    """The :class:`~core.sae.request.SAERequest` of the command-line options (InputError if they clash)."""
    from core.base.errors import InputError
    from core.sae.request import SAERequest
    from core.sae.robustness import parse_seeds

    text = getattr(args, "sweep_l1", None)
    try:
        sweep_l1 = tuple(float(v) for v in text.split(",") if v.strip()) if text else None
    except ValueError:
        raise InputError(f"--sweep-l1 must be comma-separated numbers (got {text!r})",
                         fix="e.g. --sweep-l1 0.03,0.1,0.3,1") from None
    return SAERequest(
        preset=args.preset, arch=args.arch, hidden=args.hidden, expansion=args.expansion, l1=args.l1,
        penalty=getattr(args, "penalty", None), l1_scale=getattr(args, "l1_scale", None), k=args.k,
        decoder_norm=args.decoder_norm, center=False if args.no_center else None,
        scale=False if args.no_scale else None, epochs=args.epochs, max_steps=args.max_steps, lr=args.lr,
        batch_size=args.batch_size, val_fraction=args.val_fraction, patience=args.patience,
        shuffle=False if args.no_shuffle else None, seed=args.seed,
        seeds=tuple(parse_seeds(args.seeds)) if args.seeds else None, device=args.device, sweep_l1=sweep_l1)


def run(args: argparse.Namespace) -> int:
    from core.base.errors import InputError

    from core.base.threads import set_threads_override

    set_threads_override(args.threads)  # every later automatic choice uses it (core.base.threads)
    request = sae_request(args)
    sae_cfg, train_cfg, seeds = request.configs()
    sweep = request.sweep()

    ds = _load(args)
    if ds.embedding is None:
        raise InputError(f"{args.data} has no embedding to train on",
                         fix="pass --embedding KEY (an .obsm key); `featurelens validate DATA` lists them")
    from core.sae import check_trainable

    # refused before the analysis folder is created or touched: finite, ≥ 2 varying dimensions
    x = check_trainable(ds.embedding, what=f"embedding {args.embedding or args.data}")
    sae_cfg.hidden_size(x.shape[1])  # fail fast on hidden < input
    train_cfg.split_sizes(x.shape[0])
    if args.max_regional_types is not None and args.max_regional_types < 1:
        raise InputError(f"--max-regional-types must be at least 1 (got {args.max_regional_types})",
                         fix="e.g. --max-regional-types 6; 1 gives the paper's local/global split")

    from core.store.analysis import Analysis

    analysis = Analysis.open_or_create(args.out, dataset=ds.source, seed=train_cfg.seed)
    from core.base.progress import ProgressBar
    from core.sae.pipeline import sae_step_inputs, train_into_analysis

    inputs = sae_step_inputs(x, sae_config=sae_cfg, train_config=train_cfg, seeds=seeds, data_ref=ds.source,
                             sweep=sweep, cell_types=ds.cell_types, max_regional_types=args.max_regional_types)
    if not args.force and analysis.cached("sae", inputs=inputs):
        print(f"{analysis.path}: SAE already trained with these data and settings (use --force to re-train)")
    metrics = train_into_analysis(analysis, x, sae_config=sae_cfg, train_config=train_cfg, seeds=seeds, sweep=sweep,
                                  data_ref=ds.source, cell_types=ds.cell_types, progress=ProgressBar("training"),
                                  force=args.force, max_regional_types=args.max_regional_types)
    print_summary(metrics)
    print(f"wrote {analysis.path}/{{sae.pt, sae.json, metrics.json, features.parquet, activations.npz}}")
    return 0


def _load(args: argparse.Namespace):
    """The dataset of ``args``; with ``--scvi-model`` its latent as the embedding and the model as the decoder."""
    from core.data.load import load_dataset

    if not getattr(args, "scvi_model", None):
        return load_dataset(args.data, embedding=args.embedding, cell_type=args.cell_type)
    from core.model.scvi import prepare_scvi_dataset

    info = prepare_scvi_dataset(args.data, args.scvi_model, key=args.embedding)
    if info["written"]:
        print(f"wrote the scvi-tools model's latent ({info['n_latent']} dimensions) to .obsm[{info['key']!r}] "
              f"of {args.data}")
    ds = load_dataset(args.data, embedding=info["key"], cell_type=args.cell_type, counts_layer=info["counts_layer"])
    ds.source["decoder"] = info["model_dir"]
    return ds


def _threads_note(training: dict[str, Any]) -> str:
    n = training.get("threads")
    return f", {n} thread{'s' if n != 1 else ''}" if n and training.get("device") == "cpu" else ""


def _count(n) -> str:
    """A count, or "–" when an older analysis did not record it."""
    return "–" if n is None else str(n)


def _span(k: int) -> str:
    return "2" if k == 2 else f"2–{k}"


def _quality_lines(s: dict[str, Any]) -> list[str]:
    """SAEBench-style quality and expression fidelity of a metrics summary ([] for an old analysis)."""
    if s.get("explained_variance") is None:
        return []
    val = s.get("validation") or {}
    held = f" (held-out {val['explained_variance']:.3f})" if val.get("explained_variance") is not None else ""
    dec = s.get("max_decoder_cosine")
    lines = [f"quality: explained variance {s['explained_variance']:.3f}{held}, cos(x, x̂) {s['cossim']:.3f}, "
             f"‖x̂‖/‖x‖ {s['l2_ratio']:.3f}, relative bias {s['relative_reconstruction_bias']:.3f}"
             + (f", max decoder cosine {dec:.3f} (median per feature {s['median_max_decoder_cosine']:.3f})"
                if dec is not None else "")]
    fid = s.get("fidelity")
    if fid is None:
        lines.append("expression fidelity: no decoder")
    elif fid.get("unavailable"):
        lines.append(f"expression fidelity: not measured ({fid['unavailable']})")
    else:
        score = "undefined" if fid.get("fidelity") is None else f"{fid['fidelity']:.3f}"
        lines.append(f"expression fidelity {score} on {fid['n_cells']} held-out cells (log-likelihood per cell: "
                     f"embedding {fid['loglik_original']:.2f}, SAE reconstruction {fid['loglik_reconstruction']:.2f}, "
                     f"mean embedding {fid['loglik_mean']:.2f})")
    return lines


def sweep_lines(swept: dict[str, Any] | None) -> list[str]:
    """The auto preset's sweep as a small table ([] without one)."""
    if not swept:
        return []
    lines = [f"sparsity sweep ({swept['cells']:,} cells, {swept['epochs']} epochs each; chosen: {swept['rule']}):",
             f"  {'L1':>6}  {'L0':>7}  {'L0 %':>6}  {'FVU':>6}  {'dead %':>6}"]
    for i, r in enumerate(swept["rows"]):
        mark = "  ← chosen" if i == swept["chosen"] else ""
        lines.append(f"  {r['l1']:>6g}  {r['l0']:>7.1f}  {100 * r['l0_fraction']:>6.1f}  {r['fvu']:>6.3f}  "
                     f"{100 * r['dead_fraction']:>6.1f}{mark}")
    return lines


def print_summary(metrics: dict[str, Any]) -> None:
    for line in sweep_lines(metrics.get("sparsity_sweep")):
        print(line)
    s, t = metrics["summary"], metrics.get("training", {})
    final = t.get("final") or t.get("best") or {}
    sae = t.get("sae", {})
    print(f"SAE: {sae.get('arch', '?')}, {t.get('d_in', s.get('d_in'))} → {t.get('hidden', s.get('hidden'))} latents; "
          f"{t.get('steps', '?')} steps in {t.get('elapsed_s', 0):.1f} s on {t.get('device', '?')}"
          f"{_threads_note(t)} "
          f"({t.get('stop_reason', '?')})")
    if final:
        print(f"  validation: loss {final['val_loss']:.5g}, MSE {final['val_mse']:.5g}, FVU {final['val_fvu']:.4f} "
              f"(epoch {final['epoch']:g})")
    print(f"  all {s['n_cells']} cells: MSE {s['mse']:.5g}, FVU {s['fvu']:.4f}, L0 {s['l0']:.1f} latents per cell")
    print(f"  live {s['live']} / {s['hidden']} (dead {100 * s['dead_fraction']:.1f} %), "
          f"redundant (Pearson > {s['redundancy_threshold']:g}) {s['redundant']}")
    if s.get("local") is not None and (s.get("local") or s.get("regional") or s.get("global")):
        k = s.get("max_regional_types")
        print(f"  local {s['local']} / regional {_count(s.get('regional'))} / global {s['global']} features "
              f"(by cell type{f'; regional = {_span(k)} types' if k and k >= 2 else ''})")
    for line in _quality_lines(s):
        print("  " + line)
    rob = metrics.get("robustness")
    if rob:
        sm = rob["summary"]
        seeds = ", ".join(str(r["seed"]) for r in rob["per_seed"])
        print(f"  seeds {seeds}: live {sm['live']['mean']:.0f} ± {sm['live']['std']:.0f} "
              f"(CV {100 * (sm['live']['cv'] or 0):.1f} %), L0 {sm['l0']['mean']:.1f} ± {sm['l0']['std']:.1f}")
        if all(r.get("n_local") is not None for r in rob["per_seed"]):
            print("  local / regional / global per seed: " + ", ".join(
                f"{r['n_local']} / {_count(r.get('n_regional'))} / {r['n_global']}" for r in rob["per_seed"]))
        for p in rob["pairs"]:
            frac = p["matched_fraction"]
            print(f"    seeds {p['seed_a']}–{p['seed_b']}: {p['matched']} features match (cosine ≥ {rob['threshold']:g})"
                  + (f", {100 * frac:.1f} % of the smaller live set" if frac is not None else ""))
        if rob.get("stability"):
            from core.sae.stability import describe_stability

            print(f"  per feature, {describe_stability(rob['stability'])} (features.parquet: stability)")
