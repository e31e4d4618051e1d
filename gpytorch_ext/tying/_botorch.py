"""BoTorch: a tie across outputs or models makes ``fit_gpytorch_mll`` fit the model jointly.

BoTorch fits a batched multi-output model (``SingleTaskGP`` with several outputs) one output at a time
(``_fit_gpytorch_mll_scipy_independent``) and a ``ModelListGP`` one model at a time: both assume that no
parameter is shared across outputs or models. A model tied across them gets BoTorch's own per-model fitting hook,
``custom_fit`` (which ``fit_gpytorch_mll`` calls first): it runs BoTorch's generic fit (retries and rollback
included) on the joint objective, as BoTorch does for every single-output model.
"""

from __future__ import annotations

import sys
from typing import Any

from torch import nn


def needs_joint_fit(root: nn.Module, names: list[str]) -> bool:
    """Whether a tie of ``names`` crosses the outputs or models that BoTorch fits independently."""
    if hasattr(type(root), "custom_fit"):
        return False  # the model's own fitting routine stays
    batched = sys.modules.get("botorch.models.gpytorch")
    if batched is not None and isinstance(root, batched.BatchedMultiOutputGPyTorchModel):
        return root._aug_batch_shape.numel() > 1
    lists = sys.modules.get("botorch.models.model_list_gp_regression")
    if lists is not None and isinstance(root, lists.ModelListGP):
        return len({name.split(".")[1] for name in names if name.startswith("models.")}) > 1
    return False


def fit_jointly(
    mll: Any, closure: Any = None, closure_kwargs: Any = None, optimizer_kwargs: Any = None, **kwargs: Any
) -> Any:
    """``custom_fit`` of a tied BoTorch model: ``fit_gpytorch_mll`` with the joint loss of ``mll``."""
    from botorch.fit import _fit_fallback  # BoTorch's generic fit loop; fit_gpytorch_mll would call us again
    from botorch.optim.closures import get_loss_closure_with_grads
    from botorch.optim.utils import get_parameters

    if closure is None:
        closure = get_loss_closure_with_grads(mll, parameters=get_parameters(mll, requires_grad=True))
    return _fit_fallback(
        mll, closure=closure, closure_kwargs=closure_kwargs, optimizer_kwargs=optimizer_kwargs, **kwargs
    )
