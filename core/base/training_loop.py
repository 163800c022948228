"""One training skeleton: epochs of mini-batches, evaluation, early stopping, progress, cancel.

A trainer (the SAE, the built-in model, the simulation autoencoders) supplies only its parts:

* ``batches(epoch)``: the mini-batches of epoch ``epoch`` (0-based), shuffled as it likes;
* ``step(batch, done)``: one optimiser step (``done``: steps taken before this one);
* ``evaluate(epoch, done)``: one history row, a dict holding the loss early stopping watches;
* optionally ``after_eval(row)`` (e.g. dead-latent resampling) and ``on_eval(row)`` (live charts).

:func:`run_training` owns the loop; :class:`EarlyStopping` owns patience and the best weights.
The loop reads no tensor itself: a trainer that keeps its losses on the device synchronises with
the host only inside ``evaluate``.
"""
from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import torch

from core.base.errors import InputError
from core.base.progress import Cancelled, Progress, ShouldStop, never_stop, no_progress

__all__ = ["EarlyStopping", "LoopResult", "run_training"]

Row = dict[str, Any]


@dataclass
class EarlyStopping:
    """Patience on a validation loss, and the weights to restore.

    An evaluation is a *clear improvement* when its loss is below the last clear improvement by a
    relative ``min_delta`` (the first one always is, as is any after a non-finite reference).
    After ``patience`` evaluations without one, training stops (``None``: never). ``keep``:
    ``"improved"`` keeps the weights of the last clear improvement, ``"lowest"`` those of the lowest
    loss. The first ``warmup`` evaluations count for neither. ``module``: whose ``state_dict`` is
    copied (``None``: no weights are kept, only ``best`` and ``best_row``).
    """

    patience: int | None = None
    min_delta: float = 0.0
    keep: str = "improved"
    warmup: int = 0
    module: torch.nn.Module | None = None
    best: float = math.inf
    best_row: Row | None = None
    best_state: dict[str, Any] | None = None
    reference: float = math.inf
    bad: int = 0
    seen: int = 0

    def __post_init__(self) -> None:
        if self.keep not in ("improved", "lowest"):
            raise InputError(f"keep must be 'improved' or 'lowest' (got {self.keep!r})")

    def update(self, loss: float, row: Row) -> bool:
        """Record one evaluation's ``loss`` (its history ``row``); True when patience is spent."""
        self.seen += 1
        if self.seen <= self.warmup:
            return False
        ref = self.reference
        clear = not math.isfinite(ref) or loss < ref - self.min_delta * abs(ref)
        if clear:
            self.reference, self.bad = loss, 0
        else:
            self.bad += 1
        if clear if self.keep == "improved" else loss < self.best:
            self.best, self.best_row = loss, row
            if self.module is not None:
                self.best_state = copy.deepcopy(self.module.state_dict())
        return self.patience is not None and self.bad >= self.patience

    def restore(self) -> bool:
        """Load the kept weights into ``module``; False when none were kept."""
        if self.module is None or self.best_state is None:
            return False
        self.module.load_state_dict(self.best_state)
        return True


@dataclass
class LoopResult:
    """What :func:`run_training` returns: ``history`` (one row per evaluation), ``stop_reason``
    (``"completed"``, ``"max_steps"``, ``"early_stopping"`` or ``"should_stop"``), ``steps``
    taken and ``epochs`` begun."""

    history: list[Row] = field(default_factory=list)
    stop_reason: str = "completed"
    steps: int = 0
    epochs: int = 0


def run_training(
    *,
    batches: Callable[[int], Iterable[Any]],
    step: Callable[[Any, int], None],
    evaluate: Callable[[int, int], Row],
    epochs: int,
    steps_per_epoch: int,
    stopping: EarlyStopping,
    loss_key: str = "val_loss",
    max_steps: int | None = None,
    min_steps: int = 0,
    eval_every: int | None = None,
    after_eval: Callable[[Row], None] | None = None,
    on_eval: Callable[[Row], None] | None = None,
    progress: Progress = no_progress,
    should_stop: ShouldStop = never_stop,
    cancel: str = "return",
    check_every_s: float = 0.2,
    report_every_s: float = 0.5,
    label: str = "",
    eval_message: Callable[[Row, int], str] | None = None,
) -> LoopResult:
    """Run up to ``epochs`` epochs of ``steps_per_epoch`` steps (what ``batches(epoch)`` yields),
    capped at ``max_steps``.

    Evaluates every ``eval_every`` steps (``None``: at the end of each epoch) and always after the
    last step; ``stopping.update(row[loss_key], row)`` decides early stopping, after which
    ``after_eval(row)`` runs only when training goes on; it never stops training before ``min_steps``
    steps (patience spent earlier stops at the first evaluation from then on). ``should_stop()`` is asked after a step
    at most every ``check_every_s`` seconds; when it says stop, the steps so far are evaluated
    (unless they just were) and the loop returns, or :class:`~core.base.progress.Cancelled` is raised when
    ``cancel="raise"``. ``progress(steps_done, total_steps, message)`` is called after a step at
    most every ``report_every_s`` seconds (``"{label}epoch e/E"``) and, given ``eval_message``, at
    every evaluation (``eval_message(row, epoch)``).
    """
    if cancel not in ("return", "raise"):
        raise InputError(f"cancel must be 'return' or 'raise' (got {cancel!r})")
    planned = epochs * steps_per_epoch
    total = planned if max_steps is None else min(planned, max_steps)
    out = LoopResult()
    done, last_eval, last_check, last_report = 0, -1, 0.0, 0.0

    def record(epoch: int) -> bool:
        nonlocal last_eval
        last_eval = done
        row = evaluate(epoch, done)
        out.history.append(row)
        if on_eval is not None:
            on_eval(dict(row))
        stop = stopping.update(row[loss_key], row) and done >= min_steps
        if eval_message is not None:
            progress(done, total, eval_message(row, epoch))
        return stop

    def evaluate_and_decide(epoch: int) -> bool:
        """Evaluate; True (and ``stop_reason`` set) when early stopping says stop."""
        if record(epoch):
            out.stop_reason = "early_stopping"
            return True
        if after_eval is not None:
            after_eval(out.history[-1])
        return False

    epoch = 0
    for epoch in range(epochs):
        out.epochs = epoch + 1
        for batch in batches(epoch):
            step(batch, done)
            done += 1
            due = done == total or (eval_every is not None and done % eval_every == 0)
            if due and evaluate_and_decide(epoch):
                break
            if done >= total:
                break
            now = time.monotonic()
            if now - last_check >= check_every_s:
                last_check = now
                if should_stop():
                    out.stop_reason = "should_stop"
                    break
            if now - last_report > report_every_s:
                last_report = now
                progress(done, total, f"{label}epoch {epoch + 1}/{epochs}")
        if out.stop_reason != "completed":
            break
        if eval_every is None and last_eval != done and evaluate_and_decide(epoch):
            break
        if done >= total:
            break
    if out.stop_reason == "should_stop" and cancel == "raise":
        raise Cancelled(f"{label}training cancelled")
    if out.stop_reason in ("completed", "should_stop") and last_eval != done:
        record(epoch)  # the last steps were not evaluated (cancelled, or fewer batches than planned)
    if out.stop_reason == "completed" and done >= total and total < planned:
        out.stop_reason = "max_steps"
    out.steps = done
    return out
