"""The floor: the linearised input, no expansion (DESIGN.md "Evaluation": "the linearised input").

The input's display curve inverted, x = decode(y) (METHOD.md "Bracket frame" read backwards; for the paper's
frames x = y^2.2). Clipped pixels stay at the clip level 1.0; every other 8-bit pixel is within half a code value
of the truth. Any expansion method must beat this where the input clips without losing it elsewhere.
The l2h benchmark's ``input`` method is this function (``bench.l2h.linearised_input`` calls it).
"""

from __future__ import annotations

import torch

from latenthdr import response
from latenthdr.baselines.common import check_ldr


def linearised_input(ldr: torch.Tensor, *, curve: response.DisplayCurve = "gamma2.2") -> torch.Tensor:
    """ldr: display-encoded ``[..., 3, H, W]`` in [0, 1] -> linear float32 ``[..., 3, H, W]`` in [0, 1]."""
    return response.decode(check_ldr(ldr, curve), curve).float()
