"""Solution of docs/exercises/01-change-of-variables.md: ``x = a·z + b`` on the real line."""

import torch
from torch import nn

import flowlab


class Affine1D(flowlab.Bijector):
    """x = a·z + b on the real line, with a ≠ 0 (a < 0 reflects the line)."""

    def __init__(self):
        super().__init__()
        self.dim = 1
        self.a = nn.Parameter(torch.tensor(-2.0))
        self.b = nn.Parameter(torch.tensor(1.0))

    def forward(self, z):
        """z: [batch, 1] -> (x, log|dx/dz|): x = a·z + b, log|dx/dz| = log|a| on every row."""
        return self.a * z + self.b, self.a.abs().log().expand(z.shape[0])

    def inverse(self, x):
        """x: [batch, 1] -> (z, log|dz/dx|): z = (x − b)/a, log|dz/dx| = −log|a| on every row."""
        return (x - self.b) / self.a, -self.a.abs().log().expand(x.shape[0])


if __name__ == "__main__":
    print(flowlab.grade("change_of_variables", Affine1D))
