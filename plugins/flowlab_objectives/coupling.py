"""Minibatch optimal-transport couplings (Tong et al. 2023) with SciPy's assignment solver.

For a batch of ``n`` base points and ``n`` data points with uniform weights, the optimal transport plan for the
squared Euclidean cost is a permutation (Birkhoff–von Neumann: the extreme points of the transport polytope are
permutation matrices, and a linear cost attains its minimum at one), so the exact minibatch OT plan is the solution
of the linear assignment problem ``min_π Σ_i ‖x_0,i − x_1,π(i)‖²``, solved by ``scipy.optimize.linear_sum_assignment``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from flowlab.errors import MissingDependencyError, install_hint


def ot_pairing(x0: Tensor, x1: Tensor) -> Tensor:
    """``x1`` reordered so that row ``i`` is the data point the exact minibatch OT plan sends ``x0[i]`` to."""
    try:
        from scipy.optimize import linear_sum_assignment
    except ImportError:  # pragma: no cover - scipy is in the 'data' extra
        raise MissingDependencyError(
            f"objective otcfm needs scipy for the assignment solver: {install_hint('data')}, or pip install scipy"
        ) from None
    cost = torch.cdist(x0.detach().double(), x1.detach().double()).pow(2)
    rows, columns = linear_sum_assignment(cost.cpu().numpy())
    order = torch.as_tensor(columns[rows.argsort()], device=x1.device)  # rows come back sorted; be explicit
    return x1.index_select(0, order)
