"""Random-walk propagation of class maps over a local affinity graph (AffinityNet, Ahn & Kwak 2018).

The seam: an affinity is a function giving each pixel's affinities to its neighbours on the disk,
an (h, w, K) array over disk_offsets(radius) (feature_affinities here for AffinityNet,
pipeline.affinity.irn.boundary_affinities for IRN, the ground truth in pipeline.diagnostics.walk_ceiling);
affinity_transition raises them to beta, normalises and builds the sparse T, and `walk` walks.

Pixels of the feature grid are linked to every pixel within `radius` (dy^2 + dx^2 < radius^2)
and to themselves (affinity 1). With A the affinities raised to beta and D its row sums, the
transition matrix is T = D^-1 A and the maps are propagated t times: v <- T v, i.e. each pixel
takes the affinity-weighted average of its neighbourhood. T is a sparse N x N matrix in CSR form
(N = h w pixels in row-major order, K ~ radius^2 pi entries a row: 69 at radius 5), so a step is
one sparse x dense product, time and memory grow with N, not N^2, and the same code runs on CPU
and CUDA.

Two choices, measured with benchmarks/bench_random_walk.py:
- float32: T's rows sum to 1, so T^t v stays a weighted average of the input values; after 256
  steps the float32 walk is within 1e-6..1e-5 of the float64 one (1.3e-6 in the benchmark, the
  rounding of exp in T's entries dominating), below the float16 the maps are stored in and with
  the same argmax. float64 only doubled the bytes every product moves.
- no squaring: psa and IRN raise a dense T to 2^logt by logt squarings. On a sparse T each
  squaring widens the neighbourhood (69 -> ~230 -> ~840 entries a row at radius 5), so T^2
  and 128 products cost about twice 256 products with T (and 7x the memory).
"""
from __future__ import annotations

import warnings

import torch

ROW_BLOCK = 1024   # rows of T assembled at a time


def disk_offsets(radius: int) -> list[tuple[int, int]]:
    """Every (dy, dx) with dy^2 + dx^2 < radius^2, the centre (0, 0) included, in row-major
    order, so that p + dy w + dx increases along the list (CSR wants sorted columns)."""
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


def block_affinity(f1: torch.Tensor, f2: torch.Tensor, block: int = 16) -> torch.Tensor:
    """pair_affinity of (D, h, w) features, summed over blocks of channels: the walk's largest
    scratch is then a block's difference, not all D channels' (no gradient: inference only)."""
    dist = torch.zeros(f1.shape[1:], dtype=f1.dtype, device=f1.device)
    for c in range(0, len(f1), block):
        dist += torch.sub(f1[c:c + block], f2[c:c + block]).abs_().sum(0)
    return torch.exp(-dist / len(f1))


def feature_affinities(features: torch.Tensor, radius: int) -> torch.Tensor:
    """AffinityNet's affinities on the disk: features (D, h, w) -> A (h, w, K), K = len(disk_offsets(radius)),
    A[p, k] = exp(-mean |f_p - f_q|) for q = p + disk_offsets(radius)[k], 1 for q = p, 0 where q falls
    outside the grid."""
    _, h, w = features.shape
    pairs = ((d, block_affinity(features[:, src[0], src[1]], features[:, dst[0], dst[1]]))
             for d in half_offsets(radius) for src, dst in [overlap(h, w, *d)])
    return fill_affinities(pairs, h, w, radius, features)


def fill_affinities(pairs, h: int, w: int, radius: int, like: torch.Tensor) -> torch.Tensor:
    """The (h, w, K) disk array of symmetric affinities from an iterable of ((dy, dx), a), one entry per
    offset of half_offsets(radius) with a over overlap(h, w, dy, dx)'s first slice; 1 on the centre,
    0 outside the grid. `like` gives dtype and device."""
    offsets = disk_offsets(radius)
    index = {o: k for k, o in enumerate(offsets)}
    affinities = like.new_zeros(h, w, len(offsets))
    affinities[:, :, index[(0, 0)]] = 1.0
    for (dy, dx), a in pairs:
        src, dst = overlap(h, w, dy, dx)
        affinities[src[0], src[1], index[(dy, dx)]] = a
        affinities[dst[0], dst[1], index[(-dy, -dx)]] = a
    return affinities


def neighbour_weights(features: torch.Tensor, radius: int, beta: float) -> tuple[list, torch.Tensor]:
    """features (D, h, w) -> (offsets, W) with W (h, w, K): W[p, k] = A(p, p + offsets[k])^beta / D(p),
    zero where the neighbour falls outside the grid. Each pixel's weights sum to 1."""
    return disk_offsets(radius), normalised_weights(feature_affinities(features, radius), beta)


def normalised_weights(affinities: torch.Tensor, beta: float) -> torch.Tensor:
    """A (h, w, K) on the disk -> A^beta / D (in place): each pixel's weights sum to 1."""
    weights = affinities.pow_(beta)
    return weights.div_(weights.sum(-1, keepdim=True))


def transition_matrix(features: torch.Tensor, radius: int, beta: float) -> torch.Tensor:
    """features (D, h, w) -> T, a sparse CSR (N x N) matrix in the features' dtype and device:
    T[p, q] = A(p, q)^beta / D(p) for the grid neighbours q of p (pixels in row-major order)."""
    return affinity_transition(feature_affinities(features, radius), radius, beta)


def affinity_transition(affinities: torch.Tensor, radius: int, beta: float) -> torch.Tensor:
    """The walk's seam: neighbour affinities A (h, w, K) on disk_offsets(radius), whatever computed
    them (AffinityNet's features, IRN's boundary map, the ground truth), -> T = D^-1 A^beta as a
    sparse CSR (N x N) matrix in A's dtype and device. A is consumed (raised to beta in place)."""
    h, w, k = affinities.shape
    offsets = disk_offsets(radius)
    if k != len(offsets):
        raise ValueError(f"affinities have {k} neighbours a pixel, the disk of radius {radius} has {len(offsets)}")
    weights = normalised_weights(affinities, beta)
    device = weights.device
    dy = torch.tensor([o[0] for o in offsets], device=device, dtype=torch.int32)
    dx = torch.tensor([o[1] for o in offsets], device=device, dtype=torch.int32)
    # a neighbour is inside when its row and its column are: (h, 1, K) & (1, w, K), built a block
    # of image rows at a time, so that no N x K mask is held
    row_inside = ((torch.arange(h, device=device, dtype=torch.int32)[:, None] + dy) >= 0) \
        & ((torch.arange(h, device=device, dtype=torch.int32)[:, None] + dy) < h)
    col_inside = ((torch.arange(w, device=device, dtype=torch.int32)[:, None] + dx) >= 0) \
        & ((torch.arange(w, device=device, dtype=torch.int32)[:, None] + dx) < w)
    block = max(1, ROW_BLOCK // w)   # image rows a block

    def inside(y0: int, y1: int) -> torch.Tensor:
        return (row_inside[y0:y1, None] & col_inside[None]).reshape((y1 - y0) * w, -1)

    rows = torch.zeros(h * w + 1, device=device, dtype=torch.int32)
    counts = torch.cat([inside(y0, min(y0 + block, h)).sum(1, dtype=torch.int32) for y0 in range(0, h, block)])
    torch.cumsum(counts, 0, out=rows[1:])
    ends = rows.tolist()
    columns = torch.empty(ends[-1], device=device, dtype=torch.int32)
    flat = weights.reshape(-1)
    shift = dy * w + dx
    # the kept weights are compacted to the front of the weights' own storage, block by block: a
    # block's entries land at or before where they were read, and later blocks are read from
    # further on, so T's values need no second N x K array
    for y0 in range(0, h, block):
        y1 = min(y0 + block, h)
        start, stop = y0 * w, y1 * w
        keep = inside(y0, y1)
        pixels = torch.arange(start, stop, device=device, dtype=torch.int32)
        torch.masked_select(pixels[:, None] + shift, keep, out=columns[ends[start]:ends[stop]])
        flat[ends[start]:ends[stop]] = torch.masked_select(flat[start * len(offsets):stop * len(offsets)],
                                                           keep.reshape(-1))
    values = flat[:ends[-1]]
    with warnings.catch_warnings():   # torch flags its CSR support as beta at every first use
        warnings.filterwarnings("ignore", "Sparse CSR tensor support is in beta state")
        return torch.sparse_csr_tensor(rows, columns, values, (h * w, h * w), check_invariants=False)


def walk(affinities: torch.Tensor, radius: int, beta: float, maps: torch.Tensor, steps: int) -> torch.Tensor:
    """Neighbour affinities A (h, w, K) on disk_offsets(radius) raised to beta, normalised and walked:
    (D^-1 A^beta)^steps applied to maps (C, h, w)."""
    return random_walk(maps, affinity_transition(affinities, radius, beta), steps)


def random_walk(maps: torch.Tensor, T: torch.Tensor, steps: int) -> torch.Tensor:
    """T^steps applied to maps (C, h, w), T as returned by transition_matrix (same dtype and device)."""
    c, h, w = maps.shape
    v = maps.reshape(c, h * w).T.contiguous()   # (N, C): one row per pixel, as T's columns
    for _ in range(steps):
        v = T @ v
    return v.T.reshape(c, h, w)
