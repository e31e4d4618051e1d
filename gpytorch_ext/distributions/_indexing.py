r"""Indexing a (multitask) multivariate normal: the distribution of the indexed random variable.

``dist[index]`` is the distribution of :math:`\mathbf Y = \mathbf X[\text{index}]` for :math:`\mathbf X` drawn
from ``dist`` (a tensor of shape ``batch_shape x N``, or ``batch_shape x N x T`` for a multitask normal), with
torch's indexing rules (ints, slices, ``None``, ``...``, lists, integer and boolean tensors) and the mean and
covariance batch shapes broadcast as torch broadcasts them. Its mean is ``dist.mean[index]``. Its last dimension is
the event (the last two, data and tasks, when a multitask normal is indexed by slices there); the others are batch
dimensions, and each batch member of the result gets the exact covariance of its entries: entries of one batch
member of :math:`\mathbf X` covary as that member's covariance says, entries of different members are independent.
An index that selects a single entry gives what GPyTorch has always given there: a 0-dimensional mean and the
entry's variance (torch has no multivariate normal without an event dimension).

Indices that only select batch members, or that select events by slices, integers or one list keep the covariance
lazy (indexed by linear_operator); other indices gather the covariance's entries densely. The module imports only
torch, linear_operator and gpytorch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from linear_operator import to_dense
from linear_operator.operators import DenseLinearOperator, DiagLinearOperator, LinearOperator
from torch import Tensor
from torch.distributions import MultivariateNormal as _TorchMultivariateNormal

from ._moments import broadcast_loc, covariance_of

__all__ = ["mtmvn_getitem", "mvn_getitem"]


# --- normalising an index -------------------------------------------------------------------------------------


def _as_index(item: Any, name: str) -> Any:
    if isinstance(item, bool):
        raise IndexError(f"{name}: a boolean scalar index ({item}) is not supported")
    if isinstance(item, (list, range)) or type(item).__module__ == "numpy":
        item = torch.as_tensor(item)
    if isinstance(item, Tensor):
        if item.dtype == torch.bool:
            if item.dim() == 0:
                raise IndexError(f"{name}: a boolean scalar index is not supported")
            return item.nonzero(as_tuple=True)  # torch's meaning of a mask
        if item.is_floating_point() or item.is_complex():
            raise IndexError(f"{name}: tensors used as indices must be integer or boolean, got {item.dtype}")
        return int(item) if item.dim() == 0 else item
    return item


def _normalize(index: Any, shape: torch.Size, name: str) -> list[Any]:
    """The index as a list of ints, slices, ``None`` and integer tensors covering every dimension of ``shape``."""
    items: list[Any] = []
    for item in index if isinstance(index, tuple) else (index,):
        item = _as_index(item, name)
        items.extend(item if isinstance(item, tuple) else (item,))
    if sum(item is Ellipsis for item in items) > 1:
        raise IndexError(f"{name}: an index can only have a single ellipsis ('...')")
    consumed = sum(item is not None and item is not Ellipsis for item in items)
    if consumed > len(shape):
        raise IndexError(
            f"{name}: too many indices ({consumed}) for a random variable of shape {tuple(shape)} "
            "(batch_shape x event_shape)"
        )
    fill = [slice(None)] * (len(shape) - consumed)
    if Ellipsis in items:
        at = items.index(Ellipsis)
        return items[:at] + fill + items[at + 1 :]
    return items + fill


def _split(items: list[Any], num_batch: int) -> tuple[list[Any], list[Any]]:
    """The components that index the batch dimensions (with the ``None`` before the event), and the others."""
    consumed = 0
    for position, item in enumerate(items):
        if item is not None:
            if consumed == num_batch:
                return items[:position], items[position:]
            consumed += 1
    raise AssertionError("unreachable: a normalised index covers the event dimensions")


def _is_basic(item: Any) -> bool:
    return isinstance(item, (int, slice))


def _is_full(item: Any) -> bool:
    return isinstance(item, slice) and item == slice(None)


def _as_slice(positions: Tensor) -> slice | Tensor:
    """A 1-D index as an equivalent slice when it is an increasing arithmetic progression (so that linear_operator
    can slice lazily), else the index itself."""
    if positions.dim() != 1 or positions.numel() == 0:
        return positions
    first, last = int(positions[0]), int(positions[-1])
    step = int(positions[1] - positions[0]) if positions.numel() > 1 else 1
    if step <= 0 or last < first:
        return positions
    if torch.equal(positions, torch.arange(first, last + 1, step, device=positions.device)):
        return slice(first, last + 1, step)
    return positions


# --- the covariance of the indexed variable --------------------------------------------------------------------


def _basic_covariance_index(batch_items: Sequence[Any], batch: torch.Size, covar_batch: torch.Size) -> list[Any]:
    """Ints and slices of the broadcast batch, mapped onto the covariance's own batch dimensions: dimensions the
    covariance lacks are dropped, dimensions where it broadcasts (size 1) take index 0 or the whole dimension."""
    missing = len(batch) - len(covar_batch)
    index = []
    for dim, item in enumerate(batch_items):
        if dim < missing:
            continue
        if covar_batch[dim - missing] == 1 and batch[dim] != 1:
            item = 0 if isinstance(item, int) else slice(None)
        index.append(item)
    return index


def _evaluated(covar: LinearOperator) -> LinearOperator:
    """``covar``, with a lazily evaluated kernel evaluated: GPyTorch 1.15.2's ``LazyEvaluatedKernelTensor``
    unsqueezes its inputs but not its kernel's parameters."""
    return covar.evaluate_kernel()


def _batch_only_covariance(
    covar: LinearOperator, batch_items: Sequence[Any], batch: torch.Size
) -> LinearOperator | None:
    """The covariance of an index that selects batch members only, or ``None`` (use the general path)."""
    items = [item for item in batch_items if item is not None]
    if all(_is_basic(item) for item in items):
        result = covar[tuple(_basic_covariance_index(items, batch, covar.batch_shape))] if items else covar
        # the new dimensions of None, counted from the right of the result's batch dimensions
        from_right, positions = 0, []
        for item in reversed(batch_items):
            if item is None:
                positions.append(from_right + 1)
            if item is None or isinstance(item, slice):
                from_right += 1
        for position in positions:  # rightmost first, so that the ones to its right are in place already
            if position + 2 <= result.dim() + 1:
                result = _evaluated(result).unsqueeze(-position - 2)
        return result
    if any(item is None for item in batch_items):
        return None
    while covar.dim() - 2 < len(batch):  # advanced indices need every dimension present
        covar = _evaluated(covar).unsqueeze(0)
    index = []
    for dim, item in enumerate(items):
        if covar.size(dim) == 1 and batch[dim] != 1:
            if isinstance(item, Tensor):
                item = torch.zeros((1,) * item.dim(), dtype=torch.long, device=item.device)
            else:
                item = 0 if isinstance(item, int) else slice(None)
        index.append(item)
    return covar[tuple(index)]


def _position_grid(dist: _TorchMultivariateNormal, event_shape: torch.Size, device: torch.device) -> Tensor:
    """For each event entry of the random variable, its position in the flat ``N`` (or ``NT``) event."""
    numel = event_shape.numel()
    if len(event_shape) == 1:
        return torch.arange(numel, device=device)
    num_data, num_tasks = event_shape
    if dist._interleaved:
        return torch.arange(numel, device=device).view(num_data, num_tasks)
    return torch.arange(numel, device=device).view(num_tasks, num_data).mT


def _flat(tensor: Tensor, multitask: bool, interleaved: bool) -> Tensor:
    """The last (two) dimensions of ``tensor`` as one, in the order the result's flat event has them."""
    if not multitask:
        return tensor
    if not interleaved:
        tensor = tensor.mT
    return tensor.reshape(*tensor.shape[:-2], -1)


def _covariance_member(members: Tensor, batch: torch.Size, covar_batch: torch.Size) -> Tensor:
    """The flat index into the covariance's own batch of each member (a flat index into ``batch``)."""
    flat_member = torch.zeros_like(members)
    if len(batch):
        coords = torch.unravel_index(members, batch)
        stride = 1
        for dim in range(1, len(covar_batch) + 1):
            if covar_batch[-dim] != 1:
                flat_member = flat_member + coords[-dim] * stride
            stride *= covar_batch[-dim]
    return flat_member


def _gathered_covariance(
    covar: LinearOperator, members: Tensor, positions: Tensor, batch: torch.Size
) -> LinearOperator:
    """The covariance of entries ``(member, position)`` (``... x M`` each): ``K[member][p_i, p_j]`` where the
    members agree, zero where they differ; diagonal (no matrix formed) when no member appears twice. For a single
    entry (0-dimensional ``members``) its variance, as GPyTorch has always returned it."""
    n = covar.size(-1)
    flat_member = _covariance_member(members, batch, covar.batch_shape)
    ordered = members.sort(-1).values if members.dim() else members
    if members.dim() == 0 or members.size(-1) < 2 or bool((ordered[..., 1:] != ordered[..., :-1]).all()):
        variances = covar.diagonal(dim1=-2, dim2=-1).reshape(-1, n)
        return DiagLinearOperator(variances[flat_member, positions])
    dense = to_dense(covar).reshape(-1, n, n)
    entries = dense[flat_member.unsqueeze(-1), positions.unsqueeze(-1), positions.unsqueeze(-2)]
    same = members.unsqueeze(-1) == members.unsqueeze(-2)
    return DenseLinearOperator(entries * same.to(entries.dtype))


# --- the two methods -------------------------------------------------------------------------------------------


def _getitem(dist: _TorchMultivariateNormal, index: Any, event_shape: torch.Size, mvn_class: type) -> Any:
    multitask = len(event_shape) == 2
    name = f"{type(dist).__name__}.__getitem__"
    batch = dist.batch_shape
    mean = dist.mean if multitask else broadcast_loc(dist.loc, batch)
    items = _normalize(index, batch + event_shape, name)
    batch_items, event_items = _split(items, len(batch))
    new_mean = mean[tuple(items)]
    covar = covariance_of(dist)
    interleaved = getattr(dist, "_interleaved", True)

    def result(mean: Tensor, covar: LinearOperator, keep_tasks: bool) -> Any:
        if keep_tasks:
            return type(dist)(mean, covar, interleaved=interleaved)
        return mvn_class(mean, covar)

    if all(_is_full(item) for item in event_items):  # batch members only
        new_covar = _batch_only_covariance(covar, batch_items, batch)
        if new_covar is not None:
            return result(new_mean, new_covar, keep_tasks=multitask)

    simple_events = all(_is_basic(item) or (isinstance(item, Tensor) and item.dim() == 1) for item in event_items)
    if simple_events and all(_is_basic(item) for item in batch_items):
        covar_index = tuple(_basic_covariance_index(batch_items, batch, covar.batch_shape))
        grid = _position_grid(dist, event_shape, new_mean.device)
        selected = grid[tuple(event_items)]
        if selected.dim() == 0:  # one event entry per batch member: the members are independent
            variances = covar.diagonal(dim1=-2, dim2=-1).expand(*batch, covar.size(-1))
            return result(new_mean, DiagLinearOperator(variances[(*batch_items, int(selected))]), keep_tasks=False)
        positions = _as_slice(_flat(selected, selected.dim() == 2, interleaved))
        if isinstance(positions, slice):
            new_covar = covar[(*covar_index, positions, positions)]
        else:
            new_covar = covar[(*covar_index, positions, slice(None))][..., positions]
        return result(new_mean, new_covar, keep_tasks=selected.dim() == 2)

    # the general case: gather the covariance of each selected entry
    members = torch.arange(batch.numel(), device=new_mean.device).reshape(batch + (1,) * len(event_shape))
    grid = _position_grid(dist, event_shape, new_mean.device)
    members = members.expand(batch + event_shape)[tuple(items)]
    positions = grid.expand(batch + event_shape)[tuple(items)]
    keep_tasks = multitask and all(isinstance(item, slice) for item in event_items)
    members = _flat(members, keep_tasks, interleaved)
    positions = _flat(positions, keep_tasks, interleaved)
    return result(new_mean, _gathered_covariance(covar, members, positions, batch), keep_tasks)


def mvn_getitem(dist: _TorchMultivariateNormal, index: Any) -> _TorchMultivariateNormal:
    """``__getitem__`` of :class:`gpytorch.distributions.MultivariateNormal`: the distribution of ``X[index]``.

    :param dist: the distribution; ``X`` has shape ``batch_shape x N``.
    :param index: any torch index of ``X``.
    :return: a distribution of the same class whose mean is ``dist.mean[index]`` and whose event is the last
        dimension of that.
    :raises IndexError: for an index torch would reject.
    """
    return _getitem(dist, index, dist.event_shape, type(dist))


def mtmvn_getitem(dist: _TorchMultivariateNormal, index: Any, mvn_class: type) -> _TorchMultivariateNormal:
    """``__getitem__`` of :class:`gpytorch.distributions.MultitaskMultivariateNormal`: the distribution of
    ``X[index]``, ``X`` of shape ``batch_shape x N x T``.

    A multitask normal (same interleaving) when the data and task dimensions are kept (sliced, or one of them
    indexed by a list), else a ``mvn_class`` over the last dimension of ``dist.mean[index]``.

    :raises IndexError: for an index torch would reject.
    """
    return _getitem(dist, index, dist.event_shape, mvn_class)
