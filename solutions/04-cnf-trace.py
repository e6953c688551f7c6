"""Solution of docs/exercises/04-cnf-trace.md: the exact trace of ∂f/∂z and Hutchinson's estimate of it."""

import torch

import flowlab


def exact_trace(f, z):
    """tr ∂f/∂z per row: Σ_i ∂f_i/∂z_i, one vector-Jacobian product e_iᵀ(∂f/∂z) per coordinate i.
    ``create_graph=True`` keeps the trace differentiable, so a loss can be trained through it."""
    diagonal = [torch.autograd.grad(f[:, i].sum(), z, create_graph=True)[0][:, i] for i in range(z.shape[1])]
    return torch.stack(diagonal, dim=-1).sum(dim=-1)


def hutchinson_trace(f, z, probe):
    """vᵀ(∂f/∂z)v per row for the probe v the solve drew once: one vector-Jacobian product vᵀ(∂f/∂z), then its
    dot product with v."""
    (vjp,) = torch.autograd.grad(f, z, probe, create_graph=True)
    return (vjp * probe).sum(dim=-1)


if __name__ == "__main__":
    print(flowlab.grade("exact_trace", exact_trace))
    print(flowlab.grade("hutchinson", hutchinson_trace))
