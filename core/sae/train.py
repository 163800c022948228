"""Train an SAE: seeded split, pre-shuffled tensor slicing, fused Adam, early stopping
(the loop itself is :func:`core.base.training_loop.run_training`).

The hot loop does no per-step host synchronisation (losses are summed on the device and read
at evaluation time), no DataLoader and no per-step allocation beyond the model's own tensors.
Vanilla/ReLU use hand-written gradients (``engine="auto"``), TopK/BatchTopK a sparse-aware
autograd path.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch

from core.base.progress import never_stop, no_progress
from core.base.threads import auto_threads, torch_threads
from core.base.training_loop import EarlyStopping, run_training
from core.sae.config import SAEConfig, TrainConfig, VanillaConfig
from core.sae.data import check_trainable, resolve_device
from core.sae.encode import iter_encoded
from core.sae.models import SparseAutoencoder, count_active
from core.sae.registry import build_sae

__all__ = ["train_sae", "TrainResult", "split_indices", "evaluate_normalized", "adam_optimizer"]

Progress = Callable[[float, float, str], None]
ShouldStop = Callable[[], bool]
SMALL_LAYER = 100_000  # weights below which one torch thread is used (see core.base.threads)
RESAMPLE_UNTIL = 0.5   # dead latents are resampled at evaluations in this first fraction of the steps
RESAMPLE_CELLS = 4096  # training cells whose residuals the resampled directions are drawn from


@dataclass
class TrainResult:
    """What :func:`train_sae` returns.

    ``sae``: the trained model (eval mode, on the training device). ``history``: one dict per
    evaluation (epoch, step, samples, elapsed_s, lr, train_loss, val_loss, val_mse, val_fvu,
    val_l0, val_live, train_dead). ``val_index``: the held-out cells (sorted indices into the
    data). ``stop_reason``: ``"completed"``, ``"max_steps"``, ``"early_stopping"`` or
    ``"should_stop"``. ``best``: the evaluation with the lowest validation loss; ``final``: the
    evaluation of the returned weights (``best`` when ``restore_best``, else the last one).
    """

    sae: SparseAutoencoder
    train_config: TrainConfig
    history: list[dict[str, Any]]
    val_index: np.ndarray
    stop_reason: str
    device: str
    elapsed_s: float
    best: dict[str, Any] = field(default_factory=dict)
    final: dict[str, Any] = field(default_factory=dict)
    threads: int = 1

    @property
    def config(self) -> SAEConfig:
        return self.sae.config

    def summary(self) -> dict[str, Any]:
        """JSON-able: configs, device, stop reason, time and the best evaluation."""
        return {
            "sae": self.config.to_dict(),
            "train": self.train_config.to_dict(),
            "d_in": self.sae.d_in,
            "hidden": self.sae.hidden,
            "device": self.device,
            "threads": self.threads,
            "stop_reason": self.stop_reason,
            "elapsed_s": round(self.elapsed_s, 3),
            "steps": self.history[-1]["step"] if self.history else 0,
            "best": self.best,
            "final": self.final,
        }


def split_indices(n_cells: int, *, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``(train_index, val_index)``: a seeded random split, each sorted."""
    n_train, n_val = TrainConfig(val_fraction=val_fraction, seed=seed).split_sizes(n_cells)
    perm = np.random.default_rng(seed).permutation(n_cells)
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


def evaluate_normalized(sae: SparseAutoencoder, xn: torch.Tensor, *, batch_size: int = 8192) -> dict[str, float]:
    """Validation numbers on normalised input ``xn`` (n, d_in): ``val_loss`` (MSE + sparsity
    penalty, inference-mode latents; Matryoshka: its prefix objective), ``val_mse`` (in raw units), ``val_fvu``, ``val_l0``
    (mean latents firing per cell), ``val_live`` (latents firing on at least one cell)."""
    n = xn.shape[0]
    sse = pen = l0 = 0.0
    fired = torch.zeros(sae.hidden, dtype=torch.bool, device=xn.device)
    for _, xb, z, xb_hat in iter_encoded(sae, xn, batch_size=batch_size, normalized=True):
        sse += float((xb_hat - xb).pow(2).sum())
        pen += float(sae.validation_penalty(xb, z)) * xb.shape[0]
        counts = count_active(z)
        l0 += float(counts.sum())
        fired |= counts > 0
    total_var = float((xn - xn.mean(0)).pow(2).sum())
    mse = sse / (n * sae.d_in)
    scale2 = float(sae.input_scale) ** 2
    return {
        "val_loss": mse + pen / n,
        "val_mse": mse * scale2,
        "val_fvu": sse / total_var if total_var > 0 else float("nan"),
        "val_l0": l0 / n,
        "val_live": int(fired.sum()),
    }


def train_sae(
    data: Any,
    *,
    config: SAEConfig | None = None,
    train: TrainConfig | None = None,
    progress: Progress | None = None,
    should_stop: ShouldStop | None = None,
    on_eval: Callable[[dict[str, Any]], None] | None = None,
    threads: int | None = None,
) -> TrainResult:
    """Train an SAE on ``data`` (n_cells, d_in): an array, tensor or iterable of chunks.

    ``config`` picks the architecture (default :class:`VanillaConfig`), ``train`` the
    optimisation (default :class:`TrainConfig`). ``progress(done_steps, total_steps, message)``
    is called a few times a second; when ``should_stop()`` returns True, training stops and the
    model so far (best weights if ``restore_best``) is returned with ``stop_reason="should_stop"``.
    Same data, configs and seed give identical weights on the same device. ``on_eval(row)``
    receives a copy of each history row as it is recorded (live loss/L0/dead charts).
    ``threads``: CPU threads for torch (None: :func:`core.base.threads.auto_threads`, 1 for layers
    under 100,000 weights); the previous setting is restored.
    """
    config = config or VanillaConfig()
    train = train or TrainConfig()
    x = check_trainable(data)  # finite, and at least 2 dimensions that vary
    d = x.shape[1]
    hidden = config.hidden_size(d)  # validates hidden vs input before any work
    if threads is None:
        threads = auto_threads(weights=d * hidden, small=SMALL_LAYER)
    with torch_threads(threads) as used:
        result = _train(x, config=config, train=train, progress=progress, should_stop=should_stop, on_eval=on_eval)
    result.threads = used
    return result


def _train(x: np.ndarray, *, config: SAEConfig, train: TrainConfig, progress: Progress | None,
           should_stop: ShouldStop | None, on_eval: Callable[[dict[str, Any]], None] | None) -> TrainResult:
    t_start = time.monotonic()
    train_idx, val_idx = split_indices(x.shape[0], val_fraction=train.val_fraction, seed=train.seed)
    device = resolve_device(train.device)
    sae, x_train, x_val = _normalized_start(x, train_idx, val_idx, config=config, train=train, device=device)
    opt = adam_optimizer(sae, train.lr, device)
    plan = _Plan.of(train, n_train=x_train.shape[0])
    batches, step, evaluate, after_eval = _loop_parts(sae, opt, x_train, x_val, config=config, train=train,
                                                      plan=plan, device=device, t_start=t_start)
    stopping = EarlyStopping(patience=train.patience, min_delta=train.min_delta,
                             module=sae if train.restore_best else None)
    loop = run_training(batches=batches, step=step, evaluate=evaluate, epochs=plan.epochs,
                        steps_per_epoch=plan.steps_per_epoch, max_steps=train.max_steps,
                        min_steps=train.min_steps or 0,
                        eval_every=train.eval_every or plan.steps_per_epoch, stopping=stopping,
                        after_eval=after_eval, on_eval=on_eval, progress=progress or no_progress,
                        should_stop=should_stop or never_stop, check_every_s=0.2, report_every_s=0.5,
                        eval_message=lambda row, epoch: _message(row, epoch + 1, plan.epochs))
    restored = stopping.restore()
    sae.penalty_weight = 1.0
    sae.eval()
    best_row = stopping.best_row or {}
    return TrainResult(sae=sae, train_config=train, history=loop.history, val_index=val_idx,
                       stop_reason=loop.stop_reason, device=str(device),
                       elapsed_s=time.monotonic() - t_start, best=dict(best_row),
                       final=dict(best_row if restored else loop.history[-1]))


def _normalized_start(x: np.ndarray, train_idx: np.ndarray, val_idx: np.ndarray, *, config: SAEConfig,
                      train: TrainConfig, device) -> tuple[SparseAutoencoder, torch.Tensor, torch.Tensor]:
    """The seeded SAE, its input normalisation fitted and its init calibrated on the training cells;
    ``(sae, normalised training cells, normalised validation cells)`` on ``device``."""
    sae = build_sae(config, d_in=x.shape[1], seed=train.seed).to(device)
    x_train = torch.from_numpy(x[train_idx]).to(device)
    x_val = torch.from_numpy(x[val_idx]).to(device)
    sae.fit_normalization_(x_train)
    with torch.no_grad():
        x_train = sae.normalize(x_train).contiguous()
        x_val = sae.normalize(x_val).contiguous()
    sae.train()
    sae.calibrate_init_(x_train[: max(train.batch_size, 4096)])
    return sae, x_train, x_val


@dataclass(frozen=True)
class _Plan:
    """Batch size, steps, the step where the linear learning-rate decay starts and the steps
    over which the sparsity penalty warms up."""

    n_train: int
    batch_size: int
    steps_per_epoch: int
    epochs: int
    total_steps: int
    decay_start: int
    warmup_steps: int = 0

    @classmethod
    def of(cls, train: TrainConfig, *, n_train: int) -> "_Plan":
        bs = min(train.batch_size, n_train)
        steps_per_epoch = -(-n_train // bs)
        epochs = train.planned_epochs(steps_per_epoch)
        total_steps = epochs * steps_per_epoch
        if train.max_steps is not None:
            total_steps = min(total_steps, train.max_steps)
        decay_start = int(total_steps * (1 - train.decay_fraction)) if train.lr_schedule == "linear_decay" \
            else total_steps
        return cls(n_train, bs, steps_per_epoch, epochs, total_steps, decay_start,
                   train.warmup_steps(total_steps))


def _loop_parts(sae: SparseAutoencoder, opt: torch.optim.Optimizer, x_train: torch.Tensor, x_val: torch.Tensor, *,
                config: SAEConfig, train: TrainConfig, plan: _Plan, device, t_start: float):
    """``(batches, step, evaluate, after_eval)`` for :func:`core.base.training_loop.run_training`; the hot
    ``step`` reads only this scope's locals (``plan`` is unpacked) and keeps its counters on the device."""
    fast = train.engine == "auto" and sae.has_fast_grads
    n_train, bs, total_steps, decay_start = plan.n_train, plan.batch_size, plan.total_steps, plan.decay_start
    clip, params = train.grad_clip, list(sae.parameters())
    dead_window = getattr(config, "dead_window", None) or n_train
    shuffle_gen = torch.Generator().manual_seed(train.seed + 1)
    resample_gen = torch.Generator().manual_seed(train.seed + 2)
    # on the device, read only at evaluations: steps since each latent fired; summed training loss
    since_fired = torch.zeros(sae.hidden, dtype=torch.long, device=device)
    loss_sum = torch.zeros((), device=device)
    count = {"loss_steps": 0, "samples": 0}

    def batches(epoch: int):
        order = torch.randperm(n_train, generator=shuffle_gen).to(device) if train.shuffle else None
        xs = x_train[order] if order is not None else x_train
        for start in range(0, n_train, bs):
            yield xs[start:start + bs]

    def step(xb: torch.Tensor, done: int) -> None:
        nonlocal since_fired
        if done >= decay_start:
            opt.param_groups[0]["lr"] = train.lr * (total_steps - done) / max(1, total_steps - decay_start)
        if done <= plan.warmup_steps:
            sae.penalty_weight = train.penalty_weight(done, total_steps)
        out = _gradients(sae, opt, xb, dead=None if fast else since_fired >= dead_window, clip=clip, params=params)
        opt.step()
        sae.constrain_()
        since_fired = torch.where(out.fired, 0, since_fired + xb.shape[0])
        loss_sum.add_(out.loss.detach())
        count["loss_steps"] += 1
        count["samples"] += xb.shape[0]

    def evaluate(epoch: int, done: int) -> dict[str, Any]:
        row = {
            "epoch": round(count["samples"] / n_train, 4),
            "step": done,
            "samples": count["samples"],
            "elapsed_s": round(time.monotonic() - t_start, 3),
            "lr": opt.param_groups[0]["lr"],
            "train_loss": float(loss_sum) / max(1, count["loss_steps"]),
            **evaluate_normalized(sae, x_val),
            "train_dead": int((since_fired >= dead_window).sum()),
        }
        sae.train()
        loss_sum.zero_()
        count["loss_steps"] = 0
        return row

    def after_eval(row: dict[str, Any]) -> None:
        nonlocal since_fired
        if config.resample_dead and row["step"] <= total_steps * RESAMPLE_UNTIL:
            since_fired = _resample(sae, opt, since_fired >= dead_window, x_train, since_fired, generator=resample_gen)

    return batches, step, evaluate, after_eval


def _gradients(sae: SparseAutoencoder, opt: torch.optim.Optimizer, xb: torch.Tensor, *, dead: torch.Tensor | None,
               clip: float | None, params: list[torch.nn.Parameter]):
    """One step's gradients into ``.grad``: hand-written when ``dead`` is None, else autograd
    (``dead`` marks latents dead in training, for AuxK); then clipped to global norm ``clip``.
    Returns the model's :class:`~core.sae.models.StepOut`."""
    if dead is None:
        out = sae.fast_grads_(xb)
    else:
        out = sae.loss(xb, dead=dead)
        opt.zero_grad(set_to_none=True)
        out.loss.backward()
    if clip is not None:
        torch.nn.utils.clip_grad_norm_(params, clip)
    return out


def _resample(sae: SparseAutoencoder, opt: torch.optim.Adam, dead: torch.Tensor, x_train: torch.Tensor,
              since_fired: torch.Tensor, *, generator: torch.Generator) -> torch.Tensor:
    """Re-initialise ``dead`` latents (see ``resample_dead_``), clear their Adam moments and
    restart their dead clocks; returns the new ``since_fired``."""
    if not bool(dead.any()):
        return since_fired
    sample = torch.randint(x_train.shape[0], (min(RESAMPLE_CELLS, x_train.shape[0]),), generator=generator)
    idx = sae.resample_dead_(dead, x_train[sample.to(x_train.device)], generator=generator)
    if idx.numel() == 0:
        return since_fired
    with torch.no_grad():
        for param, rows in ((sae.W_enc, idx), (sae.b_enc, idx), (sae.W_dec, None)):
            for moment in opt.state.get(param, {}).values():
                if isinstance(moment, torch.Tensor) and moment.shape == param.shape:
                    if rows is None:
                        moment[:, idx] = 0
                    else:
                        moment[rows] = 0
    since_fired = since_fired.clone()
    since_fired[idx] = 0
    return since_fired


def adam_optimizer(sae: SparseAutoencoder, lr: float, device: torch.device) -> torch.optim.Adam:
    """Adam over ``sae``'s parameters: fused where torch has it, else multi-tensor (foreach)."""
    params = list(sae.parameters())
    try:  # fused Adam: one kernel for all parameters (CPU since torch 2.4, CUDA, MPS)
        return torch.optim.Adam(params, lr=lr, fused=True)
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.Adam(params, lr=lr, foreach=device.type != "cpu" or None)


def _message(row: dict[str, Any], epoch: int, epochs: int) -> str:
    return (f"epoch {min(epoch, epochs)}/{epochs} · val loss {row['val_loss']:.4g} · "
            f"L0 {row['val_l0']:.1f} · live {row['val_live']}")
