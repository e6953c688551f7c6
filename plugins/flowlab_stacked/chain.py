"""``CouplingChain``: a stack of affine coupling layers with permutations between them, run without moving the data
between the layers.

Run as a plain :class:`~flowlab.Compose`, each coupling layer gathers its kept coordinates, joins the kept and the
moved ones back into a ``[batch, d]`` tensor, and each permutation gathers that tensor again: three copies of the
data per block, which at d = 64 cost a fifth of ``stacked``'s ``log_prob`` (docs/benchmarks.md). Here the data stay
in two tensors, the two parts of the current coupling layer, from the first layer to the last:

- a **permutation** only renames the coordinates: composed with the next layer's fixed split, it is another fixed
  split of the same two parts (no data moves);
- a layer whose kept part is the previous layer's moved part (``stacked``'s parity choice makes it so with
  ``reverse`` and ``none``) takes the two tensors as they are, its roles swapped; where their columns come in
  another order than the layer's own, its network's first-layer columns and last-layer rows are permuted instead
  of the data (:meth:`flowlab.layers.AffineCoupling.couple`);
- a layer whose split cuts across the two parts (``random`` permutations) regroups them: one join and split.

The data are split once on the way in and joined once on the way out. It is the same map as ``Compose(layers)``,
with the same layers, parameters and ``state_dict``, up to rounding (tests/test_stacked.py compares both).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from flowlab import Compose, Permutation
from flowlab.layers import AffineCoupling

#: how the columns of one part are taken from, and put into, the full vector: a slice (a view) when the part's
#: coordinates step regularly upwards, else the name of an index buffer
Select = slice | str


@dataclass(frozen=True)
class Split:
    """Two parts of the coordinates ``0..d−1``: ``first[j]`` is the coordinate in column ``j`` of the first part."""

    first: tuple[int, ...]
    second: tuple[int, ...]

    def renamed(self, permutation: Permutation) -> Split:
        """The same parts after ``x = z[:, perm]``: coordinate ``i`` of ``z`` is coordinate ``perm⁻¹[i]`` of ``x``."""
        new = permutation.inverse_perm.tolist()
        return Split(tuple(new[i] for i in self.first), tuple(new[i] for i in self.second))

    def swapped(self) -> Split:
        return Split(self.second, self.first)

    def parts(self) -> tuple[tuple[int, ...], tuple[int, ...]]:
        return self.first, self.second


@dataclass(frozen=True)
class Step:
    """One coupling layer of the chain: how the two tensors reach it from the layer before (``"keep"``: the kept
    tensor stays kept, ``"swap"``: the roles swap, ``"regroup"``: join by ``before``, split by ``split``), the
    order of their columns (``split``: kept, moved) and the weight orders of :meth:`AffineCoupling.couple`."""

    layer: int
    arrive: str
    before: Split
    split: Split
    columns: str | None
    rows: str | None


class CouplingChain(Compose):
    """``Compose(layers)`` of :class:`~flowlab.layers.AffineCoupling` and :class:`~flowlab.Permutation` layers,
    the first a coupling layer, computed on two tensors (the module docstring). :func:`chainable` says whether
    ``layers`` qualify."""

    def __init__(self, layers: list[nn.Module]) -> None:
        super().__init__(layers)
        if not chainable(self.layers):
            raise TypeError("CouplingChain: expected AffineCoupling and Permutation layers, the first a coupling")
        self._plan()
        self.register_load_state_dict_post_hook(lambda module, _keys: module._plan())

    def _plan(self) -> None:
        """The steps, from the layers' splits and the permutations (again after ``load_state_dict``, which may
        bring other permutations)."""
        for name in [name for name in self._buffers if name.startswith("_chain_")]:
            del self._buffers[name]
        self._selects: dict[tuple[int, ...], Select] = {}
        self._steps: list[Step] = []
        current: Split | None = None
        for index, layer in enumerate(self.layers):
            if isinstance(layer, Permutation):
                current = current.renamed(layer) if current is not None else None
                continue
            assert isinstance(layer, AffineCoupling)
            kept, moved = tuple(range(self.dim)[layer.kept]), tuple(range(self.dim)[layer.moved])
            if current is None or set(current.first) == set(kept):
                arrive, split = "keep", current or Split(kept, moved)
            elif set(current.second) == set(kept):
                arrive, split = "swap", current.swapped()
            else:
                arrive, split = "regroup", Split(kept, moved)
            columns, rows = layer.weight_orders(
                [kept.index(i) for i in split.first], [moved.index(i) for i in split.second]
            )
            before = current or split
            self._steps.append(
                Step(
                    index,
                    arrive,
                    before,
                    split,
                    None if columns is None else self._index(f"_chain_columns_{index}", columns),
                    None if rows is None else self._index(f"_chain_rows_{index}", rows),
                )
            )
            for part in (*before.parts(), *split.parts()):
                self._select(part)
            current = split
        assert current is not None
        self._out = current

    def _select(self, part: tuple[int, ...]) -> Select:
        """How to take ``part``'s columns: a slice where they step regularly upwards, else an index buffer."""
        if part not in self._selects:
            step = part[1] - part[0] if len(part) > 1 else 1
            if step > 0 and all(b - a == step for a, b in itertools.pairwise(part)):
                self._selects[part] = slice(part[0], part[-1] + 1, step)
            else:
                self._selects[part] = self._index(f"_chain_part_{len(self._selects)}", torch.tensor(part))
        return self._selects[part]

    def _index(self, name: str, index: Tensor) -> str:
        """Keep ``index`` as a buffer: it follows ``.to(device)``; not saved (the plan is rebuilt from the layers)."""
        self.register_buffer(name, index.to(next(self.parameters()).device), persistent=False)
        return name

    def _split(self, x: Tensor, split: Split) -> tuple[Tensor, Tensor]:
        """The two parts of ``x`` as contiguous tensors (what the network's matrix product reads fastest)."""
        parts = []
        for part in split.parts():
            select = self._selects[part]
            parts.append(
                x[:, select].contiguous() if isinstance(select, slice) else x.index_select(1, self._buffer(select))
            )
        return parts[0], parts[1]

    def _join(self, first: Tensor, second: Tensor, split: Split) -> Tensor:
        if split.first + split.second == tuple(range(self.dim)):
            return torch.cat([first, second], dim=1)
        out = first.new_empty(first.shape[0], self.dim)
        for part, values in zip(split.parts(), (first, second), strict=True):
            select = self._selects[part]
            if isinstance(select, slice):
                out[:, select] = values
            else:
                out.index_copy_(1, self._buffer(select), values)
        return out

    def _buffer(self, name: str) -> Tensor:
        buffer: Tensor = getattr(self, name)
        return buffer

    def _couple(
        self, step: Step, kept: Tensor, moved: Tensor, context: Tensor | None, *, inverse: bool
    ) -> tuple[Tensor, Tensor]:
        layer = self.layers[step.layer]
        assert isinstance(layer, AffineCoupling)
        columns = None if step.columns is None else self._buffer(step.columns)
        rows = None if step.rows is None else self._buffer(step.rows)
        return layer.couple(kept, moved, context, inverse=inverse, columns=columns, rows=rows)

    def forward(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        kept, moved = self._split(z, self._steps[0].split)
        total = z.new_zeros(z.shape[0])
        for step in self._steps:
            if step.arrive == "swap":
                kept, moved = moved, kept
            elif step.arrive == "regroup":
                kept, moved = self._split(self._join(kept, moved, step.before), step.split)
            moved, logdet = self._couple(step, kept, moved, context, inverse=False)
            total = total + logdet
        return self._join(kept, moved, self._out), total

    def inverse(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        kept, moved = self._split(x, self._out)
        total = x.new_zeros(x.shape[0])
        for step in reversed(self._steps):
            moved, logdet = self._couple(step, kept, moved, context, inverse=True)
            total = total + logdet
            if step.arrive == "swap":
                kept, moved = moved, kept
            elif step.arrive == "regroup":
                kept, moved = self._split(self._join(kept, moved, step.split), step.before)
        return self._join(kept, moved, self._steps[0].split), total


def chainable(layers: list[Any]) -> bool:
    """Whether :class:`CouplingChain` can run ``layers``: affine coupling layers and permutations only, the first a
    coupling layer."""
    return (
        bool(layers)
        and isinstance(layers[0], AffineCoupling)
        and all(isinstance(layer, AffineCoupling | Permutation) for layer in layers)
    )
