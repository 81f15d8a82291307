"""Unsupervised directions by independent components of h (PCA whitening, then FastICA).

PCA (``pca.py``) finds the axes of largest variance; attributes that vary independently of each other
(a smile, glasses, a hat) usually mix in them, since any rotation of the whitened top components has
the same variance. Independent component analysis picks the rotation instead: the one whose
coordinates are least Gaussian, which is where factors that are drawn independently and are not
Gaussian themselves (uniform dials, yes/no attributes) come apart (Hyvärinen and Oja, "Independent
component analysis: algorithms and applications", 2000: whitening, then symmetric FastICA).

Every sample is one row: h at each edited step of its trajectory (t >= t_edit), concatenated, so one
component has one h-shift per step and its orientation along the trajectory is consistent by
construction. With xc = x - mean = s · W · diag(std) · axes (s: N x dims sources of unit variance, W
orthogonal) the shift of component j is ``(W[j] * std) @ axes``: one standard deviation of that source
moved in h.

Which k of the ``dims`` components are kept (``ORDERS``): the least Gaussian (largest |excess kurtosis|),
or the most reproducible over bootstrap resamples of the rows (``stability``; ICASSO, Himberg, Hyvärinen
and Esposito 2004), which leaves out components that a few outlying rows make (their kurtosis is the
largest of all).

The rows are wide (an SD1.5 trajectory of 20 edited steps of 1280 x 8 x 8 is 1.6 M numbers) and few (hundreds):
all of it runs on their coordinates in an orthonormal basis of their own span (``span``, N x r, r < N), found
from the N x N Gram matrix, and only the k kept components are lifted back to h.
"""

from __future__ import annotations

from typing import Callable, NamedTuple, Sequence, Union

import torch
import torch.nn.functional as F

from ..directions.base import TensorDirection
from ..errors import HSpaceError
from ..images import prepare_images
from ..model import HSpaceModel
from ..sampling import Callback, JobProgress
from ..schedule import asyrp_timesteps
from .pca import principal_components
from .record import BATCH, edit_steps, invert_prepared, invert_steps, record_h, record_steps, seeded_noise
from .supervised import direction_from_steps

MAX_ITERATIONS = 2000
PATIENCE, MIN_STEP = 50, 1 / 64
DIMS_PER_K = 2  # the default whitened subspace: twice the components asked for
TOLERANCE = 1e-4  # as scikit-learn's FastICA: max |1 - |<w_new, w_old>|| over the rows
RESAMPLES = 8  # bootstrap resamples that rank the components by how reproducible they are
CHUNK_ELEMENTS = 1 << 22  # the centred rows are formed this many float64 elements (32 MB) at a time
RANK_TOLERANCE = 1e-12  # span directions with a variance below this share of the largest are left out
ORDERS = ("stability", "kurtosis")  # which of the whitened subspace's components are kept (the first: default)
ROTATIONS = ("h", "effects")  # the principal directions turned by FastICA of h, or of their effects on x0
MAX_EFFECT_DIMS = 64  # principal directions independent effects turn (their maps' 64^4 fourth moments: 128 MiB)



def check_rotation(rotate: str, dims: int | None = None) -> None:
    """Refuses a ``rotate`` that is not one of ``ROTATIONS``, and independent effects of more than
    ``MAX_EFFECT_DIMS`` principal directions (``dims``, when known), before any work."""
    if rotate not in ROTATIONS:
        raise HSpaceError(f"rotate must be one of {', '.join(ROTATIONS)}, got {rotate!r}")
    if rotate == "effects" and dims is not None and dims > MAX_EFFECT_DIMS:
        raise HSpaceError(f"independent effects turn at most {MAX_EFFECT_DIMS} principal directions, got dims "
                          f"{dims}: ask for fewer (the default is {DIMS_PER_K} x the components)")


Rows = Union[torch.Tensor, Sequence[torch.Tensor]]  # [N, D], or [N, D_i] column blocks side by side


def whitened_dims(k: int, dims: int | None) -> int:
    """The whitened subspace the k components are sought in: ``dims``, or ``DIMS_PER_K`` x k when it is None
    or 0; refused when it cannot hold them."""
    if k < 1:
        raise HSpaceError(f"ask for at least one component, got {k}")
    dims = dims or DIMS_PER_K * k
    if dims < k:
        raise HSpaceError(f"the whitened subspace ({dims}) must hold the {k} components")
    return dims


def _symmetric_decorrelation(w: torch.Tensor) -> torch.Tensor:
    """(W W^T)^(-1/2) W: the nearest matrix with orthonormal rows [k, k]."""
    evals, evecs = torch.linalg.eigh(w @ w.T)
    return evecs @ torch.diag(evals.clamp_min(1e-30).rsqrt()) @ evecs.T @ w


def fast_ica(z: torch.Tensor, *, seed: int = 0, max_iterations: int = MAX_ITERATIONS,
             tolerance: float = TOLERANCE) -> tuple[torch.Tensor, int]:
    """Symmetric FastICA with the Gaussian contrast G(u) = -exp(-u^2 / 2) on whitened rows z [N, k] (zero
    mean, identity covariance): an orthogonal unmixing W [k, k] (sources z @ W.T) and the iterations it
    took. Seeded start; raises when it does not converge.

    The plain fixed-point step can cycle when two coordinates are about as non-Gaussian as each other (on
    h of the demo world's faces in 16 whitened dimensions it does, with every contrast): after each
    ``PATIENCE`` steps without a new smallest change the step is damped (halved, to ``MIN_STEP``), each
    row first given the sign of its predecessor so that damping never averages w with -w."""
    n, k = z.shape
    z = z.double()
    g = torch.Generator().manual_seed(seed)
    w = _symmetric_decorrelation(torch.randn(k, k, generator=g, dtype=torch.float64))
    step, best, since = 1.0, float("inf"), 0
    for it in range(1, max_iterations + 1):
        u = z @ w.T                                                  # [N, k]
        e = torch.exp(-u * u / 2)
        g_u, dg_u = u * e, (1 - u * u) * e                          # G' and G''
        new = _symmetric_decorrelation((g_u.T @ z) / n - torch.diag(dg_u.mean(0)) @ w)  # E[z g(wz)] - E[g'(wz)] w
        new = new * torch.where(torch.diag(new @ w.T) < 0, -1.0, 1.0).double()[:, None]
        change = float((torch.diag(new @ w.T) - 1).abs().max())
        if change < tolerance:
            return new, it
        if change < best:
            best, since = change, 0
        else:
            since += 1
            if since >= PATIENCE and step > MIN_STEP:
                step, since = step / 2, 0
        w = new if step == 1.0 else _symmetric_decorrelation((1 - step) * w + step * new)
    raise HSpaceError(f"FastICA did not converge in {max_iterations} iterations (last change {change:.2e}); "
                      "use more samples or fewer components")


def _column_chunks(n: int, dim: int) -> list[tuple[int, int]]:
    """[start, stop) column ranges of an [n, dim] matrix of about ``CHUNK_ELEMENTS`` elements each."""
    width = max(1, CHUNK_ELEMENTS // max(n, 1))
    return [(c, min(dim, c + width)) for c in range(0, dim, width)]


def column_blocks(x: Rows) -> list[torch.Tensor]:
    """Rows [N, D] given whole or as column blocks side by side ([N, D_1], [N, D_2], ...: a trajectory's h
    step by step, never concatenated) as a list of blocks; refused unless every block is [N, D_i]."""
    blocks = [x] if isinstance(x, torch.Tensor) else list(x)
    if not blocks or any(b.dim() != 2 or b.shape[0] != blocks[0].shape[0] for b in blocks):
        raise HSpaceError("rows must be one [N, D] matrix or [N, D_i] column blocks with the same N, got "
                          + ", ".join(str(tuple(b.shape)) for b in blocks))
    return blocks


def _column_slices(blocks: list[torch.Tensor]) -> list[tuple[torch.Tensor, int]]:
    """(a column slice of a block, the slice's first column in the rows), about ``CHUNK_ELEMENTS`` each."""
    out, offset = [], 0
    for block in blocks:
        out += [(block[:, a:b], offset + a) for a, b in _column_chunks(block.shape[0], block.shape[1])]
        offset += block.shape[1]
    return out


def _rank(evals: torch.Tensor) -> int:
    """How many of the descending eigenvalues ``evals`` are above ``RANK_TOLERANCE`` of the largest."""
    return int((evals > RANK_TOLERANCE * float(evals[0].clamp_min(1e-300))).sum())


def span(x: Rows) -> tuple[torch.Tensor, Callable[[torch.Tensor], torch.Tensor]]:
    """The centred rows of x [N, D] (whole, or column blocks: ``column_blocks``) in an orthonormal basis of
    their span: (coords [N, r] float64, columns in decreasing variance, coords @ coords.T == xc @ xc.T, r the
    rank (``RANK_TOLERANCE``); lift, which maps [m, r] coordinates back to [m, D] float32). With D >= N it
    goes through the N x N Gram matrix, the centred rows formed in column slices of ``CHUNK_ELEMENTS``:
    besides x itself, one 32 MB slice, its product and N x N doubles (and no copy of x when it comes as
    blocks). Everything ICA does (whitening, FastICA, bootstrap resamples, cosines between components) is
    unchanged by an orthonormal change of basis of the span, and a resample's rows lie in the same span, so
    it all runs on coords: a resample costs N x r, not N x D."""
    blocks = column_blocks(x)
    n, dim = blocks[0].shape[0], sum(b.shape[1] for b in blocks)
    slices = _column_slices(blocks)
    mean = torch.cat([part.double().mean(0) for part, _ in slices])  # no double copy of x
    if dim < n:  # the D x D covariance is the smaller problem; coords are the rows in its eigenbasis
        xc = torch.cat(blocks, dim=1).double() - mean
        evals, evecs = torch.linalg.eigh(xc.T @ xc)
        order = torch.argsort(evals, descending=True)
        r = _rank(evals[order])
        basis = evecs[:, order[:r]].T                                              # [r, D], rows orthonormal
        return xc @ basis.T, lambda c: (c @ basis).float()
    gram = torch.zeros(n, n, dtype=torch.float64)
    for part, a in slices:
        centred = part.to(torch.float64, copy=True)  # a copy even of double rows: x is never changed
        centred -= mean[a:a + part.shape[1]]
        gram += centred @ centred.T
    evals, evecs = torch.linalg.eigh(gram)
    order = torch.argsort(evals, descending=True)
    evals, evecs = evals[order], evecs[:, order]
    r = _rank(evals)
    root, u = evals[:r].sqrt(), evecs[:, :r]                                       # basis = diag(1 / root) u^T xc

    def lift(c: torch.Tensor) -> torch.Tensor:
        weights = (c.double() / root) @ u.T                                        # [m, N]
        out = torch.empty(c.shape[0], dim)
        for part, a in slices:
            b = a + part.shape[1]
            centred = part.to(torch.float64, copy=True)
            centred -= mean[a:b]
            out[:, a:b] = (weights @ centred).float()
        return out

    return u * root, lift


def _unmixed(x: torch.Tensor, dims: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """All ``dims`` independent components of rows x [N, D] in their top ``dims`` principal subspace: (shifts
    [dims, D], each component's one-standard-deviation move in x; sources [N, dims], unit variance), each
    oriented so that its source's longer tail (positive skewness) is its positive side."""
    n = x.shape[0]
    axes, std = principal_components(x, dims)                        # [dims, D], [dims]
    if float(std.min()) <= 0:
        raise HSpaceError(f"the samples span fewer than {dims} dimensions: ask for fewer components")
    xc = (x - x.mean(0)).double()
    z = (xc @ axes.double().T) / std.double()                       # whitened [N, dims]
    z = z * (n / (n - 1)) ** 0.5                                    # unit variance with the 1/N moments ICA uses
    # an eigenvector's sign is the solver's choice: fixed by the data (skewness) so that FastICA's seeded start
    # meets the same z in any basis of the rows (``span``) and from any LAPACK
    turn = torch.where((z ** 3).mean(0) < 0, -1.0, 1.0).double()
    z, axes = z * turn, axes.double() * turn[:, None]
    w, _ = fast_ica(z, seed=seed)
    s = z @ w.T                                                      # [N, dims]
    sign = torch.where((s ** 3).mean(0) < 0, -1.0, 1.0).double()
    s, w = s * sign, w * sign[:, None]
    return (w * std.double()) @ axes, s                              # the two (n - 1) / n factors cancel


def stability(x: torch.Tensor, shifts: torch.Tensor, dims: int, *, resamples: int = RESAMPLES,
              seed: int = 0) -> torch.Tensor:
    """How reproducible each component is (ICASSO, Himberg, Hyvärinen and Esposito 2004): the components
    found again on ``resamples`` bootstrap resamples of the rows x [N, D] (each its own FastICA start), and
    for each of ``shifts`` [m, D] the mean over the resamples of its largest |cosine| with any of them, in
    [0, 1]. A factor of the data comes back in every resample (near 1); a component made by a few outlying
    rows, or a rotation within a Gaussian subspace, does not. A resample where FastICA does not converge is
    left out. Each resample is a copy of the rows, and its whitening a double-precision centred one:
    ``independent_components`` passes the rows' ``span`` coordinates (N x r, r < N), where both are small
    whatever the rows' width."""
    g = torch.Generator().manual_seed(seed)
    n = x.shape[0]
    unit = F.normalize(shifts.double(), dim=1)
    total, counted = torch.zeros(shifts.shape[0], dtype=torch.float64), 0
    for b in range(resamples):
        rows = torch.randint(0, n, (n,), generator=g)
        try:
            again, _ = _unmixed(x[rows], dims, seed + 1 + b)
        except HSpaceError:
            continue
        total += (unit @ F.normalize(again, dim=1).T).abs().max(1).values
        counted += 1
    if counted == 0:
        raise HSpaceError(f"FastICA converged on none of {resamples} resamples: use more samples or fewer components")
    return (total / counted).float()


def chance_stability(coords: torch.Tensor, dims: int, *, resamples: int = RESAMPLES, seed: int = 0) -> float:
    """The stability (``stability``) that rows without any independent factor reach: that of the most
    reproducible component FastICA finds in seeded Gaussian rows with the covariance of ``coords`` [N, r]
    (``span`` coordinates: uncorrelated columns, so the same variance per column), whitened in their top
    ``dims`` as the rows are. It reads a stability: with few rows in many dimensions FastICA's components of
    pure noise come back on resamples too (on the demo world's 512 rows in 16 dimensions, at 0.79), and a
    component is told apart from noise only as far as it is above this. NaN when FastICA does not converge."""
    g = torch.Generator().manual_seed(seed)
    gaussian = torch.randn(coords.shape, generator=g, dtype=torch.float64) * coords.double().std(0)
    try:
        shifts, _ = _unmixed(gaussian, dims, seed)
        return float(stability(gaussian, shifts, dims, resamples=resamples, seed=seed).max())
    except HSpaceError:
        return float("nan")


class Components(NamedTuple):
    """``independent_components``' result: shifts [k, D], sources [N, k], stability [k] in [0, 1] (NaN when not
    measured) and the stability of Gaussian rows of the same covariance (``chance_stability``; NaN when not
    measured)."""
    shifts: torch.Tensor
    sources: torch.Tensor
    stability: torch.Tensor
    noise: float


def independent_components(x: Rows, k: int, *, dims: int | None = None, seed: int = 0,
                           order: str = ORDERS[0], resamples: int = RESAMPLES) -> Components:
    """k independent components of rows x [N, D] (whole, or as column blocks: ``column_blocks``): FastICA
    within their top ``dims`` (default k) principal subspace, the k kept by ``order``: "stability", the most reproducible over ``resamples`` bootstrap
    resamples (``stability``), or "kurtosis", the least Gaussian (largest |excess kurtosis|).

    Returns ``Components``: shifts [k, D], each component's one-standard-deviation move in x, oriented so that
    the source's longer tail (positive skewness) is its positive side; sources [N, k], unit variance;
    stability [k] in [0, 1] and the noise level ``chance_stability``, both NaN when not measured (order
    kurtosis); best first by ``order``."""
    if order not in ORDERS:
        raise HSpaceError(f"order must be one of {', '.join(ORDERS)}, got {order!r}")
    x = column_blocks(x)
    n = x[0].shape[0]
    if k < 1:
        raise HSpaceError(f"ask for at least one component, got {k}")
    dims = k if dims is None else dims
    if dims < k:
        raise HSpaceError(f"the whitened subspace ({dims}) must hold the {k} components")
    if n <= dims + 1:
        raise HSpaceError(f"independent components need more samples than dimensions + 1: {n} samples for {dims}")
    coords, lift = span(x)
    if coords.shape[1] < dims:
        raise HSpaceError(f"the samples span {coords.shape[1]} dimensions, fewer than {dims}: ask for fewer components")
    shifts, s = _unmixed(coords, dims, seed)
    if order == "stability":
        stable = stability(coords, shifts, dims, resamples=resamples, seed=seed)
        ranked = torch.argsort(stable, descending=True)
        noise = chance_stability(coords, dims, resamples=resamples, seed=seed)
    else:
        stable = torch.full((dims,), float("nan"))
        ranked = torch.argsort(((s ** 4).mean(0) - 3).abs(), descending=True)
        noise = float("nan")
    keep = ranked[:k]
    return Components(lift(shifts[keep]), s[:, keep].float(), stable[keep], noise)


def ica_directions(model: HSpaceModel, images=None, *, n_samples: int = 0, components: int = 8,
                   dims: int | None = None, steps: int = 40, t_edit: int = 500, seed: int = 0,
                   size_policy: str = "resize_crop", name: str = "ic", order: str = ORDERS[0],
                   rotate: str = ROTATIONS[0], batch: int = BATCH,
                   callback: Callback | None = None) -> list[TensorDirection]:
    """``components`` independent directions of h over unlabelled images ([N, 3, H, W] in [-1, 1] or a list;
    DDIM-inverted, then regenerated) or over ``n_samples`` seeded samples of ``model``: h at the edited steps
    of each trajectory (t >= t_edit; one row per image), whitened in its top ``dims`` principal components
    (default ``DIMS_PER_K`` x components), FastICA-rotated, ``components`` of them kept by ``order``
    (``independent_components``: the least Gaussian, or the most reproducible). ``rotate`` "effects" rotates the
    same principal directions by their changes of x0 instead (``effect_ica``; ``order`` does not apply: the k
    sparsest effects are kept). Each is one standard deviation
    of its source at every edited step (zero elsewhere), divided by the number of edited steps as the PCA
    directions are (``strength_unit`` "std"); named ``{name}0`` ... in that order. Progress is one job: the
    inversions (if any), the recording walks, then (effects) one step per principal direction measured."""
    dims = whitened_dims(components, dims)
    check_rotation(rotate, dims)
    grid = asyrp_timesteps(steps, model.schedule.num_timesteps - 1)
    k_edit = edit_steps(grid, t_edit)
    if images is not None:
        x0, _ = prepare_images(images, model.image_size, size_policy)
        n, source = x0.shape[0], "images"
    elif n_samples >= 1:
        n, source = n_samples, "samples"
    else:
        raise HSpaceError("give unlabelled images or a number of model samples")
    if n <= dims + 1:
        raise HSpaceError(f"independent components among {dims} principal components need more than {dims + 1} "
                          f"images or samples, got {n}")
    job = JobProgress(callback, (invert_steps(n, steps, batch) if images is not None else 0)
                      + record_steps(n, k_edit, batch) + (dims if rotate == "effects" else 0))
    if images is not None:
        x_T = invert_prepared(model, x0, steps, batch=batch, callback=job.part(invert_steps(n, steps, batch)))
    else:
        x_T = seeded_noise(model, n, seed)
    # the walk down the grid's top k_edit points only: the same x_t and h at each of those steps as the whole
    # walk (deterministic DDIM), none of the steps below t_edit, which no row uses
    edited = record_h(model, x_T, grid[len(grid) - k_edit:], batch=batch,
                      callback=job.part(record_steps(n, k_edit, batch)))  # [k_edit, N, ...], descending t
    shape = edited.shape[2:]
    rows = [h.flatten(1) for h in edited]  # a row is [h at step 1, h at step 2, ...]: per-step views, no copy

    def as_direction(shift: torch.Tensor, j: int = 0, provenance: dict | None = None) -> TensorDirection:
        per_step = torch.zeros(len(grid), *shape)
        per_step[:k_edit] = shift.view(k_edit, *shape)
        return direction_from_steps(model, per_step, grid, t_edit, strength_unit="std", name=f"{name}{j}",
                                    provenance=provenance or {})

    common = {"components": components, "dims": dims, "data": source, "n": n, "seed": seed}
    if rotate == "effects":
        from .effect_ica import effect_maps, effect_provenance, rotated_by_effects

        shifts, sparsity = rotated_by_effects(
            rows, components, dims, lambda axes: effect_maps(model, [as_direction(v) for v in axes], t_edit,
                                                            seed=seed, steps=steps, callback=job.part(dims)))
        return [as_direction(shifts[j], j, {"method": "independent effects (h's principal directions rotated to "
                                                      "the sparsest x0 changes, Jacobi)", "component": j,
                                            **common, **statistics})
                for j, statistics in enumerate(effect_provenance(sparsity))]
    shifts, sources, stable, chance = independent_components(rows, components, dims=dims, seed=seed, order=order)
    return [as_direction(shifts[j], j, {"method": "ica (PCA-whitened FastICA of h over the edited steps)",
                                        "component": j, **common, "order": order,
                                        **component_statistics(sources[:, j], stable[j], chance)})
            for j in range(components)]


def component_statistics(source: torch.Tensor, stable: torch.Tensor, chance: float = float("nan")) -> dict:
    """What a direction file records of its component: the source's excess kurtosis, the component's
    stability and that of Gaussian rows of the same covariance (``chance_stability``; None when not measured)."""
    def measured(v: float):
        return None if v != v else round(v, 4)

    return {"excess_kurtosis": round(float((source ** 4).mean() - 3), 4), "stability": measured(float(stable)),
            "chance_stability": measured(float(chance))}
