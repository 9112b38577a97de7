"""ExpandNet (Marnerides et al. 2018): a single-image LDR -> HDR network, the learned baseline of DESIGN.md.

Reference: D. Marnerides, T. Bashford-Rogers, J. Hatchett, K. Debattista, "ExpandNet: A Deep Convolutional Neural
Network for High Dynamic Range Expansion from Low Dynamic Range Content", Computer Graphics Forum 37(2)
(Proc. Eurographics 2018): 37-49, doi:10.1111/cgf.13340. Official release: github.com/dmarnerides/hdr-expandnet
(BSD-3-Clause-Clear); its weights are in ../shared/weights/expandnet (456,899 parameters).

Architecture (as the paper describes it; module names match the released state dict):
- local branch: two 3x3 convolutions (64, 128 channels), stride 1: per-pixel detail;
- dilation branch: four 3x3 convolutions with dilation 2 (64 channels; the last without activation): mid-scale;
- global branch: the input resized to 256x256 (bilinear), six 3x3 stride-2 convolutions (64 channels,
  256 -> 4 px) and a 4x4 convolution to one 64-vector, copied to every pixel: image-wide context;
- fusion: the 128 + 64 + 64 features concatenated, a 1x1 convolution to 64 channels, a 1x1 convolution to 3 and
  a sigmoid. Every hidden convolution is followed by SELU (Klambauer et al. 2017); there is no normalisation layer.
Value ranges (as the official ``expand.py``): input: the display-encoded LDR min-max normalised to [0, 1] over the
whole image (``map_range``: no linearisation, the network learned the inverse curve); output: sigmoid in (0, 1),
min-max normalised to [0, 1] (relative linear HDR). ``expand_Marnerides2018`` then puts it on the input's scale
(``common.match_input_scale``). Large images are run in tiles with a halo of the local and dilation branches'
receptive radius (8 px), which gives exactly the whole-image result (the official ``predict`` pads every tile with
zeros instead, which differs at the tiles' image borders).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from latenthdr import response
from latenthdr.baselines.common import check_ldr, match_input_scale
from latenthdr.errors import InputError

WEIGHTS_FILE = "weights.pth"


@dataclass(frozen=True)
class ExpandNetConfig:
    """The released network's shape (Marnerides et al. 2018)."""

    width: int = 64  # channels of the dilation and global branches and of the fusion's hidden layer
    local_width: int = 128  # the local branch's output channels
    dilation: int = 2  # of the dilation branch's four 3x3 convolutions
    global_size: int = 256  # the global branch sees the whole image resized to this square (px)
    global_layers: int = 6  # stride-2 convolutions: 256 px -> 4 px, then a 4x4 convolution to 1 px
    halo_px: int = 8  # receptive radius of the local (2) and dilation (4 * 2) branches: the tiles' overlap


def _conv_selu(c_in: int, c_out: int, kernel: int, stride: int = 1, padding: int = 0, dilation: int = 1):
    return nn.Sequential(nn.Conv2d(c_in, c_out, kernel, stride, padding, dilation), nn.SELU(inplace=True))


class ExpandNet(nn.Module):
    """x: [B, 3, H, W] in [0, 1] (min-max normalised display LDR) -> [B, 3, H, W] in (0, 1), relative linear."""

    def __init__(self, config: ExpandNetConfig = ExpandNetConfig()):
        super().__init__()
        self.config = c = config
        d = c.dilation
        self.local_net = nn.Sequential(_conv_selu(3, c.width, 3, 1, 1), _conv_selu(c.width, c.local_width, 3, 1, 1))
        self.mid_net = nn.Sequential(_conv_selu(3, c.width, 3, 1, d, d), _conv_selu(c.width, c.width, 3, 1, d, d),
                                     _conv_selu(c.width, c.width, 3, 1, d, d), nn.Conv2d(c.width, c.width, 3, 1, d, d))
        self.glob_net = nn.Sequential(_conv_selu(3, c.width, 3, 2, 1),
                                      *[_conv_selu(c.width, c.width, 3, 2, 1) for _ in range(c.global_layers - 1)],
                                      nn.Conv2d(c.width, c.width, c.global_size >> c.global_layers))
        self.end_net = nn.Sequential(_conv_selu(c.local_width + 2 * c.width, c.width, 1),
                                     nn.Conv2d(c.width, 3, 1), nn.Sigmoid())

    def global_features(self, x: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] -> [B, width, 1, 1]: the global branch on the whole image resized to 256 x 256."""
        size = (self.config.global_size,) * 2
        return self.glob_net(F.interpolate(x, size, mode="bilinear", align_corners=False))

    def fuse(self, x: torch.Tensor, glob: torch.Tensor) -> torch.Tensor:
        """Local and dilation branches on x [B, 3, h, w], fused with the global features [B, width, 1, 1]."""
        b, _, h, w = x.shape
        features = torch.cat([self.local_net(x), self.mid_net(x), glob.expand(b, -1, h, w)], dim=1)  # [B, 256, h, w]
        return self.end_net(features)

    def forward(self, x: torch.Tensor, tile_px: int | None = None) -> torch.Tensor:
        """The whole image at once, or in ``tile_px`` tiles (with an exact halo) to bound memory."""
        glob = self.global_features(x)
        h, w = x.shape[-2:]
        if tile_px is None or (h <= tile_px and w <= tile_px):
            return self.fuse(x, glob)
        halo, out = self.config.halo_px, x.new_empty(x.shape)
        for top in range(0, h, tile_px):
            for left in range(0, w, tile_px):
                t0, l0 = max(0, top - halo), max(0, left - halo)
                t1, l1 = min(h, top + tile_px + halo), min(w, left + tile_px + halo)
                y = self.fuse(x[..., t0:t1, l0:l1], glob)
                out[..., top:top + tile_px, left:left + tile_px] = y[..., top - t0:top - t0 + tile_px,
                                                                      left - l0:left - l0 + tile_px]
        return out


def find_expandnet_weights(path: str | os.PathLike | None = None) -> Path:
    """The released ``weights.pth``: ``path``, else ``$LATENTHDR_EXPANDNET``, else
    ``$LATENTHDR_SHARED/weights/expandnet/weights.pth``, else ``../shared/weights/expandnet/weights.pth`` beside the
    repository. Raises InputError naming the file looked for when it is absent."""
    if path is None and os.environ.get("LATENTHDR_EXPANDNET"):
        path = os.environ["LATENTHDR_EXPANDNET"]
    if path is None:
        shared = os.environ.get("LATENTHDR_SHARED") or Path(__file__).resolve().parents[4] / "shared"
        path = Path(shared) / "weights" / "expandnet" / WEIGHTS_FILE
    path = Path(path)
    if not path.is_file():
        raise InputError("weights", f"ExpandNet weights not found at {path} (pass a path or set LATENTHDR_EXPANDNET)")
    return path


_LOADED: dict[tuple, ExpandNet] = {}


def load_expandnet(path: str | os.PathLike | None = None, device="cpu") -> ExpandNet:
    """ExpandNet with the released weights, loaded strictly (``weights_only=True``), float32, eval mode; cached per
    (file, device)."""
    file = find_expandnet_weights(path)
    key = (str(file.resolve()), file.stat().st_mtime_ns, str(torch.device(device)))
    if key not in _LOADED:
        net = ExpandNet()
        net.load_state_dict(torch.load(file, map_location="cpu", weights_only=True), strict=True)
        _LOADED[key] = net.to(device=device, dtype=torch.float32).eval()
    return _LOADED[key]


def map_range(x: torch.Tensor) -> torch.Tensor:
    """Min-max normalisation of each image of x [B, 3, H, W] to [0, 1] (the official ``map_range``; a flat
    image maps to 0)."""
    lo = x.amin(dim=(1, 2, 3), keepdim=True)
    hi = x.amax(dim=(1, 2, 3), keepdim=True)
    return (x - lo) / (hi - lo).clamp_min(1e-12)


def expand_Marnerides2018(ldr: torch.Tensor, *, curve: response.DisplayCurve = "gamma2.2", weights=None,
                          tile_px: int | None = 512) -> torch.Tensor:
    """ldr: display-encoded ``[..., 3, H, W]`` in [0, 1] -> linear float32 ``[..., 3, H, W]``, >= 0, on the
    input's scale (1.0 = its clip level). ``curve`` is only used for that scale match: the network reads display
    values as they are. Runs on ldr's device."""
    ldr = check_ldr(ldr, curve)
    net = load_expandnet(weights, ldr.device)
    flat = ldr.reshape(-1, *ldr.shape[-3:])
    with torch.inference_mode():
        hdr = map_range(torch.cat([net(map_range(x[None]), tile_px) for x in flat]))  # [N, 3, H, W] in [0, 1]
    return torch.stack([match_input_scale(h, x, curve) for h, x in zip(hdr, flat)]).reshape(ldr.shape)
