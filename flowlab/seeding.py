"""Seeds derived from ``(seed, key...)``, so that every random draw of a run is a function of its seed and step.

A run's batch at step ``k`` comes from ``generator(seed, "batch", k)``, its held-out set from
``generator(seed, "test")``: a run resumed at step ``k`` draws exactly what the uninterrupted run drew.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager

import torch


def stream_seed(seed: int, *keys: object) -> int:
    """A 63-bit seed determined by ``(seed, *keys)`` (BLAKE2b of their repr; distinct keys give unrelated streams)."""
    digest = hashlib.blake2b(repr((int(seed), *keys)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


def generator(seed: int, *keys: object) -> torch.Generator:
    """A CPU ``torch.Generator`` seeded with :func:`stream_seed` ``(seed, *keys)``."""
    return torch.Generator().manual_seed(stream_seed(seed, *keys))


def manual_seed_(seed: int) -> None:
    """Seed the CPU's global generator and those of the CUDA devices already initialised.

    ``torch.manual_seed`` without its hidden cost: where CUDA (or XPU, MTIA) is not initialised it queues the seed
    for a later initialisation with ``traceback.format_stack()``, three times, milliseconds under the conformance
    kit's deep Hypothesis stacks (8 % of ``flowlab check``'s time went there). A device not initialised before the
    block holds no tensor of the block's flow.
    """
    torch.default_generator.manual_seed(seed)
    if torch.cuda.is_initialized():
        torch.cuda.manual_seed_all(seed)


@contextmanager
def global_rng(seed: int, *keys: object) -> Iterator[None]:
    """Seed torch's global RNGs from ``(seed, *keys)`` inside the block and restore their state afterwards.

    For randomness drawn inside flows (Hutchinson probes, dropout), which use the global RNG.
    """
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_initialized() else []
    with torch.random.fork_rng(devices=devices):
        manual_seed_(stream_seed(seed, *keys))
        yield
