"""Cost and quality of flowlab's continuous flows (cnf, ffjord, augmented), printed as Markdown tables.

    OMP_NUM_THREADS=1 python benchmarks/continuous.py steps      # NFE and time per training step / log_prob batch
    OMP_NUM_THREADS=1 python benchmarks/continuous.py trace      # exact vs Hutchinson trace cost vs d
    OMP_NUM_THREADS=1 python benchmarks/continuous.py rnode      # with vs without RNODE on a 2D toy, equal budget
    OMP_NUM_THREADS=1 python benchmarks/continuous.py reference  # flowlab ffjord step vs a plain torchdiffeq loop
    OMP_NUM_THREADS=1 python benchmarks/continuous.py solver-error --cases 150  # global error at the default tolerance

Sizes are deliberately small (the machine's cores are shared): 2D, hidden 64, batch 256 for training steps and 1024
for ``log_prob``; timings are medians of a few repetitions after one warm-up, with ``time.perf_counter``.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from collections.abc import Callable

import torch
from torch import Tensor, nn
from torchdiffeq import odeint

import flowlab
from flowlab.ode import AugmentedDynamics, ExactTrace, Hutchinson, TimeMLP

TOL = 1e-5


def median_time(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def toy(n: int, seed: int, name: str = "8gaussians") -> Tensor:
    return flowlab.dataset_spec(name).sample(n, torch.Generator().manual_seed(seed))


# -- steps -----------------------------------------------------------------------------------------------------------
def with_augmentation(points: Tensor, dim: int) -> Tensor:
    """Data points padded with standard-normal draws of u when the flow's space is larger (augmented)."""
    extra = torch.randn(points.shape[0], dim - points.shape[1], generator=torch.Generator().manual_seed(2))
    return torch.cat([points, extra], dim=1)


def bench_flow(name: str, dim: int, options: dict[str, object], repeats: int) -> str:
    torch.manual_seed(0)
    flow = flowlab.Flow(flowlab.build(name, dim, hidden=64, rtol=TOL, atol=TOL, **options))
    optimizer = torch.optim.Adam(flow.parameters(), lr=1e-3)
    data, test = with_augmentation(toy(256, 1), dim), with_augmentation(toy(1024, 3), dim)

    def step() -> None:
        flow.train()
        optimizer.zero_grad()
        (-flow.log_prob(data).mean()).backward()
        optimizer.step()

    def evaluate() -> None:
        flow.eval()
        with torch.no_grad():
            flow.log_prob(test)

    step_time = median_time(step, repeats)
    nfe, nfe_backward = flow.bijector.nfe, flow.bijector.nfe_backward
    eval_time = median_time(evaluate, repeats)
    label = name + (" (adjoint)" if options.get("adjoint") else "") + (" (joint, d+k=3)" if dim == 3 else "")
    return (
        f"| {label} | {nfe} | {nfe_backward} | {1000 * step_time:.0f} | {flow.bijector.nfe} | {1000 * eval_time:.0f} |"
    )


def bench_steps(repeats: int) -> None:
    print("| flow | train step: NFE fwd | NFE bwd | time (ms) | log_prob batch: NFE | time (ms) |")
    print("|---|---|---|---|---|---|")
    for name, dim, options in (
        ("cnf", 2, {}),
        ("ffjord", 2, {}),
        ("ffjord", 2, {"adjoint": True}),
        ("augmented", 3, {"augment": 1}),
    ):
        print(bench_flow(name, dim, options, repeats))


# -- trace -----------------------------------------------------------------------------------------------------------
def evaluation_time(dim: int, estimator: ExactTrace | Hutchinson, repeats: int) -> float:
    """Median time of one function evaluation as in training: the trace's graph kept, then backpropagated."""
    torch.manual_seed(0)
    dynamics = AugmentedDynamics(TimeMLP(dim, hidden=64))
    z = torch.randn(256, dim)
    dynamics.configure(estimator, estimator.draw(z, torch.Generator().manual_seed(0)), False)
    t = torch.tensor(0.5)

    def evaluate() -> None:
        f, trace = dynamics(t, (z, z.new_zeros(256)))
        (f.sum() + trace.sum()).backward()

    return median_time(evaluate, repeats)


def bench_trace(repeats: int) -> None:
    print("| d | exact: ms per evaluation (fwd+bwd) | Hutchinson: ms | exact / Hutchinson |")
    print("|---|---|---|---|")
    for dim in (2, 8, 32, 128):
        exact, hutchinson = evaluation_time(dim, ExactTrace(), repeats), evaluation_time(dim, Hutchinson(), repeats)
        print(f"| {dim} | {1000 * exact:.2f} | {1000 * hutchinson:.2f} | {exact / hutchinson:.1f} |")


# -- rnode -----------------------------------------------------------------------------------------------------------
def train(weight: float, steps: int, data: str, lr: float, seed: int = 0) -> tuple[float, float, float, int, float]:
    torch.manual_seed(seed)
    bijector = flowlab.build("ffjord", 2, hidden=64, rtol=TOL, atol=TOL, kinetic=weight, jacobian=weight)
    flow = flowlab.Flow(bijector)
    optimizer = torch.optim.Adam(flow.parameters(), lr=lr)
    generator = torch.Generator().manual_seed(seed + 1)
    nfe_total = 0
    start = time.perf_counter()
    for _ in range(steps):
        flow.train()
        batch = flowlab.dataset_spec(data).sample(256, generator)
        optimizer.zero_grad()
        loss = -flow.log_prob(batch).mean() + bijector.regularization()
        loss.backward()
        optimizer.step()
        nfe_total += bijector.nfe
    seconds = time.perf_counter() - start
    flow.eval()
    held_out = toy(4096, 12345, data)
    with torch.no_grad():
        nll = -flow.log_prob(held_out)
    standard_error = float(nll.std()) / math.sqrt(nll.numel())
    return float(nll.mean()), standard_error, nfe_total / steps, bijector.nfe, seconds


def bench_rnode(steps: int, data: str, lr: float, weight: float) -> None:
    print(
        "| training | held-out NLL (nats, ± SE) | mean NFE per training solve | NFE of a held-out log_prob "
        "(exact trace) | training time (s) |"
    )
    print("|---|---|---|---|---|")
    runs = (("ffjord, no regularisation", 0.0), (f"ffjord + RNODE (kinetic = jacobian = {weight:g})", weight))
    for label, value in runs:
        nll, se, train_nfe, nfe, seconds = train(value, steps, data, lr)
        print(f"| {label} | {nll:.3f} ± {se:.3f} | {train_nfe:.0f} | {nfe} | {seconds:.0f} |")


# -- reference -------------------------------------------------------------------------------------------------------
class PlainFFJORD(nn.Module):
    """The usual hand-written FFJORD dynamics: a probe set before the solve, divergence by one vjp per evaluation."""

    def __init__(self, field: nn.Module) -> None:
        super().__init__()
        self.field = field
        self.probe: Tensor | None = None

    def forward(self, t: Tensor, state: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
        z = state[0]
        with torch.enable_grad():
            z = z if z.requires_grad else z.detach().requires_grad_(True)
            f = self.field(t, z)
            (vjp,) = torch.autograd.grad(f, z, self.probe, create_graph=True)
        return f, -(vjp * self.probe).sum(-1)


def bench_reference(repeats: int) -> None:
    torch.manual_seed(0)
    bijector = flowlab.build("ffjord", 2, hidden=64, rtol=TOL, atol=TOL, probe="gaussian")
    flow = flowlab.Flow(bijector).train()
    plain = PlainFFJORD(bijector.field)
    data = toy(256, 1)
    base = torch.distributions.Normal(0.0, 1.0)

    def flowlab_step() -> None:
        flow.zero_grad()
        (-flow.log_prob(data).mean()).backward()

    def plain_step() -> None:
        plain.zero_grad()
        plain.probe = torch.randn_like(data)
        times = torch.tensor([1.0, 0.0])
        zs, deltas = odeint(plain, (data, data.new_zeros(256)), times, rtol=TOL, atol=TOL, method="dopri5")
        log_prob = base.log_prob(zs[-1]).sum(-1) - deltas[-1]
        (-log_prob.mean()).backward()

    rounds = {"flowlab ffjord": [], "plain torchdiffeq loop": []}
    for _ in range(3):  # interleaved rounds
        rounds["flowlab ffjord"].append(median_time(flowlab_step, repeats))
        rounds["plain torchdiffeq loop"].append(median_time(plain_step, repeats))
    print("| implementation (2D, hidden 64, batch 256, dopri5 rtol=atol=1e-5, Gaussian probe) | ms per training step |")
    print("|---|---|")
    for label, values in rounds.items():
        print(f"| {label} | {1000 * min(values):.0f} |")


def bench_solver_error(cases: int) -> None:
    """Global error of one solve at the default rtol = atol = 1e-5 against a 1e-11 solve, on cases drawn as the
    conformance kit draws them (dim 1-5, seed, activation, inputs of scale 0.1-4 and the far rows batch_independence
    appends, of scale 3·scale + 1), both directions: what the kit's generic tolerances for ODE flows must allow."""
    import random

    from flowlab.checks import Case
    from flowlab.checks.cases import build_case_bijector, case_points

    rng = random.Random(0)
    print("| flow | solves | median | 99th percentile | max |")
    print("|---|---|---|---|---|")
    for name in ("cnf", "ffjord"):
        spec = flowlab.flow_spec(name)
        errors = []
        for _ in range(cases):
            scale = rng.uniform(0.1, 4.0)
            options = {"activation": rng.choice(spec.options["activation"].choices), **spec.check_options}
            case = Case(rng.randint(1, 5), rng.randint(1, 8), rng.randint(0, 2**16), options, scale)
            default, reference = (
                build_case_bijector(spec, case),
                build_case_bijector(spec, case, rtol=1e-11, atol=1e-11),
            )
            points = torch.cat([case_points(case), case_points(case, salt=2, scale=3 * scale + 1)])
            with torch.no_grad():
                for solve, exact in ((default, reference), (default.inverse, reference.inverse)):
                    (out, ladj), (out_ref, ladj_ref) = solve(points), exact(points)
                    errors.append(max(float((out - out_ref).abs().max()), float((ladj - ladj_ref).abs().max())))
        errors.sort()
        percentile = errors[min(len(errors) - 1, int(0.99 * len(errors)))]
        print(f"| {name} | {len(errors)} | {statistics.median(errors):.2e} | {percentile:.2e} | {errors[-1]:.2e} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=("steps", "trace", "rnode", "reference", "solver-error"))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--steps", type=int, default=300, help="training steps of the rnode comparison")
    parser.add_argument("--data", default="8gaussians", help="registered 2D dataset of the rnode comparison")
    parser.add_argument("--lr", type=float, default=2e-3, help="Adam learning rate of the rnode comparison")
    parser.add_argument("--cases", type=int, default=150, help="drawn cases of the solver-error measurement")
    parser.add_argument("--weight", type=float, default=0.01, help="RNODE kinetic and jacobian weight")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.what == "steps":
        bench_steps(args.repeats)
    elif args.what == "trace":
        bench_trace(args.repeats)
    elif args.what == "rnode":
        bench_rnode(args.steps, args.data, args.lr, args.weight)
    elif args.what == "solver-error":
        bench_solver_error(args.cases)
    else:
        bench_reference(args.repeats)


if __name__ == "__main__":
    main()
