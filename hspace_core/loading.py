"""``load_model``: from a checkpoint on disk to an ``HSpaceModel``.

Pipeline (checkpoints.md section 9): read the file safely and unwrap it (``checkpoint_files``) ->
detect the family from key names, refusing look-alikes -> infer every hyperparameter from names
and shapes -> fill what the weights do not store from config.json, the file's metadata, a preset
of the known checkpoints, or the caller's overrides -> build -> ``load_state_dict(strict=True)``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch

from .checkpoint_files import RawCheckpoint, check_weights, read_diffusers_folder, read_weights_file
from .errors import HSpaceError
from .model import Family, HSpaceModel
from .schedule import NoiseSchedule, load_diffusers_scheduler_config, named_schedule, schedule_from_diffusers_config
from .unets import ADMConfig, ADMUNet, DDPMConfig, DDPMUNet

OVERRIDES = ("image_size", "num_heads", "num_head_channels", "attention_order", "schedule",
             "num_timesteps", "rescale_timesteps")

_SIGNATURES = {
    Family.DDIM: ("temb.dense.0.weight", "conv_in.weight", "mid.block_1.conv1.weight", "conv_out.weight"),
    Family.ADM: ("time_embed.0.weight", "input_blocks.0.0.weight", "middle_block.0.in_layers.2.weight",
                 "out.2.weight"),
    Family.DIFFUSERS: ("time_embedding.linear_1.weight", "conv_in.weight",
                       "down_blocks.0.resnets.0.conv1.weight", "conv_out.weight"),
}


def _matches(sd: dict, family: Family) -> bool:
    return all(k in sd for k in _SIGNATURES[family])


def is_supported_state_dict(sd: dict) -> bool:
    return any(_matches(sd, f) for f in Family)


def _sample_keys(sd: dict, n: int = 4) -> str:
    keys = list(sd)
    return ", ".join(keys[:n]) + (" ..." if len(keys) > n else "")


def detect_family(sd: dict[str, torch.Tensor], path: Path) -> Family:
    """The checkpoint family, or an ``HSpaceError`` naming what the tensors look like instead."""
    keys = list(sd)
    found = f"{len(keys)} tensors, e.g. {_sample_keys(sd)}"
    if any("diffusion_model." in k or "transformer_blocks" in k or ".attn2." in k or ".proj_in." in k
           for k in keys):
        raise HSpaceError(f"{path}: a Stable Diffusion / latent-diffusion UNet with cross-attention ({found}); "
                          "this pack edits unconditional pixel-space DDPMs")
    if any(k.startswith(("encoder.", "decoder.")) for k in keys) or any("quant_conv" in k for k in keys):
        raise HSpaceError(f"{path}: a VAE / autoencoder ({found}), not a diffusion UNet")
    if "label_emb.weight" in sd or any(k.startswith("class_embedding.") for k in keys):
        raise HSpaceError(f"{path}: a class-conditional diffusion model ({found}); only unconditional "
                          "models are supported")
    for family in Family:
        if _matches(sd, family):
            return family
    if any(k.startswith("input_blocks.") for k in keys) and not any(k.startswith("output_blocks.") for k in keys):
        raise HSpaceError(f"{path}: a guided-diffusion classifier / encoder (input and middle blocks, no output "
                          f"blocks; {found}), not a denoising UNet")
    delta_keys = {"conv1.weight", "temb_proj.weight", "norm2.weight", "conv2.weight"}
    if delta_keys <= set(keys) or {"in_layers.2.weight", "emb_layers.1.weight", "out_layers.3.weight"} <= set(keys):
        raise HSpaceError(f"{path}: an Asyrp DeltaBlock (h-space direction, {found}); load it as a direction")
    raise HSpaceError(f"{path}: unknown state dict ({found}); expected a DDIM/SDEdit Model, a guided/improved-"
                      "diffusion UNetModel or a diffusers UNet2DModel")


# ------------------------------------------------------------------ family A: ermongroup/ddim Model

def _indices(sd: dict, pattern: str) -> list[int]:
    rx = re.compile(pattern)
    return sorted({int(m.group(1)) for k in sd if (m := rx.match(k))})


def infer_ddpm_structure(sd: dict[str, torch.Tensor]) -> dict:
    """Shape-derived fields of a ``DDPMConfig`` from ermongroup key names (checkpoints.md 2.3)."""
    ch = sd["conv_in.weight"].shape[0]
    levels = _indices(sd, r"down\.(\d+)\.")
    n_blocks = len(_indices(sd, r"down\.0\.block\.(\d+)\."))
    ch_mult = []
    for i in levels:
        w = sd[f"down.{i}.block.0.conv1.weight"].shape[0]
        if w % ch:
            raise HSpaceError(f"level {i} width {w} is not a multiple of the base width {ch}")
        ch_mult.append(w // ch)
    return dict(
        ch=ch, ch_mult=tuple(ch_mult), num_res_blocks=n_blocks,
        attn_levels_down=tuple(i for i in levels if f"down.{i}.attn.0.q.weight" in sd),
        attn_levels_up=tuple(i for i in levels if f"up.{i}.attn.0.q.weight" in sd),
        in_channels=sd["conv_in.weight"].shape[1], out_ch=sd["conv_out.weight"].shape[0],
        resamp_with_conv="down.0.downsample.conv.weight" in sd or len(levels) == 1,
    )


def _ddpm_image_size(structure: dict) -> int | None:
    """Every DDPM config puts attention at 16x16, so size = 16 * 2^(first attention level)."""
    attn = structure["attn_levels_down"] or structure["attn_levels_up"]
    if attn:
        return 16 * 2 ** min(attn)
    return {(1, 1, 2, 2, 4, 4): 256, (1, 2, 2, 2): 32, (1, 2, 2, 2, 4): 64}.get(structure["ch_mult"])


# ------------------------------------------------------------------ family C: diffusers UNet2DModel

_DIFFUSERS_ATTN = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out",
                   "query": "q", "key": "k", "value": "v", "proj_attn": "proj_out"}
_DIFFUSERS_RESNET = {"norm1": "norm1", "conv1": "conv1", "time_emb_proj": "temb_proj", "norm2": "norm2",
                     "conv2": "conv2", "conv_shortcut": "nin_shortcut"}


def diffusers_to_ddim_keys(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename a diffusers UNet2DModel state dict onto ermongroup names (checkpoints.md 4.6).

    Accepts both attention spellings (``to_q``/``to_out.0`` and the pre-0.14 ``query``/``proj_attn``);
    attention projections become 1x1 convolutions. ``up_blocks.{u}`` is level L-1-u.
    """
    levels = len(_indices(sd, r"down_blocks\.(\d+)\."))
    out = {}
    for key, value in sd.items():
        new = _rename_diffusers_key(key, levels)
        if new is None:
            raise HSpaceError(f"unexpected diffusers key {key!r} (time-embedding type, block type or resnet "
                              "variant not supported)")
        if re.search(r"\.attn(_1)?(\.\d+)?\.(q|k|v|proj_out)\.weight$", new) and value.ndim == 2:
            value = value[:, :, None, None]
        out[new] = value
    return out


def _rename_diffusers_key(key: str, levels: int) -> str | None:
    simple = {"time_embedding.linear_1": "temb.dense.0", "time_embedding.linear_2": "temb.dense.1",
              "conv_in": "conv_in", "conv_norm_out": "norm_out", "conv_out": "conv_out"}
    head, _, param = key.rpartition(".")
    if head in simple:
        return f"{simple[head]}.{param}"
    m = re.fullmatch(r"(down|up)_blocks\.(\d+)\.(resnets|attentions|downsamplers|upsamplers)\.(\d+)\.(.+)", head)
    if m:
        side, b, kind, j, rest = m.groups()
        level = int(b) if side == "down" else levels - 1 - int(b)
        prefix = f"{side}.{level}"
        if kind == "resnets" and rest in _DIFFUSERS_RESNET:
            return f"{prefix}.block.{j}.{_DIFFUSERS_RESNET[rest]}.{param}"
        if kind == "attentions" and rest in _DIFFUSERS_ATTN:
            return f"{prefix}.attn.{j}.{_DIFFUSERS_ATTN[rest]}.{param}"
        if kind == "downsamplers" and rest == "conv" and j == "0":
            return f"{prefix}.downsample.conv.{param}"
        if kind == "upsamplers" and rest == "conv" and j == "0":
            return f"{prefix}.upsample.conv.{param}"
        return None
    m = re.fullmatch(r"mid_block\.(resnets|attentions)\.(\d+)\.(.+)", head)
    if m:
        kind, j, rest = m.groups()
        if kind == "resnets" and rest in _DIFFUSERS_RESNET and j in ("0", "1"):
            return f"mid.block_{int(j) + 1}.{_DIFFUSERS_RESNET[rest]}.{param}"
        if kind == "attentions" and rest in _DIFFUSERS_ATTN and j == "0":
            return f"mid.attn_1.{_DIFFUSERS_ATTN[rest]}.{param}"
    return None


# Google's ddpm-* configs; diffusers' class defaults differ (checkpoints.md 4.2, "default-value traps").
GOOGLE_DDPM_NUMERICS = dict(flip_sin_to_cos=False, freq_shift=1.0, norm_eps=1e-6, attention_head_dim=None,
                            downsample_padding=0, norm_groups=32, center_input=False)


def diffusers_numerics(config: dict, path: Path) -> dict:
    """DDPMConfig numerics from a diffusers config.json, with diffusers' class defaults for missing keys.

    A missing ``attention_head_dim`` means 8-channel heads; an explicit null means one full-width head.
    """
    unsupported = []
    if config.get("act_fn", "silu") not in ("silu", "swish"):
        unsupported.append(f"act_fn {config['act_fn']!r}")
    if config.get("time_embedding_type", "positional") != "positional":
        unsupported.append(f"time_embedding_type {config['time_embedding_type']!r}")
    if config.get("resnet_time_scale_shift", "default") != "default":
        unsupported.append(f"resnet_time_scale_shift {config['resnet_time_scale_shift']!r}")
    if config.get("class_embed_type") or config.get("num_class_embeds"):
        unsupported.append("class conditioning")
    if config.get("add_attention", True) is False:
        unsupported.append("add_attention false")
    if float(config.get("mid_block_scale_factor", 1)) != 1.0:
        unsupported.append(f"mid_block_scale_factor {config['mid_block_scale_factor']}")
    if config.get("attn_norm_num_groups") not in (None, config.get("norm_num_groups", 32)):
        unsupported.append("attn_norm_num_groups differing from norm_num_groups")
    if config.get("downsample_type", "conv") != "conv" or config.get("upsample_type", "conv") != "conv":
        unsupported.append("resnet down/upsamplers")
    if unsupported:
        raise HSpaceError(f"{path}: diffusers UNet2DModel with unsupported settings: {', '.join(unsupported)}")
    head_dim = config["attention_head_dim"] if "attention_head_dim" in config else 8
    return dict(flip_sin_to_cos=bool(config.get("flip_sin_to_cos", True)),
                freq_shift=float(config.get("freq_shift", 0)), norm_eps=float(config.get("norm_eps", 1e-5)),
                attention_head_dim=None if head_dim is None else int(head_dim),
                downsample_padding=int(config.get("downsample_padding", 1)),
                norm_groups=int(config.get("norm_num_groups", 32)),
                center_input=bool(config.get("center_input_sample", False)))


# ------------------------------------------------------------------ family B: ADM

def infer_adm_structure(sd: dict[str, torch.Tensor], path: Path) -> dict:
    """Shape-derived fields of an ``ADMConfig`` (checkpoints.md 3.3)."""
    mc = sd["time_embed.0.weight"].shape[1]
    in_ch = sd["input_blocks.0.0.weight"].shape[1]
    n_out = len(_indices(sd, r"output_blocks\.(\d+)\."))
    first_up = None
    for k in range(n_out):
        subs = _indices(sd, rf"output_blocks\.{k}\.(\d+)\.")
        last = max(subs) if subs else 0
        if last > 0 and (f"output_blocks.{k}.{last}.in_layers.2.weight" in sd
                         or f"output_blocks.{k}.{last}.conv.weight" in sd):
            first_up, updown = k, f"output_blocks.{k}.{last}.in_layers.2.weight" in sd
            break
    if first_up is None:
        raise HSpaceError(f"{path}: ADM UNet without resampler weights; cannot infer its levels")
    n_blocks = first_up
    levels = n_out // (n_blocks + 1)
    mult, attention_ds = [], []
    for level in range(levels):
        k = (levels - 1 - level) * (n_blocks + 1)
        mult.append(sd[f"output_blocks.{k}.0.out_layers.3.weight"].shape[0] / mc)
        if f"output_blocks.{k}.1.qkv.weight" in sd:
            attention_ds.append(2 ** level)
    c1 = sd["input_blocks.1.0.out_layers.3.weight"].shape[0]
    scale_shift = sd["input_blocks.1.0.emb_layers.1.weight"].shape[0] == 2 * c1
    return dict(model_channels=mc, channel_mult=tuple(int(m) if m == int(m) else m for m in mult),
                num_res_blocks=n_blocks, attention_ds=tuple(attention_ds), in_channels=in_ch,
                out_channels=sd["out.2.weight"].shape[0], use_scale_shift_norm=scale_shift,
                resblock_updown=updown, conv_resample=True)


_ADM_IMAGE_SIZE = {(0.5, 1, 1, 2, 2, 4, 4): 512, (1, 1, 2, 2, 4, 4): 256, (1, 1, 2, 3, 4): 128,
                   (1, 2, 3, 4): 64, (1, 2, 2, 2): 32}


def adm_preset(structure: dict) -> tuple[dict, str, int, bool, str]:
    """What ADM weights do not store, by the rule that fits every released checkpoint.

    Returns (head fields, schedule kind, steps, rescale_timesteps, which preset): resblock up/down
    means guided-diffusion (64-channel heads, 1000 linear steps); no up/down and no scale-shift
    means improved-diffusion LSUN (1 head, 1000 linear); no up/down with scale-shift means
    improved-diffusion's defaults (4 heads, 4000 cosine steps fed as t * 1000 / 4000).
    """
    if structure["resblock_updown"]:
        return dict(num_heads=1, num_head_channels=64), "linear", 1000, False, "guided-diffusion"
    if not structure["use_scale_shift_norm"]:
        return dict(num_heads=1, num_head_channels=None), "linear", 1000, False, "improved-diffusion LSUN"
    return dict(num_heads=4, num_head_channels=None), "cosine", 4000, True, "improved-diffusion (4000-step cosine)"


# ------------------------------------------------------------------ load_model

def _schedule_from_metadata(meta: dict[str, str], path: Path) -> NoiseSchedule | None:
    if "hspace.schedule" not in meta:
        return None
    try:
        spec = json.loads(meta["hspace.schedule"])
        if "beta_start" in spec or spec.get("kind") == "scaled_linear":  # betas named as a diffusers config names them
            return schedule_from_diffusers_config({"beta_schedule": spec["kind"],
                                                   "num_train_timesteps": spec["num_timesteps"],
                                                   **{k: spec[k] for k in ("beta_start", "beta_end") if k in spec}})
        return named_schedule(spec["kind"], int(spec["num_timesteps"]), bool(spec.get("rescale_timesteps", False)))
    except HSpaceError as e:
        raise HSpaceError(f"{path}: metadata hspace.schedule: {e}") from None
    except (ValueError, TypeError, KeyError, AttributeError) as e:
        raise HSpaceError(f"{path}: metadata hspace.schedule is not a schedule ({type(e).__name__}: {e})") from None


MAX_IMAGE_SIZE = 4096


def _image_size(value, path: Path, where: str) -> int:
    """A native resolution read from a file (metadata, config.json), checked."""
    try:
        size = int(value)
    except (TypeError, ValueError):
        raise HSpaceError(f"{path}: {where} {value!r} is not an image size") from None
    if not 8 <= size <= MAX_IMAGE_SIZE:
        raise HSpaceError(f"{path}: {where} {size} is outside [8, {MAX_IMAGE_SIZE}]")
    return size


def _build_strict(make_net, sd: dict[str, torch.Tensor], path: Path) -> torch.nn.Module:
    """The network ``make_net()`` with the weights ``sd`` loaded strictly. The key and shape check runs on
    a shell built on the meta device, so that a file whose few tensors describe a huge network is refused
    before anything is allocated; the real network is built only when every tensor fits it."""
    with torch.device("meta"):
        shell = make_net()
    own = {k: tuple(v.shape) for k, v in shell.state_dict().items()}
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own]
    bad = [k for k in own if k in sd and own[k] != tuple(sd[k].shape)]
    if missing or unexpected or bad:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
        if bad:
            parts.append(f"{len(bad)} with other shapes (e.g. {bad[0]}: file {list(sd[bad[0]].shape)}, "
                         f"network {list(own[bad[0]])})")
        raise HSpaceError(f"{path}: weights do not fit the inferred network: {'; '.join(parts)}")
    check_weights(sd, path)
    net = make_net()
    dtypes = {k: v.dtype for k, v in net.state_dict().items()}
    net.load_state_dict({k: v.to(dtypes[k]) for k, v in sd.items()}, strict=True)
    return net


def load_model(path: str | Path, **overrides) -> HSpaceModel:
    """Load an unconditional pixel DDPM checkpoint of any supported family.

    path: a .safetensors / .pt / .pth / .ckpt / .bin file, or a diffusers model (or pipeline) folder.
    overrides (for what weights do not store): ``image_size``; ADM ``num_heads`` /
    ``num_head_channels`` / ``attention_order`` ("legacy" or "new"); ``schedule`` ("linear" or
    "cosine"), ``num_timesteps``, ``rescale_timesteps``.
    Returns the model on CPU in float32, eval mode, gradients off.
    """
    unknown = set(overrides) - set(OVERRIDES)
    if unknown:
        raise HSpaceError(f"unknown override(s) {sorted(unknown)}; valid: {', '.join(OVERRIDES)}")
    overrides = {k: v for k, v in overrides.items() if v is not None}
    path = Path(path).expanduser()
    if not path.exists():
        raise HSpaceError(f"{path}: no such file or folder")
    raw: RawCheckpoint = (read_diffusers_folder(path, is_supported_state_dict) if path.is_dir()
                          else read_weights_file(path, is_supported_state_dict))
    sd = raw.tensors
    family = detect_family(sd, path)
    warnings: list[str] = []
    try:
        if family is Family.ADM:
            net, config, schedule = _build_adm(sd, raw, path, overrides, warnings)
        else:
            net, config, schedule = _build_ddpm(sd, raw, family, path, overrides, warnings)
    except HSpaceError as e:
        raise HSpaceError(str(e) if str(path) in str(e) else f"{path}: {e}") from None
    except (ValueError, TypeError, KeyError, IndexError, ZeroDivisionError, AssertionError, OverflowError,
            RuntimeError) as e:  # names and shapes that describe no network the UNet classes can build
        first = str(e).splitlines()[0][:200] if str(e) else ""
        raise HSpaceError(f"{path}: the tensors' names and shapes describe no network this pack can build "
                          f"({type(e).__name__}: {first})") from None
    net.eval().requires_grad_(False)
    return HSpaceModel(unet=net, family=family, config=config, schedule=schedule, source=str(path),
                       container=raw.container, warnings=tuple(warnings))


def _pick_schedule(raw: RawCheckpoint, path: Path, overrides: dict, default: tuple[str, int, bool],
                   warnings: list[str], why: str) -> NoiseSchedule:
    kind, steps, rescale = default
    if any(k in overrides for k in ("schedule", "num_timesteps", "rescale_timesteps")):
        return named_schedule(overrides.get("schedule", kind), int(overrides.get("num_timesteps", steps)),
                              bool(overrides.get("rescale_timesteps", rescale)))
    if raw.scheduler is not None:
        return load_diffusers_scheduler_config(raw.scheduler)
    from_meta = _schedule_from_metadata(raw.metadata, path)
    if from_meta is not None:
        return from_meta
    if why:
        warnings.append(f"noise schedule not stored in the weights: assumed {kind} over {steps} steps ({why}); "
                        "override with schedule=..., num_timesteps=...")
    return named_schedule(kind, steps, rescale)


def _build_ddpm(sd, raw: RawCheckpoint, family: Family, path: Path, overrides: dict, warnings: list[str]):
    if family is Family.DIFFUSERS:
        sd = diffusers_to_ddim_keys(sd)
    sd = {k: v for k, v in sd.items() if k != "logvar"}  # ermongroup 'bayesian' variant; unused
    structure = infer_ddpm_structure(sd)
    if family is Family.DIFFUSERS and raw.config is not None:
        numerics = diffusers_numerics(raw.config, path)
        widths = [structure["ch"] * m for m in structure["ch_mult"]]
        if list(raw.config.get("block_out_channels", widths)) != widths:
            raise HSpaceError(f"{path}: config.json block_out_channels {raw.config['block_out_channels']} "
                              f"disagree with the weights {widths}")
        size = raw.config.get("sample_size")
    else:
        numerics = dict(GOOGLE_DDPM_NUMERICS)
        if family is Family.DIFFUSERS:
            warnings.append("diffusers weights without config.json: assumed google/ddpm-* numerics (sin-cos "
                            "embedding with shift 1, GroupNorm eps 1e-6, one attention head)")
        size = raw.metadata.get("hspace.image_size")
    image_size = overrides.get("image_size") or (
        _image_size(size, path, "sample_size" if raw.config is not None else "metadata hspace.image_size") if size
        else _ddpm_image_size(structure))
    if not image_size:
        raise HSpaceError(f"{path}: cannot infer the image size of this network; pass image_size=...")
    if "num_heads" in overrides or "num_head_channels" in overrides:
        c = structure["ch"] * structure["ch_mult"][-1]
        numerics["attention_head_dim"] = overrides.get("num_head_channels") or c // int(overrides["num_heads"])
    schedule = _pick_schedule(raw, path, overrides, ("linear", 1000, False), warnings,
                              "" if family is Family.DDIM else "diffusers folder without scheduler_config.json")
    config = DDPMConfig(**structure, image_size=int(image_size), **numerics)
    net = _build_strict(lambda: DDPMUNet(config), sd, path)
    return net, config, schedule


def _build_adm(sd, raw: RawCheckpoint, path: Path, overrides: dict, warnings: list[str]):
    structure = infer_adm_structure(sd, path)
    heads, kind, steps, rescale, preset = adm_preset(structure)
    if "num_heads" in overrides or "num_head_channels" in overrides:
        heads = dict(num_heads=int(overrides.get("num_heads", 1)),
                     num_head_channels=overrides.get("num_head_channels"))
    else:
        what = (f"{heads['num_head_channels']} channels per head" if heads["num_head_channels"]
                else f"{heads['num_heads']} head(s)")
        warnings.append(f"attention head count not stored in the weights: assumed {what} ({preset} preset); "
                        "override with num_heads=... or num_head_channels=...")
    order = overrides.get("attention_order", "legacy")
    if order not in ("legacy", "new"):
        raise HSpaceError(f"attention_order must be 'legacy' or 'new', got {order!r}")
    stored = raw.metadata.get("hspace.image_size")
    size = overrides.get("image_size") or (_image_size(stored, path, "metadata hspace.image_size") if stored else
                                           _ADM_IMAGE_SIZE.get(tuple(float(m) for m in structure["channel_mult"])))
    if not size:
        raise HSpaceError(f"{path}: cannot infer the image size from channel_mult {structure['channel_mult']}; "
                          "pass image_size=...")
    schedule = _pick_schedule(raw, path, overrides, (kind, steps, rescale), warnings, f"{preset} preset")
    config = ADMConfig(**structure, **heads, use_new_attention_order=order == "new", image_size=int(size))
    net = _build_strict(lambda: ADMUNet(config), sd, path)
    return net, config, schedule

