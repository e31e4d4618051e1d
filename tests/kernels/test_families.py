"""Every KeOps kernel family: GPyTorch's own mixins (against the dense namesake) and our shared battery.

The reference matrices below are written by hand from the textbook formulas and the kernels' parameter
values, with explicit broadcasting (``x1[..., :, None, :] - x2[..., None, :, :]``). GPyTorch's own KeOps classes
that the ``keops-kernels`` patch repairs run through the structure battery, with the upstream defect. Every
battery case also has a CUDA copy, skipped where no GPU is present.
"""

from __future__ import annotations

import math
import unittest

import gpytorch
import torch
from gpytorch.test.base_keops_test_case import BaseKeOpsTestCase
from gpytorch.test.base_kernel_test_case import BaseKernelTestCase

from gpytorch_ext.kernels import keops as ext
from gpytorch_ext.testing.keops import KeOpsFamilyBattery, PatchedStructureBattery, on_every_device


def _diff(x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
    return x1[..., :, None, :] - x2[..., None, :, :]


def _sqdist(x1: torch.Tensor, x2: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return (_diff(x1, x2) / scale[..., None, :, :]).pow(2).sum(-1)


def _rbf(k, x1, x2):
    return torch.exp(-0.5 * _sqdist(x1, x2, k.lengthscale))


def _matern(k, x1, x2):
    r = _sqdist(x1, x2, k.lengthscale).clamp_min(1e-30).sqrt()
    poly = {0.5: 1.0, 1.5: 1 + math.sqrt(3) * r, 2.5: 1 + math.sqrt(5) * r + 5.0 / 3.0 * r**2}[k.nu]
    return poly * torch.exp(-math.sqrt(2 * k.nu) * r)


def _periodic(k, x1, x2):
    s = torch.sin(math.pi * _diff(x1, x2) / k.period_length[..., None, :, :]) ** 2
    return torch.exp(-2.0 * (s / k.lengthscale[..., None, :, :]).sum(-1))


def _rq(k, x1, x2):
    alpha = k.alpha.unsqueeze(-1)  # *batch x 1 x 1
    return (1 + _sqdist(x1, x2, k.lengthscale) / (2 * alpha)) ** (-alpha)


def _cosine(k, x1, x2):
    r = _sqdist(x1, x2, k.period_length).clamp_min(1e-30).sqrt()
    return torch.cos(math.pi * r)


def _linear(k, x1, x2):
    return (x1[..., :, None, :] * x2[..., None, :, :] * k.variance[..., None, :, :]).sum(-1)


def _polynomial(k, x1, x2):
    offset = k.offset[..., None]  # *batch x 1 x 1
    return ((x1[..., :, None, :] * x2[..., None, :, :]).sum(-1) + offset) ** k.power


def _polynomial_by_dimension(k, x1, x2):
    """``... x D x N x M``: the polynomial kernel of each input column (GPyTorch's dense PolynomialKernel adds its
    ``*batch x 1 x 1`` offset to the ``*batch x D x N x M`` products, which does not broadcast for a batch)."""
    offset = k.offset[..., None, None]  # *batch x 1 x 1 x 1
    prods = x1.transpose(-1, -2)[..., :, :, None] * x2.transpose(-1, -2)[..., :, None, :]
    return (prods + offset) ** k.power


def _spectral_mixture(k, x1, x2):
    tau = _diff(x1, x2)[..., None, :, :, :]  # ... x 1 x N x M x D
    w = k.mixture_weights[..., :, None, None, None]  # *batch x Q x 1 x 1 x 1
    s = k.mixture_scales[..., None, :]  # *batch x Q x 1 x 1 x D
    mu = k.mixture_means[..., None, :]
    per_dim = (w * torch.exp(-2 * math.pi**2 * (tau * s) ** 2) * torch.cos(2 * math.pi * tau * mu)).sum(-4)
    return per_dim.prod(-1)


# (name, our class, dense class, kwargs, ard, reference)
FAMILIES = [
    ("RBF", ext.RBFKernel, gpytorch.kernels.RBFKernel, {}, True, _rbf),
    ("Matern05", ext.MaternKernel, gpytorch.kernels.MaternKernel, {"nu": 0.5}, True, _matern),
    ("Matern15", ext.MaternKernel, gpytorch.kernels.MaternKernel, {"nu": 1.5}, True, _matern),
    ("Matern25", ext.MaternKernel, gpytorch.kernels.MaternKernel, {"nu": 2.5}, True, _matern),
    ("Periodic", ext.PeriodicKernel, gpytorch.kernels.PeriodicKernel, {}, True, _periodic),
    ("RQ", ext.RQKernel, gpytorch.kernels.RQKernel, {}, True, _rq),
    ("Cosine", ext.CosineKernel, gpytorch.kernels.CosineKernel, {}, False, _cosine),
    ("Linear", ext.LinearKernel, gpytorch.kernels.LinearKernel, {}, True, _linear),
    ("Polynomial", ext.PolynomialKernel, gpytorch.kernels.PolynomialKernel, {"power": 3}, False, _polynomial),
    (
        "SpectralMixture",
        ext.SpectralMixtureKernel,
        gpytorch.kernels.SpectralMixtureKernel,
        {"num_mixtures": 2, "ard_num_dims": 3},
        False,
        _spectral_mixture,
    ),
]


#: hand-built ``last_dim_is_batch`` references where GPyTorch's dense twin is wrong
BY_DIMENSION = {"Polynomial": _polynomial_by_dimension}


def _battery_case(name, ours, dense, kwargs, ard, reference):
    attrs = {
        "kernel_class": ours,
        "dense_class": dense,
        "kwargs": kwargs,
        "ard": ard,
        "reference": lambda self, k, x1, x2: reference(k, x1, x2),
    }
    if name in BY_DIMENSION:
        attrs["reference_by_dimension"] = lambda self, k, x1, x2: BY_DIMENSION[name](k, x1, x2)
    return on_every_device(type(f"Test{name}Battery", (KeOpsFamilyBattery, unittest.TestCase), attrs))


def _keops_mixin_case(name, ours, dense, kwargs, ard, reference):
    def k1(self, **kw):
        return randomize_same(ours(**_merge(kwargs, kw)), seed=7)

    def k2(self, **kw):
        return randomize_same(dense(**_merge(kwargs, kw)), seed=7)

    attrs = {"k1": k1, "k2": k2, "test_gradient": _mixin_test_gradient}
    if kwargs.get("nu") == 0.5 or ours is ext.PolynomialKernel:
        # float32 roundoff of the dense kernel itself exceeds the mixin's absolute 1e-4 norm: the dense
        # Matern-1/2 takes exp(-sqrt(roundoff)) on its diagonal, the cubic polynomial has entries ~1e2.
        # Compare in float64 instead.
        attrs["setUp"] = _float64_set_up
        attrs["tearDown"] = _float64_tear_down
    return {
        f"Test{name}GPyTorchKeOpsMixin": type(
            f"Test{name}GPyTorchKeOpsMixin", (BaseKeOpsTestCase, unittest.TestCase), attrs
        )
    }


def _float64_set_up(self):
    self._dtype = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)


def _float64_tear_down(self):
    torch.set_default_dtype(self._dtype)


def _mixin_test_gradient(self, use_keops=True, ard=False, **kwargs):
    """GPyTorch's ``BaseKeOpsTestCase.test_gradient``, comparing parameter by parameter.

    The original stacks all gradients with ``torch.vstack``, which only works when every hyperparameter has
    the lengthscale's shape (RQ with ARD and the spectral mixture have others).
    """
    import gpytorch.test.base_keops_test_case as base

    with gpytorch.settings.max_cholesky_size(base.CHOLESKY_SIZE_KEOPS if use_keops else base.CHOLESKY_SIZE_NONKEOPS):
        x1 = torch.randn(4, 100, 3)
        extra = {"ard_num_dims": 3} if ard else {}
        kern1, kern2 = self.k1(**extra, **kwargs), self.k2(**extra, **kwargs)
        with base.patch("gpytorch.kernels.keops.keops_kernel.LazyTensor", wraps=lambda x: x) as keops_mock:
            grads1 = torch.autograd.grad(kern1(x1, x1).sum(), [*kern1.hyperparameters()])
            grads2 = torch.autograd.grad(kern2(x1, x1).sum(), [*kern2.hyperparameters()])
            for g1, g2 in zip(grads1, grads2):
                self.assertAllClose(g1, g2, rtol=1e-3, atol=1e-3)
    if use_keops:
        self.assertTrue(keops_mock.called)


def _kernel_mixin_case(name, ours, dense, kwargs, ard, reference):
    def create_kernel_no_ard(self, **kw):
        merged = _merge(kwargs, kw)
        if ours is ext.SpectralMixtureKernel:
            merged["ard_num_dims"] = len(kw["active_dims"]) if "active_dims" in kw else self._sm_dims
        return ours(**merged)

    def create_kernel_ard(self, num_dims, **kw):
        if not ard:
            raise NotImplementedError
        return ours(ard_num_dims=num_dims, **_merge(kwargs, kw))

    attrs = {"create_kernel_no_ard": create_kernel_no_ard, "create_kernel_ard": create_kernel_ard, "_sm_dims": 2}
    if ours is ext.SpectralMixtureKernel:
        # its input dimension is fixed by ard_num_dims: the active_dims mixin tests compare a kernel on all
        # columns with one on the selected columns, so give the reference kernel the selected column count
        attrs["test_active_dims_list"] = lambda self: _sm_active_dims(self, [0, 2, 4, 6])
        attrs["test_active_dims_range"] = lambda self: _sm_active_dims(self, list(range(3, 9)))
    return {
        f"Test{name}GPyTorchKernelMixin": type(
            f"Test{name}GPyTorchKernelMixin", (BaseKernelTestCase, unittest.TestCase), attrs
        )
    }


def _sm_active_dims(case, dims):
    kernel = case.create_kernel_no_ard(active_dims=dims)
    basic = ext.SpectralMixtureKernel(num_mixtures=2, ard_num_dims=len(dims))
    with torch.no_grad():
        for name, p in basic.named_parameters():
            p.copy_(dict(kernel.named_parameters())[name])
    x = case.create_data_no_batch()
    case.assertAllClose(
        kernel(x).evaluate_kernel().to_dense(), basic(x[:, dims]).evaluate_kernel().to_dense(), rtol=1e-3, atol=1e-5
    )


def _merge(kwargs, kw):
    merged = {**kwargs, **kw}
    return merged


def randomize_same(kernel, seed):
    """Equal raw parameter values for our kernel and the dense one (they have the same parameter names)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, p in sorted(kernel.named_parameters()):
            p.copy_(torch.randn(p.shape, generator=gen).mul(0.3))
    return kernel


# GPyTorch's own KeOps classes, repaired by the keops-kernels patch: (name, class, dense twin, kwargs)
PATCHED = [
    ("RBF", gpytorch.kernels.keops.RBFKernel, gpytorch.kernels.RBFKernel, {}),
    ("Matern", gpytorch.kernels.keops.MaternKernel, gpytorch.kernels.MaternKernel, {"nu": 2.5}),
    ("Periodic", gpytorch.kernels.keops.PeriodicKernel, gpytorch.kernels.PeriodicKernel, {}),
]


def _patched_case(name, keops_class, dense, kwargs):
    attrs = {"kernel_class": keops_class, "dense_class": dense, "kwargs": kwargs, "patch_name": "keops-kernels"}
    return on_every_device(
        type(f"TestGPyTorch{name}StructureBattery", (PatchedStructureBattery, unittest.TestCase), attrs)
    )


for _family in FAMILIES:
    for _factory in (_battery_case, _keops_mixin_case, _kernel_mixin_case):
        globals().update(_factory(*_family))
for _patched in PATCHED:
    globals().update(_patched_case(*_patched))
del _family, _factory, _patched
