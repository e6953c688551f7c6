"""Invertible residual blocks ``x = z + g(z)`` (i-ResNet, Residual Flows) and an elementwise affine layer.

Sign convention (flowlab's): ``forward(z) -> (x, log|det ∂x/∂z|)``, ``inverse(x) -> (z, log|det ∂z/∂x|)``, ``z -> x``
the sampling direction. For a block ``∂x/∂z = I + J_g(z)`` and, since ``Lip(g) < 1``, ``det(I + J_g) > 0``::

    log det(I + J_g) = Σ_{k≥1} (−1)^{k+1} tr(J_g^k) / k      (converges: ρ(J_g) ≤ ‖J_g‖₂ ≤ Lip(g) < 1)

- ``logdet="exact"``: ``slogdet(I + J_g)`` of the closed-form Jacobian, O(d) vector-Jacobian products and O(d³).
- ``logdet="roulette"``: the unbiased estimator of Chen et al. (2019): a Hutchinson probe ``v`` (``E[v vᵀ] = I``)
  and a random number of terms ``n = n_exact_terms + M``, ``M ~ Geometric(p)`` on {0, 1, …}
  (``P(M ≥ m) = (1 − p)^m``), each term reweighted by the probability that it is included::

      Σ_{k=1}^{n} (−1)^{k+1} vᵀ J_g^k v / (k · P(n ≥ k)),   P(n ≥ k) = (1 − p)^{max(0, k − n_exact_terms)}

  Its expectation is the series (each term's inclusion is undone by its weight); its variance is finite when
  ``Lip(g)² ≤ 1 − p`` (term ``k`` is ``O(Lip^k)``, its weight ``(1 − p)^{−k}``), which the flow's options enforce.
  ``v`` and ``M`` are drawn per row, once per call, from the block's own CPU ``torch.Generator``: each row is an
  independent estimate; the cost is ``n_exact_terms + max_rows M`` vector-Jacobian products.

The inverse solves ``z = x − g(z)`` by fixed-point iteration (Banach: a contraction of rate ``Lip(g)``), each row
on its own until ``Lip/(1 − Lip) · |z_{k+1} − z_k|_∞ ≤ inverse_tol · (1 + |x|_∞)``, a bound on its distance to the
exact solution. Gradients through the inverse come from the implicit function theorem (``∂z/∂x = (I + J_g)^{-1}``),
solved in the backward pass by the same kind of iteration, not by unrolling the forward one.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor, nn

from flowlab import Bijector, ConvergenceError
from flowlab_residual.lipschitz import LipschitzMLP, Weights

Logdet = Literal["exact", "roulette"]
PROBES = ("rademacher", "gaussian")


def draw_probe(kind: str, shape: tuple[int, ...], generator: torch.Generator) -> Tensor:
    """A Hutchinson probe with ``E[v vᵀ] = I``: entries ±1 (``rademacher``) or standard normal (``gaussian``)."""
    if kind == "rademacher":
        return torch.randint(0, 2, shape, generator=generator).to(torch.float64) * 2 - 1
    return torch.randn(shape, generator=generator, dtype=torch.float64)


def roulette_weights(extra: Tensor, n_exact: int, p: float, n_terms: int) -> Tensor:
    """``[batch, n_terms]``: term ``k`` of row ``i`` weighted by ``1{k ≤ n_exact + M_i} / P(n ≥ k)``.

    ``extra`` holds the rows' draws ``M_i ~ Geometric(p)`` on {0, 1, …}; ``P(n ≥ k) = (1 − p)^{max(0, k − n_exact)}``.
    """
    beyond = (torch.arange(1, n_terms + 1, dtype=torch.float64) - n_exact).clamp(min=0)
    included = beyond[None, :] <= extra[:, None]
    return included / (1 - p) ** beyond[None, :]


class ResidualBlock(Bijector):
    """``x = z + g(z)`` with ``Lip(g) < 1`` (see the module docstring for the log-det and the inverse)."""

    def __init__(
        self,
        dim: int,
        *,
        index: int = 0,
        hidden: int = 64,
        depth: int = 2,
        activation: str = "lipswish",
        coeff: float = 0.9,
        spectral_norm: bool = True,
        logdet: Logdet = "exact",
        eval_logdet: Logdet = "exact",
        n_exact_terms: int = 2,
        roulette_p: float = 0.4,
        probe: str = "rademacher",
        inverse_tol: float = 1e-10,
        inverse_max_iter: int = 500,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.dim, self.index = dim, index
        self.g = LipschitzMLP(
            dim,
            hidden=hidden,
            depth=depth,
            activation=activation,
            coeff=coeff,
            normalize=spectral_norm,
            label=f"block {index}",
        )
        self.train_logdet, self.eval_logdet = logdet, eval_logdet
        self.n_exact_terms, self.roulette_p, self.probe = n_exact_terms, float(roulette_p), probe
        self.inverse_tol, self.inverse_max_iter = float(inverse_tol), inverse_max_iter
        self.generator = torch.Generator().manual_seed(seed * 1_000_003 + index)
        self.iterations = 0  # fixed-point iterations of the last inverse (its slowest row), and
        self.terms = 0  # series terms of the last roulette estimate: for cost measurements

    @property
    def logdet_mode(self) -> Logdet:
        """The log-det the next call computes: ``logdet`` in training mode, ``eval_logdet`` in eval mode."""
        return self.train_logdet if self.training else self.eval_logdet

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        weights = self.g.weights()
        gz, derivatives = self.g.evaluate(z, weights)
        return z + gz, self.logdet(z, weights, derivatives)

    def inverse(self, x: Tensor) -> tuple[Tensor, Tensor]:
        weights = self.g.weights()
        z = self.solve(x, weights)
        _, derivatives = self.g.evaluate(z, weights)
        return z, -self.logdet(z, weights, derivatives)

    def jacobian_g(self, z: Tensor, weights: Weights, derivatives: list[Tensor]) -> Tensor:
        """``J_g(z)``, ``[batch, dim, dim]``: the closed-form chain applied to the identity's rows."""
        eye = torch.eye(self.dim, dtype=z.dtype, device=z.device).expand(z.shape[0], self.dim, self.dim)
        return self.g.vjp(eye, weights, derivatives)

    def logdet(self, z: Tensor, weights: Weights, derivatives: list[Tensor]) -> Tensor:
        """``log det(I + J_g(z))`` per row: exact, or the Russian-roulette estimate (by :attr:`logdet_mode`)."""
        if self.logdet_mode == "exact":
            eye = torch.eye(self.dim, dtype=z.dtype, device=z.device)
            return torch.linalg.slogdet(eye + self.jacobian_g(z, weights, derivatives)).logabsdet
        batch = z.shape[0]
        v = draw_probe(self.probe, (batch, self.dim), self.generator)
        uniform = torch.rand(batch, generator=self.generator, dtype=torch.float64)
        extra = torch.floor(torch.log1p(-uniform) / math.log1p(-self.roulette_p))  # M ~ Geometric(p) on {0, 1, …}
        n_terms = self.terms = self.n_exact_terms + int(extra.max()) if batch else 0
        factors = roulette_weights(extra, self.n_exact_terms, self.roulette_p, n_terms)
        signs = torch.tensor([(-1.0) ** (k + 1) / k for k in range(1, n_terms + 1)], dtype=torch.float64)
        factors = (factors * signs).to(dtype=z.dtype, device=z.device)
        v = v.to(dtype=z.dtype, device=z.device)
        w, total = v.unsqueeze(1), z.new_zeros(batch)
        for k in range(n_terms):
            w = self.g.vjp(w, weights, derivatives)  # vᵀ J_g^(k+1)
            total = total + factors[:, k] * (w.squeeze(1) * v).sum(dim=-1)
        return total

    def _contracted(self, step: Tensor, scale: Tensor, lipschitz: float) -> Tensor:
        """Rows whose a-posteriori bound ``Lip/(1 − Lip) · step`` on the error is within the tolerance."""
        tol = max(self.inverse_tol, 64 * torch.finfo(step.dtype).eps)
        return lipschitz / (1 - lipschitz) * step <= tol * scale

    def solve(self, x: Tensor, weights: Weights) -> Tensor:
        """``z`` with ``z + g(z) = x``: fixed-point iteration ``z ← x − g(z)``, each row until it has converged
        (so a row's result does not depend on the others); with gradients by the implicit function theorem."""
        plain = weights.detached()
        with torch.no_grad():
            scale = 1 + x.abs().amax(dim=1)
            z = x.detach().clone()
            active = torch.ones(x.shape[0], dtype=torch.bool, device=x.device)
            step = torch.zeros_like(scale)
            self.iterations = 0
            while bool(active.any()) and self.iterations < self.inverse_max_iter:
                new = x - self.g.evaluate(z, plain)[0]
                step = torch.where(active, (new - z).abs().amax(dim=1), step)
                z = torch.where(active[:, None], new, z)
                active = active & ~self._contracted(step, scale, plain.lipschitz)
                self.iterations += 1
            if bool(active.any()):
                raise self._not_converged("inverse", active, step, plain.lipschitz)
        if not torch.is_grad_enabled():
            return z
        z_star = z
        z = x - self.g.evaluate(z_star, weights)[0]  # = z*, with the graph of one step to x and the parameters
        if z.requires_grad:
            _, derivatives = self.g.evaluate(z_star, plain)
            z.register_hook(lambda grad: self._adjoint(grad, plain, derivatives))
        return z

    def _adjoint(self, grad: Tensor, weights: Weights, derivatives: list[Tensor]) -> Tensor:
        """``y = (I + J_g)^{-T} grad`` by the iteration ``y ← grad − J_gᵀ y``: the gradient of the fixed point.

        ``z = x − g(z)`` gives ``dz = (I + J_g)^{-1} (dx − ∂g/∂θ dθ)``; the one differentiable step
        ``x − g(z*)`` back-propagates ``y`` to ``x`` and ``θ`` exactly so.
        """
        scale = 1 + grad.abs().amax(dim=1)
        y = grad
        for _ in range(self.inverse_max_iter):
            new = grad - self.g.vjp(y.unsqueeze(1), weights, derivatives).squeeze(1)
            step = (new - y).abs().amax(dim=1)
            y = new
            if bool(self._contracted(step, scale, weights.lipschitz).all()):
                return y
        raise self._not_converged(
            "gradient of the inverse", ~self._contracted(step, scale, weights.lipschitz), step, weights.lipschitz
        )

    def _not_converged(self, what: str, rows: Tensor, step: Tensor, lipschitz: float) -> ConvergenceError:
        bad = rows.nonzero().flatten().tolist()
        residuals = [float(step[i]) for i in bad]
        shown = ", ".join(map(str, bad[:8])) + (", ..." if len(bad) > 8 else "")
        return ConvergenceError(
            f"residual block {self.index}: the fixed-point iteration of the {what} did not reach inverse_tol="
            f"{self.inverse_tol:g} (× (1 + |x|_∞)) in inverse_max_iter={self.inverse_max_iter} iterations for "
            f"{len(bad)} of {len(rows)} row(s) ({shown}; last steps {', '.join(f'{r:.3g}' for r in residuals[:8])}); "
            f"Lip(g) ≤ {lipschitz:.4g}: raise inverse_max_iter or inverse_tol, or lower coeff (a NaN or inf input "
            "never converges)",
            rows=bad,
            residuals=residuals,
        )


class ElementwiseAffine(Bijector):
    """``x = z · exp(log_scale) + shift`` per coordinate; ``log|det ∂x/∂z| = Σ log_scale`` (no data-dependent init).

    A residual block cannot scale a coordinate by more than ``1 ± Lip(g)``; this layer gives the stack the data's
    scale and location for free.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim
        self.log_scale = nn.Parameter(torch.zeros(dim))
        self.shift = nn.Parameter(torch.zeros(dim))

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        return z * self.log_scale.exp() + self.shift, self.log_scale.sum().expand(z.shape[0])

    def inverse(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return (x - self.shift) * (-self.log_scale).exp(), (-self.log_scale.sum()).expand(x.shape[0])
