"""Flows that have lived: what a case's flow goes through before a property looks at it (``Case.life``).

A freshly built instance has never had its parameters or buffers change between two calls, so bugs that need a
history pass every property on it: an inverse cache computed once and never invalidated, running statistics left
at their initial mean 0 / variance 1 (where a missing ``−Σ log σ`` is exactly 0), a quantity derived from the
parameters at construction. The kit draws a life for every case (:data:`flowlab.spec.LIVES`, shrinking towards
``fresh``), and :func:`flowlab.checks.cases.build_case_bijector` applies it after building and perturbing the
flow, so every property also runs on lived flows, in the same number of cases:

- ``fresh``: as built.
- ``trained``: used in eval mode (``LIFE_ROWS`` samples of the flow and their ``log_prob``: whatever an eval-mode
  call computes and keeps), then ``LIFE_STEPS`` training-mode steps of gradient descent on ``−mean log p(x)`` of
  those samples (at least ``FlowSpec.min_train_batch`` rows), so that parameters move and buffers (running
  statistics, a data-dependent initialisation) leave their initial values, then back to eval mode: a train → eval
  switch. A flow with ``fixed_parameters`` (a trained checkpoint) gets the training-mode calls without the steps:
  its parameters are what is being checked.
- ``reloaded``: used in eval mode, then ``load_state_dict`` of the state of another instance, the case's flow under
  :func:`other_seed` (other parameters): whatever the instance derived from its first parameters must follow the
  new ones. (Moved buffers are the ``trained`` life's: a donor trained first doubled the cost of this life.)

The life runs on the CPU in the dtype the kit checks the flow in (float64 unless ``FlowSpec.dtypes`` leaves it
out), with the global RNG seeded from the case (:func:`flowlab.seeding.global_rng`), before the bijector moves to
the case's dtype and device: a case gives the same lived parameters in every dtype and on every device (float32 and
float64 still compare one map), and every call of ``build_case_bijector`` gives the same lived instance (the
first-call checks build two). The steps are plain gradient descent with the gradient's norm clipped to
``LIFE_CLIP``: each step moves the parameters by at most ``LIFE_LR``, in proportion to their gradients (Adam's
normalised step would move a parameter whose gradient is rounding noise by a full step, differently in float32).
A step whose loss is not finite, or has no path to a parameter, is not taken (the properties then judge the flow:
``gradients`` looks for paths).

Two more mechanisms keep history from hiding bugs: ``flowlab.checks.measure.apply`` calls the bijector on a fresh
tensor (never the object an earlier call returned, so a ``torch.distributions``-style ``(x, y)`` cache cannot
answer for the inverse), and the ``state`` property compares a lived flow with a fresh instance holding its state.
"""

from __future__ import annotations

import copy
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from flowlab.checks.instance_copy import copy_instance
from flowlab.checks.strategies import case_dtype
from flowlab.flow import Flow
from flowlab.seeding import generator, global_rng
from flowlab.spec import Case, FlowSpec

#: points a life draws from the flow (more if ``FlowSpec.min_train_batch`` asks for more)
LIFE_ROWS = 8
#: training-mode steps of a ``trained`` life
LIFE_STEPS = 3
#: the largest parameter move of one step (the step size, with the gradient's norm clipped to ``LIFE_CLIP``)
LIFE_LR = 0.1
LIFE_CLIP = 1.0


def other_seed(seed: int) -> int:
    """The seed of the other instance of a case: the one a ``reloaded`` flow loads the state of, and the fresh
    instance the ``state`` property loads a lived flow's state into (other parameters, other initial buffers)."""
    return seed + 1_000_003


def live(spec: FlowSpec, case: Case, options: dict[str, Any], built: Callable[[int], nn.Module]) -> nn.Module:
    """The case's bijector after its life, on the CPU; ``built(seed)`` builds and perturbs an instance (with
    ``options``) under ``seed``: the case's own under ``case.seed``, the donor of a ``reloaded`` life under
    :func:`other_seed`.

    Each instance is built (and lived) once per process and flow, dimension, options, seed and life; every call
    returns a copy of it (:func:`~flowlab.checks.instance_copy.copy_instance`: ``copy.deepcopy``, faster): a new
    instance with no history of its own, as a new build would be (the properties of a flow draw the same cases, and
    several build two instances of one case: one build serves them all). A flow that cannot be copied (it keeps a
    non-leaf tensor, a lock, ...) is built and lived again at every call."""
    key = (id(spec), case.dim, case.seed, case.life, repr(sorted(options.items())))
    cached = _INSTANCES.get(key)
    if cached is not None and cached[0] is spec:
        _INSTANCES.move_to_end(key)
        return copy_instance(cached[1])
    bijector = built(case.seed)
    if case.life != "fresh":
        life = LifeRun(spec, case, getattr(torch, case_dtype(spec)))
        bijector = bijector.to(dtype=life.dtype)
        if case.life == "trained":
            life.train_(bijector)
        else:  # the donor: the case's flow under the other seed (other parameters)
            life.use_(life.flow(bijector), LIFE_ROWS)
            bijector.load_state_dict(built(other_seed(case.seed)).to(dtype=life.dtype).state_dict())
    try:
        _INSTANCES[key] = (spec, copy_instance(bijector))
    except (RuntimeError, TypeError, copy.Error):  # a non-leaf tensor, a lock, ...: built again next time
        return bijector
    if len(_INSTANCES) > INSTANCE_CACHE:
        _INSTANCES.popitem(last=False)
    return bijector


#: instances kept per process (key: flow, dim, seed, life, options), the most recently used
INSTANCE_CACHE = 64
_INSTANCES: OrderedDict[tuple[Any, ...], tuple[FlowSpec, nn.Module]] = OrderedDict()


@dataclass(frozen=True)
class LifeRun:
    """What a life needs to know: the flow's spec, the case (its seed and dimension), the dtype it runs in."""

    spec: FlowSpec
    case: Case
    dtype: torch.dtype

    def flow(self, bijector: nn.Module) -> Flow:
        """``bijector`` as a :class:`~flowlab.flow.Flow` with the flow's own base, on the CPU, without input
        validation (a life leaves judging to the properties)."""
        spec, case = self.spec, self.case
        base = None if spec.base is None else spec.base(case.dim, dtype=self.dtype, device=torch.device("cpu"))
        return Flow(bijector, base, validate=False).to(dtype=self.dtype)  # type: ignore[arg-type]

    def use_(self, flow: Flow, rows: int) -> tuple[Tensor, Tensor | None]:
        """Eval-mode calls: ``rows`` samples of the flow (forward) and their ``log_prob`` (inverse), what an instance
        computes and keeps; returns the samples and, for a conditional flow, their contexts."""
        context = None
        if flow.context_dim:
            draws = generator(self.case.seed, "life")
            context = torch.randn(rows, flow.context_dim, generator=draws, dtype=torch.float64).to(self.dtype)
        flow.eval()
        with torch.no_grad(), global_rng(self.case.seed, "life"):
            x = flow.sample(rows, context)
            flow.log_prob(x, context)
        return x, context

    def train_(self, bijector: nn.Module) -> None:
        """Eval-mode use, then ``LIFE_STEPS`` training-mode steps on the flow's own samples (training-mode calls
        only, for ``fixed_parameters``), then eval mode."""
        flow = self.flow(bijector)
        x, context = self.use_(flow, max(LIFE_ROWS, self.spec.min_train_batch))
        parameters = [] if self.spec.fixed_parameters else [p for p in bijector.parameters() if p.requires_grad]
        flow.train()
        for step in range(LIFE_STEPS):
            with global_rng(self.case.seed, "life", step), torch.set_grad_enabled(bool(parameters)):
                loss = -flow.log_prob(x, context).mean()
            if not parameters or not loss.requires_grad or not bool(torch.isfinite(loss)):
                continue
            for parameter in parameters:
                parameter.grad = None
            loss.backward()
            nn.utils.clip_grad_norm_(parameters, LIFE_CLIP)
            sgd_step_(parameters, LIFE_LR)
        for parameter in parameters:
            parameter.grad = None
        flow.eval()


@torch.no_grad()
def sgd_step_(parameters: list[nn.Parameter], lr: float) -> None:
    """``p ← p − lr · ∂loss/∂p`` for each parameter with a gradient: plain gradient descent, what
    ``torch.optim.SGD(lr=lr)`` does without momentum, written out because the first ``torch.optim`` optimizer of a
    process imports ``torch._dynamo`` (1.6 s here, in every ``flowlab check`` process and worker)."""
    for parameter in parameters:
        if parameter.grad is not None:
            parameter.sub_(parameter.grad, alpha=lr)
