"""Random-walk propagation of class maps over a local affinity graph (AffinityNet, Ahn & Kwak 2018).

Pixels of the feature grid are linked to every pixel within `radius` (dy^2 + dx^2 < radius^2)
and to themselves (affinity 1). With A the affinities raised to beta and D its row sums, the
transition matrix is T = D^-1 A and the maps are propagated t times: v <- T v, i.e. each pixel
takes the affinity-weighted average of its neighbourhood. T is never built as an N x N matrix:
it is stored as one weight plane per neighbour offset (K x h x w with K ~ radius^2 * pi), and a
step is K shifted multiply-adds, so time and memory grow with N, not N^2.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def disk_offsets(radius: int) -> list[tuple[int, int]]:
    """Every (dy, dx) with dy^2 + dx^2 < radius^2, the centre (0, 0) included."""
    r = radius - 1
    return [(dy, dx) for dy in range(-r, r + 1) for dx in range(-r, r + 1) if dy * dy + dx * dx < radius * radius]


def half_offsets(radius: int) -> list[tuple[int, int]]:
    """One offset of each +-pair of disk_offsets (the centre excluded): each pixel pair once."""
    return [(dy, dx) for dy, dx in disk_offsets(radius) if dy > 0 or (dy == 0 and dx > 0)]


def overlap(h: int, w: int, dy: int, dx: int) -> tuple[tuple[slice, slice], tuple[slice, slice]]:
    """Slices (of p, of p + (dy, dx)) over the pixels p whose neighbour p + (dy, dx) is in the grid."""
    ys, yd = (slice(0, h - dy), slice(dy, h)) if dy >= 0 else (slice(-dy, h), slice(0, h + dy))
    xs, xd = (slice(0, w - dx), slice(dx, w)) if dx >= 0 else (slice(-dx, w), slice(0, w + dx))
    return (ys, xs), (yd, xd)


def pair_affinity(f1: torch.Tensor, f2: torch.Tensor) -> torch.Tensor:
    """a_ij = exp(-mean_c |f_i - f_j|) over the channel axis (-3)."""
    return torch.exp(-(f1 - f2).abs().mean(-3))


def transition_weights(features: torch.Tensor, radius: int, beta: float) -> tuple[list, torch.Tensor]:
    """features (D, h, w) -> (offsets, T) with T (K, h, w): T[k, p] = A(p, p + offsets[k])^beta / D(p),
    zero where the neighbour falls outside the grid. Rows of T (sums over k) are 1."""
    _, h, w = features.shape
    offsets = disk_offsets(radius)
    index = {o: k for k, o in enumerate(offsets)}
    weights = features.new_zeros(len(offsets), h, w)
    weights[index[(0, 0)]] = 1.0
    for dy, dx in half_offsets(radius):
        src, dst = overlap(h, w, dy, dx)
        a = pair_affinity(features[:, src[0], src[1]], features[:, dst[0], dst[1]]) ** beta
        weights[index[(dy, dx)]][src] = a      # p -> p + d
        weights[index[(-dy, -dx)]][dst] = a    # and back: A is symmetric
    return offsets, weights / weights.sum(0, keepdim=True)


def random_walk(maps: torch.Tensor, offsets: list, weights: torch.Tensor, steps: int) -> torch.Tensor:
    """T^steps applied to maps (C, h, w), T as returned by transition_weights."""
    _, h, w = maps.shape
    pad = max(max(abs(dy), abs(dx)) for dy, dx in offsets)
    v = maps
    for _ in range(steps):
        padded = F.pad(v, (pad, pad, pad, pad))
        out = torch.zeros_like(v)
        for (dy, dx), plane in zip(offsets, weights):
            out.addcmul_(plane, padded[:, pad + dy:pad + dy + h, pad + dx:pad + dx + w])
        v = out
    return v
