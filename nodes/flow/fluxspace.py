"""FluxSpace's fine edit on a ComfyUI flow MODEL (Flux.1, Flux.2, SD3), for comparing with Asyrp in h
(``hspace_core.fluxspace`` holds the arithmetic and the paper's definition).

Each model call inside the interval gets two more rows per prompt (cond) row: the same latent and timestep with
the edit prompt's and the prior prompt's conditioning (an APPLY_MODEL wrapper builds them and returns only the
original rows). At every chosen joint block the image tokens' attention output of each prompt row is replaced by
FluxSpace's combination of its three rows (through the h patch's attention hook, ``patch._OnH``); the extra rows
run the model plainly, as the paper's edit and prior branches do. The negative prompt's rows are not edited.
"""

from __future__ import annotations

import torch

from hspace_core import HSpaceError
from hspace_core.fluxspace import fine_edit

from ..types import SD_CATEGORY

from .family import HLocation, flow_host, flow_timesteps
from .patch import FlowHPatch, FlowHRecorder, _OnH, existing_patch, key, with_grid_wrapper

ROWS_KEY = "hspace_fluxspace_rows"  # transformer_options: (prompt rows, their edit rows, their prior rows)
WRAPPER_KEY = "hspace_fluxspace"


def prompt_tensors(conditioning, what: str) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(cross-attention tokens [1, L, D], pooled vector [1, P] or None) of a one-prompt CONDITIONING."""
    if not conditioning or not isinstance(conditioning[0][0], torch.Tensor):
        raise HSpaceError(f"the {what} conditioning is empty; connect a CLIP Text Encode")
    tokens, pooled = conditioning[0][0], conditioning[0][1].get("pooled_output")
    return tokens[:1], None if pooled is None else pooled[:1]


def model_inputs(base_model, prompt, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """A prompt's (tokens, pooled) as the model takes them: (c_crossattn [1, L', D], y [1, P'] or None), through
    the model's own ``extra_conds`` (Flux.2 pads its tokens to 512 there, for example)."""
    tokens, pooled = prompt
    kw = {"cross_attn": tokens, "noise": x[:1], "device": x.device}
    if pooled is not None:
        kw["pooled_output"] = pooled
    out = base_model.extra_conds(**kw)
    y = out.get("y")
    return out["c_crossattn"].cond, None if y is None or pooled is None else y.cond


class ThreePrompts:
    """The APPLY_MODEL wrapper: appends the edit and prior rows for every prompt row whose 1000 sigma lies in
    [t_edit, t_end], calls the model once, returns the original rows."""

    def __init__(self, edit, prior, t_edit: float, t_end: float):
        self.edit, self.prior = edit, prior
        self.t_edit, self.t_end = float(t_edit), float(t_end)
        self._inputs: dict = {}  # (device, dtype) -> the two prompts' model inputs, made at the first call there

    def prompt_inputs(self, base_model, x: torch.Tensor):
        key = (x.device, x.dtype)
        if key not in self._inputs:
            self._inputs[key] = (model_inputs(base_model, self.edit, x), model_inputs(base_model, self.prior, x))
        return self._inputs[key]

    def __call__(self, executor, x, t, c_concat=None, c_crossattn=None, control=None, transformer_options=None,
                 **kwargs):
        to = {} if transformer_options is None else transformer_options
        chunks = to.get("cond_or_uncond", [0])
        n = x.shape[0] // max(len(chunks), 1)
        tt = flow_timesteps(t)
        rows = [j * n + r for j, c in enumerate(chunks) if c == 0 for r in range(n)
                if self.t_edit <= float(tt[j * n + r]) <= self.t_end]
        if not rows:
            return executor(x, t, c_concat, c_crossattn, control, to, **kwargs)
        if control is not None:
            raise HSpaceError("FluxSpace Edit does not combine with a ControlNet on the same model")
        replaced = to.get("patches_replace", {}).get("dit", {})
        if any(isinstance(p, (FlowHPatch, FlowHRecorder)) for p in replaced.values()):
            raise HSpaceError("FluxSpace Edit and an h-space direction are on the same MODEL; compare them on "
                              "separate copies of the model")
        b, k = x.shape[0], len(rows)
        idx = torch.tensor(rows, device=x.device)
        base_model = executor.class_obj

        def three(v, edit_value=None, prior_value=None):
            e = v[idx] if edit_value is None else edit_value.to(v.device, v.dtype).expand(k, *v.shape[1:])
            p = v[idx] if prior_value is None else prior_value.to(v.device, v.dtype).expand(k, *v.shape[1:])
            return torch.cat([v, e, p])

        (e_tok, e_y), (p_tok, p_y) = self.prompt_inputs(base_model, x)
        if c_crossattn is None or e_tok.shape[1:] != c_crossattn.shape[1:] or p_tok.shape[1:] != c_crossattn.shape[1:]:
            raise HSpaceError(f"the edit and prior prompts encode to {tuple(e_tok.shape[1:])} and "
                              f"{tuple(p_tok.shape[1:])} tokens x width, the prompt to "
                              f"{None if c_crossattn is None else tuple(c_crossattn.shape[1:])}: encode all three "
                              "with the same text encoder (and prompts of the same token count)")
        extra = {}
        for name, v in kwargs.items():
            if not (isinstance(v, torch.Tensor) and v.ndim and v.shape[0] == b):
                extra[name] = v
            elif name == "y" and e_y is not None and p_y is not None:
                extra[name] = three(v, e_y, p_y)
            else:
                extra[name] = three(v)
        inner = dict(to)
        inner[ROWS_KEY] = (idx, torch.arange(b, b + k, device=x.device), torch.arange(b + k, b + 2 * k, device=x.device))
        out = executor(three(x), three(t), None if c_concat is None else three(c_concat), three(c_crossattn, e_tok, p_tok),
                       None, inner, **extra)
        return out[:b]


class FluxSpaceBlock(_OnH):
    """At one joint block: the prompt rows' image attention output -> FluxSpace's fine edit of it."""

    def __init__(self, block: int, scale: float, model_sampling):
        super().__init__(HLocation(block, "attention"), model_sampling)
        self.scale = float(scale)

    def on_h(self, h, to):
        rows = to.get(ROWS_KEY)
        if rows is None:
            return h
        base, edit, prior = rows
        chan_last = lambda r: h[r].flatten(2).transpose(1, 2)  # noqa: E731  [k, C, gh, gw] -> [k, N, C]
        edited = fine_edit(chan_last(base), chan_last(edit), chan_last(prior), self.scale)
        out = h.clone()
        out[base] = edited.transpose(1, 2).reshape(h[base].shape)
        return out


def parse_blocks(text: str, blocks: int) -> list[int]:
    """"all" or a comma list of joint block numbers -> sorted block numbers, refused outside 0..blocks - 1."""
    if text.strip().lower() in ("", "all"):
        return list(range(blocks))
    try:
        chosen = sorted({int(v) for v in text.split(",") if v.strip()})
    except ValueError:
        raise HSpaceError(f"blocks must be 'all' or joint block numbers like '0, 2', got {text!r}") from None
    bad = [b for b in chosen if not 0 <= b < blocks]
    if bad or not chosen:
        raise HSpaceError(f"this model has joint blocks 0..{blocks - 1}; blocks {text!r} names {bad or 'none'}")
    return chosen


def apply_fluxspace(model, edit, prior, scale: float, t_edit: float, t_end: float, blocks: str = "all"):
    """A clone of the flow MODEL with FluxSpace's fine edit (edit and prior: one-prompt CONDITIONINGs) at the
    chosen joint blocks for t_edit <= 1000 sigma <= t_end."""
    host = flow_host(model)
    chosen = parse_blocks(blocks, host.blocks)
    if t_edit > t_end:
        raise HSpaceError(f"t_edit ({t_edit}) is after t_end ({t_end})")
    m = model.clone()
    import comfy.patcher_extension as pe

    if m.get_wrappers(pe.WrappersMP.APPLY_MODEL, WRAPPER_KEY):
        raise HSpaceError("this MODEL already has a FluxSpace Edit; apply it once, to the plain model")
    for b in chosen:
        location = HLocation(b, "attention")
        if existing_patch(m, location) is not None:
            raise HSpaceError(f"another patch already replaces joint block {b} of this MODEL "
                              f"({type(existing_patch(m, location)).__name__}); apply FluxSpace Edit to the plain model")
        m.set_model_patch_replace(FluxSpaceBlock(b, scale, m.get_model_object("model_sampling")), "dit", *key(location))
    m.add_wrapper_with_key(pe.WrappersMP.APPLY_MODEL, WRAPPER_KEY,
                           ThreePrompts(prompt_tensors(edit, "edit"), prompt_tensors(prior, "prior"), t_edit, t_end))
    with_grid_wrapper(m)
    return m


class FluxSpaceEdit:
    DESCRIPTION = ("FluxSpace's fine edit (Dalva et al., CVPR 2025) on Flux.1, Flux.2 and SD3 / SD3.5, to compare with "
                   "h-space directions: in every call with t_edit <= 1000 sigma <= t_end, each chosen joint block's image "
                   "attention output gets scale x (the edit prompt's output less its projection onto the prior prompt's). "
                   "Acts in every call (symmetric), so any sampler works; about twice the compute per step while it acts. "
                   "The negative prompt is not edited.")
    CATEGORY = SD_CATEGORY
    FUNCTION = "apply"
    RETURN_TYPES = ("MODEL",)
    OUTPUT_TOOLTIPS = ("a copy of the model with FluxSpace's edit",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": ("MODEL", {"tooltip": "a Flux.1, Flux.2 or SD3 / SD3.5 model"}),
            "edit": ("CONDITIONING", {"tooltip": "the edit prompt, e.g. 'a smiling face' (same text encoder)"}),
            "prior": ("CONDITIONING", {"tooltip": "the prior prompt, usually the empty prompt"}),
            "scale": ("FLOAT", {"default": 1.0, "min": -20.0, "max": 20.0, "step": 0.05,
                                "tooltip": "lambda_fine: 0 = unedited"}),
            "t_edit": ("INT", {"default": 0, "min": 0, "max": 1000, "tooltip": "edit at 1000 sigma >= t_edit"}),
            "t_end": ("INT", {"default": 1000, "min": 0, "max": 1000, "tooltip": "edit at 1000 sigma <= t_end"}),
            "blocks": ("STRING", {"default": "all", "tooltip": "'all' joint blocks, or a list like '0, 2'"}),
        }}

    def apply(self, model, edit, prior, scale, t_edit, t_end, blocks):
        return (apply_fluxspace(model, edit, prior, scale, t_edit, t_end, blocks),)
