"""SAE architectures behind one interface: Vanilla, ReLU (pre-bias), TopK (AuxK), BatchTopK, Matryoshka,
JumpReLU.

Shapes: ``x`` (batch, d_in) raw input; ``xn`` the same after the stored centring/scaling;
``pre`` and ``z`` (batch, hidden). Parameters are ``W_enc`` (hidden, d_in), ``b_enc`` (hidden),
``W_dec`` (d_in, hidden), ``b_dec`` (d_in): decoder column ``W_dec[:, f]`` is feature f's
direction. Buffers ``input_mean`` (d_in) and ``input_scale`` () hold the normalisation.

All losses live in the normalised space. MSE is the mean over ``batch × d_in`` elements (the
reference's convention); the L1 term (``z ≥ 0``, so ``|z| = z``) is scaled as
``VanillaConfig.l1_scale`` says: per unit of input norm (default) or the reference's mean over
``batch × hidden`` elements.
"""
from __future__ import annotations

import math
from typing import ClassVar, NamedTuple

import torch
from torch import Tensor, nn

from core.base.errors import InputError
from core.sae.config import (
    BatchTopKConfig,
    JumpReLUConfig,
    MatryoshkaConfig,
    ReLUConfig,
    SAEConfig,
    TopKConfig,
    VanillaConfig,
)
from core.sae.registry import register_architecture

__all__ = ["SparseAutoencoder", "VanillaSAE", "ReLUSAE", "TopKSAE", "BatchTopKSAE", "MatryoshkaSAE", "JumpReLUSAE", "StepOut",
           "fired_latents", "count_active"]


class StepOut(NamedTuple):
    """One training step's result: ``loss`` (with grad unless hand-computed), its parts, and
    ``fired`` (hidden,) bool — which latents were non-zero for at least one sample."""

    loss: Tensor
    mse: Tensor
    penalty: Tensor
    fired: Tensor


def fired_latents(z: Tensor) -> Tensor:
    """(hidden,) bool: latents non-zero for at least one row of ``z`` (batch, hidden), z ≥ 0.

    A float reduction then one small comparison: on CPU, comparisons over the whole
    (batch, hidden) tensor (``(z > 0).any(0)``) cost about 20× more."""
    return z.sum(0) > 0


def count_active(z: Tensor) -> Tensor:
    """(hidden,) float: how many rows of ``z`` (batch, hidden), z ≥ 0, each latent fires on."""
    return torch.sign(z).sum(0)


class SparseAutoencoder(nn.Module):
    """Base class: normalisation, parameters, init, encode/decode. Subclasses define
    :meth:`activate` (pre-activations -> latents), :meth:`penalty` and :meth:`loss`."""

    config_class: ClassVar[type[SAEConfig]] = SAEConfig
    pre_bias: ClassVar[bool] = False  # encode W_enc (xn − b_dec) instead of W_enc xn
    has_fast_grads: ClassVar[bool] = False
    RESAMPLE_ENCODER: ClassVar[float] = 0.2  # resampled encoder rows, relative to live ones

    def __init__(self, config: SAEConfig, *, d_in: int, generator: torch.Generator | None = None):
        super().__init__()
        if not isinstance(config, self.config_class):
            raise TypeError(f"{type(self).__name__} needs a {self.config_class.__name__}, got {type(config).__name__}")
        if not (isinstance(d_in, int) and d_in >= 1):
            raise InputError(f"input dimension must be a positive integer (got {d_in!r})")
        self.config = config
        hidden = config.hidden_size(d_in)
        self.W_enc = nn.Parameter(torch.empty(hidden, d_in))
        self.b_enc = nn.Parameter(torch.empty(hidden))
        self.W_dec = nn.Parameter(torch.empty(d_in, hidden))
        self.b_dec = nn.Parameter(torch.empty(d_in))
        self.register_buffer("input_mean", torch.zeros(d_in))
        self.register_buffer("input_scale", torch.ones(()))
        self.penalty_weight = 1.0  # what the training losses multiply the sparsity penalty by (L1 warm-up)
        self.reset_parameters(generator)

    # ------------------------------------------------------------------ sizes and init
    @property
    def d_in(self) -> int:
        return self.W_enc.shape[1]

    @property
    def hidden(self) -> int:
        return self.W_enc.shape[0]

    @property
    def arch(self) -> str:
        return self.config.arch

    @torch.no_grad()
    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """Initialise weights from ``generator`` (``init="torch"``: ``nn.Linear`` defaults,
        U(±1/√fan_in) for weights and biases; ``"tied"``: random decoder columns of norm
        ``init_scale`` (1 when unset), encoder = their transpose, zero biases)."""
        d, h = self.d_in, self.hidden
        if self.config.init == "torch":
            be, bd = 1 / math.sqrt(d), 1 / math.sqrt(h)
            self.W_enc.uniform_(-be, be, generator=generator)
            self.b_enc.uniform_(-be, be, generator=generator)
            self.W_dec.uniform_(-bd, bd, generator=generator)
            self.b_dec.uniform_(-bd, bd, generator=generator)
        else:
            w = torch.randn(d, h, generator=generator)
            w /= w.norm(dim=0, keepdim=True).clamp_min(1e-12)
            if self.config.init_scale is not None:
                w *= self.config.init_scale
            self.W_dec.copy_(w)
            self.W_enc.copy_(w.T)
            self.b_enc.zero_()
            self.b_dec.zero_()

    @torch.no_grad()
    def calibrate_init_(self, xn: Tensor) -> float:
        """Tied init only: rescale the encoder so that the initial reconstruction of ``xn``
        (a sample of normalised training input) has the right overall size.

        With random unit decoder columns and encoder = their transpose, the first
        reconstruction is about ``hidden / (2 d_in)`` times too large (every latent whose
        direction points towards ``x`` adds to it); the least-squares factor removes that
        without changing any direction. Not applied with ``init_scale`` (the recipe that sets it
        starts from a small reconstruction on purpose). Returns the factor (1 when not applied)."""
        if self.config.init != "tied" or self.config.init_scale is not None or xn.shape[0] == 0:
            return 1.0
        x_hat = self.activate(self.pre_activation(xn)) @ self.W_dec.T + self.b_dec
        target = xn - self.b_dec
        denom = float((x_hat - self.b_dec).pow(2).sum())
        alpha = float(((x_hat - self.b_dec) * target).sum()) / denom if denom > 0 else 1.0
        if not math.isfinite(alpha) or alpha <= 0:
            return 1.0
        self.W_enc.mul_(alpha)
        return alpha

    # ------------------------------------------------------------------ normalisation
    @torch.no_grad()
    def fit_normalization_(self, x: Tensor) -> None:
        """Set the stored centring/scaling from training inputs ``x`` (n, d_in), as configured."""
        x = x.to(self.input_mean.device, torch.float32)
        mean = x.mean(0) if self.config.center else torch.zeros_like(self.input_mean)
        scale = torch.ones_like(self.input_scale)
        if self.config.scale:
            rms = (x - mean).pow(2).mean().sqrt()
            scale = rms if float(rms) > 0 else scale
        self.input_mean.copy_(mean)
        self.input_scale.copy_(scale)

    def normalize(self, x: Tensor) -> Tensor:
        return (x - self.input_mean) / self.input_scale

    def denormalize(self, xn: Tensor) -> Tensor:
        return xn * self.input_scale + self.input_mean

    # ------------------------------------------------------------------ encode / decode
    def pre_activation(self, xn: Tensor) -> Tensor:
        """Encoder pre-activations (batch, hidden) of normalised input."""
        if self.pre_bias:
            xn = xn - self.b_dec
        return torch.addmm(self.b_enc, xn, self.W_enc.T)

    def activate(self, pre: Tensor) -> Tensor:
        """Latents (batch, hidden) from pre-activations."""
        raise NotImplementedError

    def penalty(self, z: Tensor) -> Tensor:
        """The sparsity term of the loss for latents ``z`` (0 for architectures without one)."""
        return z.new_zeros(())

    def validation_penalty(self, xn: Tensor, z: Tensor) -> Tensor:
        """What the validation loss adds to the MSE of normalised input ``xn`` (batch, d_in) with
        latents ``z`` (batch, hidden): :meth:`penalty` (Matryoshka: its prefix terms)."""
        return self.penalty(z)

    def decode_normalized(self, z: Tensor) -> Tensor:
        return torch.addmm(self.b_dec, z, self.W_dec.T)

    def encode(self, x: Tensor) -> Tensor:
        """Latent activations (batch, hidden) of raw input ``x`` (batch, d_in)."""
        return self.activate(self.pre_activation(self.normalize(x)))

    def decode(self, z: Tensor) -> Tensor:
        """Reconstruction (batch, d_in) in raw input units from latents (batch, hidden)."""
        return self.denormalize(self.decode_normalized(z))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``(x_hat, z)`` for raw input ``x``."""
        z = self.encode(x)
        return self.decode(z), z

    # ------------------------------------------------------------------ training
    @torch.no_grad()
    def resample_dead_(self, dead: Tensor, xn: Tensor, *, generator: torch.Generator) -> Tensor:
        """Re-initialise dead latents towards what the SAE reconstructs worst (Bricken et al. 2023).

        ``dead`` (hidden,) bool; ``xn`` (m, d_in) a sample of normalised training input. Each
        dead latent gets the unit direction of a residual ``xn − x̂`` drawn with probability
        ∝ its squared norm as its decoder column, the same direction × :attr:`RESAMPLE_ENCODER`
        × the mean live encoder-row norm as its encoder row, and a zero bias. Returns the indices
        re-initialised (empty when nothing is dead or nothing is left to explain)."""
        idx = dead.nonzero().squeeze(1)
        if idx.numel() == 0 or xn.shape[0] == 0:
            return idx[:0]
        resid = xn - self.decode_normalized(self.activate(self.pre_activation(xn)))
        weight = resid.pow(2).sum(1).double().cpu()
        if not float(weight.sum()) > 0:
            return idx[:0]
        pick = torch.multinomial(weight, idx.numel(), replacement=True, generator=generator).to(xn.device)
        dirs = resid[pick]
        dirs = dirs / dirs.pow(2).sum(1, keepdim=True).sqrt().clamp_min(1e-12)       # (n_dead, d_in)
        live = ~dead
        enc_norm = float(self.W_enc[live].pow(2).sum(1).sqrt().mean()) if bool(live.any()) else 1.0
        self.W_dec[:, idx] = dirs.T * (self.decoder_norms()[live].mean() if bool(live.any()) else 1.0)
        self.W_enc[idx] = dirs * (self.RESAMPLE_ENCODER * enc_norm)
        self.b_enc[idx] = 0.0
        return idx

    def loss(self, xn: Tensor, *, dead: Tensor | None = None) -> StepOut:
        """The training objective on normalised input ``xn`` (autograd), the penalty times
        :attr:`penalty_weight`. ``dead`` (hidden,) bool marks latents dead in training (used by AuxK)."""
        z = self.activate(self.pre_activation(xn))
        mse = (self.decode_normalized(z) - xn).pow(2).mean()
        pen = self.penalty(z) * self.penalty_weight
        return StepOut(mse + pen, mse.detach(), pen.detach(), fired_latents(z.detach()))

    @torch.no_grad()
    def constrain_(self) -> None:
        """Re-impose parameter constraints after an optimiser step (unit decoder columns)."""
        if self.config.decoder_norm == "unit":
            self.W_dec.div_(self.decoder_norms().clamp_min(1e-12))

    def decoder_norms(self) -> Tensor:
        """(hidden,) norm of each decoder column (in the normalised space).

        Written as ``sqrt(sum(W²))`` over rows: ``W_dec.norm(dim=0)`` reduces across the
        strided dimension and is ~60× slower on CPU for (20, 10,000)."""
        return self.W_dec.pow(2).sum(0).sqrt()

    def feature_directions(self) -> Tensor:
        """(hidden, d_in) unit-norm decoder directions (the same in raw and normalised space)."""
        w = self.W_dec.detach()
        return (w / self.decoder_norms().detach().clamp_min(1e-12)).T

    def extra_repr(self) -> str:
        return f"arch={self.arch}, d_in={self.d_in}, hidden={self.hidden}"


# --------------------------------------------------------------------------- L1 family
def _relu_backward(grad: Tensor, z: Tensor) -> Tensor:
    """``grad`` where ``z > 0``, else 0: one fused pass (ATen's ReLU backward kernel). Boolean
    masks (``torch.where(z > 0, ...)``) cost 2–4× more on CPU for (batch, hidden) tensors."""
    return torch.ops.aten.threshold_backward(grad, z, 0.0)


@register_architecture("vanilla")
class VanillaSAE(SparseAutoencoder):
    """``z = ReLU(W_enc xn + b_enc)``; loss ``MSE + penalty(z)`` (``VanillaConfig.penalty``):

    - ``"tanh"``: ``l1 · Σ_f tanh(S · z_f w_f / √d_in)`` per cell, averaged over cells, with
      ``S = TANH_SHARPNESS``: close to ``l1`` per active latent (an L0 cost) once a latent's
      contribution is a sizeable part of a typical cell, and L1-like near zero;
    - ``"l1"``: ``c · Σ z_f w_f`` with ``c`` from :meth:`l1_unit`;

    ``w`` the decoder norms when ``decoder_norm="l1_weighted"``, else 1."""

    config_class = VanillaConfig
    has_fast_grads = True
    TANH_SHARPNESS: ClassVar[float] = 10.0

    def activate(self, pre: Tensor) -> Tensor:
        return torch.relu(pre)

    def l1_unit(self, batch: int) -> float:
        """What ``l1`` multiplies per unit of ``Σ z·w`` over a batch (see ``VanillaConfig.l1_scale``)."""
        if self.config.l1_scale == "mean":
            return self.config.l1 / (batch * self.hidden)
        return self.config.l1 / (batch * math.sqrt(self.d_in))

    def _weights(self) -> Tensor | None:
        return self.decoder_norms() if self.config.decoder_norm == "l1_weighted" else None

    def penalty(self, z: Tensor) -> Tensor:
        w = self._weights()
        zw = z if w is None else z * w
        if self.config.penalty == "tanh":
            return self.config.l1 * torch.tanh(zw * (self.TANH_SHARPNESS / math.sqrt(self.d_in))).sum() / z.shape[0]
        return self.l1_unit(z.shape[0]) * zw.sum()

    @torch.no_grad()
    def fast_grads_(self, xn: Tensor) -> StepOut:
        """Hand-written gradients of :meth:`loss` into ``.grad`` (no autograd graph).

        The same numbers as autograd (tested) at about half the cost: no graph, ReLU in place,
        one fused ReLU-backward pass, and only two (batch, hidden) tensors (``z``, ``gz``; the
        tanh penalty adds one).
        """
        cfg = self.config
        l1 = cfg.l1 * self.penalty_weight
        b, d = xn.shape
        x_in = xn - self.b_dec if self.pre_bias else xn
        z = torch.addmm(self.b_enc, x_in, self.W_enc.T).relu_()          # (b, h)
        resid = torch.addmm(self.b_dec, z, self.W_dec.T).sub_(xn)       # (b, d)
        mse = resid.pow(2).mean()
        g = resid.mul_(2.0 / (b * d))                                     # dL/dx_hat
        zsum = z.sum(0)                                                   # (h,)
        norms = self._weights()
        if cfg.penalty == "tanh":
            s = self.TANH_SHARPNESS / math.sqrt(d)
            t = torch.tanh(z * (s if norms is None else norms * s))       # (b, h)
            pen = l1 * t.sum() / b
            q = t.mul_(t).neg_().add_(1.0)                                # 1 − tanh²
            c = l1 * s / b
            if norms is not None:
                wsum = (q * z).sum(0)                                     # Σ_b q z, for the norm's gradient
                l1_grad = q.mul_(norms * c)                               # dpen/dz (b, h)
            else:
                l1_grad = q.mul_(c)
            dec_row = wsum * c if norms is not None else None
        else:
            c = self.l1_unit(b) * self.penalty_weight
            if norms is not None:
                l1_grad = (norms * c).unsqueeze(0)
                pen = c * (zsum * norms).sum()
                dec_row = zsum * c
            else:
                l1_grad = z.new_full((1,), c)
                pen = c * zsum.sum()
                dec_row = None
        self.W_dec.grad = g.T @ z                                         # (d, h)
        if dec_row is not None:
            self.W_dec.grad.add_(self.W_dec * (dec_row / norms.clamp_min(1e-12)))
        gz = torch.addmm(l1_grad, g, self.W_dec)                          # dL/dz (b, h)
        gz = _relu_backward(gz, z)                                        # through the ReLU
        self.W_enc.grad = gz.T @ x_in                                     # (h, d)
        self.b_enc.grad = gz.sum(0)
        b_dec_grad = g.sum(0)
        if self.pre_bias:
            b_dec_grad.sub_(self.b_enc.grad @ self.W_enc)
        self.b_dec.grad = b_dec_grad
        return StepOut(mse + pen, mse, pen, zsum > 0)


@register_architecture("relu")
class ReLUSAE(VanillaSAE):
    """Bricken et al.: ``z = ReLU(W_enc (xn − b_dec) + b_enc)``; loss as Vanilla."""

    config_class = ReLUConfig
    pre_bias = True


# --------------------------------------------------------------------------- TopK family
def _fired_from(idx: Tensor, vals: Tensor, hidden: int) -> Tensor:
    fired = torch.zeros(hidden, dtype=torch.bool, device=idx.device)
    fired[idx[vals > 0]] = True
    return fired


@register_architecture("topk")
class TopKSAE(SparseAutoencoder):
    """Gao et al.: ``z = ReLU(TopK_k(W_enc (xn − b_dec) + b_enc))``, tied transpose init, AuxK.

    Training is sparse-aware: the full pre-activations are computed without a graph only to
    pick the winners; the k winners are recomputed with gradients and decoded by gathering k
    decoder columns, so backward costs O(batch · k · d_in) instead of O(batch · hidden · d_in).
    """

    config_class = TopKConfig
    pre_bias = True
    RESAMPLE_ENCODER = 1.0

    @property
    def k(self) -> int:
        """Active latents per sample: ``config.k``, or ``d_in`` when it is unset."""
        return self.config.k_size(self.d_in)

    def activate(self, pre: Tensor) -> Tensor:
        vals, idx = pre.topk(self.k, dim=1)
        return torch.zeros_like(pre).scatter_(1, idx, vals.relu())

    def _select(self, x_in: Tensor, rows: Tensor | None, idx: Tensor) -> tuple[Tensor, Tensor]:
        """Recompute pre-activations of the chosen latents with gradients; return
        ``(values ≥ 0, decoder columns)``. ``rows=None``: ``idx`` is (batch, m), one row per
        sample; else ``rows`` and ``idx`` are flat (n,) sample and latent indices."""
        if rows is None:
            pre = torch.bmm(self.W_enc[idx], x_in.unsqueeze(-1)).squeeze(-1) + self.b_enc[idx]  # (b, m)
        else:
            pre = (self.W_enc[idx] * x_in[rows]).sum(-1) + self.b_enc[idx]                   # (n,)
        return pre.relu(), self.W_dec.T[idx]

    def _aux(self, x_in: Tensor, pre: Tensor, resid: Tensor, dead: Tensor | None) -> Tensor:
        """AuxK: the top ``k_aux`` dead latents reconstruct the residual ``xn − x̂`` (b, d)."""
        cfg = self.config
        zero = resid.new_zeros(())
        if dead is None or cfg.aux_coef == 0:
            return zero
        n_dead = int(dead.sum())
        if n_dead == 0:
            return zero
        k_aux = min(cfg.aux_size(self.d_in), n_dead)
        with torch.no_grad():
            dead_idx = dead.nonzero().squeeze(1)
            idx = dead_idx[pre.index_select(1, dead_idx).topk(k_aux, dim=1, sorted=False).indices]
        vals, cols = self._select(x_in, None, idx)
        e_hat = torch.bmm(vals.unsqueeze(1), cols).squeeze(1)
        return cfg.aux_coef * (e_hat - resid.detach()).pow(2).mean()

    def _winners(self, pre: Tensor) -> tuple[Tensor | None, Tensor]:
        return None, pre.topk(self.k, dim=1, sorted=False).indices

    def _gather(self, xn: Tensor) -> tuple[Tensor, Tensor, Tensor | None, Tensor, Tensor, Tensor]:
        """The training step's winners of normalised input ``xn`` (b, d): ``(x_in, pre, rows, idx,
        values, decoder columns)`` (:meth:`_winners`, :meth:`_select`)."""
        x_in = xn - self.b_dec
        with torch.no_grad():
            pre = torch.addmm(self.b_enc, x_in, self.W_enc.T)
            rows, idx = self._winners(pre)
        vals, cols = self._select(x_in, rows, idx)
        return x_in, pre, rows, idx, vals, cols

    def loss(self, xn: Tensor, *, dead: Tensor | None = None) -> StepOut:
        x_in, pre, rows, idx, vals, cols = self._gather(xn)
        if rows is None:
            x_hat = torch.bmm(vals.unsqueeze(1), cols).squeeze(1) + self.b_dec
        else:
            x_hat = torch.zeros_like(xn).index_add(0, rows, vals.unsqueeze(1) * cols) + self.b_dec
        resid = xn - x_hat
        mse = resid.pow(2).mean()
        aux = self._aux(x_in, pre, resid, dead)
        self._after_winners(vals)
        return StepOut(mse + aux, mse.detach(), aux.detach(), _fired_from(idx, vals.detach(), self.hidden))

    def _after_winners(self, vals: Tensor) -> None:
        return None


@register_architecture("batchtopk")
class BatchTopKSAE(TopKSAE):
    """Bussmann et al.: training keeps the ``k × batch`` largest pre-activations of the batch;
    inference keeps pre-activations above the learned ``threshold`` buffer."""

    config_class = BatchTopKConfig
    THRESHOLD_MOMENTUM: ClassVar[float] = 0.99

    def __init__(self, config: BatchTopKConfig, *, d_in: int, generator: torch.Generator | None = None):
        super().__init__(config, d_in=d_in, generator=generator)
        self.register_buffer("threshold", torch.zeros(()))
        self.register_buffer("threshold_updates", torch.zeros((), dtype=torch.long))

    def activate(self, pre: Tensor) -> Tensor:
        if self.training:
            flat = pre.reshape(-1)
            vals, idx = flat.topk(min(self.k * pre.shape[0], flat.numel()))
            return torch.zeros_like(flat).scatter_(0, idx, vals.relu()).view_as(pre)
        return torch.nn.functional.threshold(pre, max(float(self.threshold), 0.0), 0.0)

    def _winners(self, pre: Tensor) -> tuple[Tensor, Tensor]:
        flat = pre.reshape(-1)
        idx = flat.topk(min(self.k * pre.shape[0], flat.numel()), sorted=False).indices
        return torch.div(idx, self.hidden, rounding_mode="floor"), idx % self.hidden

    @torch.no_grad()
    def _after_winners(self, vals: Tensor) -> None:
        if not self.training:
            return
        positive = vals[vals > 0]
        if positive.numel() == 0:
            return
        smallest = positive.min()
        if int(self.threshold_updates) == 0:
            self.threshold.copy_(smallest)
        else:
            self.threshold.mul_(self.THRESHOLD_MOMENTUM).add_((1 - self.THRESHOLD_MOMENTUM) * smallest)
        self.threshold_updates.add_(1)


@register_architecture("matryoshka")
class MatryoshkaSAE(BatchTopKSAE):
    """Bussmann et al. 2025: TopK encoding (``selection="sample"``, inference as :class:`TopKSAE`)
    or BatchTopK (``"batch"``, inference by the learned threshold as :class:`BatchTopKSAE`);
    training sums the MSE of nested prefix reconstructions (``MatryoshkaConfig.prefixes``),
    each decoding only the winners with index below its size, plus AuxK on the full
    reconstruction's residual.

    Sparse-aware as TopK: with the winners' values ``vals`` and indices ``idx``, prefix ``m``
    keeps ``vals · (idx < m)``; per sample ((b, k) winners) all prefixes are decoded in one
    batched product, (b, prefixes, k) × (b, k, d_in). ``StepOut.mse`` is the full reconstruction's.
    The threshold buffers exist for both selections (unused by ``"sample"``)."""

    config_class = MatryoshkaConfig

    def __init__(self, config: MatryoshkaConfig, *, d_in: int, generator: torch.Generator | None = None):
        super().__init__(config, d_in=d_in, generator=generator)
        ends = torch.tensor(config.prefix_sizes(d_in), dtype=torch.long)
        self.register_buffer("prefix_ends", ends, persistent=False)  # from the config, not saved

    @property
    def _batch(self) -> bool:
        return self.config.selection == "batch"

    def activate(self, pre: Tensor) -> Tensor:
        return BatchTopKSAE.activate(self, pre) if self._batch else TopKSAE.activate(self, pre)

    def _winners(self, pre: Tensor) -> tuple[Tensor | None, Tensor]:
        return BatchTopKSAE._winners(self, pre) if self._batch else TopKSAE._winners(self, pre)

    def _after_winners(self, vals: Tensor) -> None:
        if self._batch:
            BatchTopKSAE._after_winners(self, vals)

    def _prefix_reconstructions(self, xn: Tensor, rows: Tensor | None, idx: Tensor, vals: Tensor,
                                cols: Tensor) -> Tensor:
        """(b, prefixes, d_in): each prefix's reconstruction from the winners (see the class)."""
        ends = self.prefix_ends
        if rows is None:
            keep = (idx.unsqueeze(1) < ends.view(1, -1, 1)).to(xn.dtype)                     # (b, prefixes, k)
            return torch.bmm(vals.unsqueeze(1) * keep, cols) + self.b_dec
        keep = (idx.unsqueeze(0) < ends.unsqueeze(1)).to(xn.dtype)                           # (prefixes, n)
        contrib = vals.unsqueeze(1) * cols                                                    # (n, d)
        parts = [torch.zeros_like(xn).index_add(0, rows, contrib * m.unsqueeze(1)) for m in keep]
        return torch.stack(parts, 1) + self.b_dec

    def loss(self, xn: Tensor, *, dead: Tensor | None = None) -> StepOut:
        x_in, pre, rows, idx, vals, cols = self._gather(xn)
        x_hats = self._prefix_reconstructions(xn, rows, idx, vals, cols)                   # (b, prefixes, d)
        errs = (x_hats - xn.unsqueeze(1)).pow(2).mean(dim=(0, 2))                          # (prefixes,)
        prefix_loss = errs.mean() if self.config.weighting == "mean" else errs.sum()
        resid = xn - x_hats[:, -1]
        aux = self._aux(x_in, pre, resid, dead)
        self._after_winners(vals)
        return StepOut(prefix_loss + aux, errs[-1].detach(), aux.detach(), _fired_from(idx, vals.detach(), self.hidden))

    @torch.no_grad()
    def prefix_mse(self, xn: Tensor, z: Tensor | None = None) -> Tensor:
        """(prefixes,) MSE of each prefix's reconstruction of normalised input ``xn`` (batch, d_in)
        from latents ``z`` (default: inference-mode latents of ``xn``), in the order of ``prefix_ends``."""
        z = self.activate(self.pre_activation(xn)) if z is None else z
        keep = torch.arange(self.hidden, device=z.device).unsqueeze(0) < self.prefix_ends.unsqueeze(1)  # (p, h)
        return torch.stack([(self.decode_normalized(z * m) - xn).pow(2).mean() for m in keep.to(z.dtype)])

    def validation_penalty(self, xn: Tensor, z: Tensor) -> Tensor:
        """The training objective less the full MSE, so that the validation loss (and early
        stopping) follows the prefix objective: without it, the full reconstruction of k = d_in
        latents is best near the init and training would stop after a few evaluations."""
        errs = self.prefix_mse(xn, z)
        total = errs.mean() if self.config.weighting == "mean" else errs.sum()
        return total - errs[-1]


# --------------------------------------------------------------------------- JumpReLU
def _rectangle(pre: Tensor, threshold: Tensor, bandwidth: float) -> Tensor:
    """K((pre − θ) / ε) / ε with the rectangle kernel K(u) = 1 for |u| < 1/2."""
    return ((pre - threshold).abs() < bandwidth / 2).to(pre.dtype) / bandwidth


class _JumpReLU(torch.autograd.Function):
    """``pre · H(pre − θ)``; d/dpre = H(pre − θ), d/dθ = −θ K((pre − θ)/ε)/ε (Rajamanoharan et al.)."""

    @staticmethod
    def forward(ctx, pre: Tensor, threshold: Tensor, bandwidth: float) -> Tensor:
        ctx.save_for_backward(pre, threshold)
        ctx.bandwidth = bandwidth
        return pre * (pre > threshold).to(pre.dtype)

    @staticmethod
    def backward(ctx, grad: Tensor):
        pre, threshold = ctx.saved_tensors
        g_pre = grad * (pre > threshold).to(pre.dtype)
        g_theta = -(grad * threshold * _rectangle(pre, threshold, ctx.bandwidth)).sum(0)
        return g_pre, g_theta, None


class _Step(torch.autograd.Function):
    """``H(pre − θ)``; d/dpre = 0, d/dθ = −K((pre − θ)/ε)/ε."""

    @staticmethod
    def forward(ctx, pre: Tensor, threshold: Tensor, bandwidth: float) -> Tensor:
        ctx.save_for_backward(pre, threshold)
        ctx.bandwidth = bandwidth
        return (pre > threshold).to(pre.dtype)

    @staticmethod
    def backward(ctx, grad: Tensor):
        pre, threshold = ctx.saved_tensors
        return None, -(grad * _rectangle(pre, threshold, ctx.bandwidth)).sum(0), None


@register_architecture("jumprelu")
class JumpReLUSAE(SparseAutoencoder):
    """Rajamanoharan et al. 2024: ``z = pre · H(pre − θ)``, ``pre = W_enc xn + b_enc``, a learned
    threshold θ (parameter ``threshold``, (hidden,), kept ≥ 0); loss ``MSE + l0 · Σ_f H(pre_f − θ_f)``
    per cell, averaged, with straight-through pseudo-derivatives for θ (autograd only)."""

    config_class = JumpReLUConfig

    def __init__(self, config: JumpReLUConfig, *, d_in: int, generator: torch.Generator | None = None):
        super().__init__(config, d_in=d_in, generator=generator)
        self.threshold = nn.Parameter(torch.full((self.hidden,), float(config.init_threshold)))

    def activate(self, pre: Tensor) -> Tensor:
        return pre * (pre > self.threshold).to(pre.dtype)

    def penalty(self, z: Tensor) -> Tensor:
        return self.config.l0 * torch.sign(z).sum() / z.shape[0]

    def loss(self, xn: Tensor, *, dead: Tensor | None = None) -> StepOut:
        pre = self.pre_activation(xn)
        z = _JumpReLU.apply(pre, self.threshold, self.config.bandwidth)
        mse = (self.decode_normalized(z) - xn).pow(2).mean()
        active = _Step.apply(pre, self.threshold, self.config.bandwidth).sum() / xn.shape[0]
        pen = self.config.l0 * self.penalty_weight * active
        return StepOut(mse + pen, mse.detach(), pen.detach(), fired_latents(z.detach()))

    @torch.no_grad()
    def constrain_(self) -> None:
        super().constrain_()
        self.threshold.clamp_(min=0.0)

    @torch.no_grad()
    def resample_dead_(self, dead: Tensor, xn: Tensor, *, generator: torch.Generator) -> Tensor:
        idx = super().resample_dead_(dead, xn, generator=generator)
        self.threshold[idx] = float(self.config.init_threshold)
        return idx
