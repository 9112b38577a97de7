"""Physiological inverse tone mapping of Huo et al. 2014, a classic local inverse tone-mapping operator.

Reference: Y. Huo, F. Yang, L. Dong, V. Brost, "Physiological inverse tone mapping based on retina response",
The Visual Computer 30(5), 2014 (online 2013).

The model: the LDR image is read as the retina's response to the HDR scene, a Naka-Rushton curve
R / R_max = L^n / (L^n + sigma^n), with local adaptation: the semi-saturation term depends on the pixel's
surround. Inverted, the expanded luminance is
    L_h = (L_l / L_l,max) (L_s,h^n + sigma^n)^(1/n),   sigma = L_max sigma_l,   L_s,h = L_max L_s,l
with L_l the (linearised) LDR luminance, L_l,max its maximum, sigma_l its log-mean (geometric mean, offset 1e-6),
L_s,l the surround: L_l after two passes of a bilateral filter (spatial / range sigma 16 px / 0.3, then
10 px / 0.1, on luminance in [0, 1]), L_max the display peak (3000 cd/m2) and n = 0.86 (the paper's values). The
paper's text was not available to us: the form and the parameters above are those of the reference
re-implementation, Banterle's HDR Toolbox ``HuoPhysEO`` (whose ``bilateralFilter`` is Chen, Paris & Durand's
bilateral grid, reproduced in ``bilateral_grid``). Colour: each pixel keeps its chromaticity. The result is put
back on the input's scale (``common.match_input_scale``). Bright surrounds are expanded more than dark ones, so
the range grows, but clipped pixels stay flat: the operator has no model of what clipping removed.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from latenthdr import response
from latenthdr.baselines.common import change_luminance, check_ldr, match_input_scale, per_image
from latenthdr.errors import InputError

L_MAX_NITS = 3000.0  # L_max: display peak, cd/m2 (the paper's value, as in HDR Toolbox)
N = 0.86  # n: the Naka-Rushton exponent (the paper's value)
SURROUND_PASSES = ((16.0, 0.3), (10.0, 0.1))  # (spatial sigma px, range sigma) of the two bilateral passes
LOG_MEAN_OFFSET = 1e-6  # HDR Toolbox logMean: exp(mean(log(L + 1e-6)))


def bilateral_grid(data: torch.Tensor, sigma_spatial_px: float, sigma_range: float,
                   edge_min: float = 0.0, edge_max: float = 1.0) -> torch.Tensor:
    """Bilateral filter of a single-channel image [H, W] with values in [edge_min, edge_max], by the bilateral grid
    (Chen, Paris & Durand, "Real-time edge-aware image processing with the bilateral grid", SIGGRAPH 2007; the
    approximation of Paris & Durand 2006): nearest-cell splat on a grid sampled at one sigma in space and range,
    a 3x3x3 Gaussian blur (sigma of one cell), normalisation by the blurred counts, trilinear slicing. As Jiawen
    Chen's reference ``bilateralFilter.m`` (padding 3 cells). Float64 inside; returns [H, W] in data's dtype."""
    if not (sigma_spatial_px > 0 and sigma_range > 0 and edge_max > edge_min):
        raise InputError("sigma_spatial_px/sigma_range", f"got {sigma_spatial_px}, {sigma_range}; accepted: > 0")
    x = data.double().clamp(edge_min, edge_max)
    h, w = x.shape
    pad = 3  # floor(2 * derived sigma) + 1 cells, derived sigma = 1
    gh, gw = int((h - 1) / sigma_spatial_px) + 1 + 2 * pad, int((w - 1) / sigma_spatial_px) + 1 + 2 * pad
    gd = int((edge_max - edge_min) / sigma_range) + 1 + 2 * pad
    ii = torch.arange(h, dtype=torch.float64, device=x.device)[:, None].expand(h, w) / sigma_spatial_px + pad
    jj = torch.arange(w, dtype=torch.float64, device=x.device)[None, :].expand(h, w) / sigma_spatial_px + pad
    zz = (x - edge_min) / sigma_range + pad
    cell = (ii.round().long() * gw + jj.round().long()) * gd + zz.round().long()  # [H, W] flat grid index
    grid = torch.zeros(2, gh * gw * gd, dtype=torch.float64, device=x.device)
    grid[0].index_add_(0, cell.flatten(), x.flatten())
    grid[1].index_add_(0, cell.flatten(), torch.ones_like(x).flatten())
    r = torch.arange(-1.0, 2.0, dtype=torch.float64, device=x.device)
    kernel = torch.exp(-0.5 * (r[:, None, None] ** 2 + r[None, :, None] ** 2 + r[None, None, :] ** 2))
    blurred = F.conv3d(grid.view(2, 1, gh, gw, gd), kernel[None, None], padding=1)[:, 0]  # [2, gh, gw, gd]
    values = torch.where(blurred[1] > 0, blurred[0] / blurred[1].clamp_min(1e-300), torch.zeros_like(blurred[0]))
    # grid_sample wants [N, C, D, H, W] and (x, y, z) = (last, middle, first) axes in [-1, 1] (align_corners)
    volume = values.permute(2, 0, 1)[None, None]  # [1, 1, gd, gh, gw]
    coords = torch.stack([2 * jj / (gw - 1) - 1, 2 * ii / (gh - 1) - 1, 2 * zz / (gd - 1) - 1], dim=-1)
    out = F.grid_sample(volume, coords[None, None], mode="bilinear", align_corners=True)  # [1, 1, 1, H, W]
    return out[0, 0, 0].to(data.dtype)


def surround_Huo2014(L: torch.Tensor) -> torch.Tensor:
    """L_s,l: the surround luminance, two bilateral passes (``SURROUND_PASSES``) of L [H, W] in [0, 1]."""
    for sigma_spatial_px, sigma_range in SURROUND_PASSES:
        L = bilateral_grid(L, sigma_spatial_px, sigma_range)
    return L


def luminance_Huo2014(L_l: torch.Tensor, L_s_l: torch.Tensor, L_max: float = L_MAX_NITS,
                      n: float = N) -> torch.Tensor:
    """L_h = (L_l / L_l,max) (L_s,h^n + sigma^n)^(1/n) with sigma = L_max * logmean(L_l), L_s,h = L_max L_s,l.

    L_l: linear LDR luminance [H, W] in [0, 1]; L_s_l: its surround (``surround_Huo2014``). Returns cd/m2,
    float64 [H, W], 0 for a black image."""
    if not (L_max > 0 and n > 0):
        raise InputError("L_max/n", f"got L_max={L_max}, n={n}; accepted: both > 0")
    L_l, L_s_l = L_l.double(), L_s_l.double().clamp_min(0.0)
    L_l_max = L_l.max()
    if not L_l_max > 0:
        return torch.zeros_like(L_l)
    sigma = L_max * math.exp((L_l + LOG_MEAN_OFFSET).log().mean().item())
    return (L_l / L_l_max) * ((L_max * L_s_l) ** n + sigma**n) ** (1.0 / n)


def expand_Huo2014(ldr: torch.Tensor, *, curve: response.DisplayCurve = "gamma2.2", L_max: float = L_MAX_NITS,
                   n: float = N) -> torch.Tensor:
    """ldr: display-encoded ``[..., 3, H, W]`` in [0, 1] -> linear float32 ``[..., 3, H, W]``, >= 0, on the
    input's scale (1.0 = its clip level). Statistics (max, log-mean) are per image."""
    ldr = check_ldr(ldr, curve)

    def one(image: torch.Tensor) -> torch.Tensor:
        rgb = response.decode(image.double(), curve)
        L_l = response.luminance(rgb, channel_axis=-3)
        L_h = luminance_Huo2014(L_l, surround_Huo2014(L_l), L_max, n)
        return match_input_scale(change_luminance(rgb, L_l, L_h), image, curve)

    return per_image(one, ldr)
