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
"""

from __future__ import annotations

import torch

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


def independent_components(x: torch.Tensor, k: int, *, dims: int | None = None,
                           seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """k independent components of rows x [N, D]: FastICA within their top ``dims`` (default k) principal
    subspace, the k least Gaussian kept.

    Returns (shifts [k, D]: each component's one-standard-deviation move in x, oriented so that the
    source's longer tail (positive skewness) is its positive side, ordered by how far from Gaussian the
    source is (largest |excess kurtosis| first); sources [N, k], unit variance)."""
    n = x.shape[0]
    if k < 1:
        raise HSpaceError(f"ask for at least one component, got {k}")
    dims = k if dims is None else dims
    if dims < k:
        raise HSpaceError(f"the whitened subspace ({dims}) must hold the {k} components")
    if n <= dims + 1:
        raise HSpaceError(f"independent components need more samples than dimensions + 1: {n} samples for {dims}")
    axes, std = principal_components(x, dims)                        # [dims, D], [dims]
    if float(std.min()) <= 0:
        raise HSpaceError(f"the samples span fewer than {dims} dimensions: ask for fewer components")
    xc = (x - x.mean(0)).double()
    z = (xc @ axes.double().T) / std.double()                       # whitened [N, dims]
    z = z * (n / (n - 1)) ** 0.5                                    # unit variance with the 1/N moments ICA uses
    w, _ = fast_ica(z, seed=seed)
    s = z @ w.T                                                      # [N, dims]
    sign = torch.where((s ** 3).mean(0) < 0, -1.0, 1.0).double()
    s, w = s * sign, w * sign[:, None]
    kurtosis = (s ** 4).mean(0) - 3
    order = torch.argsort(kurtosis.abs(), descending=True)
    s, w = s[:, order[:k]], w[order[:k]]
    shifts = (w * std.double()) @ axes.double()                    # the two (n - 1) / n factors cancel
    return shifts.float(), s.float()


def ica_directions(model: HSpaceModel, images=None, *, n_samples: int = 0, components: int = 8,
                   dims: int | None = None, steps: int = 40, t_edit: int = 500, seed: int = 0,
                   size_policy: str = "resize_crop", name: str = "ic",
                   batch: int = BATCH, callback: Callback | None = None) -> list[TensorDirection]:
    """``components`` independent directions of h over unlabelled images ([N, 3, H, W] in [-1, 1] or a list;
    DDIM-inverted, then regenerated) or over ``n_samples`` seeded samples of ``model``: h at the edited steps
    of each trajectory (t >= t_edit; one row per image), whitened in its top ``dims`` principal components
    (default ``DIMS_PER_K`` x components), FastICA-rotated, the ``components`` least Gaussian kept. Each is
    one standard deviation of its source at every edited step (zero elsewhere), divided by the number of
    edited steps as the PCA directions are (``strength_unit`` "std"); named ``{name}0`` ... in order of
    |excess kurtosis|. Progress is one job: the inversions (if any), then the recording walks."""
    dims = whitened_dims(components, dims)
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
                      + record_steps(n, steps, batch))
    if images is not None:
        x_T = invert_prepared(model, x0, steps, batch=batch, callback=job.part(invert_steps(n, steps, batch)))
    else:
        x_T = seeded_noise(model, n, seed)
    hs = record_h(model, x_T, grid, batch=batch, callback=job.part(record_steps(n, steps, batch)))
    shape = hs.shape[2:]
    edited = hs[:k_edit]                                             # descending t: the first k_edit steps
    rows = edited.transpose(0, 1).flatten(1)                         # [N, k_edit * dim h]
    shifts, sources = independent_components(rows, components, dims=dims, seed=seed)
    out = []
    for j in range(components):
        per_step = torch.zeros(len(grid), *shape)
        per_step[:k_edit] = shifts[j].view(k_edit, *shape)
        kurt = float((sources[:, j] ** 4).mean() - 3)
        out.append(direction_from_steps(
            model, per_step, grid, t_edit, strength_unit="std", name=f"{name}{j}",
            provenance={"method": "ica (PCA-whitened FastICA of h over the edited steps)", "component": j,
                        "components": components, "dims": dims, "data": source, "n": n, "seed": seed,
                        "excess_kurtosis": round(kurt, 4)}))
    return out
