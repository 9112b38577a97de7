"""Linear (gamma) expansion of Akyuz et al. 2007, a classic inverse tone-mapping operator.

Reference: A. O. Akyuz, R. Fleming, B. E. Riecke, E. Reinhard, H. H. Buelthoff, "Do HDR displays support LDR
content? A psychophysical evaluation", ACM Transactions on Graphics 26(3) (Proc. SIGGRAPH 2007).

The operator (the paper's expansion equation):
    L = k ((Y - Y_min) / (Y_max - Y_min))^gamma
with Y the pixel's luminance in the LDR image, Y_min / Y_max its extremes over the image, k the HDR display's peak
luminance (3000 cd/m2, the Brightside DR37-P of the study) and gamma the non-linearity. The study's finding is that
a plain linear scaling (gamma = 1) shows LDR content on an HDR display as well as or better than the true HDR in
many cases, so gamma = 1 is the default. As in the reference re-implementation (Banterle's HDR Toolbox, ``AkyuzEO``,
which first removes the display gamma), Y is the luminance of the *linearised* input and each pixel keeps its
chromaticity (rgb * L / Y). The result is then put back on the input's scale (``common.match_input_scale``): with
gamma = 1 this is the linearised input up to the black offset Y_min, which is the point of the baseline: a global
expansion adds no information where the input clipped. The offset darkens the darkest pixels towards 0, which
PU21 punishes (up to -22 dB against the linearised input on a val photograph at 512 px; `latenthdr bench l2h`,
docs/RESULTS.md).
"""

from __future__ import annotations

import torch

from latenthdr import response
from latenthdr.baselines.common import change_luminance, check_ldr, match_input_scale, per_image
from latenthdr.errors import InputError

K_NITS = 3000.0  # k: peak luminance of the study's HDR display (Brightside DR37-P), cd/m2
GAMMA = 1.0  # gamma: linear scaling, the study's recommendation


def luminance_Akyuz2007(Y: torch.Tensor, k: float = K_NITS, gamma: float = GAMMA) -> torch.Tensor:
    """Akyuz et al. 2007 expansion of luminance: L = k ((Y - Y_min) / (Y_max - Y_min))^gamma, in cd/m2.

    Y: LDR luminance, any shape, >= 0 (its min and max are taken over all of it). A flat image (Y_max = Y_min)
    maps to k everywhere. Computed in float64; returns float64."""
    if not (k > 0 and gamma > 0):
        raise InputError("k/gamma", f"got k={k}, gamma={gamma}; accepted: both > 0")
    Y = Y.double()
    Y_min, Y_max = Y.min(), Y.max()
    if Y_max <= Y_min:
        return torch.full_like(Y, k)
    return k * ((Y - Y_min) / (Y_max - Y_min)).clamp(0.0, 1.0) ** gamma


def expand_Akyuz2007(ldr: torch.Tensor, *, curve: response.DisplayCurve = "gamma2.2", k: float = K_NITS,
                     gamma: float = GAMMA) -> torch.Tensor:
    """ldr: display-encoded ``[..., 3, H, W]`` in [0, 1] -> linear float32 ``[..., 3, H, W]``, >= 0, on the
    input's scale (1.0 = its clip level). Y_min / Y_max are per image."""
    ldr = check_ldr(ldr, curve)

    def one(image: torch.Tensor) -> torch.Tensor:
        rgb = response.decode(image.double(), curve)
        Y = response.luminance(rgb, channel_axis=-3)
        return match_input_scale(change_luminance(rgb, Y, luminance_Akyuz2007(Y, k, gamma)), image, curve)

    return per_image(one, ldr)
