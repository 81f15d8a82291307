"""An attribute probe for the procedural faces: a small CNN that reads every attribute back.

``AttributeProbe`` maps images [N, 3, 32, 32] in [-1, 1] to the seven continuous attributes of
``faces.CONTINUOUS`` (hues as (cos, sin) vectors), the two binary attributes, and a ``face`` logit
that says whether the image is a cartoon face of this world at all. It is the measuring instrument
for edits of the demo DDPM, so it is trained on degraded renders (2 px shifts, mild noise, blur,
brightness and contrast jitter; see ``augment``) and evaluated on clean, DDPM-like degraded and
shifted held-out faces (``evaluate_probe``).

Face / not-a-face: positives are rendered faces; negatives are built procedurally and
deterministically from a seeded ``torch.Generator`` in six kinds (``NEGATIVE_KINDS``):

- ``noise``: Gaussian noise with random mean and std (0.3 to 1.0), clamped to [-1, 1];
- ``blobs``: smooth random colour fields (random 2x2 to 8x8 grids upsampled bicubically) plus a
  random linear gradient;
- ``shuffled``: a face whose 16 8x8 patches are randomly permuted (never the identity);
- ``noisy``: a face mixed with Gaussian noise, 35 to 60 % face;
- ``ellipses``: a face-like background gradient with a hair-coloured and a skin-coloured ellipse
  near the centre and 0 to 4 small ellipses of random colours: a head without facial features;
- ``upside_down``: a face rotated by 180 degrees (this world tilts heads by 20 degrees at most).

Negatives take ``NEGATIVE_FRACTION`` of every training batch; attribute losses use faces only.

Training data is effectively unlimited (unlike the DDPM's fixed data set): faces come in chunks of
``ProbeSettings.chunk`` drawn by ``sample_faces`` with a seed derived from the training seed and the
chunk index, rendered into a uint8 pool that gains one new chunk every ``refresh_every`` steps
(replacing the oldest once the pool is full), so rendering costs a fixed fraction of the training
time. Held-out faces use seeds below ``TRAIN_SEED_BASE``, which training never draws.
"""

from __future__ import annotations

from .evaluation import evaluate_probe, r2
from .network import DEFAULT_WEIGHTS, FORMAT, IMAGE_SIZE, AttributeProbe, load_probe
from .training import ProbeSettings, train_probe

__all__ = ["evaluate_probe", "r2", "DEFAULT_WEIGHTS", "FORMAT", "IMAGE_SIZE", "AttributeProbe", "load_probe",
           "ProbeSettings", "train_probe"]
