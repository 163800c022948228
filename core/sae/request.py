"""What a user asks of SAE training: a preset plus overrides, turned into the configs to train with.

The CLI (``featurelens train``) and the app's Data page both build an :class:`SAERequest` and call
:meth:`SAERequest.configs`, so the same choices give the same SAE everywhere::

    from core.sae.request import SAERequest
    sae_cfg, train_cfg, seeds = SAERequest(preset="fast", arch="topk", k=16).configs()
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from core.base.errors import InputError
from core.sae.config import SAEConfig, TrainConfig, preset
from core.sae.registry import get_architecture
from core.sae.sweep import SweepConfig, preset_sweep

__all__ = ["SAERequest", "SHARED_FIELDS"]

#: Settings every architecture has; kept when ``arch`` changes a non-default preset's architecture.
SHARED_FIELDS = ("hidden", "expansion", "center", "scale", "decoder_norm", "init", "dead_window", "resample_dead",
                 "init_scale")

_TRAIN_FIELDS = ("epochs", "max_steps", "lr", "batch_size", "val_fraction", "seed", "device")


@dataclass(frozen=True)
class SAERequest:
    """A preset and the settings that override it; ``None`` keeps the preset's value.

    ``hidden`` / ``expansion``: latents (give at most one). ``l1``, ``penalty``, ``l1_scale``: the
    L1 architectures (vanilla, relu); ``k``: topk, batchtopk, matryoshka. ``center``/``scale``/``shuffle``:
    ``False`` turns the preset's step off. ``epochs`` also drops the preset's floor on steps.
    ``patience``: 0 never stops early. ``seeds``: train one SAE per seed (≥ 2, distinct; the first
    is kept); ``seed``, if also given, must be the first. ``sweep_l1``: the L1 strengths the
    ``auto`` preset tries. Bad combinations raise InputError when the request is made.
    """

    preset: str = "default"
    arch: str | None = None
    hidden: int | None = None
    expansion: float | None = None
    l1: float | None = None
    penalty: str | None = None
    l1_scale: str | None = None
    k: int | None = None
    decoder_norm: str | None = None
    center: bool | None = None
    scale: bool | None = None
    epochs: int | None = None
    max_steps: int | None = None
    lr: float | None = None
    batch_size: int | None = None
    val_fraction: float | None = None
    patience: int | None = None
    shuffle: bool | None = None
    seed: int | None = None
    seeds: tuple[int, ...] | None = None
    device: str | None = None
    sweep_l1: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        preset(self.preset)  # InputError for an unknown name
        if self.hidden is not None and self.expansion is not None:
            raise InputError("give either hidden or expansion, not both",
                             fix="hidden: the number of latents; expansion: latents per embedding dimension")
        if self.seeds is not None:
            object.__setattr__(self, "seeds", tuple(self.seeds))
        if self.sweep_l1 is not None:
            object.__setattr__(self, "sweep_l1", tuple(float(v) for v in self.sweep_l1))
        self.sweep()  # validates every combination (and builds the configs once)

    def to_dict(self) -> dict[str, Any]:
        return {f.name: (list(v) if isinstance(v := getattr(self, f.name), tuple) else v) for f in fields(self)}

    def configs(self) -> tuple[SAEConfig, TrainConfig, list[int] | None]:
        """``(sae_config, train_config, seeds)``: the preset with these overrides (seeds None for one)."""
        return self._sae_config(), *self._train_config()

    def sweep(self) -> SweepConfig | None:
        """The ``auto`` preset's :class:`~core.sae.sweep.SweepConfig` (None for the other presets)."""
        sae_cfg = self._sae_config()
        self._train_config()
        if self.preset == "auto" and self.l1 is not None:
            raise InputError("--preset auto chooses the L1 strength itself", fix="drop --l1, or use --preset default")
        return preset_sweep(self.preset, sae_cfg, l1=self.sweep_l1 or None)

    def _sae_config(self) -> SAEConfig:
        sae_cfg, _ = preset(self.preset)
        if self.arch and self.arch != sae_cfg.arch:
            cls = get_architecture(self.arch).config_class
            source = cls() if self.preset in ("default", "auto") else sae_cfg  # default: the arch's own good practice
            sae_cfg = cls(**{f: getattr(source, f) for f in SHARED_FIELDS})
        changes: dict[str, Any] = {}
        if self.hidden is not None:
            changes.update(hidden=self.hidden, expansion=None)
        if self.expansion is not None:
            changes.update(expansion=self.expansion, hidden=None)
        names = {f.name for f in fields(sae_cfg)}
        uses = "--k" if "k" in names else "--l1" if "l1" in names else "its l0 setting, in the library"
        if self.l1 is not None:
            if "l1" not in names:
                raise InputError(f"--l1 does not apply to the {sae_cfg.arch} architecture (it uses {uses})",
                                 fix="drop --l1, or use --arch vanilla or relu")
            changes["l1"] = self.l1
        for key in ("penalty", "l1_scale"):
            value = getattr(self, key)
            if value is not None:
                if key not in names:
                    raise InputError(f"--{key.replace('_', '-')} does not apply to the {sae_cfg.arch} architecture",
                                     fix="use --arch vanilla or relu")
                changes[key] = value
        if self.k is not None:
            if "k" not in names:
                raise InputError(f"--k does not apply to the {sae_cfg.arch} architecture (it uses {uses})",
                                 fix="drop --k, or use --arch topk, batchtopk or matryoshka")
            changes["k"] = self.k
        if self.decoder_norm is not None:
            changes["decoder_norm"] = self.decoder_norm
        for key in ("center", "scale"):
            if getattr(self, key) is not None:
                changes[key] = bool(getattr(self, key))
        return sae_cfg.replace(**changes)

    def _train_config(self) -> tuple[TrainConfig, list[int] | None]:
        _, train_cfg = preset(self.preset)
        changes: dict[str, Any] = {k: getattr(self, k) for k in _TRAIN_FIELDS if getattr(self, k) is not None}
        if self.epochs is not None:
            changes["min_steps"] = None  # the epochs asked for, exactly
        if self.shuffle is not None:
            changes["shuffle"] = bool(self.shuffle)
        if self.patience is not None:
            changes["patience"] = None if self.patience == 0 else self.patience
        seeds = list(self.seeds) if self.seeds else None
        if seeds:
            text = ",".join(str(s) for s in seeds)
            if any(int(s) != s or s < 0 for s in seeds) or len(set(seeds)) != len(seeds):
                raise InputError(f"--seeds must list distinct non-negative integers (got {text!r})",
                                 fix="e.g. --seeds 0,42,9307")
            if len(seeds) < 2:
                raise InputError("--seeds needs at least two seeds", fix="e.g. --seeds 0,42,9307, or use --seed")
            if self.seed is not None and self.seed != seeds[0]:
                raise InputError("give either --seed or --seeds", fix="the first of --seeds is the SAE that is kept")
            changes["seed"] = seeds[0]
        return train_cfg.replace(**changes), seeds
