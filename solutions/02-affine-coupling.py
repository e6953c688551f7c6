"""Solution of docs/exercises/02-affine-coupling.md: an affine coupling layer with a bounded scale, and a stack."""

import torch
from torch import nn

import flowlab


class AffineCoupling(flowlab.Bijector):
    """x_b = z_b·exp(s) + t with (ŝ, t) = net(z_a) and s = B·tanh(ŝ/B): the coordinates a (every other one, from
    ``parity``) are kept, the others (b) are moved."""

    def __init__(self, dim, parity=0, hidden=32, bound=2.0):
        super().__init__()
        self.dim, self.bound = dim, bound
        self.kept = [i for i in range(dim) if i % 2 == parity]
        self.moved = [i for i in range(dim) if i % 2 != parity]
        self.net = nn.Sequential(nn.Linear(len(self.kept), hidden), nn.Tanh(), nn.Linear(hidden, 2 * len(self.moved)))

    def scale_and_shift(self, kept):
        """(s, t) of the moved coordinates, from the kept ones; s in (−B, B)."""
        raw, t = self.net(kept).chunk(2, dim=-1)
        return self.bound * torch.tanh(raw / self.bound), t

    def forward(self, z):
        s, t = self.scale_and_shift(z[:, self.kept])
        x = z.clone()  # never write into the caller's tensor
        x[:, self.moved] = z[:, self.moved] * s.exp() + t
        return x, s.sum(dim=-1)

    def inverse(self, x):
        s, t = self.scale_and_shift(x[:, self.kept])  # the kept half is the same on both sides
        z = x.clone()
        z[:, self.moved] = (x[:, self.moved] - t) * (-s).exp()
        return z, -s.sum(dim=-1)


def stack(dim, blocks=4):
    """``blocks`` coupling layers that take turns at which half they keep, so every coordinate is moved every other
    layer. (A ``flowlab.Permutation.reverse(dim)`` between the layers instead does it for an even dim only: for an
    odd one the middle coordinate stays in place; and both at once cancel out for an even dim.)"""
    return flowlab.Compose([AffineCoupling(dim, parity=k % 2) for k in range(blocks)])


if __name__ == "__main__":
    print(flowlab.grade("coupling", AffineCoupling))
    print(flowlab.grade("coupling_stack", stack))
