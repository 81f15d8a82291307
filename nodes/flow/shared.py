"""One pass for both of Asyrp's predictions on a flow transformer: the joint blocks before h run once.

The Asyrp sampler asks ComfyUI's guider once for the batch [x; x] with per-row strengths (0 for the first
half: ``EDIT_KEY``), so CFG, conds, guidance and every patch see an ordinary batch; in each CFG chunk the
two halves are the same rows. The joint blocks before the first edited one are replaced, through ComfyUI's
own per-block hook (``patches_replace["dit"][("double_block", j)]``), by a call of the block itself on the
first half of every chunk, its output repeated to the second half. From the edited block on every block
runs on all rows (the h patch shifts the second half there), batched. The embeddings before the first
block and the final layer run on all rows (linear layers on the tokens: a small share of a step).

Where sharing is not safe it is not done (the two predictions then come from the whole batch, exactly the
two-call result): another pack's patch on one of those blocks, an attention mask, halves that differ.
"""

from __future__ import annotations

import dataclasses
import logging

import torch

from ..sd.patch import EDIT_KEY, _with_transformer_option
from ..sd.shared import _halves

_said: set[str] = set()


def say_once(reason: str) -> None:
    if reason not in _said:
        _said.add(reason)
        logging.warning("h-space Asyrp sampler (flow): %s; computing the blocks before h for both predictions", reason)


def _rows(value, index: torch.Tensor, rows: int):
    """``value`` with its batch rows taken at ``index`` (tensors whose first axis is the batch; tuples, lists
    and dataclasses such as Flux.2's global modulations, recursively); anything else as it is."""
    if isinstance(value, torch.Tensor):
        return value[index.to(value.device)] if value.ndim and value.shape[0] == rows else value
    if isinstance(value, (tuple, list)):
        return type(value)(_rows(v, index, rows) for v in value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.replace(value, **{f.name: _rows(getattr(value, f.name), index, rows)
                                             for f in dataclasses.fields(value)})
    return value


class SharedBlock:
    """A joint block before h, computed on the first half of every CFG chunk and repeated to the second."""

    def __init__(self, index: int):
        self.index = index

    def __call__(self, args, extra):
        to = args["transformer_options"]
        img = args["img"]
        rows = img.shape[0]
        chunks = len(to.get("cond_or_uncond", [])) or 1
        reason = None
        if rows % (2 * chunks):
            reason = f"the batch of {rows} rows is not two halves in each of {chunks} chunks"
        elif args.get("attn_mask") is not None:
            reason = "an attention mask is set"
        if reason is None:
            first, second, expand = (i.to(img.device) for i in _halves(chunks, rows))
            if self.index == 0 and not (torch.equal(img[first], img[second]) and (
                    args.get("txt") is None or torch.equal(args["txt"][first], args["txt"][second]))):
                reason = "the two halves of the batch are not the same rows"
        if reason is not None:
            say_once(reason)
            return extra["original_block"](args)
        half = {k: _rows(v, first, rows) for k, v in args.items() if k != "transformer_options"}
        out = extra["original_block"]({**half, "transformer_options": to})
        return {k: v[expand] if isinstance(v, torch.Tensor) and v.shape[0] == len(first) else v
                for k, v in out.items()}


def pair_function(model, extra_args: dict, options: dict, scales: torch.Tensor, first_block: int):
    """pair(x, sigma) -> (D, D_edit): one guider call on [x; x], the second half with the edit strengths
    (``scales``: one per row of x), the joint blocks before ``first_block`` once."""
    pair_options = _with_transformer_option(options, EDIT_KEY, torch.cat([torch.zeros_like(scales), scales]))
    to = pair_options["transformer_options"]
    replaced = dict(to.get("patches_replace", {}).get("dit", {}))
    taken = [j for j in range(first_block) if ("double_block", j) in replaced]
    if taken:
        say_once(f"another patch replaces joint block(s) {taken}")
    else:
        replaced.update({("double_block", j): SharedBlock(j) for j in range(first_block)})
        to["patches_replace"] = {**to.get("patches_replace", {}), "dit": replaced}
    args = {**extra_args, "model_options": pair_options}

    def pair(x, sigma):
        n = x.shape[0]
        d = model(torch.cat([x, x]), sigma * x.new_ones([2 * n]), **args)
        return d[:n], d[n:]
    return pair
