"""flowlab.adapters: direction, sign and log-det shape of each adapter; dtypes passed through; NumericInverse."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import Tensor, nn
from torch.distributions import transforms

import flowlab
from flowlab.adapters import (
    NumericInverse,
    from_nflows,
    from_normflows,
    from_torch,
    from_zuko,
    logdet_rows,
    sum_logdets,
)
from flowlab.bijector import Bijector


def jacobian_logdets(bijector: Bijector, points: Tensor, direction: str = "forward") -> Tensor:
    """``log|det ∂out/∂in|`` of each row by autograd (float64)."""
    fn = bijector if direction == "forward" else bijector.inverse
    values = [
        torch.linalg.slogdet(torch.autograd.functional.jacobian(lambda v: fn(v[None])[0][0], row)).logabsdet
        for row in points
    ]
    return torch.stack(values)


def assert_convention(bijector: Bijector, dim: int, *, seed: int = 0) -> None:
    """forward/inverse are inverse maps, and their log-dets are log|det ∂x/∂z| and log|det ∂z/∂x| (autograd)."""
    z = torch.randn(3, dim, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    x, forward_ladj = bijector(z)
    back, inverse_ladj = bijector.inverse(x)
    assert forward_ladj.shape == (3,) and inverse_ladj.shape == (3,)
    torch.testing.assert_close(back, z, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(forward_ladj, jacobian_logdets(bijector, z), rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(inverse_ladj, jacobian_logdets(bijector, x, "inverse"), rtol=1e-9, atol=1e-9)


# -- the shared core -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "ladj", [torch.tensor(0.5), torch.full((4,), 0.5), torch.full((4, 1), 0.5)], ids=["[]", "[batch]", "[batch,1]"]
)
def test_logdet_shapes_are_normalised_to_batch(ladj: Tensor) -> None:
    x = torch.zeros(4, 2, dtype=torch.float64)
    rows = logdet_rows(ladj, x, source="test")
    assert rows.shape == (4,) and rows.dtype == ladj.dtype  # the peer's dtype (float32 here), not x's
    torch.testing.assert_close(rows, torch.full((4,), 0.5))


def test_integer_logdet_is_expanded_in_the_input_dtype() -> None:
    x = torch.zeros(3, 2, dtype=torch.float64)
    rows = logdet_rows(0, x, source="test")
    assert rows.dtype == torch.float64 and rows.shape == (3,) and not rows.any()


def test_a_logdet_of_another_shape_is_a_shape_error() -> None:
    with pytest.raises(flowlab.ShapeError, match=r"expected a log-det of shape \[\], \[3\] or \[3, 1\].*got \[3, 2\]"):
        logdet_rows(torch.zeros(3, 2), torch.zeros(3, 2), source="peer.forward")


def test_sum_of_logdets_keeps_a_float32_term_visible() -> None:
    x = torch.zeros(2, 2, dtype=torch.float64)
    terms = [torch.ones(2, dtype=torch.float64), torch.ones(2, dtype=torch.float32)]
    total = sum_logdets(terms, x)
    assert total.dtype == torch.float32  # torch alone would promote it to float64 and hide the float32 layer
    torch.testing.assert_close(total, torch.full((2,), 2.0))


# -- torch.distributions ---------------------------------------------------------------------------------------------
def test_torch_transform_direction_sign_and_buffers() -> None:
    loc, scale = torch.tensor([0.5, -1.0, 2.0]), torch.tensor([2.0, -0.5, 1.5])  # plain tensors, float32
    chain = transforms.ComposeTransform(
        [transforms.AffineTransform(loc, scale), transforms.SoftplusTransform(), transforms.ExpTransform().inv]
    )
    bijector = from_torch(chain, 3).double()  # the plain tensors are buffers, so .double() reaches them
    assert {name for name, _ in bijector.named_buffers()} == {"peer.tensor0", "peer.tensor1"}
    assert_convention(bijector, 3)
    z = torch.randn(4, 3, dtype=torch.float64)
    x, ladj = bijector(z)
    torch.testing.assert_close(x, chain(z))  # forward is the transform itself: base -> data
    assert ladj.dtype == torch.float64


def test_torch_transform_survives_deepcopy() -> None:
    """torch drops ``_InverseTransform._inv`` when copying (``Transform.__getstate__``); the adapter re-links it."""
    chain = transforms.ComposeTransform([transforms.SoftplusTransform(), transforms.ExpTransform().inv])
    bijector = from_torch(chain, 2)
    z = torch.randn(3, 2)
    torch.testing.assert_close(copy.deepcopy(bijector)(z), bijector(z))


def test_torch_transform_parameters_stay_trainable() -> None:
    scale = nn.Parameter(torch.tensor([1.5, 0.5]))
    bijector = from_torch(transforms.AffineTransform(torch.zeros(2), scale, event_dim=1), 2)
    assert [p is scale for p in bijector.parameters()] == [True]
    flowlab.Flow(bijector).log_prob(torch.randn(5, 2)).sum().backward()
    assert scale.grad is not None and torch.isfinite(scale.grad).all()


def test_torch_rejects_what_it_cannot_adapt() -> None:
    with pytest.raises(flowlab.AdapterError, match=r"expected a torch\.distributions\.transforms\.Transform"):
        from_torch(nn.Linear(2, 2), 2)  # type: ignore[arg-type]
    with pytest.raises(flowlab.ShapeError, match="event_dim"):
        from_torch(transforms.CorrCholeskyTransform(), 3)


# -- zuko, nflows, normflows: direction and sign against the library's own log_prob ---------------------------------
def test_zuko_flow_direction_and_sign() -> None:
    zuko = pytest.importorskip("zuko", reason="zuko is not installed (pip install 'flowlab-nf[peers]')")
    torch.manual_seed(0)
    peer = zuko.flows.MAF(3, transforms=2, hidden_features=(8, 8)).double()
    bijector = from_zuko(peer, 3)
    assert_convention(bijector, 3)
    x = torch.randn(5, 3, dtype=torch.float64)
    torch.testing.assert_close(flowlab.Flow(bijector).log_prob(x), peer().log_prob(x))


def test_zuko_refuses_a_non_standard_base() -> None:
    zuko = pytest.importorskip("zuko", reason="zuko is not installed (pip install 'flowlab-nf[peers]')")
    peer = zuko.flows.MAF(2, transforms=1)
    peer.base = zuko.lazy.UnconditionalDistribution(
        zuko.distributions.DiagNormal, torch.zeros(2), 2 * torch.ones(2), buffer=True
    )
    with pytest.raises(flowlab.AdapterError, match="standard-normal base"):
        from_zuko(peer, 2)
    from_zuko(peer.transform, 2)  # the transform alone is fine (the base is the spec's business)


def test_nflows_flow_direction_and_sign() -> None:
    pytest.importorskip("nflows", reason="nflows is not installed (pip install 'flowlab-nf[peers]')")
    from nflows.flows.autoregressive import MaskedAutoregressiveFlow

    torch.manual_seed(0)
    peer = MaskedAutoregressiveFlow(3, hidden_features=8, num_layers=2, num_blocks_per_layer=1).double().eval()
    with torch.no_grad():  # move away from the identity initialisation
        for parameter in peer.parameters():
            parameter.add_(0.1 * torch.randn_like(parameter))
    bijector = from_nflows(peer, 3)
    assert_convention(bijector, 3)
    x = torch.randn(5, 3, dtype=torch.float64)
    torch.testing.assert_close(flowlab.Flow(bijector).log_prob(x), peer.log_prob(x))


def test_normflows_model_direction_sign_and_folded_base() -> None:
    normflows = pytest.importorskip("normflows", reason="normflows is not installed (pip install 'flowlab-nf[peers]')")
    torch.manual_seed(0)
    base = normflows.distributions.DiagGaussian(2)
    with torch.no_grad():
        base.loc.copy_(torch.tensor([[0.5, -1.0]]))
        base.log_scale.copy_(torch.tensor([[0.3, -0.2]]))
    layers = [normflows.flows.Planar((2,), act="tanh"), normflows.flows.Radial((2,))]  # no analytic inverses
    model = normflows.NormalizingFlow(base, layers).double()
    bijector = from_normflows(model, 2, solve_inverse=True, model=False)  # layer by layer
    assert_convention(bijector, 2)
    eps = torch.randn(5, 2, dtype=torch.float64)
    z = base.loc + torch.exp(base.log_scale) * eps  # normflows' own sampling: z ~ q0, then the layers
    x, peer_log_q = z, base.log_prob(z)
    for layer in layers:
        x, log_det = layer(x)
        peer_log_q = peer_log_q - log_det
    ours, ladj = bijector(eps)  # flowlab: standard-normal eps, the folded base is the first layer
    torch.testing.assert_close(ours, x)
    torch.testing.assert_close(flowlab.Flow(bijector).base.log_prob(eps) - ladj, peer_log_q)
    assert {id(p) for p in bijector.parameters()} == {id(p) for p in model.parameters()}  # base params included


def test_a_float32_logdet_from_a_peer_is_passed_through() -> None:
    normflows = pytest.importorskip("normflows", reason="normflows is not installed (pip install 'flowlab-nf[peers]')")
    bijector = from_normflows([normflows.flows.Planar((2,), act="leaky_relu")], 2).double()
    z = torch.randn(4, 2, dtype=torch.float64)
    x, ladj = bijector(z)
    assert x.dtype == torch.float64 and ladj.dtype == torch.float32  # normflows' own float32, not cast


# -- NumericInverse --------------------------------------------------------------------------------------------------
class Forward(Bijector):
    """A forward-only bijector ``x = fn(z)`` (elementwise), for NumericInverse."""

    def __init__(self, dim: int, fn: str) -> None:
        super().__init__()
        self.dim, self.fn = dim, fn
        self.shift = nn.Parameter(torch.tensor(0.25, dtype=torch.float64))

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        if self.fn == "tanh":  # onto (-1, 1) only: not invertible on R
            return torch.tanh(z), torch.log1p(-(torch.tanh(z) ** 2)).sum(dim=1)
        x = z + 0.5 * torch.sin(z + self.shift) + z**3 / 10  # strictly increasing, onto R
        return x, torch.log(1 + 0.5 * torch.cos(z + self.shift) + 0.3 * z**2).sum(dim=1)

    def inverse(self, x: Tensor) -> tuple[Tensor, Tensor]:
        raise NotImplementedError("forward only")


def test_numeric_inverse_converges_with_gradients() -> None:
    bijector = NumericInverse(Forward(3, "cubic"))
    z = 3 * torch.randn(6, 3, dtype=torch.float64)
    x, forward_ladj = bijector(z)
    back, inverse_ladj = bijector.inverse(x.detach().requires_grad_(True))
    torch.testing.assert_close(back, z, rtol=0, atol=1e-10)
    torch.testing.assert_close(inverse_ladj, -forward_ladj, rtol=0, atol=1e-10)
    inverse_ladj.sum().backward()
    assert bijector.layer.shift.grad is not None and torch.isfinite(bijector.layer.shift.grad)
    with torch.inference_mode():  # solved with autograd inside, on a clone
        torch.testing.assert_close(bijector.inverse(x.detach())[0], z, rtol=0, atol=1e-10)


def test_numeric_inverse_names_the_rows_it_cannot_solve() -> None:
    bijector = NumericInverse(Forward(2, "tanh"), max_iter=20)
    x = torch.tensor([[0.5, -0.25], [2.0, 0.0], [0.1, 0.2]], dtype=torch.float64)  # row 1 is outside tanh's range
    with pytest.raises(flowlab.ConvergenceError, match=r"in rows \[1\]") as info:
        bijector.inverse(x)
    assert info.value.rows == [1] and not math.isnan(info.value.residuals[0])
