"""The public test kit: shared batteries and the patch test case, for this project and for third-party patches.

It needs pytest (``pip install gpytorch-ext[test]``). Each battery is a mixin class in its own module, so that a
new kernel, covariance, prior or tie is checked by the same tests as the ones this project ships:

- :class:`PatchTestCase` (:mod:`gpytorch_ext.testing.patch_case`): one registered patch's contract: the
  defect reproduced with the patch reverted, gone with it applied, the very same objects back after unpatch.
- :mod:`gpytorch_ext.testing.covariances`: covariance kinds (``CovarianceFactory`` and thirteen kinds, KeOps
  included) and the normal's batteries: ``MVNLogProbBattery``, ``MVNBatchBattery`` (moments, sampling, indexing,
  ``expand``, entropy, KL when mean and covariance batch shapes differ) and ``MatmulBattery``.
- :mod:`gpytorch_ext.testing.keops`: KeOps kernel families against their dense twins, on every device present:
  ``KeOpsFamilyBattery``, ``KeOpsStructureBattery`` (``last_dim_is_batch``, KISS-GP, additive and product
  structure) and ``PatchedStructureBattery``.
- :mod:`gpytorch_ext.testing.priors`: prior bases against SciPy: ``TruncatedPriorBattery`` and
  ``PriorConstraintBattery`` (a prior and a constraint on every sampling path, the audit and the warning).
- :mod:`gpytorch_ext.testing.tying`: tie kinds against the same model written with one shared parameter:
  ``TyingBattery``.

The battery modules are imported on demand (``from gpytorch_ext.testing.keops import KeOpsFamilyBattery``);
some need the ``test`` extra (SciPy, BoTorch) for particular cases.

A third-party patch registered through the ``gpytorch_ext.patches`` entry point is checked in a few lines::

    from gpytorch_ext.testing import PatchTestCase

    class TestMyFix(PatchTestCase):
        patch_name = "my-fix"
"""

from .patch_case import PatchTestCase

__all__ = ["PatchTestCase"]
