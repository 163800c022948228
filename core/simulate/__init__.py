"""Simulation lab: the paper's hierarchical generative process and its experiments.

``simulate(SmallSimConfig(), seed=0)`` draws a dataset with ground truth (docs/method.md §2);
the experiments (``run_superposition``, ``run_sae_sweep``, ``run_recovery``,
``run_structure``) measure what autoencoders and SAEs recover of it.
"""
from core.simulate.generator import (
    OBSM_KEYS,
    VARIABLES,
    LargeSimConfig,
    SmallSimConfig,
    data_summary,
    read_simulation,
    simulate,
    simulation_info,
    simulation_variables,
    write_simulation,
)

__all__ = [
    "SmallSimConfig", "LargeSimConfig", "simulate", "write_simulation", "read_simulation",
    "simulation_info", "simulation_variables", "data_summary", "VARIABLES", "OBSM_KEYS",
]
