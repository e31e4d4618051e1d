"""A fixed set of (value, mean, covariance) batch-shape triples of rank 0 to 3."""

from __future__ import annotations

import itertools
import random

import torch

Shape = tuple[int, ...]
Triple = tuple[Shape, Shape, Shape]


def _broadcasts(*shapes: Shape) -> bool:
    try:
        torch.broadcast_shapes(*shapes)
    except RuntimeError:
        return False
    return True


#: hand-picked cases: the issue's example, covariance batch dims of size 1 or missing, value-only batch dims
HAND_PICKED: list[Triple] = [
    ((1,), (1,), (2,)),  # the example: torch gives (2,), GPyTorch 1.15.2 repeats by 1 // 2 = 0
    ((), (), ()),
    ((3,), (), ()),
    ((4,), (), (1,)),
    ((), (2,), (1,)),
    ((2, 3), (3,), (1,)),
    ((2, 1), (1,), (1, 3)),
    ((3, 1, 2), (1, 2), (2,)),
    ((1, 1), (), (3, 2)),
    ((2, 3, 1), (1,), (1, 1, 2)),
    ((2,), (2,), (2,)),
    ((1, 2), (3, 1), ()),
    ((), (), (2, 1, 3)),
    ((3, 2), (), (3, 1)),
]


def _generated(count: int, seed: int) -> list[Triple]:
    pool = [s for rank in range(4) for s in itertools.product((1, 2, 3), repeat=rank)]
    rng = random.Random(seed)
    out: list[Triple] = []
    while len(out) < count:
        triple = (rng.choice(pool), rng.choice(pool), rng.choice(pool))
        if _broadcasts(*triple) and triple not in out and triple not in HAND_PICKED:
            out.append(triple)
    return out


#: every broadcastable triple the battery checks (hand-picked + a fixed pseudo-random draw)
SHAPE_TRIPLES: list[Triple] = HAND_PICKED + _generated(36, seed=20240603)

#: triples that do not broadcast
BAD_TRIPLES: list[Triple] = [
    ((3,), (), (2,)),
    ((2,), (3,), ()),
    ((2, 3), (3,), (3, 1)),
    ((2, 2), (), (3, 1)),
]
