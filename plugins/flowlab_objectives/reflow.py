"""Reflow (Liu et al. 2023): retrain a rectified flow on the couplings ``(z, T(z))`` of a trained flow ``T``.

``prepare`` loads the teacher from its checkpoint, starts the student from the teacher's parameters (Liu et al.
initialise the k-th rectified flow from the (k−1)-th), and draws a fixed pool of couplings once per run:
``z ~ N(0, I)`` from the stream ``(seed, "reflow")`` and ``x = T(z)``, the teacher's sample (for an ODE flow, its
ODE integrated from t = 0 to 1 without the log-det). Each step then regresses on a batch drawn from the pool, so a
resumed run redraws the same pool and takes the same steps. The pairs are deterministic, so the straight paths
between them cross less than independent pairs do: the reflowed field is straighter and needs fewer solver steps.
"""

from __future__ import annotations

import torch
from torch import Tensor

from flowlab import Flow
from flowlab.errors import CheckpointError, OptionError
from flowlab.objectives import ObjectiveContext
from flowlab.ode import continuous_flow
from flowlab.seeding import generator

#: couplings pushed through the teacher per solve
CHUNK = 4096


def teacher_sample(teacher: Flow, z: Tensor) -> Tensor:
    """``T(z)`` in model space (before a dataset's preprocessing map, where the field lives): for an ODE flow its
    trajectory's end point (no log-det), else ``bijector.forward(z)[0]``."""
    learned = teacher.bijector.unwrapped()
    ode = continuous_flow(learned)
    with torch.no_grad():
        if ode is not None:
            return torch.cat([ode.trajectory(chunk, [1.0])[-1] for chunk in z.split(CHUNK)])
        return torch.cat([learned.forward(chunk)[0] for chunk in z.split(CHUNK)])


def prepare(flow: Flow, context: ObjectiveContext) -> None:
    """Load the teacher named by ``reflow_from`` (if any), copy its parameters, draw the pool of couplings."""
    path = context.options["reflow_from"]
    if not path:
        return
    from flowlab.training import load_flow

    teacher, _, _ = load_flow(path, context.device)
    if teacher.dim != flow.dim:
        raise OptionError(f"rectified: reflow_from={path!r} is a {teacher.dim}-d flow; this run's flow is {flow.dim}-d")
    try:
        flow.load_state_dict(teacher.state_dict())
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise CheckpointError(
            f"rectified: the student starts from the teacher {path!r}, so it needs the same flow and network "
            f"options; they do not fit ({first})"
        ) from None
    pairs = context.options["reflow_pairs"]
    z = torch.randn((pairs, flow.dim), generator=generator(context.seed, "reflow"), dtype=torch.float64)
    z = z.to(device=context.device, dtype=next(teacher.parameters()).dtype)
    context.state["couplings"] = (z, teacher_sample(teacher, z))


def couplings(x: Tensor, context: ObjectiveContext) -> tuple[Tensor, Tensor]:
    """A batch of ``len(x)`` teacher couplings drawn (with replacement) from the pool."""
    z, xs = context.state["couplings"]
    index = torch.randint(0, z.shape[0], (x.shape[0],), generator=context.generator).to(z.device)
    return z[index], xs[index]
