"""Cost of a training step of a model tied by ``equalize`` against the same model tied by hand.

Two cases: two RBF kernels sharing their lengthscale (by hand: one ``nn.Parameter`` assigned to both and the
second prior removed), and a batch of 4 GPs sharing one ARD lengthscale (by hand: one non-batch kernel). Each
step is forward + MLL (with priors) + backward + Adam; the two models are timed interleaved, and the ratio is
the median over many repetitions. Target: ratio <= 1.05.

Run: ``.venv/bin/python benchmarks/tying.py [--reps 150] [--n 100]``
"""

from __future__ import annotations

import argparse
import statistics
import time

import gpytorch
import torch
from gpytorch.priors import GammaPrior

from gpytorch_ext.tying import equalize


class Sum(gpytorch.kernels.Kernel):
    def __init__(self, k1, k2):
        super().__init__()
        self.k1, self.k2 = k1, k2

    def forward(self, x1, x2, diag=False, **params):
        return self.k1(x1[..., :1], x2[..., :1], diag=diag) + self.k2(x1[..., 1:], x2[..., 1:], diag=diag)


class GP(gpytorch.models.ExactGP):
    def __init__(self, x, y, covar_module, batch_shape=torch.Size()):  # noqa: B008
        super().__init__(x, y, gpytorch.likelihoods.GaussianLikelihood(batch_shape=batch_shape))
        self.mean_module = gpytorch.means.ConstantMean(batch_shape=batch_shape)
        self.covar_module = covar_module

    def forward(self, x):
        return gpytorch.distributions.MultivariateNormal(self.mean_module(x), self.covar_module(x))


def rbf(**kwargs):
    return gpytorch.kernels.RBFKernel(lengthscale_prior=GammaPrior(3.0, 6.0), **kwargs)


def two_kernels(x, y):
    tied = equalize(GP(x, y, Sum(rbf(), rbf())), r"covar_module\.k\d\.lengthscale")
    hand = GP(x, y, Sum(rbf(), rbf()))
    hand.covar_module.k2.raw_lengthscale = hand.covar_module.k1.raw_lengthscale
    del hand.covar_module.k2._priors["lengthscale_prior"]
    return tied, hand


def batch(x, y):
    b = torch.Size([4])
    xb, yb = x.expand(*b, *x.shape), y.expand(*b, *y.shape)
    tied = equalize(GP(xb, yb, rbf(batch_shape=b, ard_num_dims=2), b), r"covar_module\.lengthscale")
    hand = GP(xb, yb, rbf(ard_num_dims=2), b)
    return tied, hand


def step_fn(model):
    model.train()
    mll = gpytorch.mlls.ExactMarginalLogLikelihood(model.likelihood, model)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x, y = model.train_inputs[0], model.train_targets

    def step():
        opt.zero_grad()
        loss = -mll(model(x), y).sum()
        loss.backward()
        opt.step()

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=150)
    parser.add_argument("--n", type=int, default=100)
    args = parser.parse_args()
    torch.manual_seed(0)
    x = torch.rand(args.n, 2, dtype=torch.float64)
    y = torch.sin(3 * x[:, 0]) + torch.cos(2 * x[:, 1])
    print(f"torch {torch.__version__}, gpytorch {gpytorch.__version__}, threads {torch.get_num_threads()}")
    print(f"{'case':<34}{'equalize (ms)':>15}{'by hand (ms)':>15}{'ratio':>8}")
    for name, make in (("two RBF kernels, one lengthscale", two_kernels), ("batch of 4 GPs, one lengthscale", batch)):
        tied, hand = (m.double() for m in make(x, y))
        steps = [step_fn(tied), step_fn(hand)]
        for s in steps * 5:  # warm-up
            s()
        times = [[], []]
        for rep in range(args.reps):
            order = (0, 1) if rep % 2 == 0 else (1, 0)
            for i in order:
                start = time.perf_counter()
                steps[i]()
                times[i].append(time.perf_counter() - start)
        ratios = [a / b for a, b in zip(*times)]
        med = [statistics.median(t) * 1e3 for t in times]
        print(f"{name:<34}{med[0]:>15.3f}{med[1]:>15.3f}{statistics.median(ratios):>8.3f}")


if __name__ == "__main__":
    main()
