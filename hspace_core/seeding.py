"""Seeded initialisation of trainable modules without touching torch's global random state.

``reset_parameters_`` redraws every ``nn.Conv2d`` / ``nn.Linear`` weight and bias exactly as
PyTorch's own ``reset_parameters`` does (Kaiming-uniform with a = sqrt(5); bias U(+-1/sqrt(fan_in))),
in module order, from the given generator: a module built and reset this way holds the same values
as one built after ``torch.manual_seed(seed)``, but the caller's global RNG stays untouched.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import nn

from .errors import HSpaceError


def reset_parameters_(module: nn.Module, generator: torch.Generator) -> nn.Module:
    """Re-initialise ``module`` in place from ``generator``; returns it. Norm layers get ones / zeros."""
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_uniform_(m.weight, a=math.sqrt(5), generator=generator)
                if m.bias is not None:
                    fan_in, _ = nn.init._calculate_fan_in_and_fan_out(m.weight)
                    bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0
                    nn.init.uniform_(m.bias, -bound, bound, generator=generator)
            elif isinstance(m, (nn.GroupNorm, nn.BatchNorm2d, nn.LayerNorm)):
                if m.weight is not None:
                    nn.init.ones_(m.weight)
                    nn.init.zeros_(m.bias)
            elif any(True for _ in m.parameters(recurse=False)):
                raise HSpaceError(f"no seeded initialisation for {type(m).__name__}")
    return module


def seeded_module(build: Callable[[], nn.Module], generator: torch.Generator) -> nn.Module:
    """``build()`` with its parameters drawn from ``generator`` (``reset_parameters_``). The default
    initialisation that construction runs draws from the global generator; its state is restored
    afterwards, so the caller's random stream is left exactly as it was."""
    with torch.random.fork_rng(devices=[]):
        module = build()
    return reset_parameters_(module, generator)


Seed = "int | tuple[int, ...]"


def check_seed(seed, n: int):
    """``seed`` as stored: a non-negative int, or a tuple of ``n`` non-negative ints (one per image)."""
    if isinstance(seed, (list, tuple)):
        if len(seed) != n or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seed):
            raise HSpaceError(f"per-image seeds must be {n} non-negative integers, got {list(seed)!r}")
        return tuple(int(s) for s in seed)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise HSpaceError(f"a seed must be a non-negative integer, got {seed!r}")
    return int(seed)


class NormalDraws:
    """Repeatable standard normal draws of a batch [n, ...] on the CPU: from one generator seeded with
    ``seed`` (an int; the draw of a row depends on its place in the batch), or row i from its own
    generator seeded with ``seed[i]`` (a tuple of n seeds: an image's draws do not depend on which
    other images share its batch)."""

    def __init__(self, seed, n: int):
        seed = check_seed(seed, n)
        self.per_row = isinstance(seed, tuple)
        self.gens = [torch.Generator().manual_seed(s) for s in (seed if self.per_row else (seed,))]

    def __call__(self, shape) -> torch.Tensor:
        if not self.per_row:
            return torch.randn(tuple(shape), generator=self.gens[0])
        if shape[0] != len(self.gens):
            raise HSpaceError(f"{len(self.gens)} per-image seeds for a batch of {shape[0]}")
        return torch.stack([torch.randn(tuple(shape[1:]), generator=g) for g in self.gens])
