"""flowlab.adapters: direction, sign and log-det shape of each adapter; dtypes passed through; what the peer holds
kept (parameters, caches); whole models as their own log_prob; NumericInverse."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import Tensor, nn
from torch.distributions import transforms

import flowlab
from flowlab import Bijector
from flowlab.adapters import (
    NumericInverse,
    adapted_spec,
    from_freia,
    from_nflows,
    from_normflows,
    from_pyro,
    from_torch,
    from_zuko,
    logdet_rows,
    sum_logdets,
)


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
    zuko = pytest.importorskip("zuko", reason="zuko is not installed (pip install -e '.[peers]')")
    torch.manual_seed(0)
    peer = zuko.flows.MAF(3, transforms=2, hidden_features=(8, 8)).double()
    bijector = from_zuko(peer, 3)
    assert_convention(bijector, 3)
    x = torch.randn(5, 3, dtype=torch.float64)
    torch.testing.assert_close(flowlab.Flow(bijector).log_prob(x), peer().log_prob(x))


def test_zuko_refuses_a_non_standard_base() -> None:
    zuko = pytest.importorskip("zuko", reason="zuko is not installed (pip install -e '.[peers]')")
    peer = zuko.flows.MAF(2, transforms=1)
    peer.base = zuko.lazy.UnconditionalDistribution(
        zuko.distributions.DiagNormal, torch.zeros(2), 2 * torch.ones(2), buffer=True
    )
    with pytest.raises(flowlab.AdapterError, match="standard-normal base"):
        from_zuko(peer, 2)
    from_zuko(peer.transform, 2)  # the transform alone is fine (the base is the spec's business)


def test_nflows_flow_direction_and_sign() -> None:
    pytest.importorskip("nflows", reason="nflows is not installed (pip install -e '.[peers]')")
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
    normflows = pytest.importorskip("normflows", reason="normflows is not installed (pip install -e '.[peers]')")
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
    normflows = pytest.importorskip("normflows", reason="normflows is not installed (pip install -e '.[peers]')")
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


# -- keeping what the peer holds (parameters in distributions, derived tensors, caches) -------------------------------
def normal_cdf_logit(loc: Tensor, scale: Tensor) -> transforms.Transform:
    """``x = logit(Φ((z − loc) / scale))``: a bijection of R whose parameters live in a ``Normal``."""
    cdf = transforms.CumulativeDistributionTransform(torch.distributions.Normal(loc, scale))
    return transforms.ComposeTransform([cdf, transforms.SigmoidTransform().inv])


def test_torch_parameters_inside_a_distribution_are_kept() -> None:
    loc, scale = nn.Parameter(torch.tensor([0.5, -0.5])), nn.Parameter(torch.tensor([1.5, 0.7]))
    bijector = from_torch(normal_cdf_logit(loc, scale), 2)
    assert {id(p) for p in bijector.parameters()} == {id(loc), id(scale)}
    flowlab.Flow(bijector).log_prob(torch.randn(5, 2)).sum().backward()
    assert loc.grad is not None and scale.grad is not None and bool(scale.grad.abs().sum() > 0)
    doubled = from_torch(normal_cdf_logit(loc, scale), 2).double()  # .double() reaches the distribution's tensors
    assert_convention(doubled, 2)


def test_a_learnable_tensor_computed_in_a_constructor_is_named() -> None:
    log_scale = nn.Parameter(torch.zeros(2))
    derived = transforms.AffineTransform(torch.zeros(2), log_scale.exp(), event_dim=1)  # a non-leaf: would not follow
    with pytest.raises(flowlab.AdapterError, match=r"peer\.scale \[2\] \(computed by ExpBackward0\)"):
        from_torch(derived, 2)


def test_deepcopy_after_a_call_copies_the_peers_caches_detached() -> None:
    pytest.importorskip("pyro", reason="pyro-ppl is not installed (pip install -e '.[peers]')")
    from pyro.distributions.transforms import Spline

    bijector = from_pyro(Spline(2, count_bins=4), 2)
    z = torch.randn(3, 2)
    x, _ = bijector(z)  # Spline caches (z, x) and its log-det: non-leaf tensors torch refuses to deep-copy
    twin = copy.deepcopy(bijector)
    torch.testing.assert_close(twin(z)[0], x)
    assert {id(p) for p in twin.parameters()}.isdisjoint(id(p) for p in bijector.parameters())


def test_adapted_spec_takes_any_library_with_its_mapping() -> None:
    spec = adapted_spec("mine.flow", "mine", lambda dim: from_torch(transforms.ExpTransform(), dim), library="mine",
                        explanation="**Transform.** exp.", mapping="mine: forward is exp.")  # fmt: skip
    assert "Adapted from mine not installed" in spec.explanation and "mine: forward is exp." in spec.explanation
    with pytest.raises(flowlab.OptionError, match="expected mapping="):
        adapted_spec("mine.flow", "mine", lambda dim: None, library="mine", explanation="")


# -- Pyro -------------------------------------------------------------------------------------------------------------
def test_pyro_direction_sign_and_parameters() -> None:
    pytest.importorskip("pyro", reason="pyro-ppl is not installed (pip install -e '.[peers]')")
    from pyro.distributions.transforms import Spline

    torch.manual_seed(0)
    spline = Spline(3, count_bins=4, order="quadratic")
    bijector = from_pyro(spline, 3).double()
    assert {id(p) for p in bijector.parameters()} == {id(p) for p in spline.parameters()}  # a TransformModule's own
    with torch.no_grad():
        for parameter in spline.parameters():
            parameter.add_(0.3 * torch.randn_like(parameter))
    assert_convention(bijector, 3)
    z = torch.randn(4, 3, dtype=torch.float64)
    torch.testing.assert_close(bijector(z)[0], spline(z))  # forward is the transform: base -> data


def test_pyro_conditional_transform_per_row_contexts() -> None:
    pytest.importorskip("pyro", reason="pyro-ppl is not installed (pip install -e '.[peers]')")
    from pyro.distributions.transforms import conditional_spline

    torch.manual_seed(0)
    module = conditional_spline(2, context_dim=3, count_bins=4).double()
    bijector = from_pyro(module, 2, context_dim=3)
    z, c = torch.randn(4, 2, dtype=torch.float64), torch.randn(4, 3, dtype=torch.float64)
    x, ladj = bijector(z, context=c)
    for row in range(4):  # row i at context i, as Pyro conditioned on that one context
        torch.testing.assert_close(x[row], module.condition(c[row]).__call__(z[row]))
    back, inverse_ladj = bijector.inverse(x.clone(), context=c)
    torch.testing.assert_close(back, z)
    torch.testing.assert_close(inverse_ladj, -ladj)
    with pytest.raises(flowlab.AdapterError, match="expected context_dim > 0"):
        from_pyro(module, 2)


# -- FrEIA ------------------------------------------------------------------------------------------------------------
def freia_subnet(features_in: int, features_out: int) -> nn.Module:
    return nn.Sequential(nn.Linear(features_in, 8), nn.Tanh(), nn.Linear(8, features_out))


def test_freia_direction_sign_and_context() -> None:
    pytest.importorskip("FrEIA", reason="FrEIA is not installed (pip install -e '.[peers]')")
    from FrEIA.framework import SequenceINN
    from FrEIA.modules import AllInOneBlock

    torch.manual_seed(0)
    inn = SequenceINN(3)
    for _ in range(2):
        inn.append(AllInOneBlock, subnet_constructor=freia_subnet, cond=0, cond_shape=(2,))
    inn = inn.double()
    with torch.no_grad():  # the trainable parameters only (w_perm is a fixed orthogonal matrix and its inverse)
        for parameter in inn.parameters():
            if parameter.requires_grad:
                parameter.add_(0.3 * torch.randn_like(parameter))
    bijector = from_freia(inn, 3, context_dim=2)
    x = torch.randn(5, 3, dtype=torch.float64)
    c = torch.randn(5, 2, dtype=torch.float64)
    z, ladj = bijector.inverse(x, context=c)
    peer_z, peer_ladj = inn(x, c=[c])  # FrEIA's forward: data -> latent, log|det ∂z/∂x|
    torch.testing.assert_close(z, peer_z)
    torch.testing.assert_close(ladj, peer_ladj)
    back, forward_ladj = bijector(z, context=c)
    torch.testing.assert_close(back, x)
    torch.testing.assert_close(forward_ladj, -ladj)
    assert_convention_with_context(bijector, 3, 2)


# -- whole models, as users call them ---------------------------------------------------------------------------------
def test_normflows_model_is_its_own_log_prob_and_keeps_its_accumulator_dtype() -> None:
    normflows = pytest.importorskip("normflows", reason="normflows is not installed (pip install -e '.[peers]')")
    torch.manual_seed(0)
    layers = [normflows.flows.MaskedAffineFlow(torch.tensor([1.0, 0.0]), normflows.nets.MLP([2, 8, 2]))]
    model = normflows.NormalizingFlow(normflows.distributions.DiagGaussian(2), layers).double()
    bijector = from_normflows(model, 2)
    x = torch.randn(5, 2, dtype=torch.float64)
    torch.testing.assert_close(flowlab.Flow(bijector).log_prob(x), model.log_prob(x))
    eps = torch.randn(5, 2, dtype=torch.float64)
    _, ladj = bijector(eps)
    assert ladj.dtype == torch.float32  # forward_and_log_det's own torch.zeros(len(z)) accumulator, not cast


def test_zuko_flow_with_context_is_its_own_log_prob() -> None:
    zuko = pytest.importorskip("zuko", reason="zuko is not installed (pip install -e '.[peers]')")
    torch.manual_seed(0)
    flow = zuko.flows.NSF(2, 3, transforms=2, hidden_features=(8, 8)).double()
    bijector = from_zuko(flow, 2, context_dim=3)
    assert_convention_with_context(bijector, 2, 3)
    x, c = torch.randn(5, 2, dtype=torch.float64), torch.randn(5, 3, dtype=torch.float64)
    torch.testing.assert_close(flowlab.Flow(bijector).log_prob(x, context=c), flow(c).log_prob(x))


def test_nflows_flow_with_context_is_its_own_log_prob() -> None:
    pytest.importorskip("nflows", reason="nflows is not installed (pip install -e '.[peers]')")
    from nflows.distributions.normal import StandardNormal
    from nflows.flows.base import Flow
    from nflows.transforms.autoregressive import MaskedAffineAutoregressiveTransform

    torch.manual_seed(0)
    transform = MaskedAffineAutoregressiveTransform(2, hidden_features=8, context_features=3)
    flow = Flow(transform, StandardNormal([2]), embedding_net=nn.Linear(3, 3)).double().eval()
    with torch.no_grad():
        for parameter in flow.parameters():
            parameter.add_(0.1 * torch.randn_like(parameter))
    bijector = from_nflows(flow, 2, context_dim=3)
    assert_convention_with_context(bijector, 2, 3)
    x, c = torch.randn(5, 2, dtype=torch.float64), torch.randn(5, 3, dtype=torch.float64)
    torch.testing.assert_close(flowlab.Flow(bijector).log_prob(x, context=c), flow.log_prob(x, context=c))


def assert_convention_with_context(bijector: Bijector, dim: int, context_dim: int) -> None:
    """As :func:`assert_convention`, each row at its own context (the autograd Jacobian in the points only)."""
    z = torch.randn(3, dim, dtype=torch.float64)
    c = torch.randn(3, context_dim, dtype=torch.float64)
    x, forward_ladj = bijector(z, context=c)
    back, inverse_ladj = bijector.inverse(x, context=c)
    torch.testing.assert_close(back, z, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(inverse_ladj, -forward_ladj, rtol=1e-9, atol=1e-9)
    for row in range(3):
        at = c[row : row + 1]
        jac = torch.autograd.functional.jacobian(lambda v, at=at: bijector(v[None], context=at)[0][0], z[row])
        torch.testing.assert_close(forward_ladj[row], torch.linalg.slogdet(jac).logabsdet, rtol=1e-9, atol=1e-9)
