"""Procedural HDR scenes for demos and tests (no models, no files).

``sky_panorama`` is a simple physically motivated outdoor environment: a sky whose radiance rises towards the
horizon, a sun disk about 2^14 times brighter than the sky around it with a glow, and a textured ground lit by
sun and sky, with a covered patch in deep shade. It spans roughly 16 stops, like a real daylight HDRI, so brackets of it exercise every part of
the merge (saturated sun, dark ground detail).
"""

from __future__ import annotations

import math

import torch

from latenthdr import panorama
from latenthdr.errors import InputError


def sky_panorama(height: int = 256, width: int = 512, sun_elevation_deg: float = 25.0, sun_yaw_deg: float = 30.0,
                 seed: int = 0) -> torch.Tensor:
    """Linear RGB equirectangular panorama [3, height, width] (float32, relative radiance, row 0 = zenith)."""
    if height < 4 or width != 2 * height:
        raise InputError("height/width", f"got {height}x{width}; accepted: width = 2 * height, height >= 4")
    d = panorama.direction_grid(height, width, dtype=torch.float64)  # [H, W, 3], Y up
    el, yaw = math.radians(sun_elevation_deg), math.radians(sun_yaw_deg)
    sun = torch.tensor([-math.sin(yaw) * math.cos(el), math.sin(el), math.cos(yaw) * math.cos(el)], dtype=d.dtype)
    cos_sun = (d @ sun).clamp(-1, 1)
    up = d[..., 1]
    sky_blue = torch.tensor([0.30, 0.45, 0.85], dtype=d.dtype)
    horizon = torch.tensor([0.85, 0.85, 0.80], dtype=d.dtype)
    t = up.clamp(0, 1).sqrt().unsqueeze(-1)
    sky = (1 - t) * horizon + t * sky_blue  # brighter, whiter towards the horizon
    glow = 4.0 * torch.exp((cos_sun - 1) * 40).unsqueeze(-1)  # aureole around the sun
    disk = (cos_sun > math.cos(math.radians(1.5))).unsqueeze(-1) * 2.0**14
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(1, 1, height // 8, width // 8, generator=g, dtype=d.dtype)
    coarse = torch.nn.functional.pad(coarse, (1, 1, 0, 0), mode="circular")  # periodic in yaw: no seam at +-180
    noise = torch.nn.functional.interpolate(coarse, size=(height, width + 16), mode="bilinear",
                                            align_corners=False)[0, 0, :, 8:-8]
    cell = width // 32  # 32 cells around: the pattern is periodic, and the seam falls mid-cell, not on an edge
    checker = (((torch.arange(width) + cell // 2) // cell).view(1, -1) + (torch.arange(height) // (height // 16)).view(-1, 1)) % 2
    albedo = (0.08 + 0.15 * noise + 0.1 * checker).unsqueeze(-1) * torch.tensor([0.9, 0.75, 0.55], dtype=d.dtype)
    ground = albedo * (math.pi * 0.15 * 2.0**14 * (1.5 / 180 * math.pi) ** 2 * math.sin(el) + 0.8)
    in_shade = (d[..., 0] > 0.5) & (d[..., 2] < 0)  # a covered patch of ground: lit by a little sky only
    ground = torch.where(in_shade.unsqueeze(-1), ground * 0.06, ground)
    radiance = torch.where((up >= 0).unsqueeze(-1), sky + glow + disk, ground)
    return radiance.permute(2, 0, 1).float().contiguous()
