"""h-space editing on ComfyUI's flow-matching transformers (Flux.1, Flux.2, SD3 / SD3.5): the glue between
ComfyUI's MODEL, its per-block hook and sampler APIs and the engine's flow maths (``hspace_core.flow``).
The SD nodes dispatch here when the MODEL samples as a flow model. Every ``comfy`` import is inside a
function.

  * ``family``: which transformer, its width, joint blocks and patch size; where h sits (``HLocation``);
  * ``patch``: the h patch and recorder at ("double_block", i), the token-grid wrapper;
  * ``sampler``: the KSAMPLER functions (Asyrp's flow step, the two inversions);
  * ``shared``: the blocks before h once for both predictions;
  * ``host``: applying, recording, inverting.
"""
