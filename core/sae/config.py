"""SAE configuration: one dataclass per architecture, one for training, and named presets.

Every config is validated when it is created (bad values raise
:class:`~core.base.errors.InputError` naming the fix) and round-trips through JSON with
``to_dict`` / ``from_dict``. The same objects feed the CLI, the app and ``sae.json``.

Conventions shared with the reference (paper §3): the reconstruction term is the mean squared
error over all ``batch × input`` elements, the L1 term is ``l1 · mean |z|`` over all
``batch × hidden`` elements.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Any, ClassVar

from core.base.configs import config_from_dict
from core.base.errors import InputError

__all__ = [
    "SAEConfig",
    "VanillaConfig",
    "ReLUConfig",
    "TopKConfig",
    "BatchTopKConfig",
    "MatryoshkaConfig",
    "JumpReLUConfig",
    "TrainConfig",
    "DECODER_NORMS",
    "L1_SCALES",
    "PENALTIES",
    "INITS",
    "LR_SCHEDULES",
    "PREFIX_WEIGHTINGS",
    "PRESETS",
    "preset",
]

DECODER_NORMS = ("unit", "l1_weighted", "none")
L1_SCALES = ("input", "mean")
PENALTIES = ("l1", "tanh")
INITS = ("tied", "torch")
LR_SCHEDULES = ("constant", "linear_decay")
PREFIX_WEIGHTINGS = ("mean", "sum")
SELECTIONS = ("sample", "batch")


def _need(cond: bool, what: str, fix: str | None = None, *, kind: str = "SAE") -> None:
    if not cond:
        raise InputError(f"invalid {kind} setting: {what}", fix=fix)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


# --------------------------------------------------------------------------- architectures
@dataclass(frozen=True)
class SAEConfig:
    """Options shared by every architecture.

    Size: ``hidden`` latents, or ``expansion`` × the input dimension (give at most one;
    neither means ``expansion=50``, the upper end of the paper's best range 5–50×).
    ``center`` / ``scale``: subtract the training mean / divide by one scalar (the RMS of the
    centred input) before encoding; both are stored with the model and undone on decoding.
    ``decoder_norm``: ``"unit"`` renormalises decoder columns to norm 1 after every step;
    ``"l1_weighted"`` weights each latent's L1 term by its decoder norm; ``"none"`` (the
    reference) does neither. ``init``: ``"tied"`` (random unit decoder columns, encoder = its
    transpose, zero biases) or ``"torch"`` (``nn.Linear`` defaults, as the reference).
    ``init_scale`` (tied init only, ``None``: unit columns, then the encoder is rescaled so the
    first reconstruction has the right size): decoder columns of this norm, encoder = their
    transpose, no rescaling (Anthropic's April 2024 recipe uses 0.1; needs a decoder that is
    not renormalised, ``decoder_norm`` ``"l1_weighted"`` or ``"none"``).
    ``dead_window``: a latent is dead during training when it has not fired for this many
    training samples (``None``: one epoch). ``resample_dead``: at each evaluation in the first
    half of training, dead latents are re-initialised towards badly reconstructed cells
    (Bricken et al. 2023); the reference never does this.
    """

    arch: ClassVar[str] = ""
    hidden: int | None = None
    expansion: float | None = None
    center: bool = True
    scale: bool = True
    decoder_norm: str = "unit"
    init: str = "tied"
    dead_window: int | None = None
    resample_dead: bool = True
    init_scale: float | None = None

    DEFAULT_EXPANSION: ClassVar[float] = 50.0

    def __post_init__(self) -> None:
        if self.hidden is not None:
            _need(_is_int(self.hidden) and self.hidden >= 1,
                  f"hidden must be a positive integer (got {self.hidden!r})", "e.g. --hidden 10000")
        if self.expansion is not None:
            _need(_is_number(self.expansion) and self.expansion > 0,
                  f"expansion must be a positive number (got {self.expansion!r})", "e.g. --expansion 50")
        _need(self.hidden is None or self.expansion is None,
              "give either hidden or expansion, not both", "drop --hidden or --expansion")
        _need(isinstance(self.center, bool) and isinstance(self.scale, bool) and isinstance(self.resample_dead, bool),
              "center, scale and resample_dead must be true/false")
        _need(self.decoder_norm in DECODER_NORMS,
              f"decoder_norm must be one of {', '.join(DECODER_NORMS)} (got {self.decoder_norm!r})")
        _need(self.init in INITS, f"init must be one of {', '.join(INITS)} (got {self.init!r})")
        if self.dead_window is not None:
            _need(_is_int(self.dead_window) and self.dead_window >= 1,
                  f"dead_window must be a positive number of samples (got {self.dead_window!r})")
        if self.init_scale is not None:
            _need(_is_number(self.init_scale) and self.init_scale > 0,
                  f"init_scale must be a positive number (got {self.init_scale!r})", "e.g. init_scale 0.1")
            _need(self.init == "tied", f"init_scale applies to the tied init only (init is {self.init!r})",
                  "use init 'tied', or drop init_scale")
            _need(self.decoder_norm != "unit",
                  "init_scale has no effect with decoder_norm 'unit' (columns are renormalised to 1 after every step)",
                  "use decoder_norm 'l1_weighted' (Anthropic's April 2024 recipe), or drop init_scale")

    def hidden_size(self, d_in: int) -> int:
        """The number of latents for a ``d_in``-dimensional input; never fewer than ``d_in``."""
        if self.hidden is not None:
            hidden = self.hidden
        else:
            hidden = int(round((self.expansion or self.DEFAULT_EXPANSION) * d_in))
        if hidden < d_in:
            raise InputError(
                f"the SAE would have {hidden} latents for a {d_in}-dimensional input: a sparse "
                "autoencoder needs at least as many latents as input dimensions",
                fix=f"use --hidden {d_in * 50} or --expansion 50 (the paper uses 500 × a 20-d latent)",
            )
        return hidden

    def to_dict(self) -> dict[str, Any]:
        return {"arch": self.arch, **asdict(self)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "SAEConfig":
        """Rebuild a config; on the base class the ``arch`` key picks the subclass."""
        d = dict(d)
        arch = d.pop("arch", cls.arch)
        if cls is SAEConfig or arch != cls.arch:
            from core.sae.registry import get_architecture

            target = get_architecture(arch).config_class
        else:
            target = cls
        if "l1" in d and "l1_scale" not in d:  # sae.json from before l1_scale: the reference's L1
            d["l1_scale"] = "mean"
        d.setdefault("resample_dead", False)   # nor did SAEs trained before resample_dead existed
        return config_from_dict(target, d, what=f"{arch} SAE")

    def replace(self, **changes: Any) -> "SAEConfig":
        return replace(self, **changes)


@dataclass(frozen=True)
class VanillaConfig(SAEConfig):
    """Vanilla SAE (paper §3): ``z = ReLU(W_enc x + b_enc)``, loss ``MSE + sparsity penalty``.

    ``penalty`` and ``l1`` (its strength), both in the normalised input space, where a typical
    cell has squared norm ``d_in`` and MSE is per element:

    - ``"l1"`` (default), scaled as ``l1_scale`` says: ``"input"`` (default),
      ``l1 · Σ_f z_f ‖d_f‖ / √d_in`` per cell — the L1 of each latent's contribution to the
      reconstruction, in units of the input's RMS cell norm, so its strength does not depend on
      the number of latents (``l1 = 0.2`` here is Anthropic's λ = 5 for a 512-d input scaled to
      ‖x‖ ≈ √d); ``"mean"`` (the paper's reference code), ``l1 · mean|z|`` over all
      ``batch × hidden`` elements, which vanishes as ``hidden`` grows (``l1 = 1e-3`` on 10,000
      latents of a 20-d input equals ``"input"`` with ``l1 ≈ 4.5e-7``).
    - ``"tanh"``: ``l1 · Σ_f tanh(10 · z_f ‖d_f‖ / √d_in)`` per cell (Anthropic's tanh penalty):
      about ``l1`` per strongly active latent, L1-like near zero, so large activations are not
      shrunk. Sparser at the same reconstruction (try ``l1 = 0.02``), but in our measurements
      it merges programs that co-occur in the same cells and recovers fewer planted directions
      (benchmarks/sae_defaults.md).
    """

    arch: ClassVar[str] = "vanilla"
    l1: float = 0.2
    penalty: str = "l1"
    l1_scale: str = "input"

    def __post_init__(self) -> None:
        super().__post_init__()
        _need(_is_number(self.l1) and self.l1 >= 0, f"l1 must be a number >= 0 (got {self.l1!r})",
              "e.g. --l1 0.2 (the paper's 0.001 is on mean|z|: --preset paper)")
        _need(self.penalty in PENALTIES, f"penalty must be one of {', '.join(PENALTIES)} (got {self.penalty!r})")
        _need(self.l1_scale in L1_SCALES,
              f"l1_scale must be one of {', '.join(L1_SCALES)} (got {self.l1_scale!r})")
        _need(self.penalty == "l1" or self.l1_scale == "input",
              "the tanh penalty is defined per unit of input norm (l1_scale 'input')",
              "use penalty 'l1' for the reference's mean scale")


@dataclass(frozen=True)
class ReLUConfig(VanillaConfig):
    """ReLU SAE (Bricken et al.): as Vanilla with a pre-encoder bias, ``W_enc (x − b_dec)``."""

    arch: ClassVar[str] = "relu"


@dataclass(frozen=True)
class TopKConfig(SAEConfig):
    """TopK SAE (Gao et al.): keep the ``k`` largest pre-activations, no L1 term.

    ``k=None`` sets k from the data: ``k = d_in``, the input dimension (L0 = 1 / expansion of
    the latents, 2 % at the default 50×; no ground truth involved).
    AuxK: the ``k_aux`` largest pre-activations of dead latents reconstruct the residual
    ``x − x̂``, weighted by ``aux_coef`` (``k_aux=None``: half the input dimension, at least
    ``k``, as in Gao et al.; ``aux_coef=0`` turns AuxK off).
    """

    arch: ClassVar[str] = "topk"
    k: int | None = 32
    k_aux: int | None = None
    aux_coef: float = 1 / 32

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.k is not None:
            _need(_is_int(self.k) and self.k >= 1, f"k must be a positive integer (got {self.k!r})",
                  "e.g. --k 32, or leave k unset for k = the input dimension")
        if self.k_aux is not None:
            _need(_is_int(self.k_aux) and self.k_aux >= 1, f"k_aux must be a positive integer (got {self.k_aux!r})")
        _need(_is_number(self.aux_coef) and self.aux_coef >= 0, f"aux_coef must be >= 0 (got {self.aux_coef!r})")
        if self.hidden is not None and self.k is not None and self.k > self.hidden:
            raise InputError(f"invalid SAE setting: k = {self.k} is larger than hidden = {self.hidden}",
                             fix=f"use --k below {self.hidden}, e.g. --k {max(1, self.hidden // 100)}")

    def k_size(self, d_in: int) -> int:
        """``k`` resolved for a ``d_in``-dimensional input (``None``: ``d_in``)."""
        return d_in if self.k is None else self.k

    def hidden_size(self, d_in: int) -> int:
        hidden = super().hidden_size(d_in)
        k = self.k_size(d_in)
        if k > hidden:
            raise InputError(f"invalid SAE setting: k = {k} is larger than the {hidden} latents",
                             fix=f"use --k below {hidden}")
        return hidden

    def aux_size(self, d_in: int) -> int:
        """``k_aux`` resolved for a ``d_in``-dimensional input."""
        k_aux = self.k_aux if self.k_aux is not None else max(d_in // 2, self.k_size(d_in))
        return min(k_aux, self.hidden_size(d_in))


@dataclass(frozen=True)
class BatchTopKConfig(TopKConfig):
    """BatchTopK SAE (Bussmann et al.): keep the ``k × batch`` largest pre-activations of a batch.

    At inference a latent fires when its pre-activation exceeds a threshold learned during
    training (running mean of the smallest kept value), so encoding does not depend on the batch.
    """

    arch: ClassVar[str] = "batchtopk"


@dataclass(frozen=True)
class MatryoshkaConfig(TopKConfig):
    """Matryoshka TopK SAE (Bussmann, Nabeshima, Karvonen, Nanda 2025; Nabeshima 2024): TopK
    encoding, trained so that nested prefixes of the dictionary reconstruct on their own.

    Loss: ``Σ_m w · MSE(x, x̂_m)`` over the prefix sizes ``m``, where ``x̂_m`` decodes only the
    active latents with index < m (the top-k is taken over all latents, then masked), plus
    AuxK as TopK. Early latents must reconstruct without the later ones, so they learn the
    general directions instead of splitting one program over several latents.

    ``prefixes``: the prefix sizes as fractions of ``hidden``, strictly increasing in (0, 1);
    the whole dictionary is always the last prefix (``()``: plain TopK). The default, 1/16,
    1/8, 1/4, 1/2 (then 1), is the paper's (its groups of 1/16, 1/16, 1/8, 1/4 and 1/2 of the
    dictionary: each prefix doubles the one before); at the default 50× the first prefix has
    about 3 × d_in latents, room for the tens of programs and cell types an embedding of
    10–50 dimensions carries. Fractions that round to the same size are merged.
    ``weighting``: ``"mean"`` (the paper: each prefix's MSE weighs the same, averaged) or
    ``"sum"`` (the same, summed: relative to AuxK, the prefixes weigh more).
    ``k``: as TopK, but unset by default: ``k = d_in`` (L0 2 % of the latents at 50×).
    ``selection``: ``"sample"`` (TopK: k latents in every cell) or ``"batch"`` (BatchTopK, as
    the paper: the k × batch largest of a batch in training, a learned threshold at inference,
    so cells use k latents on average).
    """

    arch: ClassVar[str] = "matryoshka"
    k: int | None = None
    prefixes: tuple[float, ...] = (1 / 16, 1 / 8, 1 / 4, 1 / 2)
    weighting: str = "mean"
    selection: str = "sample"

    def __post_init__(self) -> None:
        super().__post_init__()
        _need(self.selection in SELECTIONS,
              f"selection must be one of {', '.join(SELECTIONS)} (got {self.selection!r})")
        prefixes = self.prefixes
        _need(isinstance(prefixes, (tuple, list)) and all(_is_number(f) for f in prefixes),
              f"prefixes must be a list of fractions of the latents (got {prefixes!r})",
              "e.g. prefixes (0.0625, 0.125, 0.25, 0.5)")
        object.__setattr__(self, "prefixes", tuple(float(f) for f in prefixes))  # a JSON list becomes a tuple
        _need(all(0 < f < 1 for f in self.prefixes),
              f"prefixes must be fractions of the latents between 0 and 1 (got {list(self.prefixes)})",
              "the whole dictionary is always the last prefix: leave 1 out")
        _need(all(a < b for a, b in zip(self.prefixes, self.prefixes[1:])),
              f"prefixes must be strictly increasing (got {list(self.prefixes)})", "e.g. prefixes (0.125, 0.25, 0.5)")
        _need(self.weighting in PREFIX_WEIGHTINGS,
              f"weighting must be one of {', '.join(PREFIX_WEIGHTINGS)} (got {self.weighting!r})")

    def prefix_sizes(self, d_in: int) -> list[int]:
        """The prefix sizes for a ``d_in``-dimensional input, increasing, the last = ``hidden``."""
        hidden = self.hidden_size(d_in)
        sizes = {min(hidden, max(1, int(round(f * hidden)))) for f in self.prefixes}
        return sorted(sizes | {hidden})


@dataclass(frozen=True)
class JumpReLUConfig(SAEConfig):
    """JumpReLU SAE (Rajamanoharan et al. 2024): ``z = pre · H(pre − θ)`` with a learned
    threshold θ per latent, loss ``MSE + l0 · (latents active per cell)``.

    ``l0``: the cost of one active latent, in the normalised space where MSE is per element and a
    typical cell has squared norm ``d_in``: a latent stays on where it explains more than this
    share of a typical cell's squared norm (0.02: as the tanh penalty's ``l1 = 0.02`` for
    strongly active latents, which it approximates; no shrinkage of the kept values).
    The step has no gradient, so θ learns through straight-through pseudo-derivatives with a
    rectangle kernel of width ``bandwidth`` (in units of the normalised input; the paper's
    0.001 is on its own scale). ``init_threshold``: θ at the start (the paper's 0.001).
    ``resample_dead`` is off by default (the paper does not resample; a resampled latent would
    restart at ``init_threshold``, dense). θ rises by about the learning rate per step, so it
    needs long training (the benchmark uses ≥ 3,000 steps and no early stopping).
    """

    arch: ClassVar[str] = "jumprelu"
    resample_dead: bool = False
    l0: float = 0.02
    bandwidth: float = 0.05
    init_threshold: float = 0.001

    def __post_init__(self) -> None:
        super().__post_init__()
        _need(_is_number(self.l0) and self.l0 >= 0, f"l0 must be a number >= 0 (got {self.l0!r})", "e.g. l0 0.02")
        _need(_is_number(self.bandwidth) and self.bandwidth > 0,
              f"bandwidth must be a positive number (got {self.bandwidth!r})", "e.g. bandwidth 0.05")
        _need(_is_number(self.init_threshold) and self.init_threshold >= 0,
              f"init_threshold must be a number >= 0 (got {self.init_threshold!r})", "e.g. init_threshold 0.001")


# --------------------------------------------------------------------------- training
@dataclass(frozen=True)
class TrainConfig:
    """How to train: Adam with ``lr``, minibatches of ``batch_size`` cells for ``epochs``.

    ``min_steps``: small datasets train for more epochs until this many optimiser steps are
    planned, and early stopping never ends training before them (sparsity takes a number of steps
    to form, not a number of epochs; ``None``: exactly ``epochs``). ``max_steps`` caps the optimiser steps (``None``: no cap). ``val_fraction`` of the cells
    (drawn with ``seed``) is held out; the validation loss is computed every ``eval_every``
    steps (``None``: once per epoch) and training stops when it has not improved by
    ``min_delta`` (relative) for ``patience`` evaluations (``None``: never stop early); the
    best weights are restored when ``restore_best``. ``lr_schedule="linear_decay"`` decays
    the rate linearly to 0 over the last ``decay_fraction`` of the planned steps.
    ``l1_warmup``: the sparsity penalty's weight rises linearly from 0 to 1 over this first
    fraction of the planned steps (0: full strength from the start; the validation loss always
    uses full strength). ``grad_clip``: the gradient's global L2 norm is clipped to this before
    each step (``None``: no clipping).
    ``seed`` reaches weight init, the split and shuffling: same seed, same weights.
    ``device``: ``"auto"`` (GPU when there is one), ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or
    ``"mps"``. ``engine``: ``"auto"`` uses hand-written gradients where an architecture has
    them (Vanilla, ReLU; about 2× faster on CPU), ``"autograd"`` always uses autograd.
    """

    lr: float = 1e-3
    batch_size: int = 128
    epochs: int = 30
    min_steps: int | None = None
    max_steps: int | None = None
    val_fraction: float = 0.1
    eval_every: int | None = None
    patience: int | None = 5
    min_delta: float = 1e-4
    restore_best: bool = True
    lr_schedule: str = "linear_decay"
    decay_fraction: float = 1.0
    l1_warmup: float = 0.0
    grad_clip: float | None = None
    seed: int = 0
    device: str = "auto"
    engine: str = "auto"
    shuffle: bool = True

    MIN_VAL_CELLS: ClassVar[int] = 10
    MIN_TRAIN_CELLS: ClassVar[int] = 10

    def __post_init__(self) -> None:
        def need(cond: bool, what: str, fix: str | None = None) -> None:
            _need(cond, what, fix, kind="training")

        need(_is_number(self.lr) and self.lr > 0, f"lr must be a positive number (got {self.lr!r})",
             "the paper uses --lr 0.0001")
        need(_is_int(self.batch_size) and self.batch_size >= 1,
             f"batch_size must be a positive integer (got {self.batch_size!r})", "e.g. --batch-size 128")
        need(_is_int(self.epochs) and self.epochs >= 1, f"epochs must be a positive integer (got {self.epochs!r})",
             "e.g. --epochs 30")
        if self.max_steps is not None:
            need(_is_int(self.max_steps) and self.max_steps >= 1,
                 f"max_steps must be a positive integer (got {self.max_steps!r})")
        if self.min_steps is not None:
            need(_is_int(self.min_steps) and self.min_steps >= 1,
                 f"min_steps must be a positive integer (got {self.min_steps!r})")
        need(_is_number(self.val_fraction) and 0 < self.val_fraction < 1,
             f"val_fraction must be between 0 and 1 (got {self.val_fraction!r})", "e.g. --val-fraction 0.1")
        if self.eval_every is not None:
            need(_is_int(self.eval_every) and self.eval_every >= 1,
                 f"eval_every must be a positive number of steps (got {self.eval_every!r})")
        if self.patience is not None:
            need(_is_int(self.patience) and self.patience >= 1,
                 f"patience must be a positive integer (got {self.patience!r})")
        need(_is_number(self.min_delta) and self.min_delta >= 0, f"min_delta must be >= 0 (got {self.min_delta!r})")
        need(isinstance(self.restore_best, bool) and isinstance(self.shuffle, bool),
             "restore_best and shuffle must be true/false")
        need(self.lr_schedule in LR_SCHEDULES,
             f"lr_schedule must be one of {', '.join(LR_SCHEDULES)} (got {self.lr_schedule!r})")
        need(_is_number(self.decay_fraction) and 0 < self.decay_fraction <= 1,
             f"decay_fraction must be in (0, 1] (got {self.decay_fraction!r})")
        need(_is_number(self.l1_warmup) and 0 <= self.l1_warmup < 1,
             f"l1_warmup must be a fraction of the steps in [0, 1) (got {self.l1_warmup!r})", "e.g. l1_warmup 0.05")
        if self.grad_clip is not None:
            need(_is_number(self.grad_clip) and self.grad_clip > 0,
                 f"grad_clip must be a positive gradient norm (got {self.grad_clip!r})", "e.g. grad_clip 1.0")
        need(_is_int(self.seed) and self.seed >= 0, f"seed must be a non-negative integer (got {self.seed!r})")
        need(isinstance(self.device, str) and _valid_device(self.device),
             f"device must be auto, cpu, cuda, cuda:N or mps (got {self.device!r})", "e.g. --device cpu")
        need(self.engine in ("auto", "autograd"), f"engine must be auto or autograd (got {self.engine!r})")

    def planned_epochs(self, steps_per_epoch: int) -> int:
        """Epochs to plan: ``epochs``, or more when they would give fewer than ``min_steps`` steps."""
        if self.min_steps is None:
            return self.epochs
        return max(self.epochs, -(-self.min_steps // max(1, steps_per_epoch)))

    def warmup_steps(self, total_steps: int) -> int:
        """Steps over which the sparsity penalty warms up, of ``total_steps`` planned."""
        return int(round(total_steps * self.l1_warmup))

    def penalty_weight(self, step: int, total_steps: int) -> float:
        """The sparsity penalty's weight in optimiser step ``step`` (0-based) of ``total_steps``:
        ``step / warmup_steps`` during the warm-up (0 at the first step), then 1."""
        warmup = self.warmup_steps(total_steps)
        return 1.0 if step >= warmup else step / warmup

    def split_sizes(self, n_cells: int) -> tuple[int, int]:
        """``(n_train, n_val)`` for ``n_cells``; raises InputError when either is too small."""
        n_val = int(round(n_cells * self.val_fraction))
        n_train = n_cells - n_val
        if n_val < self.MIN_VAL_CELLS or n_train < self.MIN_TRAIN_CELLS:
            need_cells = max(int(math.ceil(self.MIN_VAL_CELLS / self.val_fraction)),
                             int(math.ceil(self.MIN_TRAIN_CELLS / (1 - self.val_fraction))))
            raise InputError(
                f"too few cells for a validation split: {n_cells} cells with val_fraction "
                f"{self.val_fraction:g} give {n_train} training and {n_val} validation cells "
                f"(need at least {self.MIN_TRAIN_CELLS} and {self.MIN_VAL_CELLS})",
                fix=f"use at least {need_cells} cells, or a larger validation fraction",
            )
        return n_train, n_val

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        return config_from_dict(cls, d, what="training")

    def replace(self, **changes: Any) -> "TrainConfig":
        return replace(self, **changes)


def _valid_device(device: str) -> bool:
    if device in ("auto", "cpu", "cuda", "mps"):
        return True
    head, _, index = device.partition(":")
    return head == "cuda" and index.isdigit()


# --------------------------------------------------------------------------- presets
DEFAULT_MIN_STEPS = 1500  # the default presets' floor on optimiser steps, for small datasets
# the default presets' schedule: constant rate, every planned step, gradient norm clipped at 1
# (with nn.Linear init, half the L0 of a decaying, early-stopped run at the same FVU:
# benchmarks/sae_defaults.md, "Where the previous default's density came from")
DEFAULT_SCHEDULE = {"lr_schedule": "constant", "patience": None, "grad_clip": 1.0}
# name -> (architecture config, training config, one-line description)
PRESETS: dict[str, tuple[SAEConfig, TrainConfig, str]] = {
    "paper": (
        VanillaConfig(hidden=10_000, l1=1e-3, penalty="l1", l1_scale="mean", center=False, scale=False,
                      decoder_norm="none", init="torch", resample_dead=False),
        TrainConfig(lr=1e-4, batch_size=128, epochs=500, patience=None, lr_schedule="constant",
                    restore_best=False),
        "the paper's case study exactly: Vanilla, 10,000 latents, lr 1e-4, L1 1e-3 on mean|z|, "
        "batch 128, 500 epochs, no centring, no decoder-norm constraint, nn.Linear init. Unlike the "
        "reference code, 10 % of cells are held out for the validation loss and batches are "
        "shuffled (--no-shuffle visits cells in file order, as the reference does)",
    ),
    "fast": (
        VanillaConfig(hidden=10_000, l1=1e-3, penalty="l1", l1_scale="mean", center=True, scale=False,
                      decoder_norm="none", init="torch", resample_dead=False),
        TrainConfig(lr=5e-3, batch_size=256, epochs=60, patience=None, lr_schedule="linear_decay",
                    decay_fraction=1.0, restore_best=False),
        "the paper's objective (same architecture, size and L1 on the same raw input) reached in "
        "minutes: centred input (a reparametrisation of the biases), batch 256, lr 5e-3 decaying "
        "linearly to 0, 60 epochs (see benchmarks/sae_training.md)",
    ),
    "default": (
        VanillaConfig(init="torch"),
        TrainConfig(min_steps=DEFAULT_MIN_STEPS, **DEFAULT_SCHEDULE),
        "good practice: Vanilla, 50 × input latents, L1 0.2 per unit of input norm (independent of "
        "the number of latents), centred and scaled input, unit-norm decoder, nn.Linear init, dead latents "
        "resampled, constant lr 1e-3 for every planned step, gradient norm clipped at 1",
    ),
    "auto": (
        VanillaConfig(init="torch"),
        TrainConfig(min_steps=DEFAULT_MIN_STEPS, **DEFAULT_SCHEDULE),
        "the default, with the L1 strength chosen from the data: a short sweep of 6 strengths on up to "
        "20,000 cells, keeping the knee of the FVU–L0 frontier (no ground truth needed)",
    ),
}


def preset(name: str) -> tuple[SAEConfig, TrainConfig]:
    """``(sae_config, train_config)`` of a named preset (``paper``, ``fast``, ``default``, ``auto``;
    ``auto`` also runs :func:`core.sae.sweep.sparsity_sweep` before training)."""
    try:
        sae, train, _ = PRESETS[name]
    except KeyError:
        raise InputError(f"unknown preset {name!r}", fix=f"use one of: {', '.join(PRESETS)}") from None
    return sae, train
