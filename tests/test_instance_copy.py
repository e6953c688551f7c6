"""``flowlab.checks.instance_copy.copy_instance``: the same result as ``copy.deepcopy`` for every module the kit
copies (the built-in flows, and modules that share, alias, hook or customise their copying), and the kit's
instance cache, which hands every property such a copy of one build."""

from __future__ import annotations

import copy
from dataclasses import replace

import pytest
import torch
from torch import nn

from flowlab import flows
from flowlab.checks import Case, build_case_bijector
from flowlab.checks.instance_copy import copy_instance
from flowlab.checks.strategies import allowed_dims


def same_copy(original: nn.Module, copied: nn.Module) -> None:
    """``copied`` is a deep copy of ``original``: equal state, the same module tree, no shared tensor storage."""
    reference = copy.deepcopy(original)
    assert type(copied) is type(original)
    assert [type(m) for m in copied.modules()] == [type(m) for m in reference.modules()]
    state, expected = copied.state_dict(), reference.state_dict()
    assert list(state) == list(expected)
    for name, value in state.items():
        assert torch.equal(value, expected[name]), name
    originals = {t.untyped_storage().data_ptr() for t in original.state_dict().values() if t.numel()}
    assert not originals & {t.untyped_storage().data_ptr() for t in state.values() if t.numel()}
    for module, copied_module, reference_module in zip(
        original.modules(), copied.modules(), reference.modules(), strict=True
    ):
        assert copied_module is not module
        assert list(vars(copied_module)) == list(vars(reference_module))
        for key, value in vars(module).items():
            # the same values, new objects exactly where deepcopy makes new ones
            assert (vars(copied_module)[key] is value) == (vars(reference_module)[key] is value), key
            if isinstance(value, (bool, int, float, str)):
                assert vars(copied_module)[key] == value, key


@pytest.mark.parametrize("name", sorted(flows()))
def test_every_registered_flow_copies_as_deepcopy_does(name):
    spec = flows()[name]
    bijector = build_case_bijector(spec, Case(dim=allowed_dims(spec)[0], batch=3, seed=1))
    copied = copy_instance(bijector)
    same_copy(bijector, copied)
    draws = torch.Generator().manual_seed(0)
    z = torch.randn(3, bijector.dim, dtype=torch.float64, generator=draws)
    k = int(getattr(bijector, "context_dim", 0))
    given = {"context": torch.randn(3, k, dtype=torch.float64, generator=draws)} if k else {}
    with torch.no_grad():
        for out, expected in zip(copied(z, **given), bijector(z, **given), strict=True):
            assert torch.equal(out, expected)
        for parameter in copied.parameters():  # the copy's parameters are its own
            parameter.add_(1)
    for out, expected in zip(bijector(z, **given), copy.deepcopy(bijector)(z, **given), strict=True):
        assert torch.equal(out, expected)


class Tied(nn.Module):
    """Shared parameters, attributes that alias a submodule and a parameter, a hook, a derived cache."""

    def __init__(self) -> None:
        super().__init__()
        self.first = nn.Linear(2, 2)
        self.second = nn.Linear(2, 2)
        self.second.weight = self.first.weight  # tied
        self.alias = [self.first, self.first.bias]  # a plain attribute that refers into the module
        self.register_buffer("count", torch.zeros(()))
        self.cache = {"weight_t": self.first.weight.detach().t().clone()}
        self.first.register_forward_hook(lambda module, args, out: out * 2)


def test_shared_and_aliased_tensors_and_hooks_are_copied_as_deepcopy_does():
    module = Tied()
    copied = copy_instance(module)
    same_copy(module, copied)
    assert copied.second.weight is copied.first.weight  # still tied, to the copy's own parameter
    assert copied.alias[0] is copied.first and copied.alias[1] is copied.first.bias
    assert copied.cache["weight_t"] is not module.cache["weight_t"]
    assert len(copied.first._forward_hooks) == 1 and copied.first._forward_hooks is not module.first._forward_hooks
    x = torch.randn(4, 2)
    assert torch.equal(copied.first(x), module.first(x))  # the hook is there
    assert copied._forward_pre_hooks is not module._forward_pre_hooks  # empty dictionaries are new ones


class CustomCopy(nn.Module):
    """A module that customises its copying: ``copy_instance`` must call it, as ``deepcopy`` does."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(2, 2)
        self.copies = 0

    def __deepcopy__(self, memo):
        new = CustomCopy()
        new.linear.load_state_dict(self.linear.state_dict())
        new.copies = self.copies + 1
        return new


def test_a_module_that_customises_its_copying_is_copied_its_way():
    holder = nn.Sequential(CustomCopy())
    assert copy_instance(holder)[0].copies == 1


def test_what_deepcopy_refuses_is_refused():
    module = nn.Linear(2, 2)
    module.derived = module.weight * 2  # a non-leaf tensor
    with pytest.raises(RuntimeError):
        copy.deepcopy(module)
    with pytest.raises(RuntimeError):
        copy_instance(module)


def test_the_kit_builds_a_case_once_and_hands_out_copies(monkeypatch):
    spec = flows()["stacked"]
    builds = []
    original = spec.build

    def counted(dim, **options):
        builds.append(dim)
        return original(dim, **options)

    spec = replace(spec, build=counted)
    case = Case(dim=3, batch=2, seed=11)
    first, second = build_case_bijector(spec, case), build_case_bijector(spec, case)
    assert len(builds) == 1 and first is not second
    same_copy(first, second)
    build_case_bijector(spec, replace(case, seed=12))
    assert len(builds) == 2
