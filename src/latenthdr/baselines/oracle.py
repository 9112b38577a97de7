"""The ceiling: the true bracket of the reference, merged (DESIGN.md "Evaluation": "the oracle").

The reference HDR H is exposed at every EV of the ladder, clipped and quantised to 8 bits as the paper's frames
(``exposure.synthesize_bracket``: y_e = Q8(clip(H 2^e, 0, 1)^(1/2.2)), METHOD.md "Bracket frame") and merged with
METHOD.md Eq. 9 (``merge.merge_bracket``). It is what an exposure head that predicted every frame perfectly would
give: the ceiling for any head. It needs the reference, so it is not a method one can run on a photograph.
The l2h benchmark's ``oracle`` method is this function (``bench.l2h.oracle`` calls it).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from latenthdr import exposure, merge
from latenthdr.errors import InputError


def true_bracket(reference: torch.Tensor, evs: Sequence[float]) -> torch.Tensor:
    """The reference's true 8-bit gamma-2.2 bracket [..., K, 3, H, W] (reference: linear [..., 3, H, W])."""
    return exposure.synthesize_bracket(reference, evs)


def oracle(reference: torch.Tensor, evs: Sequence[float]) -> torch.Tensor:
    """reference: linear ``[..., 3, H, W]``, already anchored so that 1.0 is the EV-0 clip level; evs: the ladder,
    stops (at least one frame). Returns the merged HDR, float32 ``[..., 3, H, W]``, > 0."""
    if reference is None or evs is None or len(evs) == 0:
        raise InputError("reference/evs", "the oracle needs the reference HDR and a non-empty EV ladder")
    return merge.merge_bracket(true_bracket(reference, evs), evs).hdr
