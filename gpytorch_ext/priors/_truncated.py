"""A univariate prior truncated to an interval.

Private and self-contained (imports only torch and gpytorch, plus the sibling ``_intervals`` helpers) so
that it can be vendored into GPyTorch.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from gpytorch.priors import Prior
from gpytorch.priors.utils import _load_transformed_to_base_dist
from torch import Tensor
from torch.distributions import TransformedDistribution
from torch.distributions import constraints as tc
from torch.nn import Module as TModule

from ._intervals import _dtype_of, _interior, describe_prior, format_interval, support_bounds

__all__ = ["TruncatedPrior"]


class _State(NamedTuple):
    support: tuple[Tensor, Tensor]  # the base prior's support bounds
    bounds: tuple[Tensor, Tensor]  # the effective interval, batch-shaped
    interior: Tensor  # a point strictly inside it
    cdf: tuple[Tensor, Tensor] | None  # F(a), F(b); None for a base without a CDF


_MC_SAMPLES = 16384
_MC_SEED = 20240517
_REJECTION_ROUNDS = 200
_FAST_REJECTION_ROUNDS = 4
_REJECTION_MIN_MASS = 0.5


class TruncatedPrior(Prior):
    r"""A univariate prior truncated to the interval :math:`(a, b)`.

    .. math::

        p_{(a, b)}(x) = \frac{p(x)\, \mathbb 1[a \le x \le b]}{F(b) - F(a)},

    with :math:`p` and :math:`F` the density and CDF of ``base_prior``. The effective interval is the
    intersection of :math:`(a, b)` with the base prior's support, and :attr:`support` is the matching torch
    constraint (``interval``, ``greater_than``, ``less_than`` or ``real``), so Pyro's NUTS moves in an
    unconstrained space that maps into it.

    Sampling uses the inverse CDF, :math:`x = F^{-1}(F(a) + u\,(F(b) - F(a)))` with :math:`u \sim U(0, 1)`;
    it is reparameterised (``rsample``) when the base has ``icdf``. A base with a CDF but no ``icdf`` (e.g.
    ``GammaPrior``) is inverted by bisection on the floating-point numbers of the interval (exact to one
    unit in the last place). A base without a CDF is sampled by rejection (bounded retries) and its
    normaliser :math:`F(b) - F(a)` is estimated once, at construction, from a fixed-seed Monte Carlo
    sample of size 16384 (relative error about :math:`1/\sqrt{16384\,Z}`); the global RNG is left untouched.
    Samples are always strictly inside the interval (clamped to the neighbouring floating-point numbers).

    :param base_prior: a univariate prior (``event_shape`` ``()``) or torch distribution, possibly batched.
    :param lower: lower bound :math:`a` (float or tensor broadcastable with the batch shape); ``None`` for
        :math:`-\infty`.
    :param upper: upper bound :math:`b`; ``None`` for :math:`+\infty`.
    :param validate_args: passed to :class:`torch.distributions.Distribution`.
    :param batch_shape: optional batch shape to broadcast to (cheaper than ``expand``: the base is not copied).
    """

    arg_constraints: dict = {}

    def __init__(
        self,
        base_prior: torch.distributions.Distribution,
        lower: float | Tensor | None = None,
        upper: float | Tensor | None = None,
        validate_args: bool = False,
        batch_shape: torch.Size | None = None,
        _log_normalizer: Tensor | None = None,
    ) -> None:
        TModule.__init__(self)
        if not isinstance(base_prior, torch.distributions.Distribution):
            raise TypeError(f"TruncatedPrior needs a Prior or torch Distribution, got {type(base_prior).__name__}")
        if len(base_prior.event_shape) != 0:
            raise ValueError(
                f"TruncatedPrior needs a univariate base prior, got {type(base_prior).__name__} with event_shape "
                f"{tuple(base_prior.event_shape)}"
            )
        if getattr(base_prior, "_transform", None) is not None:
            raise ValueError(f"TruncatedPrior cannot truncate {type(base_prior).__name__} with a transform")
        bounds = support_bounds(base_prior.support)
        if bounds is None:
            raise ValueError(f"the support of {type(base_prior).__name__} ({base_prior.support}) is not an interval")
        dtype = _dtype_of(base_prior)
        lower_t = torch.as_tensor(-math.inf if lower is None else lower, dtype=dtype).detach().clone()
        upper_t = torch.as_tensor(math.inf if upper is None else upper, dtype=dtype).detach().clone()
        if not bool((lower_t < upper_t).all()):  # NaN compares False
            raise ValueError(f"TruncatedPrior needs lower < upper, got lower={lower}, upper={upper}")
        batch_shape = torch.broadcast_shapes(
            base_prior.batch_shape, lower_t.shape, upper_t.shape, torch.Size(() if batch_shape is None else batch_shape)
        )

        # torch's Distribution.__init__ re-runs Module.__init__ (via the MRO), so register state after it
        super(Prior, self).__init__(batch_shape, torch.Size(), validate_args=validate_args)
        self.base_prior = base_prior
        self.register_buffer("lower", lower_t)
        self.register_buffer("upper", upper_t)
        self._transform = None

        self._has_cdf = _implements(base_prior.cdf, _interior(*self._support_bounds()))
        self._has_icdf = self._has_cdf and _implements(base_prior.icdf, torch.tensor(0.5, dtype=dtype))

        state = self._state()
        lo, hi = state.bounds
        if (lo >= hi).any():
            raise ValueError(
                f"{describe_prior(base_prior)} has no mass in {format_interval(lower_t, upper_t)}: its support is "
                f"{format_interval(*state.support)}"
            )
        finite_lo, finite_hi = lo > -math.inf, hi < math.inf  # the bounds are NaN-free here
        if (finite_lo.any() and not finite_lo.all()) or (finite_hi.any() and not finite_hi.all()):
            raise ValueError("TruncatedPrior needs each bound finite in all batch elements or infinite in all of them")

        if self._has_cdf:
            log_z = self._cdf_log_normalizer()
        elif _log_normalizer is not None:
            log_z = _log_normalizer
        else:
            log_z = self._mc_log_normalizer()
            self.register_buffer("_mc_log_z", log_z)
        if not torch.isfinite(log_z).all():
            raise ValueError(
                f"{describe_prior(base_prior)} has no numerically representable mass in "
                f"{format_interval(lower_t, upper_t)} (normaliser underflows); use bounds closer to its bulk"
            )

    def __setattr__(self, name: str, value) -> None:
        # not a TransformedDistribution: skip Prior.__setattr__'s buffered-attribute lookup (hasattr per set)
        TModule.__setattr__(self, name, value)

    # --- interval bookkeeping ---------------------------------------------------------------------

    def _support_bounds(self) -> tuple[Tensor, Tensor]:
        s_lo, s_hi = support_bounds(self.base_prior.support)
        return torch.as_tensor(s_lo, dtype=self.lower.dtype, device=self.lower.device), torch.as_tensor(
            s_hi, dtype=self.lower.dtype, device=self.lower.device
        )

    def _state_key(self) -> tuple | None:
        """Identity and version of every tensor the interval depends on; ``None`` where it must not be cached."""
        tensors = [self.lower, self.upper]
        base = self.base_prior
        if isinstance(base, TModule):
            if base._modules:
                tensors.extend(base.buffers())
                tensors.extend(base.parameters())
            else:  # a flat prior (every GPyTorch prior): its own tensors, without the generators' overhead
                tensors.extend(t for t in base._buffers.values() if t is not None)
                tensors.extend(t for t in base._parameters.values() if t is not None)
        if torch.is_grad_enabled() and any(t.requires_grad for t in tensors):
            return None  # a learnable base: the CDF bounds carry a graph, which must be rebuilt for each use
        return tuple((id(t), t._version) for t in tensors)

    def _state(self) -> _State:
        """The effective interval and the CDF at its ends, recomputed only when a tensor they depend on changes.

        The key covers the bounds and the base prior's buffers and parameters (``load_state_dict`` and in-place
        updates bump a tensor's version; ``.to`` replaces it). A base that keeps its parameters outside buffers
        (a plain torch distribution) is treated as immutable, as torch distributions are.
        """
        key = self._state_key()
        cached = self.__dict__.get("_cached_state")
        if key is not None and cached is not None and cached[0] == key:
            return cached[1]
        s_lo, s_hi = self._support_bounds()
        lo, hi = torch.maximum(self.lower, s_lo), torch.minimum(self.upper, s_hi)
        point = _interior(lo, hi).expand(self.batch_shape)
        lo, hi = lo.expand(self.batch_shape), hi.expand(self.batch_shape)
        cdf = None
        if self._has_cdf and bool((lo < hi).all()):  # an empty interval has no CDF bounds (__init__ raises)
            cut_lo, cut_hi = lo > s_lo, hi < s_hi
            if cut_lo.any():
                f_lo = torch.where(cut_lo, self.base_prior.cdf(torch.where(cut_lo, lo, point)), 0.0)
            else:
                f_lo = torch.zeros_like(point)
            if cut_hi.any():
                f_hi = torch.where(cut_hi, self.base_prior.cdf(torch.where(cut_hi, hi, point)), 1.0)
            else:
                f_hi = torch.ones_like(point)
            cdf = (f_lo, f_hi)
        state = _State((s_lo, s_hi), (lo, hi), point, cdf)
        self.__dict__["_cached_state"] = (key, state)  # a plain attribute: not a buffer, not in state_dict
        return state

    def _bounds(self) -> tuple[Tensor, Tensor]:
        """The effective interval: the truncation bounds intersected with the base support, batch-shaped."""
        return self._state().bounds

    @property
    def support(self) -> tc.Constraint:
        lo, hi = self._bounds()
        finite_lo, finite_hi = bool((lo > -math.inf).all()), bool((hi < math.inf).all())
        if finite_lo and finite_hi:
            return tc.interval(lo, hi)
        if finite_lo:
            return tc.greater_than(lo)
        if finite_hi:
            return tc.less_than(hi)
        return tc.real

    @property
    def has_rsample(self) -> bool:
        return self._has_icdf

    def _cdf_bounds(self) -> tuple[Tensor, Tensor]:
        """:math:`F(a)` and :math:`F(b)` at the effective bounds (0 and 1 where the support is not cut)."""
        return self._state().cdf

    def _cdf_log_normalizer(self) -> Tensor:
        f_lo, f_hi = self._cdf_bounds()
        return torch.log(f_hi - f_lo)

    def _log_normalizer(self) -> Tensor:
        if self._has_cdf:
            return self._cdf_log_normalizer()
        return self._mc_log_z

    def _mc_log_normalizer(self) -> Tensor:
        lo, hi = self._bounds()
        with torch.random.fork_rng(devices=[lo.device] if lo.device.type == "cuda" else []), torch.no_grad():
            torch.manual_seed(_MC_SEED)
            draws = self._base_sample(torch.Size([_MC_SAMPLES]))
            inside = ((draws >= lo) & (draws <= hi)).to(lo.dtype)
        return torch.log(inside.mean(0))

    def _expanded_base(self):
        return self._expanded_base_for(self.batch_shape)

    def _base_sample(self, sample_shape: torch.Size) -> Tensor:
        """Independent base draws of shape ``sample_shape + batch_shape``, without copying the base if possible."""
        base_shape, batch = self.base_prior.batch_shape, self.batch_shape
        lead = len(batch) - len(base_shape)
        if lead >= 0 and tuple(batch[lead:]) == tuple(base_shape):
            return self.base_prior.sample(torch.Size(sample_shape) + batch[:lead])
        return self._expanded_base().sample(sample_shape)

    # --- density and sampling ---------------------------------------------------------------------

    def log_prob(self, value: Tensor) -> Tensor:
        r"""Base log-density minus :math:`\log(F(b) - F(a))` inside the interval, :math:`-\infty` outside."""
        value = torch.as_tensor(value, dtype=self.lower.dtype, device=self.lower.device)
        state = self._state()
        lo, hi = state.bounds
        inside = (value >= lo) & (value <= hi)
        safe = torch.where(inside, value, state.interior)
        log_p = (self.base_prior.log_prob(safe) - self._log_normalizer()).to(self.lower.dtype)
        return torch.where(inside, log_p, torch.full_like(log_p, -math.inf))

    def cdf(self, value: Tensor) -> Tensor:
        """CDF of the truncated distribution (needs a base with a CDF)."""
        if not self._has_cdf:
            raise NotImplementedError(f"{type(self.base_prior).__name__} has no cdf")
        value = torch.as_tensor(value, dtype=self.lower.dtype, device=self.lower.device)
        state = self._state()
        (lo, hi), (f_lo, f_hi) = state.bounds, state.cdf
        clamped = torch.where(value < lo, lo, torch.where(value > hi, hi, value))
        safe = torch.where((value > lo) & (value < hi), clamped, state.interior)
        inner = (self.base_prior.cdf(safe) - f_lo) / (f_hi - f_lo)
        out = torch.where(value <= lo, torch.zeros_like(inner), torch.where(value >= hi, torch.ones_like(inner), inner))
        return out.clamp(0.0, 1.0)

    def icdf(self, prob: Tensor) -> Tensor:
        """Inverse CDF of the truncated distribution (needs a base with a CDF)."""
        if not self._has_cdf:
            raise NotImplementedError(f"{type(self.base_prior).__name__} has no cdf")
        prob = torch.as_tensor(prob, dtype=self.lower.dtype, device=self.lower.device)
        f_lo, f_hi = self._cdf_bounds()
        p = f_lo + prob * (f_hi - f_lo)
        return self._strictly_inside(self._invert(p))

    def rsample(self, sample_shape: torch.Size = torch.Size()) -> Tensor:  # noqa: B008
        if not self._has_icdf:
            raise NotImplementedError(f"{type(self.base_prior).__name__} has no icdf: use sample()")
        shape = self._extended_shape(sample_shape)
        f_lo, f_hi = self._cdf_bounds()
        u = torch.rand(shape, dtype=self.lower.dtype, device=self.lower.device)
        return self._strictly_inside(self.base_prior.icdf(f_lo + u * (f_hi - f_lo)))

    def sample(self, sample_shape: torch.Size = torch.Size()) -> Tensor:  # noqa: B008
        sample_shape = torch.Size(sample_shape)
        with torch.no_grad():
            if self._has_icdf:
                return self.rsample(sample_shape)
            if self._has_cdf:
                return self._sample_by_cdf(sample_shape)
            return self._rejection_sample(sample_shape)

    def _sample_by_cdf(self, sample_shape: torch.Size) -> Tensor:
        """Exact sampling for a base with a CDF but no icdf.

        Where the interval holds most of the base's mass, a few rounds of rejection sampling from the base (cheap:
        the base's own sampler) settle nearly every element; the rest are drawn by inverting the CDF. Each element
        is accepted independently, so the result is exactly the truncated distribution either way.
        """
        shape = self._extended_shape(sample_shape)
        state = self._state()
        f_lo, f_hi = state.cdf
        if bool(((f_hi - f_lo) >= _REJECTION_MIN_MASS).all()):
            out, accepted = self._rejection_rounds(sample_shape, _FAST_REJECTION_ROUNDS, state.bounds)
            if bool(accepted.all()):
                return out
        else:
            out, accepted = torch.zeros(shape, dtype=self.lower.dtype, device=self.lower.device), None
        lo, hi = (b.expand(shape) for b in state.bounds)
        f_lo, f_hi = f_lo.expand(shape), f_hi.expand(shape)
        todo = torch.ones(shape, dtype=torch.bool, device=out.device) if accepted is None else ~accepted
        u = torch.rand(int(todo.sum()), dtype=self.lower.dtype, device=self.lower.device)
        p = f_lo[todo] + u * (f_hi[todo] - f_lo[todo])
        base = self._expanded_base_for(shape)
        fill = state.interior.expand(shape)
        x = _bisect_cdf(lambda v: _masked_cdf(base, v, todo, fill), p, lo[todo], hi[todo])
        inf = torch.full_like(x, math.inf)
        x = torch.clamp(x, min=torch.nextafter(lo[todo], inf), max=torch.nextafter(hi[todo], -inf))
        return out.masked_scatter(todo, x)

    def _expanded_base_for(self, shape: torch.Size):
        base = self.base_prior
        return base if base.batch_shape == shape else base.expand(shape)

    def _invert(self, p: Tensor) -> Tensor:
        if self._has_icdf:
            return self.base_prior.icdf(p)
        lo, hi = self._bounds()
        return _bisect_cdf(self.base_prior.cdf, p, lo, hi)

    def _strictly_inside(self, x: Tensor) -> Tensor:
        lo, hi = self._bounds()
        inf = torch.full_like(lo, math.inf)
        return torch.clamp(x, min=torch.nextafter(lo, inf), max=torch.nextafter(hi, -inf))

    def _rejection_rounds(
        self, sample_shape: torch.Size, rounds: int, bounds: tuple[Tensor, Tensor] | None = None
    ) -> tuple[Tensor, Tensor]:
        lo, hi = self._bounds() if bounds is None else bounds
        out = self._base_sample(sample_shape).to(self.lower.dtype)
        accepted = (out > lo) & (out < hi)
        for _ in range(rounds):
            if bool(accepted.all()):
                break
            draw = self._base_sample(sample_shape).to(self.lower.dtype)
            take = ~accepted & (draw > lo) & (draw < hi)
            out = torch.where(take, draw, out)
            accepted = accepted | take
        return out, accepted

    def _rejection_sample(self, sample_shape: torch.Size) -> Tensor:
        out, accepted = self._rejection_rounds(sample_shape, _REJECTION_ROUNDS)
        if bool(accepted.all()):
            return out
        raise ValueError(
            f"could not draw from {describe_prior(self.base_prior)} inside {format_interval(self.lower, self.upper)} "
            f"in {_REJECTION_ROUNDS} rounds of rejection sampling: the interval holds too little of its mass"
        )

    # --- module plumbing --------------------------------------------------------------------------

    def expand(self, batch_shape: torch.Size, _instance=None) -> TruncatedPrior:
        batch_shape = torch.Size(batch_shape)
        log_z = None if self._has_cdf else self._mc_log_z.expand(batch_shape)
        return TruncatedPrior(
            self.base_prior, self.lower, self.upper, validate_args=False, batch_shape=batch_shape, _log_normalizer=log_z
        )

    def _apply(self, fn, *args, **kwargs):
        out = super()._apply(fn, *args, **kwargs)
        self.__dict__.pop("_cached_state", None)
        if isinstance(self.base_prior, TransformedDistribution) and isinstance(self.base_prior, TModule):
            _load_transformed_to_base_dist(self.base_prior)
        return out

    def extra_repr(self) -> str:
        return f"lower={self.lower.tolist()}, upper={self.upper.tolist()}" if self.lower.numel() <= 4 else ""

    def __repr__(self) -> str:
        return describe_prior(self)


def _implements(method, *args) -> bool:
    try:
        with torch.no_grad():
            for arg in args:
                method(torch.as_tensor(arg))
        return True
    except NotImplementedError:
        return False
    except (ValueError, RuntimeError):
        return True  # implemented, just not at that point (argument validation)


def _masked_cdf(base, value: Tensor, mask: Tensor, fill: Tensor) -> Tensor:
    """``base.cdf`` at a batch-shaped argument holding the flat ``value`` where ``mask`` and ``fill`` elsewhere."""
    full = fill.to(value.dtype).clone()
    full[mask] = value
    return base.cdf(full)[mask]


# --- bisection on the floating-point numbers -----------------------------------------------------

_INT = {torch.float32: torch.int32, torch.float64: torch.int64}


def _to_key(x: Tensor) -> Tensor:
    """Map floats to integers in the same order (``-0.0`` and ``0.0`` both to 0)."""
    bits = x.view(_INT[x.dtype]).to(torch.int64)
    sign_min = torch.iinfo(_INT[x.dtype]).min
    return torch.where(bits >= 0, bits, sign_min - bits)


def _from_key(key: Tensor, dtype: torch.dtype) -> Tensor:
    sign_min = torch.iinfo(_INT[dtype]).min
    bits = torch.where(key >= 0, key, sign_min - key)
    return bits.to(_INT[dtype]).view(dtype)


def _bisect_cdf(cdf, p: Tensor, lo: Tensor, hi: Tensor) -> Tensor:
    """The smallest float ``x`` in ``[lo, hi]`` with ``cdf(x) >= p`` (elementwise), by bisection on float keys.

    Converges in at most 64 rounds whatever the scale of the interval (infinite ends included).
    """
    dtype = p.dtype
    work = dtype if dtype in _INT else torch.float32
    p = p.to(work)
    k_lo = _to_key(lo.to(work).expand(p.shape).contiguous())
    k_hi = _to_key(hi.to(work).expand(p.shape).contiguous())
    for _ in range(70):
        open_ = (k_hi - k_lo) > 1
        if not bool(open_.any()):
            break
        k_mid = (k_lo >> 1) + (k_hi >> 1) + (k_lo & k_hi & 1)
        below = cdf(_from_key(k_mid, work)) < p
        k_lo = torch.where(open_ & below, k_mid, k_lo)
        k_hi = torch.where(open_ & ~below, k_mid, k_hi)
    return _from_key(k_hi, work).to(dtype)
