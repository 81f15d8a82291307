"""The editing interval: t_edit (edit while t >= t_edit) and t_boost (stochastic steps below it).

Three ways (asyrp.md 1.5):
  * explicit values;
  * the official LPIPS tables of the known data sets (shipped in ``data/lpips_tables``): t_edit is the
    first t where LPIPS(x0, P_t) reaches 0.33 * cos(source text, target text), t_boost the first t
    where LPIPS(x0, x_t) reaches 1.2;
  * measured for any model from a handful of its own samples: each sample is DDIM-inverted and the
    paper's two measures are recorded along the way, the editing strength xi_t = d(x0, P_t) and the
    quality deficiency gamma_t = d(x0, x_t).

The distance d is LPIPS (AlexNet) when the ``lpips`` package and its backbone weights are present
locally (nothing is downloaded); otherwise the fallback ``multiscale_rmse``: the mean over scales 1,
1/2, 1/4 (2x2 average pooling) of the RMS difference of images in [-1, 1]. Its scale differs from
LPIPS, so with the fallback the thresholds are relative: t is chosen where the curve reaches the
same fraction of its value at T as the official threshold does on the official tables (the
fractions are computed from the shipped tables, mean over the five data sets).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import torch
import torch.nn.functional as F

from .errors import HSpaceError
from .model import HSpaceModel
from .sampling import Callback, JobProgress, StepInfo, ddim_invert, ddim_sample
from .schedule import asyrp_timesteps

TABLE_DATASETS = ("celeba", "afhq", "church", "bedroom", "metface")
EDIT_THRESHOLD = 0.33  # official --lpips_edit_th
BOOST_THRESHOLD = 1.2  # official scripts' --lpips_addnoise_th with --add_noise_from_xt


@dataclass(frozen=True)
class EditInterval:
    """t_edit: edit at steps with t >= t_edit; t_boost: eta > 0 at steps with t < t_boost (0: never)."""

    t_edit: int
    t_boost: int
    source: str = "explicit"


def check_interval(t_edit: int, t_boost: int, t_0: int) -> None:
    if not 0 <= t_edit <= t_0:
        raise HSpaceError(f"t_edit must lie in [0, t_0 = {t_0}], got {t_edit}")
    if not 0 <= t_boost <= t_0:
        raise HSpaceError(f"t_boost must lie in [0, t_0 = {t_0}], got {t_boost}")


def load_table(dataset: str, kind: str) -> dict[int, float]:
    """An official table: ``kind`` "x0_t" (editing strength) or "x" (quality deficiency); t -> LPIPS."""
    if dataset not in TABLE_DATASETS:
        raise HSpaceError(f"no official LPIPS table for {dataset!r}; known: {', '.join(TABLE_DATASETS)} "
                          "(for other models measure the interval or give t_edit / t_boost)")
    text = resources.files("hspace_core").joinpath(f"data/lpips_tables/{dataset}_LPIPS_distance_{kind}.tsv").read_text()
    table = {}
    for line in text.splitlines():
        if line.strip():
            t, v = line.split("\t")
            table[int(t)] = float(v)
    return table


def first_reaching(table: dict[int, float], threshold: float) -> int | None:
    """The smallest t (ascending) whose value reaches ``threshold``, or None."""
    for t in sorted(table):
        if table[t] >= threshold:
            return t
    return None


def table_interval(dataset: str, *, text_cosine: float = 1.0, edit_threshold: float = EDIT_THRESHOLD,
                   boost_threshold: float = BOOST_THRESHOLD) -> EditInterval:
    """t_edit and t_boost from the official tables (asyrp.md 1.5), for a text pair of cosine ``text_cosine``."""
    if not 0 < text_cosine <= 1:
        raise HSpaceError(f"text_cosine must lie in (0, 1], got {text_cosine}")
    t_edit = first_reaching(load_table(dataset, "x0_t"), edit_threshold * text_cosine)
    t_boost = first_reaching(load_table(dataset, "x"), boost_threshold)
    if t_edit is None or t_boost is None:
        raise HSpaceError(f"the {dataset} table never reaches the threshold; give t_edit / t_boost explicitly")
    return EditInterval(t_edit, t_boost, f"official {dataset} table (cos {text_cosine:g}, thresholds "
                                         f"{edit_threshold:g} / {boost_threshold:g})")


def relative_thresholds() -> tuple[float, float]:
    """Fractions of the final value at which the official thresholds sit, mean over the five tables."""
    edit, boost = [], []
    for d in TABLE_DATASETS:
        x0 = load_table(d, "x0_t")
        x = load_table(d, "x")
        edit.append(EDIT_THRESHOLD / x0[max(x0)])
        boost.append(BOOST_THRESHOLD / x[max(x)])
    return sum(edit) / len(edit), sum(boost) / len(boost)


def multiscale_rmse(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Fallback distance: mean over scales 1, 1/2, 1/4 of the RMS difference. a, b: [N, 3, H, W] -> [N]."""
    out = []
    for _ in range(3):
        out.append((a - b).pow(2).mean(dim=(1, 2, 3)).sqrt())
        if min(a.shape[-2:]) < 4:
            break
        a, b = F.avg_pool2d(a, 2), F.avg_pool2d(b, 2)
    return torch.stack(out).mean(0)


def lpips_metric():
    """LPIPS (AlexNet) when the package and the backbone weights are on disk, else None."""
    if importlib.util.find_spec("lpips") is None:
        return None
    hub = Path(torch.hub.get_dir()) / "checkpoints"
    if not any(hub.glob("alexnet-*.pth")):
        return None
    import lpips  # optional dependency, weights present locally

    net = lpips.LPIPS(net="alex", verbose=False).eval()

    def metric(a, b):
        with torch.no_grad():
            return net.to(a.device)(a.float(), b.float()).flatten()

    return metric


@dataclass(frozen=True, eq=False)
class IntervalMeasurement:
    """Curves of a measured interval: timesteps [n-1] with xi (editing strength) and gamma (deficiency)."""

    timesteps: torch.Tensor
    xi: torch.Tensor
    gamma: torch.Tensor
    metric: str
    interval: EditInterval


def measure_interval(model: HSpaceModel, *, n_samples: int = 4, steps: int = 40, seed: int = 0,
                     edit_threshold: float | None = None, boost_threshold: float | None = None,
                     metric: str = "auto", clip_x0: bool = False, text_cosine: float = 1.0,
                     callback: Callback | None = None) -> IntervalMeasurement:
    """Measure t_edit / t_boost for ``model`` from ``n_samples`` of its own DDIM samples.

    Each sample x0 (DDIM from a seeded x_T, ``steps`` steps) is inverted over the same grid; at every
    inversion step d(x0, P_t) and d(x0, x_t) are recorded (keyed by the step's t_next, as the official
    ``compute_lpips_distance`` does) and averaged. Thresholds default to 0.33 / 1.2 with LPIPS and to
    the relative fractions with the fallback metric. ``clip_x0`` draws the samples with the x0 clamp
    (``edit``), for models whose unclamped samples leave the image range. ``text_cosine``: the edit
    threshold is multiplied by it, as the official code scales 0.33 by cos(source text, target text)
    (a larger semantic gap, an earlier t_edit; asyrp.md 1.5). Progress: one job of ``steps`` sampling
    and ``steps - 1`` inversion steps.
    """
    if not 0 < text_cosine <= 1:
        raise HSpaceError(f"text_cosine must lie in (0, 1], got {text_cosine}")
    if n_samples < 1:
        raise HSpaceError("measuring the interval needs at least one sample")
    if metric not in ("auto", "lpips", "multiscale_rmse"):
        raise HSpaceError(f"unknown metric {metric!r}")
    lp = lpips_metric() if metric in ("auto", "lpips") else None
    if metric == "lpips" and lp is None:
        raise HSpaceError("LPIPS needs the 'lpips' package and the AlexNet weights in the torch hub cache")
    dist = lp or multiscale_rmse
    name = "lpips" if lp else "multiscale_rmse"
    grid = asyrp_timesteps(steps, model.schedule.num_timesteps - 1)
    g = torch.Generator().manual_seed(seed)
    size = model.image_size
    x_T = torch.randn(n_samples, model.in_channels, size, size, generator=g).to(model.device)
    xi, gamma = [], []
    job = JobProgress(callback, 2 * steps - 1)
    with torch.inference_mode():
        x0 = ddim_sample(model, x_T, grid, clip_x0=clip_x0, callback=job.part(steps)).float()
        report = job.part(steps - 1)

        def record(info: StepInfo) -> None:  # at every inversion step: xi_t = d(x0, P_t), gamma_t = d(x0, x_t)
            xi.append(float(dist(info.x0_pred.float(), x0).mean()))
            gamma.append(float(dist(info.x_t.float(), x0).mean()))
            if report is not None:
                report(info)

        ddim_invert(model, x0, grid, callback=record)
    return interval_from_curves(grid[1:], torch.tensor(xi), torch.tensor(gamma), name,
                                edit_threshold=edit_threshold, boost_threshold=boost_threshold,
                                text_cosine=text_cosine, what=f"{n_samples} samples, {steps} steps")


def interval_from_curves(ts: torch.Tensor, xi: torch.Tensor, gamma: torch.Tensor, metric: str, *,
                         edit_threshold: float | None = None, boost_threshold: float | None = None,
                         text_cosine: float = 1.0, what: str = "") -> IntervalMeasurement:
    """The interval rule on measured curves: ``ts`` [n] ascending timesteps, ``xi`` [n] = d(x0, P_t) and
    ``gamma`` [n] = d(x0, x_t) there. With LPIPS the official thresholds (0.33, 1.2); with the fallback
    ``multiscale_rmse`` the relative ones, as fractions of the curves' final (largest-t) values. The edit
    threshold is multiplied by ``text_cosine``. Any walk gives such curves: the pixel models' (above) and
    a host model's decoded P_t (the SD path)."""
    if not 0 < text_cosine <= 1:
        raise HSpaceError(f"text_cosine must lie in (0, 1], got {text_cosine}")
    if metric == "lpips":
        te, tb = edit_threshold or EDIT_THRESHOLD, boost_threshold or BOOST_THRESHOLD
        xi_n, gamma_n = xi, gamma
    else:
        re, rb = relative_thresholds()
        te, tb = edit_threshold or re, boost_threshold or rb
        xi_n, gamma_n = xi / xi[-1], gamma / gamma[-1]
    te *= text_cosine
    t_edit = first_reaching(dict(zip(ts.tolist(), xi_n.tolist())), te)
    t_boost = first_reaching(dict(zip(ts.tolist(), gamma_n.tolist())), tb)
    cosine = f"text cosine {text_cosine:.3g}, " if text_cosine != 1 else ""
    interval = EditInterval(t_edit if t_edit is not None else int(ts[-1]), t_boost if t_boost is not None else 0,
                            f"measured ({metric}, {what + ', ' if what else ''}{cosine}thresholds {te:.3g} / "
                            f"{tb:.3g}{' of the final value' if metric != 'lpips' else ''})")
    return IntervalMeasurement(ts, xi, gamma, metric, interval)


INTERVAL_SOURCES = ("explicit", "direction", "table", "measure")


def choose_interval(source: str, model: HSpaceModel | None = None, *, t_edit: int = 500, t_boost: int | None = None,
                    direction=None, dataset: str | None = None, text_cosine: float = 1.0, steps: int = 40,
                    clip_x0: bool = False, callback: Callback | None = None) -> EditInterval:
    """The editing interval from one of ``INTERVAL_SOURCES`` (the CLI and the nodes both call this).

    explicit:  ``t_edit`` and ``t_boost`` (0 when None);
    direction: the t_edit the direction records (``DirectionInfo.t_edit``);
    table:     the official LPIPS table of ``dataset`` at ``text_cosine`` (``table_interval``);
    measure:   ``measure_interval`` on 4 of the model's own samples over ``steps`` at ``text_cosine``
               (``clip_x0`` for their drawing).
    A ``t_boost`` that is given (not None) replaces the source's own.
    """
    if source == "explicit":
        interval = EditInterval(int(t_edit), 0)
    elif source == "direction":
        if direction is None or direction.info.t_edit is None:
            raise HSpaceError("the direction records no editing interval; give t_edit, an official table or "
                              "measure it on the model")
        interval = EditInterval(int(direction.info.t_edit), 0, "the direction's t_edit")
    elif source == "table":
        if dataset is None:
            raise HSpaceError(f"name the official table: one of {', '.join(TABLE_DATASETS)}")
        interval = table_interval(dataset, text_cosine=text_cosine)
    elif source == "measure":
        if model is None:
            raise HSpaceError("measuring the interval needs the model")
        interval = measure_interval(model, n_samples=4, steps=steps, clip_x0=clip_x0, text_cosine=text_cosine,
                                    callback=callback).interval
    else:
        raise HSpaceError(f"unknown interval source {source!r}; use one of {', '.join(INTERVAL_SOURCES)}")
    if t_boost is None:
        return interval
    note = interval.source if source == "explicit" else f"{interval.source}, t_boost given"
    return EditInterval(interval.t_edit, int(t_boost), note)
