"""h-space editing on ComfyUI's own models (SD1.x, SD2.x, SDXL): the glue between ComfyUI's MODEL, sampler and
patch APIs and the engine's ``host`` maths. Every ``comfy`` import is inside a function, so the pack
imports (and its other nodes run) without ComfyUI.

Laid out by job:
  * ``family``: what the MODEL is (SD1.x / SD2.x / SDXL, h's channels), its timesteps;
  * ``patch``: ``HSpacePatch``, an ``output_block_patch``: ComfyUI calls it before every output block; at
    ``("output", 0)`` its h is the middle block's output, where ``host.shift_h`` adds the directions;
    ``HRecorder``, the same patch kind keeping h (for the direction nodes);
  * ``sampler``: the KSAMPLER functions. The Asyrp sampler calls the denoiser twice per step inside the
    edit interval (CFG, ControlNet and area conds apply to both), the second time with ``EDIT_KEY`` in
    ``transformer_options`` carrying the per-row strengths, and hands D and D_edit to the engine's walk;
    the inversions walk up the sigmas (DDIM) or down them keeping the noise maps (edit-friendly DDPM),
    which the Asyrp sampler then replays;
  * ``inversion``: running ComfyUI's CFGGuider with those functions (inversion, regeneration, recording);
  * ``trainable``: gradients into h through ComfyUI's guider (autograd-ready output blocks, per-row shifts);
    ``discovery``: contrastive discovery with the MODEL as the engine's host;
  * ``node_classes``: the node classes.
"""

from hspace_core.host import host_direction  # noqa: F401  (re-exported for the tests and benches)

from .family import host_family  # noqa: F401
from .inversion import (_descending, _guide, invert_latent, invert_latent_ddpm, record_trajectories,  # noqa: F401
                        regenerate, sigmas_down_to)
from .node_classes import (LATENT_INVERSION_METHODS, SD_CATEGORY, ApplyHSpaceDirection, AsyrpSamplerSD,  # noqa: F401
                           DirectionFromLatentSets, DirectionFromPrompts, DirectionPCASD, DirectionsByContrastSD,
                           DirectionsByIndependenceSD, InvertLatent)
from .patch import EDIT_KEY, H_BLOCK, HRecorder, HSpacePatch, asymmetric_shifts  # noqa: F401
from .sampler import ddpm_invert_walk, invert_walk, sample_asyrp  # noqa: F401
