"""What a ComfyUI MODEL is, for h-space editing on flow-matching transformers: its family (Flux.1, Flux.2,
SD3 / SD3.5), its width (h's channels), its joint ("double") blocks and its patch size; where h sits
(``HLocation``); the interval timestep of a sigma (t = 1000 sigma, ``hspace_core.flow``)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from hspace_core import HSpaceError

SUPPORTED = "SD1.x, SD2.x and SDXL UNets, and the flow transformers Flux.1 (dev, schnell), Flux.2 and SD3 / SD3.5"
KINDS = ("stream", "attention")  # the image tokens' residual stream after the block / its attention output
KIND_NAMES = {"residual stream": "stream", "attention output": "attention"}


@dataclass(frozen=True)
class FlowHost:
    """family: "flux", "flux2" or "sd3"; width: h's channels (the token width); blocks: joint blocks;
    patch: the latent patch size (the token grid is the latent's H / patch x W / patch)."""

    family: str
    width: int
    blocks: int
    patch: int
    name: str

    def default_block(self) -> int:
        """The joint block h is taken at when none is chosen: the middle one (the flow world's scan measures
        the choice on its own model; on real weights untested)."""
        return self.blocks // 2

    def location(self, block: int, kind: str) -> "HLocation":
        block = self.default_block() if block < 0 else block
        if not 0 <= block < self.blocks:
            raise HSpaceError(f"{self.name} has joint blocks 0..{self.blocks - 1}; block {block} does not exist")
        if kind not in KINDS:
            raise HSpaceError(f"h is the image tokens' {' or '.join(KINDS)}, not {kind!r}")
        return HLocation(block, kind)


@dataclass(frozen=True)
class HLocation:
    """Where h is read and shifted: after joint block ``block`` (the residual stream of the image tokens) or
    inside it (the attention output of the image tokens, before its projection, as FluxSpace edits)."""

    block: int
    kind: str

    @property
    def which_h(self) -> str:
        return f"double_block_{self.block}.{self.kind}"

    @staticmethod
    def parse(which_h: str) -> "HLocation":
        try:
            head, kind = which_h.split(".")
            block = int(head.removeprefix("double_block_"))
        except ValueError:
            raise HSpaceError(f"{which_h!r} is not a place in a flow transformer (double_block_<i>.<stream|attention>)"
                              ) from None
        if kind not in KINDS or not head.startswith("double_block_"):
            raise HSpaceError(f"{which_h!r} is not a place in a flow transformer")
        return HLocation(block, kind)


def is_flow(model) -> bool:
    """Whether a MODEL samples as a flow-matching model (ComfyUI's CONST sampling)."""
    import comfy.model_sampling

    return isinstance(model.get_model_object("model_sampling"), comfy.model_sampling.CONST)


def flow_host(model) -> FlowHost:
    """The ``FlowHost`` of a ComfyUI MODEL (a ModelPatcher, or its BaseModel as a sampler sees it); a one-line
    refusal, naming the supported families, for any other flow model (Wan, HunyuanVideo, Lumina, Qwen-Image,
    HiDream, AuraFlow, Chroma, ...)."""
    import comfy.ldm.flux.model as flux
    import comfy.ldm.modules.diffusionmodules.mmdit as mmdit

    base = model.model if hasattr(model, "model_options") else model
    net = base.diffusion_model
    name = type(base.model_config).__name__
    if type(net) is flux.Flux:  # Chroma and others subclass or copy it with other conditioning
        image_model = base.model_config.unet_config.get("image_model", "flux")
        family = "flux2" if image_model == "flux2" else "flux"
        if image_model not in ("flux", "flux2"):
            raise HSpaceError(f"{name} ({image_model}) is not supported for h-space editing; supported: {SUPPORTED}")
        return FlowHost(family, int(net.hidden_size), len(net.double_blocks), int(net.patch_size), name)
    if isinstance(net, mmdit.MMDiT) and type(base).__name__ == "SD3":
        return FlowHost("sd3", int(net.hidden_size), len(net.joint_blocks), int(net.patch_size), name)
    raise HSpaceError(f"{name} ({type(net).__name__}) is not supported for h-space editing; supported: {SUPPORTED}")


def flow_timesteps(sigmas: torch.Tensor) -> torch.Tensor:
    """Interval timesteps of the rows' sigmas: 1000 sigma (``hspace_core.flow.flow_t``)."""
    return 1000.0 * sigmas.float()


def sigma_at(model_sampling, t: float) -> float:
    """The sigma of the pack's timestep t on a MODEL's sampling: t / 1000 on a flow model (CONST), the model's
    own schedule on an SD one."""
    import comfy.model_sampling

    if isinstance(model_sampling, comfy.model_sampling.CONST):
        return float(t) / 1000.0
    return float(model_sampling.sigma(torch.tensor(float(t))))


def timestep_at(model_sampling, sigma) -> float:
    """The pack's timestep of a sigma (a number or a one-element tensor): ``sigma_at``'s inverse."""
    import comfy.model_sampling

    sigma = torch.as_tensor(sigma)
    if isinstance(model_sampling, comfy.model_sampling.CONST):
        return float(flow_timesteps(sigma))
    return float(model_sampling.timestep(sigma.reshape(1)))
