"""Torch thread choice: small layers and spinning waits on small machines get one thread; the
override and pinned blocks win; training restores the caller's setting and reports what it used."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from core.base import threads
from core.base.errors import InputError
from core.sae import TrainConfig, VanillaConfig, train_sae


@pytest.fixture
def machine(monkeypatch):
    """Set the core count, the wait policy and the override for one test."""
    def _set(*, cores: int, passive: bool, override: str | None = None):
        monkeypatch.setattr(threads.os, "cpu_count", lambda: cores)
        monkeypatch.setenv("OMP_WAIT_POLICY", "PASSIVE" if passive else "ACTIVE")
        if override is None:
            monkeypatch.delenv(threads.ENV, raising=False)
        else:
            monkeypatch.setenv(threads.ENV, override)
    return _set


@pytest.mark.parametrize("cores, passive, expected", [(2, False, 1), (2, True, 2), (1, True, 1), (4, False, 4),
                                                      (32, True, 8)])
def test_machine_threads(machine, cores, passive, expected):
    machine(cores=cores, passive=passive)
    assert threads.machine_threads() == expected


def test_small_layers_get_one_thread_large_ones_the_machine(machine):
    machine(cores=4, passive=True)
    assert threads.auto_threads(weights=50 * 200, small=100_000) == 1
    assert threads.auto_threads(weights=50 * 10_000, small=100_000) == 4


def test_override_wins_and_bad_override_is_a_clear_error(machine):
    machine(cores=4, passive=True, override="3")
    assert threads.auto_threads(weights=10, small=100_000) == 3
    machine(cores=4, passive=True, override="two")
    with pytest.raises(InputError, match="FEATURELENS_THREADS must be a whole number"):
        threads.machine_threads()
    with pytest.raises(InputError, match="--threads must be at least 1"):
        threads.set_threads_override(0)


def test_pinned_block_keeps_its_count_inside_and_restores_after(machine):
    machine(cores=4, passive=True)
    before = torch.get_num_threads()
    with threads.torch_threads(1) as used:
        assert used == 1 and torch.get_num_threads() == 1
        assert threads.auto_threads(weights=10**9, small=100_000) == 1
    assert torch.get_num_threads() == before
    assert threads.auto_threads(weights=10**9, small=100_000) == 4


def test_train_sae_uses_the_choice_reports_it_and_restores_the_caller(machine):
    machine(cores=4, passive=True)
    x = np.random.default_rng(0).normal(size=(200, 10)).astype(np.float32)
    torch.set_num_threads(2)
    small = train_sae(x, config=VanillaConfig(hidden=40), train=TrainConfig(epochs=1))
    assert small.threads == 1 and small.summary()["threads"] == 1
    assert torch.get_num_threads() == 2
    big = train_sae(x, config=VanillaConfig(hidden=40), train=TrainConfig(epochs=1), threads=3)
    assert big.threads == 3 and torch.get_num_threads() == 2


def test_import_core_before_torch_makes_waits_passive():
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    code = ("import os, core, torch; print(os.environ.get('OMP_WAIT_POLICY'));"
            "import core.base.threads as t; print(t.passive_waits())")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True,
                         cwd=os.path.dirname(os.path.dirname(__file__)))
    assert out.stdout.split() == ["PASSIVE", "True"]
    code = "import torch, os, core; print(os.environ.get('OMP_WAIT_POLICY'))"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True,
                         cwd=os.path.dirname(os.path.dirname(__file__)))
    assert out.stdout.split() == ["None"]  # too late to matter: not pretended
