"""Solution of docs/exercises/05-time-embedding.md: a vector field f(t, z) for any shape of t."""

import torch
from torch import nn

import flowlab


class TimeField(nn.Module):
    """f(t, z) = MLP([z, t]) for t of one element (one time for the batch) or one per row ([batch], [batch, 1])."""

    def __init__(self, dim, hidden=32):
        super().__init__()
        self.dim = dim
        self.net = nn.Sequential(
            nn.Linear(dim + 1, hidden), nn.Tanh(), nn.Linear(hidden, hidden), nn.Tanh(), nn.Linear(hidden, dim)
        )

    def forward(self, t, z):
        times = torch.as_tensor(t, dtype=z.dtype, device=z.device).reshape(-1, 1)  # [1, 1] or [batch, 1]
        return self.net(torch.cat([z, times.expand(z.shape[0], 1)], dim=-1))


if __name__ == "__main__":
    print(flowlab.grade("time_embedding", TimeField))
