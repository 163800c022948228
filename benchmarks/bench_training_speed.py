"""Benchmark: training speed of the default SAE trainer at paper scale (issue 14).

One repetition (``--child``, one fresh process) measures, on the same data in the same process:

1. samples/s of our default trainer (``train_sae`` with ``preset("default")``, 10,000 latents,
   a fixed number of steps, setup and its evaluation included) vs a reference-style loop
   (``nn.Linear`` encoder/decoder, ``DataLoader`` over a ``TensorDataset``, autograd, torch
   Adam (not fused), the reference's loss MSE + 1e-3·mean|z|, ``loss.item()`` per step), at
   batch 128 and 1024;
2. our default trainer vs a published SAE library's trainer (``overcomplete.sae.train_sae``,
   its ``SAE`` with a linear+ReLU encoder and unit-norm dictionary, loss ``mse_l1``), both for
   the same epochs on the same training cells, same batch and learning rate: samples/s, and
   FVU, L0 and dead fraction on all cells;
3. this machine's fp32 matmul peak (a large square ``torch.mm``) and the time of each GEMM shape
   of a training step, the FLOPs of one step (counted from ``VanillaSAE.fast_grads_``) and the
   fraction of peak our trainer reaches.

The parent (default) first tunes the library's L1 coefficient so that its L0 is within ±20 %
of ours (same protocol, bisection in log space), then runs ``--repeat`` children and reports
medians (ratios are taken within each child, then their median):

    python benchmarks/bench_training_speed.py               # ~10 min on 2 shared cores
    python benchmarks/bench_training_speed.py --long        # + full default training vs the library (~8 min)
    python benchmarks/bench_training_speed.py --quick       # smoke run (~20 s)

The library: ``pip install --no-deps overcomplete==0.3.0 einops`` (its declared dependencies
include torchvision, which would replace the CPU torch wheel; the SAE part needs only torch,
einops, numpy and scipy, so the package is imported without its top-level ``__init__``). When
it is missing that peer is skipped with a message. Writes
``benchmarks/results/training_speed.{json,md}``.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import statistics
import subprocess
import sys
import time
import types
from functools import partial
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see bench_sae_training.py

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from bench_sae_training import ReferenceSAE  # noqa: E402  (the reference's model, as in that benchmark)

N_CELLS, D, HIDDEN = 56_714, 20, 10_000
MARKER = "SPEED-RESULT "
LIBRARY = "overcomplete"


# ----------------------------------------------------------------------------- data
def make_data(n_cells: int, seed: int = 0) -> np.ndarray:
    """(n_cells, 20) float32: the training benchmark's planted sparse embedding."""
    from core.sae import planted_sparse_data

    return planted_sparse_data(n_cells, d=D, n_atoms=200, active=4.0, frequency_decay=0.5, noise=0.05,
                               offset=2.0, seed=seed).x


def default_configs(hidden: int, *, batch: int, **train_changes):
    """The default preset at ``hidden`` latents (the preset's own size is 50 × d_in = 1,000)."""
    from core.sae import preset

    cfg, tr = preset("default")
    return cfg.replace(hidden=hidden, expansion=None), tr.replace(batch_size=batch, **train_changes)


# ----------------------------------------------------------------------------- FLOPs and peak
def step_gemms(batch: int, d: int, hidden: int) -> list[tuple[str, tuple[int, int], tuple[int, int]]]:
    """The matrix products of one ``VanillaSAE.fast_grads_`` step as (name, A shape, B shape)."""
    b, h = batch, hidden
    return [
        ("encoder z = x W_encᵀ", (b, d), (d, h)),
        ("decoder x̂ = z W_decᵀ", (b, h), (h, d)),
        ("grad W_dec = gᵀ z", (d, b), (b, h)),
        ("grad z = g W_dec", (b, d), (d, h)),
        ("grad W_enc = gzᵀ x", (h, b), (b, d)),
    ]


def flops_per_step(batch: int, d: int, hidden: int) -> int:
    """Matmul FLOPs (2 per multiply-add) of one training step: 5 GEMMs of b·d·h each, 10·b·d·h.

    The reference's autograd step does the same five (no gradient for the input)."""
    return sum(2 * a[0] * a[1] * bb[1] for _, a, bb in step_gemms(batch, d, hidden))


def _best_time(fn, reps: int) -> float:
    fn()
    best = math.inf
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def matmul_peaks(batch: int, d: int, hidden: int, *, square: int = 4096, reps: int = 5) -> dict:
    """Peak fp32 GFLOP/s: a ``square``² ``torch.mm`` (the machine's peak) and each training GEMM
    shape alone (best of ``reps``; the small shapes are repeated 20× per timing)."""
    a, b = torch.randn(square, square), torch.randn(square, square)
    out = {"square_n": square, "square_gflops": 2 * square ** 3 / _best_time(lambda: a @ b, reps) / 1e9, "shapes": []}
    total_s = 0.0
    for name, sa, sb in step_gemms(batch, d, hidden):
        x, y = torch.randn(*sa), torch.randn(*sb)
        t = _best_time(lambda x=x, y=y: [torch.mm(x, y) for _ in range(20)], reps) / 20
        total_s += t
        out["shapes"].append({"gemm": name, "shape": f"({sa[0]}×{sa[1]})@({sb[0]}×{sb[1]})", "ms": t * 1e3,
                              "gflops": 2 * sa[0] * sa[1] * sb[1] / t / 1e9})
    out["step_gemms_ms"] = total_s * 1e3  # the five GEMMs back to back: a lower bound on a step
    out["step_gemms_gflops"] = flops_per_step(batch, d, hidden) / total_s / 1e9
    return out


# ----------------------------------------------------------------------------- 1. trainer vs reference loop

def reference_loop(x: np.ndarray, *, hidden: int, batch: int, steps: int, seed: int = 0) -> float:
    """Wall seconds of ``steps`` reference-style steps (model, DataLoader and optimiser set-up included)."""
    from torch.utils.data import DataLoader, TensorDataset

    t0 = time.perf_counter()
    torch.manual_seed(seed)
    model = ReferenceSAE(x.shape[1], hidden)
    loader = DataLoader(TensorDataset(torch.from_numpy(x)), batch_size=batch, shuffle=True)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)  # default: neither fused nor foreach on CPU
    criterion = nn.MSELoss()
    done, total = 0, 0.0
    while done < steps:
        for (xb,) in loader:
            opt.zero_grad()
            x_hat, z = model(xb)
            loss = criterion(x_hat, xb) + 1e-3 * torch.mean(torch.abs(z))
            loss.backward()
            opt.step()
            total += loss.item()
            done += 1
            if done == steps:
                break
    return time.perf_counter() - t0


def our_trainer(x: np.ndarray, *, hidden: int, batch: int, steps: int, threads: int, seed: int = 0) -> float:
    """Wall seconds of ``train_sae`` with the default preset for ``steps`` steps (set-up and the
    evaluation at the end included)."""
    from core.sae import train_sae

    cfg, tr = default_configs(hidden, batch=batch, max_steps=steps, seed=seed)
    t0 = time.perf_counter()
    train_sae(x, config=cfg, train=tr, threads=threads)
    return time.perf_counter() - t0


# ----------------------------------------------------------------------------- 2. a published library
def load_library():
    """``overcomplete.sae`` or None. Its top-level ``__init__`` imports the vision models (timm,
    torchvision, opencv); the SAE subpackage does not need them, so on that ImportError the
    package is registered without running its ``__init__`` and the subpackage imported."""
    try:
        import overcomplete.sae as ocs
        return ocs
    except ImportError:
        for k in [k for k in sys.modules if k == LIBRARY or k.startswith(LIBRARY + ".")]:
            del sys.modules[k]
    spec = importlib.util.find_spec(LIBRARY)
    if spec is None or not spec.submodule_search_locations:
        return None
    pkg = types.ModuleType(LIBRARY)
    pkg.__path__, pkg.__spec__ = list(spec.submodule_search_locations), spec
    sys.modules[LIBRARY] = pkg
    try:
        import overcomplete.sae as ocs
        return ocs
    except ImportError:
        del sys.modules[LIBRARY]
        return None


def library_version() -> str | None:
    try:
        from importlib.metadata import version

        return version(LIBRARY)
    except Exception:  # noqa: BLE001
        return None


def equivalent_penalty(l1: float, batch: int, d: int) -> float:
    """overcomplete's ``mse_l1`` adds ``penalty · Σ|z|`` over the whole batch; ours adds
    ``l1 · Σ_f z_f‖d_f‖/√d_in`` per cell averaged over the batch with unit decoder columns
    (both on the same MSE, mean over batch × d): equal when ``penalty = l1 / (batch · √d)``."""
    return l1 / (batch * math.sqrt(d))


def _fvu_l0(encode_decode, xn: torch.Tensor, hidden: int) -> dict:
    sse, l0, fired = 0.0, 0.0, torch.zeros(hidden, dtype=torch.bool)
    with torch.inference_mode():
        for s in range(0, xn.shape[0], 8192):
            xb = xn[s:s + 8192]
            z, x_hat = encode_decode(xb)
            sse += float((x_hat - xb).pow(2).sum())
            active = z > 0
            l0 += float(active.sum())
            fired |= active.any(0)
    return {"fvu": sse / float((xn - xn.mean(0)).pow(2).sum()), "l0": l0 / xn.shape[0],
            "dead_fraction": 1 - int(fired.sum()) / hidden}


def train_ours(x: np.ndarray, *, hidden: int, batch: int, epochs: int, threads: int, seed: int = 0) -> dict:
    """The default trainer for ``epochs`` epochs; speed on its training cells, quality on all cells."""
    from core.sae import train_sae

    cfg, tr = default_configs(hidden, batch=batch, epochs=epochs, seed=seed, min_steps=None)  # exactly `epochs`
    t0 = time.perf_counter()
    res = train_sae(x, config=cfg, train=tr, threads=threads)
    wall = time.perf_counter() - t0
    sae = res.sae
    n_train = x.shape[0] - res.val_index.size
    epochs = res.history[-1]["epoch"]
    q = _fvu_l0(lambda xb: (lambda z: (z, sae.decode_normalized(z)))(sae.activate(sae.pre_activation(xb))),
                sae.normalize(torch.from_numpy(x)), sae.hidden)
    return {"wall_s": wall, "samples": n_train * epochs, "samples_per_s": n_train * epochs / wall,
            "epochs_done": res.history[-1]["epoch"], "stop_reason": res.stop_reason, **q}


def train_library(ocs, x: np.ndarray, *, hidden: int, batch: int, epochs: int, penalty: float, lr: float = 1e-3,
                  seed: int = 0) -> dict:
    """overcomplete's own ``train_sae`` loop (DataLoader, its ``mse_l1``, Adam at ``lr``, its
    default gradient clipping, ``monitoring=0``: its fastest setting) on the same training cells,
    centred and scaled like ours."""
    from torch.utils.data import DataLoader, TensorDataset

    from core.sae.train import split_indices

    train_idx, _ = split_indices(x.shape[0], val_fraction=0.1, seed=seed)
    xt = torch.from_numpy(x)
    mean = xt[train_idx].mean(0)
    scale = (xt[train_idx] - mean).pow(2).mean().sqrt()
    xn = (xt - mean) / scale
    t0 = time.perf_counter()
    torch.manual_seed(seed)
    model = ocs.SAE(x.shape[1], hidden)
    loader = DataLoader(TensorDataset(xn[train_idx].contiguous()), batch_size=batch, shuffle=True)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    criterion = partial(ocs.mse_l1, penalty=penalty)
    ocs.train_sae(model, loader, criterion, opt, nb_epochs=epochs, monitoring=0, device="cpu")
    wall = time.perf_counter() - t0
    model.eval()

    def enc_dec(xb):
        _, z, x_hat = model(xb)
        return z, x_hat

    q = _fvu_l0(enc_dec, xn, hidden)
    return {"wall_s": wall, "samples": train_idx.size * epochs, "samples_per_s": train_idx.size * epochs / wall,
            "penalty": penalty, **q}


def tune_penalty(ocs, x: np.ndarray, *, target_l0: float, hidden: int, batch: int, epochs: int, start: float,
                 max_runs: int = 7, tol: float = 0.2, log=print) -> dict:
    """Bisection in log space on the library's L1 coefficient until its L0 is within ``tol`` of ``target_l0``."""
    lo = hi = None
    p, tried = start, []
    for _ in range(max_runs):
        r = train_library(ocs, x, hidden=hidden, batch=batch, epochs=epochs, penalty=p)
        tried.append({"penalty": p, "l0": r["l0"], "fvu": r["fvu"]})
        log(f"  tune: penalty {p:.3g} → L0 {r['l0']:.2f} (target {target_l0:.2f}), FVU {r['fvu']:.4f}")
        if abs(r["l0"] / target_l0 - 1) <= tol:
            return {"penalty": p, "tried": tried, "within_tolerance": True}
        if r["l0"] > target_l0:
            lo = p  # too dense: more penalty
        else:
            hi = p
        p = math.sqrt(lo * hi) if lo and hi else (p * 3 if hi is None else p / 3)
    best = min(tried, key=lambda t: abs(math.log(t["l0"] / target_l0)) if t["l0"] > 0 else math.inf)
    return {"penalty": best["penalty"], "tried": tried, "within_tolerance": False}


def long_comparison(*, penalty: float, seed: int, threads: int, tries: int = 2, log=print) -> dict:
    """One run (not a median): our full default training (30 epochs) vs the library
    for the same number of epochs, its L1 re-adjusted (up to ``tries`` runs, each ~4 min here) until its L0 is within
    ±20 % of ours."""
    from core.sae import train_sae

    ocs = load_library()
    x = make_data(N_CELLS, seed)
    cfg, tr = default_configs(HIDDEN, batch=128, seed=seed)
    t0 = time.perf_counter()
    res = train_sae(x, config=cfg, train=tr, threads=threads)
    wall = time.perf_counter() - t0
    sae = res.sae
    epochs = int(math.ceil(res.history[-1]["epoch"]))
    n_train = x.shape[0] - res.val_index.size
    ours = {"wall_s": wall, "epochs_done": res.history[-1]["epoch"], "stop_reason": res.stop_reason,
            "samples_per_s": n_train * res.history[-1]["epoch"] / wall,
            **_fvu_l0(lambda xb: (lambda z: (z, sae.decode_normalized(z)))(sae.activate(sae.pre_activation(xb))),
                      sae.normalize(torch.from_numpy(x)), sae.hidden)}
    log(f"long: ours {ours['epochs_done']} epochs in {wall:.0f} s, FVU {ours['fvu']:.4f}, L0 {ours['l0']:.1f}")
    lib_runs = []
    p = penalty
    for _ in range(tries):
        r = train_library(ocs, x, hidden=HIDDEN, batch=128, epochs=epochs, penalty=p, seed=seed)
        lib_runs.append(r)
        log(f"long: library L1 {p:.3g}, {epochs} epochs in {r['wall_s']:.0f} s, FVU {r['fvu']:.4f}, L0 {r['l0']:.1f}")
        ratio = r["l0"] / ours["l0"]
        if abs(ratio - 1) <= 0.2:
            break
        p *= ratio ** 0.5  # denser than ours → more penalty
    return {"ours": ours, "library": lib_runs, "epochs": epochs}


# ----------------------------------------------------------------------------- one repetition
def sizes(quick: bool) -> dict:
    if quick:
        return {"n_cells": 3_000, "hidden": 1_000, "steps": {128: 20, 1024: 5}, "epochs": 1, "square": 512}
    return {"n_cells": N_CELLS, "hidden": HIDDEN, "steps": {128: 400, 1024: 100}, "epochs": 2, "square": 4096}


def one_run(*, quick: bool, seed: int, threads: int, penalty: float | None) -> dict:
    """Everything above once, in this process. ``penalty``: the library's L1 coefficient (None:
    :func:`equivalent_penalty` of the default ``l1``)."""
    torch.set_num_threads(threads)
    sz = sizes(quick)
    x = make_data(sz["n_cells"], seed)
    hidden = sz["hidden"]
    out: dict = {"size": sz, "loadavg_start": os.getloadavg(), "threads": threads}
    # warm-up: thread pool, allocator, page faults (not timed)
    our_trainer(x, hidden=hidden, batch=128, steps=10, threads=threads, seed=seed)
    reference_loop(x, hidden=hidden, batch=128, steps=10, seed=seed)
    out["throughput"] = {}
    for batch, steps in sz["steps"].items():
        ref_s = reference_loop(x, hidden=hidden, batch=batch, steps=steps, seed=seed)
        ours_s = our_trainer(x, hidden=hidden, batch=batch, steps=steps, threads=threads, seed=seed)
        gf = flops_per_step(batch, D, hidden) * steps / 1e9
        out["throughput"][str(batch)] = {
            "steps": steps, "ours_s": ours_s, "reference_s": ref_s,
            "ours_samples_per_s": batch * steps / ours_s, "reference_samples_per_s": batch * steps / ref_s,
            "speedup": ref_s / ours_s, "ours_gflops": gf / ours_s, "reference_gflops": gf / ref_s}
    # 2. the library, same data / epochs / batch / lr
    cfg, _ = default_configs(hidden, batch=128)
    ours = train_ours(x, hidden=hidden, batch=128, epochs=sz["epochs"], threads=threads, seed=seed)
    out["ours_train"] = ours
    ocs = load_library()
    if ocs is None:
        out["library"] = {"available": False,
                          "reason": f"{LIBRARY} is not installed (pip install --no-deps {LIBRARY}==0.3.0 einops)"}
    else:
        p = penalty if penalty is not None else equivalent_penalty(cfg.l1, 128, D)
        lib = train_library(ocs, x, hidden=hidden, batch=128, epochs=sz["epochs"], penalty=p, seed=seed)
        out["library"] = {"available": True, "name": LIBRARY, "version": library_version(), **lib,
                          "speedup": lib["wall_s"] / ours["wall_s"], "l0_ratio": lib["l0"] / ours["l0"]}
    # 3. matmul peak
    peaks = matmul_peaks(128, D, hidden, square=sz["square"])
    out["peak"] = peaks
    tp = out["throughput"]["128"]
    out["peak_fraction"] = {"ours_of_square": tp["ours_gflops"] / peaks["square_gflops"],
                            "reference_of_square": tp["reference_gflops"] / peaks["square_gflops"],
                            "ours_of_step_gemms": tp["ours_gflops"] / peaks["step_gemms_gflops"],
                            "ours_train_of_square": flops_per_step(128, D, hidden) / 128 * ours["samples_per_s"]
                            / 1e9 / peaks["square_gflops"]}
    out["loadavg_end"] = os.getloadavg()
    return out


def suite_metrics(r: dict) -> dict:
    """Flat numbers for ``benchmarks/suite.py`` (medians across runs are taken there)."""
    t128 = r["throughput"]["128"]
    m = {"samples_per_s": t128["ours_samples_per_s"], "reference_samples_per_s": t128["reference_samples_per_s"],
         "speedup": t128["speedup"], "peak_gflops": r["peak"]["square_gflops"],
         "ours_gflops": t128["ours_gflops"], "peak_fraction": r["peak_fraction"]["ours_of_square"],
         "ours_fvu": r["ours_train"]["fvu"], "ours_l0": r["ours_train"]["l0"],
         "ours_train_samples_per_s": r["ours_train"]["samples_per_s"]}
    if "1024" in r["throughput"]:
        t = r["throughput"]["1024"]
        m.update(samples_per_s_1024=t["ours_samples_per_s"], reference_samples_per_s_1024=t["reference_samples_per_s"],
                 speedup_1024=t["speedup"])
    lib = r["library"]
    if lib.get("available"):
        m.update(library_samples_per_s=lib["samples_per_s"], library_fvu=lib["fvu"], library_l0=lib["l0"],
                 library_speedup=lib["speedup"])
    return m


# ----------------------------------------------------------------------------- parent: tune, repeat, report
def _child(args, penalty: float | None) -> dict:
    cmd = [sys.executable, __file__, "--child", "--seed", str(args.seed), "--threads", str(args.threads)]
    cmd += ["--quick"] if args.quick else []
    cmd += ["--penalty", repr(penalty)] if penalty is not None else []
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=args.timeout)
    line = next((ln for ln in reversed(proc.stdout.splitlines()) if ln.startswith(MARKER)), None)
    if proc.returncode != 0 or line is None:
        raise RuntimeError(f"child failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")
    return json.loads(line[len(MARKER):])


def _med(runs: list[dict], *path):
    vals = []
    for r in runs:
        v = r
        for p in path:
            v = v.get(p) if isinstance(v, dict) else None
        if isinstance(v, (int, float)):
            vals.append(v)
    return statistics.median(vals) if vals else None


def summarise(runs: list[dict]) -> dict:
    s = {"throughput": {}}
    for b in runs[0]["throughput"]:
        s["throughput"][b] = {k: _med(runs, "throughput", b, k) for k in runs[0]["throughput"][b]}
    s["ours_train"] = {k: _med(runs, "ours_train", k) for k in ("samples_per_s", "fvu", "l0", "dead_fraction",
                                                                "wall_s", "epochs_done")}
    lib = runs[0]["library"]
    s["library"] = ({k: _med(runs, "library", k) for k in ("samples_per_s", "fvu", "l0", "dead_fraction", "wall_s",
                                                           "speedup", "l0_ratio", "penalty")}
                    if lib.get("available") else {"available": False, "reason": lib["reason"]})
    if lib.get("available"):
        s["library"].update(available=True, name=lib["name"], version=lib["version"])
    s["peak"] = {"square_gflops": _med(runs, "peak", "square_gflops"),
                 "step_gemms_gflops": _med(runs, "peak", "step_gemms_gflops"),
                 "step_gemms_ms": _med(runs, "peak", "step_gemms_ms"),
                 "shapes": [{"gemm": sh["gemm"], "shape": sh["shape"],
                             "gflops": statistics.median(r["peak"]["shapes"][i]["gflops"] for r in runs)}
                            for i, sh in enumerate(runs[0]["peak"]["shapes"])]}
    s["peak_fraction"] = {k: _med(runs, "peak_fraction", k) for k in runs[0]["peak_fraction"]}
    return s


def markdown(res: dict) -> str:
    s, env = res["median"], res["environment"]
    sz = res["runs"][0]["size"]
    la = [round(r["loadavg_start"][0], 2) for r in res["runs"]] + [round(r["loadavg_end"][0], 2) for r in res["runs"]]
    lines = [
        f"{sz['n_cells']:,} cells × {D} dims → {sz['hidden']:,} latents; torch {env['torch']}, {env['threads']} "
        f"threads on {env['cpu_count']} cores; medians of {len(res['runs'])} runs, each a fresh process; 1-minute "
        f"load average {min(la)}–{max(la)} during the runs (shared machine: compare the same-run ratios).",
        "",
        "| batch | our default trainer | reference-style loop (DataLoader, autograd, Adam) | ratio |",
        "|---:|---:|---:|---:|",
    ]
    for b, t in s["throughput"].items():
        lines.append(f"| {b} | {t['ours_samples_per_s']:,.0f} samples/s | {t['reference_samples_per_s']:,.0f} samples/s "
                     f"| **{t['speedup']:.2f}×** |")
    o, lib = s["ours_train"], s["library"]
    lines += ["", f"Same {sz['epochs']} epochs, batch 128, lr 1e-3, same training cells; FVU, L0 and dead on all cells:", "",
              "| trainer | samples/s | FVU | L0 | dead |", "|---|---:|---:|---:|---:|",
              f"| ours (default preset, 10,000 latents) | {o['samples_per_s']:,.0f} | {o['fvu']:.4f} | {o['l0']:.2f} | "
              f"{100 * o['dead_fraction']:.1f} % |"]
    if lib.get("available"):
        lines.append(f"| {lib['name']} {lib['version']} `train_sae` (L1 {lib['penalty']:.3g}) | {lib['samples_per_s']:,.0f} "
                     f"| {lib['fvu']:.4f} | {lib['l0']:.2f} | {100 * lib['dead_fraction']:.1f} % |")
        lines += ["", f"Ours vs the library: **{lib['speedup']:.2f}×** the samples/s (median of same-run ratios); "
                  f"library L0 / ours {lib['l0_ratio']:.2f}."]
    else:
        lines += ["", f"Library peer skipped: {lib['reason']}."]
    pk, pf = s["peak"], s["peak_fraction"]
    lines += ["", f"Matmul peak (fp32): {pk['square_gflops']:.0f} GFLOP/s on a {res['runs'][0]['peak']['square_n']}² "
              f"`torch.mm`; the five GEMMs of a batch-128 step alone run at {pk['step_gemms_gflops']:.0f} GFLOP/s "
              f"({pk['step_gemms_ms']:.2f} ms). One step = 10·b·d·h = {flops_per_step(128, D, sz['hidden']) / 1e6:.0f} "
              f"MFLOP. Our trainer reaches {s['throughput']['128']['ours_gflops']:.1f} GFLOP/s = "
              f"**{100 * pf['ours_of_square']:.0f} % of peak** ({100 * pf['ours_of_step_gemms']:.0f} % of what its GEMM "
              f"shapes allow); the reference-style loop {100 * pf['reference_of_square']:.0f} %.", "",
              "| GEMM | shape | GFLOP/s alone |", "|---|---|---:|"]
    for sh in pk["shapes"]:
        lines.append(f"| {sh['gemm']} | {sh['shape']} | {sh['gflops']:.0f} |")
    if res.get("long"):
        lg = res["long"]
        o = lg["ours"]
        lines += ["", f"Full default training (one run, 1-minute load {lg['loadavg'][0]:.1f} at its end): ours with "
                  f"its whole default training, the library for the same {lg['epochs']} epochs (its L1 re-adjusted to our L0):", "",
                  "| trainer | epochs | wall s | samples/s | FVU | L0 | dead |", "|---|---:|---:|---:|---:|---:|---:|",
                  f"| ours (default preset) | {o['epochs_done']:g} | {o['wall_s']:.0f} | {o['samples_per_s']:,.0f} | "
                  f"{o['fvu']:.4f} | {o['l0']:.1f} | {100 * o['dead_fraction']:.1f} % |"]
        for r in lg["library"]:
            lines.append(f"| {LIBRARY} (L1 {r['penalty']:.3g}) | {lg['epochs']} | {r['wall_s']:.0f} | "
                         f"{r['samples_per_s']:,.0f} | {r['fvu']:.4f} | {r['l0']:.1f} | {100 * r['dead_fraction']:.1f} % |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--threads", type=int, default=int(os.environ.get("FEATURELENS_BENCH_THREADS", "2")))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true", help="small sizes (a smoke run, not for quoting)")
    ap.add_argument("--penalty", type=float, help="the library's L1 coefficient (default: tuned to our L0)")
    ap.add_argument("--no-tune", action="store_true", help="use the analytically equivalent L1 coefficient")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--timeout", type=float, default=1200)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--long", action="store_true",
                    help="only the single full-length comparison (default training vs the library, same epochs), "
                         "added to the existing JSON; uses its tuned L1")
    args = ap.parse_args(argv)
    if args.child:
        print(MARKER + json.dumps(one_run(quick=args.quick, seed=args.seed, threads=args.threads,
                                          penalty=args.penalty), default=float), flush=True)
        return 0
    out = args.out or ROOT / "benchmarks" / "results" / ("training_speed_quick" if args.quick else "training_speed")
    if args.long:
        res = json.loads(out.with_suffix(".json").read_text())
        penalty = args.penalty or res["median"]["library"]["penalty"]
        torch.set_num_threads(args.threads)
        res["long"] = {**long_comparison(penalty=penalty, seed=args.seed, threads=args.threads,
                                         log=lambda m: print(m, file=sys.stderr, flush=True)),
                       "loadavg": os.getloadavg()}
        out.with_suffix(".json").write_text(json.dumps(res, indent=2, default=float) + "\n")
        out.with_suffix(".md").write_text(markdown(res))
        print(markdown(res))
        return 0
    torch.set_num_threads(args.threads)
    tuning = None
    penalty = args.penalty
    ocs = load_library()
    if ocs is None:
        print(f"{LIBRARY} is not installed: the library peer is skipped "
              f"(pip install --no-deps {LIBRARY}==0.3.0 einops)", file=sys.stderr)
    elif penalty is None and not args.no_tune:
        sz = sizes(args.quick)
        x = make_data(sz["n_cells"], args.seed)
        ours = train_ours(x, hidden=sz["hidden"], batch=128, epochs=sz["epochs"], threads=args.threads, seed=args.seed)
        print(f"tuning {LIBRARY}'s L1 to our L0 {ours['l0']:.2f} …", file=sys.stderr, flush=True)
        cfg, _ = default_configs(sz["hidden"], batch=128)
        tuning = tune_penalty(ocs, x, target_l0=ours["l0"], hidden=sz["hidden"], batch=128, epochs=sz["epochs"],
                              start=equivalent_penalty(cfg.l1, 128, D),
                              log=lambda m: print(m, file=sys.stderr, flush=True))
        tuning["target_l0"] = ours["l0"]
        penalty = tuning["penalty"]
    runs = []
    for i in range(args.repeat):
        print(f"run {i + 1}/{args.repeat} …", file=sys.stderr, flush=True)
        runs.append(_child(args, penalty))
    res = {"environment": {"torch": torch.__version__, "threads": args.threads, "cpu_count": os.cpu_count(),
                           "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"), "quick": args.quick,
                           "when": time.strftime("%Y-%m-%dT%H:%M:%S")},
           "equivalent_penalty": equivalent_penalty(0.2, 128, D), "tuning": tuning,
           "median": summarise(runs), "runs": runs}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(res, indent=2, default=float) + "\n")
    out.with_suffix(".md").write_text(markdown(res))
    print(markdown(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
