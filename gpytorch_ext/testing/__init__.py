"""The public test kit: shared batteries and the patch test case, for this project and for third-party patches.

It needs pytest (``pip install gpytorch-ext[test]``). Each battery is a mixin class in its own module, so that a
new kernel, covariance, prior or tie is checked by the same tests as the ones this project ships:

- :class:`PatchTestCase` (:mod:`gpytorch_ext.testing.patch_case`): one registered patch's contract: the
  defect reproduced with the patch reverted, gone with it applied, the very same objects back after unpatch.

A third-party patch registered through the ``gpytorch_ext.patches`` entry point is checked in a few lines::

    from gpytorch_ext.testing import PatchTestCase

    class TestMyFix(PatchTestCase):
        patch_name = "my-fix"
"""

from .patch_case import PatchTestCase

__all__ = ["PatchTestCase"]
