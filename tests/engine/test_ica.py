"""Independent components of h unmix independent factors that PCA leaves mixed (issue 34)."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
import torch
import torch.nn.functional as F

from hspace_core import HSpaceError
from hspace_core.discovery.ica import fast_ica, ica_directions, independent_components
from hspace_core.discovery.pca import principal_components
from hspace_core.model import Family, HSpaceModel
from hspace_core.schedule import asyrp_timesteps, linear_schedule
from hspace_core.unets import DDPMConfig
from tests.engine.test_discovery import PoolingUNet, pooling_model


def _factors(n: int, g: torch.Generator) -> torch.Tensor:
    """[n, 3] independent, non-Gaussian factors: a uniform dial, a yes/no (p 0.3), another uniform."""
    return torch.stack([torch.rand(n, generator=g) * 2 - 1, (torch.rand(n, generator=g) < 0.3).float(),
                        torch.rand(n, generator=g)], dim=1)


def _best_cos(rows: torch.Tensor, columns: torch.Tensor) -> torch.Tensor:
    """For every row of ``columns`` the largest |cosine| with any of ``rows``."""
    return (F.normalize(rows, dim=1) @ F.normalize(columns, dim=1).T).abs().max(0).values


def test_independent_components_recover_the_mixing_that_pca_cannot():
    g = torch.Generator().manual_seed(0)
    s = _factors(4000, g)
    mixing = torch.randn(3, 40, generator=g)
    mixing[1] = 0.6 * mixing[0] + 0.8 * mixing[1]                  # 40-odd degrees apart: no orthogonal axes fit
    x = s @ mixing + 0.01 * torch.randn(4000, 40, generator=g)
    shifts, sources, _, _ = independent_components(x, 3, seed=1)
    assert (_best_cos(shifts, mixing) > 0.995).all()
    for j in range(3):  # each shift is one standard deviation of its factor along its column
        i = int((F.normalize(shifts, dim=1) @ F.normalize(mixing[j], dim=0)).abs().argmax())
        assert float(shifts[i].norm()) == pytest.approx(float(s[:, j].std() * mixing[j].norm()), rel=0.03)
    assert torch.allclose(sources.T @ sources / 4000, torch.eye(3), atol=1e-3)   # unit variance, uncorrelated
    assert ((sources ** 3).mean(0) > 0).all()                                   # the longer tail is +
    axes, _ = principal_components(x, 3)
    assert float(_best_cos(axes, mixing).min()) < 0.97


def test_a_wider_whitened_subspace_keeps_the_non_gaussian_components():
    g = torch.Generator().manual_seed(2)
    s = torch.cat([_factors(3000, g)[:, :2], 1.5 * torch.randn(3000, 2, generator=g)], dim=1)  # two Gaussian distractors
    mixing = torch.randn(4, 30, generator=g)
    x = s @ mixing
    for order in ("stability", "kurtosis"):  # kept as the most reproducible, and as the least Gaussian
        shifts, sources, stable, _ = independent_components(x, 2, dims=4, seed=0, order=order)
        assert (_best_cos(shifts, mixing[:2]) > 0.97).all()
        assert ((sources ** 4).mean(0) - 3 < -0.8).all()                        # both clearly non-Gaussian
    assert bool(stable.isnan().all())
    with pytest.raises(HSpaceError, match="must hold"):
        independent_components(x, 3, dims=2)
    with pytest.raises(HSpaceError, match="more samples"):
        independent_components(x[:5], 4)
    with pytest.raises(HSpaceError, match="order must be one of"):
        independent_components(x, 2, order="variance")
    for width in (30, 5000):  # rows that span 2 dimensions, narrower and wider than they are many
        flat = _factors(3000, g)[:, :2] @ torch.randn(2, width, generator=g)
        with pytest.raises(HSpaceError, match="span 2 dimensions, fewer than 4"):
            independent_components(flat[:300], 2, dims=4)


def test_components_of_a_few_outlying_rows_give_way_to_the_reproducible_factors():
    """Three rows far out, each along its own direction, make components of enormous kurtosis: ordered by
    |kurtosis| they are all that is kept; ordered by stability over bootstrap resamples (a resample lacks
    each such row a third of the time) the three factors are."""
    g = torch.Generator().manual_seed(7)
    s = _factors(1000, g)
    mixing = torch.randn(3, 30, generator=g)
    x = s @ mixing + 0.01 * torch.randn(1000, 30, generator=g)
    x[:3] += 25 * F.normalize(torch.randn(3, 30, generator=g), dim=1)
    by_kurtosis, _, _, _ = independent_components(x, 3, dims=6, seed=0, order="kurtosis")
    assert float(_best_cos(mixing, by_kurtosis).max()) < 0.5
    stable, _, stability, _ = independent_components(x, 3, dims=6, seed=0)  # the default
    assert (_best_cos(stable, mixing) > 0.97).all()
    assert float(stability.min()) > 0.9


def test_the_noise_level_lies_between_the_planted_factors_and_the_gaussian_components(tmp_path, capsys):
    """Three planted factors and three Gaussian dimensions, whitened together: the stability of Gaussian rows
    of the same covariance (``chance_stability``) is below the factors' and above the weakest Gaussian
    component's; the command line prints it beside each component's stability; order kurtosis measures neither."""
    from hspace_core.cli.direction import _save
    from hspace_core.discovery.ica import component_statistics
    from hspace_core.directions.base import DirectionInfo, TensorDirection

    g = torch.Generator().manual_seed(0)
    s = torch.cat([_factors(400, g), torch.randn(400, 3, generator=g)], 1)
    s = (s - s.mean(0)) / s.std(0)
    mixing = torch.randn(6, 20, generator=g)
    x = s @ mixing + 0.01 * torch.randn(400, 20, generator=g)
    found = independent_components(x, 6, dims=6, seed=0)
    assert (_best_cos(found.shifts[:3], mixing[:3]) > 0.95).all()
    assert float(found.stability[:3].min()) > found.noise + 0.05 > float(found.stability[-1]) + 0.05
    assert independent_components(x, 6, dims=6, seed=0).noise == found.noise
    assert independent_components(x, 3, dims=6, seed=0, order="kurtosis").noise != found.noise  # NaN
    p = component_statistics(found.sources[:, 0], found.stability[0], found.noise)
    d = TensorDirection(torch.ones(4, 1, 1), None, DirectionInfo(h_shape=(4, 1, 1), name="ic",
                                                                 provenance={"method": "ica", **p}))
    assert _save(d, tmp_path / "ic.safetensors", False) == 0
    assert (f"found again on resamples at {float(found.stability[0]):.2f} (1 = always; Gaussian rows of the "
            f"same covariance: {found.noise:.2f})") in capsys.readouterr().err


def test_fast_ica_reports_when_it_does_not_converge():
    z = torch.randn(200, 3, generator=torch.Generator().manual_seed(0))
    with pytest.raises(HSpaceError, match="did not converge"):
        fast_ica(z, max_iterations=1, tolerance=0.0)


def test_ica_directions_from_images_follow_the_planted_factors_along_the_trajectory():
    """On the pooling network h at step t is pool(x_0) * sqrt(a_t / a_0): images mixing two planted patterns
    by independent factors give directions along the pooled patterns, scaled per step, zero below t_edit."""
    model = pooling_model()
    g = torch.Generator().manual_seed(5)
    patterns = torch.rand(2, 3, 32, 32, generator=g) * 0.6 - 0.3
    s = _factors(64, g)[:, :2]
    images = (s[:, 0, None, None, None] * patterns[0] + s[:, 1, None, None, None] * patterns[1]
              + 0.002 * torch.randn(64, 3, 32, 32, generator=g)).clamp(-1, 1)
    seen = []
    ds = ica_directions(model, images, components=2, dims=2, steps=10, t_edit=500, callback=seen.append)
    assert seen[-1].i == seen[-1].total - 1 and len({i.total for i in seen}) == 1
    grid = asyrp_timesteps(10)
    k = int((grid >= 500).sum())
    a = model.schedule.alpha_bar
    pooled = F.avg_pool2d(patterns, 8).flatten(1)
    for d in ds:
        assert d.info.strength_unit == "std" and d.info.provenance["data"] == "images"
        j = int((F.normalize(d.values[-1].flatten(), dim=0) @ F.normalize(pooled, dim=1).T).abs().argmax())
        for i, t in enumerate(grid.tolist()):
            if t < 500:
                assert float(d.values[i].abs().max()) == 0.0
                continue
            v = d.values[i].flatten()
            assert float(F.cosine_similarity(v, pooled[j], dim=0).abs()) > 0.99
            expected = float(s[:, j].std() * pooled[j].norm() * (a[t] / a[0]).sqrt() / k)
            assert float(v.norm()) == pytest.approx(expected, rel=0.05)
    assert {int((F.normalize(d.values[-1].flatten(), dim=0) @ F.normalize(pooled, dim=1).T).abs().argmax())
            for d in ds} == {0, 1}
    assert ica_directions(model, images, components=1, steps=4)[0].info.provenance["dims"] == 2  # 2 x by default
    with pytest.raises(HSpaceError, match="more than 5"):
        ica_directions(model, images[:5], components=2, steps=4)   # 4 dimensions whitened
    with pytest.raises(HSpaceError, match="must hold"):
        ica_directions(model, images, components=3, dims=2, steps=4)


def test_the_command_line_writes_k_files_and_a_preview_and_never_overwrites(tmp_path, capsys):
    from hspace_core import cli
    from hspace_core.directions.calibration import calibration_of
    from hspace_core.directions.io import load_direction
    from tests.engine.test_cli_checks import DEMO

    argv = ["direction", "ica", "--model", str(DEMO), "--samples", "12", "--k", "2", "--dims", "3", "--steps", "6",
            "--preview", "2", "--no-calibration", "--order", "kurtosis", "--out", str(tmp_path)]
    assert cli.main([*argv[:-2], "--dims", "1", "--out", str(tmp_path)]) == 2
    assert "--dims 1 is fewer than --k 2" in capsys.readouterr().err
    assert cli.main(argv) == 0
    written = sorted(p.name for p in tmp_path.iterdir())
    assert written == ["ica_0.safetensors", "ica_1.safetensors", "ica_preview.png"]
    ds = [load_direction(tmp_path / f"ica_{i}.safetensors") for i in range(2)]
    assert [d.info.name for d in ds] == ["ica 0", "ica 1"] and all(calibration_of(d) is None for d in ds)
    assert ds[0].info.provenance["dims"] == 3 and ds[0].info.provenance["n"] == 12
    assert ds[0].info.provenance["order"] == "kurtosis" and ds[0].info.provenance["stability"] is None
    kurtosis = [abs(d.info.provenance["excess_kurtosis"]) for d in ds]
    assert kurtosis[0] >= kurtosis[1]
    before = (tmp_path / "ica_0.safetensors").read_bytes()
    assert cli.main(argv) == 2 and "already exists" in capsys.readouterr().err
    assert (tmp_path / "ica_0.safetensors").read_bytes() == before
    effects = tmp_path / "effects"
    effects.mkdir()
    assert cli.main([*argv[:-1], str(effects), "--rotate", "effects"]) == 0
    ds = [load_direction(effects / f"ica_{i}.safetensors") for i in range(2)]
    assert [d.info.provenance["rotate"] for d in ds] == ["effects", "effects"]
    sparsity = [d.info.provenance["effect_kurtosis"] for d in ds]
    assert sparsity[0] >= sparsity[1]


def _sixteen_sources(seed: int, n: int = 512) -> tuple[torch.Tensor, torch.Tensor]:
    """(the sources [n, 16]: six uniform, six yes/no, four Gaussian; their random rotation, exactly white)."""
    g = torch.Generator().manual_seed(seed)
    s = torch.cat([torch.rand(n, 6, generator=g) * 2 - 1, (torch.rand(n, 6, generator=g) < 0.3).float(),
                   torch.randn(n, 4, generator=g)], 1).double()
    s = (s - s.mean(0)) / s.std(0)
    q, _ = torch.linalg.qr(torch.randn(16, 16, generator=g, dtype=torch.float64))
    z = s @ q
    e, v = torch.linalg.eigh(z.T @ z / n)
    return s, z @ v @ torch.diag(e.rsqrt()) @ v.T


def test_the_damped_step_converges_where_the_plain_fixed_point_cycles(monkeypatch):
    """Twelve non-Gaussian sources beside four Gaussian ones in 16 whitened dimensions (as h of the demo world's
    samples, where the plain step cycled): damped after a stall, FastICA converges and unmixes all twelve on
    every draw; never damped, it keeps cycling on some (measured: three of these four draws)."""
    import hspace_core.discovery.ica as ica

    draws = [_sixteen_sources(seed) for seed in range(4)]
    for s, z in draws:
        w, _ = fast_ica(z)
        found = z @ w.T
        corr = (F.normalize(found - found.mean(0), dim=0).T @ F.normalize(s[:, :12] - s[:, :12].mean(0), dim=0)).abs()
        assert (corr.max(0).values > 0.95).all()                      # every non-Gaussian source has its row
    monkeypatch.setattr(ica, "PATIENCE", 10 ** 9)                     # never damp
    cycled = 0
    for _, z in draws:
        try:
            fast_ica(z)
        except HSpaceError:
            cycled += 1
    assert cycled >= 1


@settings(max_examples=25, deadline=None)
@given(n=st.integers(3, 12), dim=st.integers(1, 40), chunk=st.integers(1, 64), seed=st.integers(0, 2 ** 16),
       cuts=st.lists(st.integers(1, 39), max_size=4), double=st.booleans())
def test_the_span_coordinates_hold_the_centred_rows_exactly(n, dim, chunk, seed, cuts, double):
    """Whichever side is smaller, however the columns are chunked and whether the rows come whole or as
    column blocks (a trajectory's steps): coords reproduce the centred rows' Gram matrix, lifting coords
    gives back the centred rows (so cosines and whitening are unchanged), and the rows are left as they were."""
    import hspace_core.discovery.ica as ica

    x = torch.randn(n, dim, generator=torch.Generator().manual_seed(seed)) * 3 + 1
    x = x.double() if double else x
    given_x = x.clone()
    edges = [0, *sorted({c for c in cuts if c < dim}), dim]
    blocks = [x[:, a:b] for a, b in zip(edges, edges[1:])]
    old = ica.CHUNK_ELEMENTS
    ica.CHUNK_ELEMENTS = chunk
    try:
        coords, lift = ica.span(blocks if len(blocks) > 1 else x)
        back = lift(coords)
    finally:
        ica.CHUNK_ELEMENTS = old
    assert torch.equal(x, given_x)
    assert back.shape == (n, dim)
    xc = x.double() - x.double().mean(0)
    assert coords.shape[1] <= min(n - 1, dim) or dim < n
    assert torch.allclose(coords @ coords.T, xc @ xc.T, atol=1e-8 * (1 + float(xc.abs().max()) ** 2))
    assert torch.allclose(back.double(), xc, atol=1e-4)
    variances = coords.pow(2).sum(0)
    assert bool((variances[1:] <= variances[:-1] * (1 + 1e-9) + 1e-9).all())


def test_rows_in_blocks_of_another_height_are_refused():
    with pytest.raises(HSpaceError, match=r"same N, got \(5, 3\), \(4, 3\)"):
        independent_components([torch.randn(5, 3), torch.randn(4, 3)], 1)


def test_on_wide_rows_the_span_gives_the_components_and_stability_of_the_rows_themselves():
    """Rows far wider than they are many (as h trajectories are): the components, their sources and their
    stability computed on the span's coordinates are those computed on the rows in full."""
    from hspace_core.discovery.ica import _unmixed, stability

    g = torch.Generator().manual_seed(3)
    s = _factors(150, g)
    x = s @ torch.randn(3, 5000, generator=g) + 0.3 * torch.randn(150, 5000, generator=g)
    shifts, sources, stable, _ = independent_components(x, 3, dims=6, seed=0)
    full, full_sources = _unmixed(x, 6, 0)
    full_stable = stability(x, full, 6, seed=0)
    keep = torch.argsort(full_stable, descending=True)[:3]
    assert torch.allclose(shifts, full[keep].float(), atol=1e-4 * float(full.abs().max()))
    assert torch.allclose(sources, full_sources[:, keep].float(), atol=1e-4)
    assert torch.allclose(stable, full_stable[keep], atol=1e-4)


def test_the_recording_walks_down_to_t_edit_only_and_sees_the_whole_walks_h():
    """ICA records h on the grid's top k_edit points: the same h as the whole walk's first k_edit steps
    (deterministic DDIM), with k_edit of the grid's steps reported, not all."""
    from hspace_core.discovery.record import record_h, seeded_noise

    model = pooling_model()
    x_T = seeded_noise(model, 3, 0)
    grid = asyrp_timesteps(10)
    k = int((grid >= 500).sum())
    whole = record_h(model, x_T, grid)
    top = record_h(model, x_T, grid[len(grid) - k:])
    assert top.shape[0] == k and torch.equal(top, whole[:k])
    seen = []
    ica_directions(model, None, n_samples=8, components=1, dims=2, steps=10, t_edit=500, callback=seen.append)
    assert seen[-1].total == k and len(seen) == k


class _LocalUNet(PoolingUNet):
    """The pooling network (h = 8x8 average pool of x_t) with eps = 0.5 x h upsampled, so a shift of one h
    coordinate changes x0 in its own 8x8 block and channel only."""

    def decode(self, enc, h):
        return 0.5 * F.interpolate(h, scale_factor=8, mode="nearest") + 0 * self.dummy


def test_effect_rotation_unmixes_sparse_maps():
    """Effect maps that mix sparse sources over the positions: the rotation's combinations give the sources back."""
    from hspace_core.discovery.effect_ica import effect_rotation

    g = torch.Generator().manual_seed(2)
    sources = torch.randn(4, 6000, generator=g) * (torch.rand(4, 6000, generator=g) < 0.05)  # each one sparse
    maps = torch.randn(4, 4, generator=g) @ sources
    c, kurtosis = effect_rotation(maps)
    found = (maps.double().T - maps.double().T.mean(0)) @ c                  # [P, 4]
    assert (_best_cos(found.T.float(), sources) > 0.99).all()
    assert bool((kurtosis.abs()[:-1] >= kurtosis.abs()[1:]).all()) and float(kurtosis.min()) > 5


def test_the_fourth_moments_turn_with_the_columns():
    """The rotation works on the fourth moments of z: they are E[z_a z_b z_c z_d], and turning two columns of z
    turns them as the moments of the turned columns."""
    from hspace_core.discovery.effect_ica import _turn, fourth_moments

    z = torch.randn(700, 5, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    t = fourth_moments(z, chunk=256)
    assert torch.allclose(t, torch.einsum("pa,pb,pc,pd->abcd", z, z, z, z) / 700, atol=1e-12)
    c, s = 0.8, 0.6
    turned = z.clone()
    turned[:, 1], turned[:, 3] = c * z[:, 1] + s * z[:, 3], c * z[:, 3] - s * z[:, 1]
    _turn(t, 1, 3, c, s)
    assert torch.allclose(t, fourth_moments(turned), atol=1e-12)


def test_the_sparsest_rotation_settles_where_gaussian_maps_slow_it_and_finds_the_sparse_sources():
    """Four sparse sources among twelve Gaussian ones (16 maps, the default size): the pairs of Gaussian maps turn
    by ever smaller angles for more than a hundred sweeps (the old limit refused the result), then the rotation
    settles with the four sources as its sparsest components."""
    from hspace_core.discovery.effect_ica import sparsest_rotation

    g = torch.Generator().manual_seed(7)  # 3 of the first 8 seeds need more than 100 sweeps
    sources = torch.randn(4, 8192, generator=g) * (torch.rand(4, 8192, generator=g) < 0.05)
    x = torch.cat([sources, torch.randn(12, 8192, generator=g)]).T.double()
    q, _ = torch.linalg.qr(torch.randn(16, 16, generator=g, dtype=torch.float64))
    x = (x @ q) - (x @ q).mean(0)
    variance, axes = torch.linalg.eigh(x.T @ x / x.shape[0])
    z = x @ (axes / variance.sqrt())
    with pytest.raises(HSpaceError, match="did not settle in 100 sweeps"):
        sparsest_rotation(z, max_sweeps=100)
    found = z @ sparsest_rotation(z)
    sparsest = torch.argsort((found ** 4).mean(0), descending=True)[:4]
    assert (_best_cos(found[:, sparsest].T.float(), sources) > 0.99).all()


def test_independent_effects_separate_gaussian_factors_that_act_in_different_places():
    """Images varying by two Gaussian factors of equal spread, each a pattern in its own 8x8 block and channel:
    h's rows hold them only up to a rotation (Gaussian, equal variance: PCA and ICA of h cannot pick one), but
    their effects on x0 lie in different places, and rotate "effects" returns one direction per block, each one
    standard deviation of the rows along it. Progress is one job, one step per principal direction measured last."""
    from hspace_core.discovery.record import BATCH, invert_prepared, invert_steps, record_h, record_steps

    cfg = DDPMConfig(ch=1, ch_mult=(3, 3, 3, 3), num_res_blocks=1, attn_levels_down=(), attn_levels_up=(),
                     image_size=32)
    model = HSpaceModel(_LocalUNet(), Family.DDIM, cfg, linear_schedule(1000))
    g = torch.Generator().manual_seed(4)
    patterns = torch.zeros(2, 3, 32, 32)
    patterns[0, 0, 0:8, 0:8] = 0.2
    patterns[1, 1, 8:16, 16:24] = 0.2
    s = torch.randn(96, 2, generator=g)
    images = s @ patterns.flatten(1) + 0.001 * torch.randn(96, 3 * 32 * 32, generator=g)
    images = images.view(96, 3, 32, 32)
    seen = []
    ds = ica_directions(model, images, components=2, dims=2, steps=10, t_edit=500, rotate="effects",
                        callback=seen.append)
    grid = asyrp_timesteps(10)
    k = int((grid >= 500).sum())
    walks = invert_steps(96, 10, BATCH) + record_steps(96, k, BATCH)
    assert [s.i for s in seen] == list(range(walks + 2)) and {s.total for s in seen} == {walks + 2}
    pooled = F.avg_pool2d(patterns, 8).flatten(1)
    top = ds[0].values[-1].flatten()
    assert max(float(F.cosine_similarity(d.values[-1].flatten(), pooled[j], dim=0).abs())
               for d in ds for j in (0, 1)) > 0.99
    assert {int((F.normalize(d.values[-1].flatten(), dim=0) @ F.normalize(pooled, dim=1).T).abs().argmax())
            for d in ds} == {0, 1}
    assert float(top.norm()) > 0 and ds[0].info.provenance["rotate"] == "effects"
    rows = record_h(model, invert_prepared(model, images, 10), grid[len(grid) - k:]).transpose(0, 1).flatten(1)
    for d in ds:
        shift = torch.flip(d.values[len(grid) - k:], dims=[0]).flatten() * k   # the rows' layout, unscaled
        spread = ((rows - rows.mean(0)) @ F.normalize(shift, dim=0)).std()
        assert float(shift.norm()) == pytest.approx(float(spread), rel=0.02)
    with pytest.raises(HSpaceError, match="rotate must be one of h, effects"):
        ica_directions(model, images, components=2, dims=2, steps=10, rotate="pixels")
    seen.clear()
    with pytest.raises(HSpaceError, match="at most 64 principal directions, got dims 65"):
        ica_directions(model, images, components=2, dims=65, steps=10, rotate="effects", callback=seen.append)
    assert not seen  # refused before any inversion
