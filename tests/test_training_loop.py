"""The shared training skeleton: evaluation schedule, early stopping and best-state restore,
cancel, progress, max_steps."""
from __future__ import annotations

import pytest
import torch

from core.base.errors import InputError
from core.base.progress import Cancelled
from core.base.training_loop import EarlyStopping, run_training


class Scripted:
    """A toy trainer: 5 batches an epoch, each step adds 1 to a one-weight module; evaluation ``i``
    reports ``losses[i]`` (the last one repeated) and the step it saw."""

    def __init__(self, losses=(1.0,)):
        self.module = torch.nn.Linear(1, 1, bias=False)
        with torch.no_grad():
            self.module.weight.zero_()
        self.losses = list(losses)
        self.rows, self.after = [], []

    @property
    def weight(self) -> float:
        return float(self.module.weight.detach())

    def step(self, batch, done):
        with torch.no_grad():
            self.module.weight += 1

    def evaluate(self, epoch, done):
        row = {"epoch": epoch, "step": done, "val_loss": self.losses[min(len(self.rows), len(self.losses) - 1)]}
        self.rows.append(row)
        return row

    def run(self, stopping=None, **kw):
        self.rows, self.after = [], []
        kw = {"epochs": 4, "steps_per_epoch": 5, **kw}
        return run_training(batches=lambda epoch: range(5), step=self.step, evaluate=self.evaluate,
                            stopping=stopping or EarlyStopping(module=self.module), after_eval=self.after.append,
                            **kw)


def test_early_stopping_stops_after_patience_and_restores_the_best_state():
    t = Scripted([3.0, 2.0, 2.5, 2.6, 2.7, 1.0])
    stopping = EarlyStopping(patience=2, module=t.module)
    out = t.run(stopping, eval_every=2)
    assert out.stop_reason == "early_stopping"
    assert [r["step"] for r in out.history] == [2, 4, 6, 8]  # the 2nd evaluation was the best; 2 more, then stop
    assert out.steps == 8 and t.weight == 8
    assert stopping.restore() and t.weight == 4  # the weights of the best evaluation
    assert stopping.best == 2.0 and stopping.best_row["step"] == 4
    assert [r["step"] for r in t.after] == [2, 4, 6]  # not after the evaluation that stopped training


def test_early_stopping_waits_for_min_steps():
    t = Scripted([3.0, 2.0, 2.5, 2.6, 2.7, 2.8, 2.9, 3.0, 3.1, 3.2])
    stopping = EarlyStopping(patience=2, module=t.module)
    out = t.run(stopping, eval_every=2, min_steps=14)  # patience is spent at step 8; no stop before 14
    assert out.stop_reason == "early_stopping"
    assert [r["step"] for r in out.history] == [2, 4, 6, 8, 10, 12, 14]
    assert stopping.restore() and t.weight == 4  # still the weights of the best evaluation
    out = t.run(EarlyStopping(patience=2), eval_every=2, min_steps=100)  # beyond the planned 20 steps
    assert out.stop_reason == "completed" and out.steps == 20


def test_min_delta_keep_and_warmup():
    losses = [10.0, 9.5, 9.2, 9.1]  # with min_delta 0.1 only the first is a clear improvement
    improved = EarlyStopping(patience=2, min_delta=0.1, keep="improved")
    lowest = EarlyStopping(patience=2, min_delta=0.1, keep="lowest")
    assert [improved.update(v, {"i": i}) for i, v in enumerate(losses[:3])] == [False, False, True]
    assert [lowest.update(v, {"i": i}) for i, v in enumerate(losses[:3])] == [False, False, True]
    assert improved.best_row == {"i": 0} and lowest.best_row == {"i": 2}
    warm = EarlyStopping(patience=1, warmup=2)
    assert [warm.update(v, {"i": i}) for i, v in enumerate([1.0, 0.5, 3.0, 4.0])] == [False, False, False, True]
    assert warm.best_row == {"i": 2}  # evaluations inside the warm-up count for nothing
    never = EarlyStopping(patience=None)
    assert not any(never.update(v, {}) for v in [1.0, 2.0, 3.0, 4.0, 5.0])
    assert not never.restore()  # no module: no weights kept
    with pytest.raises(InputError, match="keep"):
        EarlyStopping(keep="last")


def test_history_has_one_row_per_evaluation():
    t = Scripted()
    out = t.run(eval_every=3, epochs=2)  # 10 steps: every 3rd, and the last
    assert out.stop_reason == "completed" and out.steps == 10 and out.epochs == 2
    assert [r["step"] for r in out.history] == [3, 6, 9, 10]
    out = t.run()  # eval_every=None: at the end of each epoch
    assert [(r["epoch"], r["step"]) for r in out.history] == [(0, 5), (1, 10), (2, 15), (3, 20)]
    out = t.run(max_steps=7)
    assert out.stop_reason == "max_steps" and out.steps == 7
    assert [r["step"] for r in out.history] == [5, 7]
    out = t.run(max_steps=20)  # a cap that is the full budget anyway
    assert out.stop_reason == "completed" and out.steps == 20


def test_should_stop_cancels_with_the_right_stop_reason():
    t = Scripted()
    asked = []
    out = t.run(should_stop=lambda: asked.append(1) or len(asked) >= 7, check_every_s=0.0)
    assert out.stop_reason == "should_stop" and out.steps == 7 and len(asked) == 7
    assert [r["step"] for r in out.history] == [5, 7]  # the model so far is evaluated before returning
    assert t.weight == 7
    t = Scripted()
    with pytest.raises(Cancelled):
        t.run(should_stop=lambda: True, check_every_s=0.0, cancel="raise")
    assert t.weight == 1 and t.rows == []  # asked after the first step; raised, not evaluated
    with pytest.raises(InputError, match="cancel"):
        t.run(cancel="ignore")


def test_progress_is_called_with_increasing_done():
    calls = []
    out = Scripted().run(progress=lambda done, total, msg: calls.append((done, total, msg)),
                         report_every_s=0.0, label="toy: ", eval_message=lambda row, epoch: f"eval {row['step']}")
    done = [c[0] for c in calls]
    assert done == sorted(done) and done[0] >= 1 and done[-1] == out.steps == 20
    assert all(total == 20 for _, total, _ in calls)
    assert [m for _, _, m in calls if m.startswith("eval")] == ["eval 5", "eval 10", "eval 15", "eval 20"]
    assert any(m == "toy: epoch 2/4" for _, _, m in calls)
