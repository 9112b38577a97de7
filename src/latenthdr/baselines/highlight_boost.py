"""Highlight boost: HDRCNN's blend with a size-driven expansion in place of its network.

Reference for the blend: G. Eilertsen, J. Kronander, G. Denes, R. K. Mantiuk, J. Unger, "HDR image reconstruction
from a single exposure using deep CNNs", ACM Transactions on Graphics 36(6) (Proc. SIGGRAPH Asia 2017), article
178, doi:10.1145/3130800.3130816, Sec. 3.1 (Eqs. 1-2):
    H = (1 - alpha) f^-1(D) + alpha exp(y_hat),   alpha = max(0, max_c(D) - tau) / (1 - tau),   tau = 0.95
with D the display-encoded input, f^-1 its inverse camera curve (here the input's display curve) and exp(y_hat)
the network's prediction in the saturated pixels. This baseline keeps the blend and replaces exp(y_hat) by the
linearised input raised by E stops, a smooth function of the saturated region's size and brightness:
1. regions R: 8-connected pixels with alpha > 0 (those the blend touches);
2. a_R = sum of alpha over R / (H W): its area as a fraction of the image, each pixel counted by how far into
   saturation it is (size and brightness in one number; resolution-independent);
3. b_R = min(b_max, beta log2(1 + a_R / a_0)) stops: grows with log area, then saturates;
4. E = G_sigma * B, B = b_R on R (0 elsewhere), a Gaussian blur of sigma = sigma_rel sqrt(H W) pixels, so the
   boost is smooth, lower at a region's rim than inside it, and a tiny region gets little of it.
So exp(y_hat) := f^-1(D) 2^E and H = f^-1(D) (1 - alpha + alpha 2^E): pixels with max_c(D) <= tau are unchanged.
Why size: on the training panoramas (../shared/data/hdri/train, first 30, 3% clipped, max side 512) the true
excess over the clip level of 8-connected clipped regions grows with their area: median 0.02 stops for 1-px
regions, 0.5 for 8-32 px, about 1 for 32-512 px (means, pulled up by suns, 0.2 to 1.4), and is lower again for
the largest (skies). beta, a_0, b_max and sigma_rel were chosen on those 30 panoramas at 3% and 5% clipping, never
on val, by a small grid search (beta 0.25-1, a_0 1e-5-1e-3, b_max 0.25-4 stops, sigma_rel 0.002-0.01) for the
mean PU21-PSNR gain over the linearised input: it is flat for b_max 0.25 to 0.5 stops (+0.43 to
+0.47 dB, clipped RMS error in stops 0.93x to 0.89x the input's), and falls for larger caps (b_max 1: -0.2 dB;
2: -2.3 dB), since most clipped pixels are barely over the clip level and PU21 punishes every overshoot, while
beta, a_0 and sigma_rel hardly matter. Every setting loses badly on some image (b_max 0.5: -12 dB on the worst),
where the true highlight is flat at the clip level: a boost with no view of the scene cannot tell.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from latenthdr import response
from latenthdr.baselines.common import check_ldr, per_image
from latenthdr.errors import InputError

TAU = 0.95  # tau: HDRCNN's blend threshold (Eilertsen et al. 2017, Eq. 2)
BETA_STOPS = 0.5  # beta: boost per doubling of the region's (alpha-weighted) area, stops
AREA_0 = 1e-4  # a_0: area fraction at which the boost reaches beta stops (about 13 px at 512 x 256)
MAX_BOOST_STOPS = 0.5  # b_max: the largest boost, stops
SIGMA_REL = 0.002  # sigma_rel: blur sigma over sqrt(H W) (about 0.7 px at 512 x 256)


def blend_weight_Eilertsen2017(ldr: torch.Tensor, tau: float = TAU) -> torch.Tensor:
    """alpha = max(0, max_c(D) - tau) / (1 - tau) (Eilertsen et al. 2017, Eq. 2). ldr: display [..., 3, H, W]
    in [0, 1]. Returns [..., H, W] in [0, 1], in ldr's dtype."""
    if not 0.0 <= tau < 1.0:
        raise InputError("tau", f"got {tau}; accepted: 0 <= tau < 1")
    return ((ldr.amax(dim=-3) - tau) / (1.0 - tau)).clamp(0.0, 1.0)


def region_boost_stops(alpha: torch.Tensor, beta: float = BETA_STOPS, area_0: float = AREA_0,
                       max_boost: float = MAX_BOOST_STOPS) -> torch.Tensor:
    """B: b_R = min(b_max, beta log2(1 + a_R / a_0)) on each 8-connected region R of alpha > 0, 0 elsewhere.
    alpha: [H, W]. Returns float64 [H, W] stops."""
    from scipy import ndimage

    a = alpha.double().cpu().numpy()
    labels, n = ndimage.label(a > 0, structure=np.ones((3, 3)))
    if n == 0:
        return torch.zeros_like(alpha, dtype=torch.float64)
    area = ndimage.sum_labels(a, labels, np.arange(1, n + 1)) / a.size  # a_R, fraction of the image
    b = np.concatenate([[0.0], np.minimum(max_boost, beta * np.log2(1.0 + area / area_0))])
    return torch.from_numpy(b[labels]).to(alpha.device)


def gaussian_blur(x: torch.Tensor, sigma_px: float) -> torch.Tensor:
    """Separable Gaussian blur of [H, W] (radius 3 sigma, edges reflected)."""
    radius = min(max(1, math.ceil(3 * sigma_px)), min(x.shape) - 1)
    if radius < 1:
        return x
    r = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    g = torch.exp(-0.5 * (r / sigma_px) ** 2)
    g = g / g.sum()
    y = F.pad(x[None, None], (radius, radius, radius, radius), mode="reflect")
    y = F.conv2d(F.conv2d(y, g.view(1, 1, 1, -1)), g.view(1, 1, -1, 1))
    return y[0, 0]


def boost_Eilertsen2017_style(ldr: torch.Tensor, *, curve: response.DisplayCurve = "gamma2.2", tau: float = TAU,
                              beta: float = BETA_STOPS, area_0: float = AREA_0, max_boost: float = MAX_BOOST_STOPS,
                              sigma_rel: float = SIGMA_REL) -> torch.Tensor:
    """ldr: display-encoded ``[..., 3, H, W]`` in [0, 1] -> linear float32 ``[..., 3, H, W]``, >= 0, 1.0 = the
    input's clip level; identical to the linearised input wherever max_c(D) <= tau."""
    if not (beta >= 0 and area_0 > 0 and max_boost >= 0 and sigma_rel > 0):
        raise InputError("beta/area_0/max_boost/sigma_rel", f"got {beta}, {area_0}, {max_boost}, {sigma_rel}; "
                                                            "accepted: beta, max_boost >= 0; area_0, sigma_rel > 0")
    ldr = check_ldr(ldr, curve)

    def one(image: torch.Tensor) -> torch.Tensor:
        linear = response.decode(image.double(), curve)  # f^-1(D)
        alpha = blend_weight_Eilertsen2017(image.double(), tau)  # [H, W]
        if not alpha.any():
            return linear.float()
        E = gaussian_blur(region_boost_stops(alpha, beta, area_0, max_boost), sigma_rel * math.sqrt(alpha.numel()))
        return (linear * (1.0 - alpha + alpha * torch.exp2(E))[None]).float()

    return per_image(one, ldr)
