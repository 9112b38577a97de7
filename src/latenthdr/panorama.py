"""Equirectangular (2:1 latitude-longitude) panorama helpers: yaw roll, wrap padding, perspective crops.

Conventions (DESIGN.md "Conventions"):
- A panorama is a tensor ``[..., C, H, W]`` (C = 3 for RGB; any C works), W = 2H, any value encoding
  (resampling is linear in the stored values, so use linear radiance for HDR).
- Row 0 is the zenith, row H-1 the nadir; column 0 starts at yaw -180 deg, so the seam is at +-180 deg.
  Pixel centres: yaw_j = -180 + (j + 0.5) 360 / W, elevation_i = 90 - (i + 0.5) 180 / H (degrees).
- Directions are right-handed with Y up: d(yaw, elev) = (-sin(yaw) cos(elev), sin(elev), cos(yaw) cos(elev)).
  Yaw 0 (the image centre) looks along +Z, yaw +90 along -X: yaw grows to the right as seen from inside
  the sphere. This is OpenEXR's latlong envmap layout (ImfEnvmap: longitude = atan2(x, z) = -yaw).
- Angles are in degrees; ``pitch`` is the elevation of a camera's optical axis (+90 looks at the zenith).
- Solid angles: a pixel of row i covers dOmega_i = (2 pi / W) (sin e_top - sin e_bottom) steradians
  (``solid_angles``; 4 pi in all); ``horizontal_illuminance_weights`` integrates L cos(theta) over the upper
  hemisphere.
- Orientation presets (``LAYOUTS``, ``orient``): whole-column rolls that put our directions where Blender, Unity,
  Unreal or an OpenEXR latlong reader expects them; the sources are cited in docs/renderers.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from latenthdr.errors import InputError


# ---------------------------------------------------------------------------------------------- checks
def _check_size(**sizes: int) -> None:
    for name, value in sizes.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InputError(name, f"got {value!r}; accepted: an integer >= 1 (pixels)")


def _check_angle(name: str, value: float, lo: float = -math.inf, hi: float = math.inf) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise InputError(name, f"got {value!r}; accepted: a number of degrees") from None
    if not math.isfinite(value) or not lo <= value <= hi:
        raise InputError(name, f"got {value}; accepted: finite degrees in [{lo:g}, {hi:g}]")
    return value


def _check_fov(fov_deg: float) -> float:
    fov_deg = _check_angle("fov_deg", fov_deg)
    if not 0.0 < fov_deg < 180.0:
        raise InputError("fov_deg", f"got {fov_deg}; accepted: 0 < horizontal FoV < 180 degrees")
    return fov_deg


def _check_image(x, argument: str) -> torch.Tensor:
    if not isinstance(x, torch.Tensor) or x.ndim < 3 or x.numel() == 0 or not x.is_floating_point():
        raise InputError(argument, f"expected a non-empty float tensor [..., C, H, W], got "
                                   f"{getattr(x, 'shape', type(x).__name__)} {getattr(x, 'dtype', '')}")
    return x


def is_equirectangular(height: int, width: int, tol: float = 0.01) -> bool:
    """True if ``width / height`` is 2 within relative tolerance ``tol``: |W / (2 H) - 1| <= tol."""
    _check_size(height=height, width=width)
    return abs(width / (2.0 * height) - 1.0) <= tol


# ----------------------------------------------------------------------------------------- geometry
def _direction(yaw: torch.Tensor, elev: torch.Tensor) -> torch.Tensor:
    """Unit directions [..., 3] (x, y, z) for yaw and elevation in radians (module convention)."""
    yaw, elev = torch.broadcast_tensors(yaw, elev)
    c = torch.cos(elev)
    return torch.stack([-torch.sin(yaw) * c, torch.sin(elev), torch.cos(yaw) * c], dim=-1)


def direction_grid(height: int, width: int, dtype: torch.dtype = torch.float64, device=None) -> torch.Tensor:
    """Unit view directions of the pixel centres of an equirectangular image, ``[H, W, 3]`` (x, y, z),
    Y up, yaw 0 = +Z at the image centre, yaw +90 = -X (see the module docstring)."""
    _check_size(height=height, width=width)
    yaw = (torch.arange(width, dtype=torch.float64) + 0.5) * (2 * math.pi / width) - math.pi  # [W]
    elev = math.pi / 2 - (torch.arange(height, dtype=torch.float64) + 0.5) * (math.pi / height)  # [H]
    d = _direction(yaw[None, :], elev[:, None])  # [H, W, 3]
    return d.to(dtype=dtype, device=device)


def _direction_to_pixel(d: torch.Tensor, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Continuous (column, row) coordinates, pixel centres at integers, of directions d [..., 3]
    (not necessarily unit). column in (-0.5, W - 0.5], row in [-0.5, H - 0.5]."""
    d = d / d.norm(dim=-1, keepdim=True)
    yaw = torch.atan2(-d[..., 0], d[..., 2])  # (-pi, pi]
    elev = torch.asin(d[..., 1].clamp(-1.0, 1.0))
    col = (yaw + math.pi) * (width / (2 * math.pi)) - 0.5
    row = (math.pi / 2 - elev) * (height / math.pi) - 0.5
    return col, row


def _camera_basis(yaw_deg: float, pitch_deg: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(forward, right, up) float64 unit vectors of a camera with no roll looking at (yaw, pitch)."""
    yaw, pitch = torch.tensor(math.radians(yaw_deg), dtype=torch.float64), torch.tensor(math.radians(pitch_deg),
                                                                                      dtype=torch.float64)
    forward = _direction(yaw, pitch)
    right = _direction(yaw + math.pi / 2, torch.zeros_like(pitch))
    up = _direction(yaw, pitch + math.pi / 2)
    return forward, right, up


# ------------------------------------------------------------------------------------ roll and padding
def roll_yaw(pano: torch.Tensor, yaw_deg: float) -> torch.Tensor:
    """Turn the viewer right by ``yaw_deg`` degrees: out(yaw) = pano(yaw + yaw_deg), a circular shift of
    columns by yaw_deg W / 360 (content moves left for yaw_deg > 0; the content at yaw = yaw_deg moves to
    the image centre). Exact for multiples of 360 / W, linear interpolation between columns otherwise.
    So ``equirect_to_perspective(roll_yaw(p, a), 0, ...) == equirect_to_perspective(p, a, ...)``.

    pano: ``[..., C, H, W]``. Returns the same shape and dtype.
    """
    pano = _check_image(pano, "pano")
    shift = _check_angle("yaw_deg", yaw_deg) * pano.shape[-1] / 360.0  # columns; out[j] = pano[j + shift]
    if abs(shift - round(shift)) < 1e-6:
        return torch.roll(pano, -int(round(shift)), dims=-1)
    n = math.floor(shift)
    f = shift - n
    return (1.0 - f) * torch.roll(pano, -n, dims=-1) + f * torch.roll(pano, -(n + 1), dims=-1)


def wrap_pad(x: torch.Tensor, pad: int) -> torch.Tensor:
    """Horizontal circular padding: ``[..., H, W]`` -> ``[..., H, W + 2 pad]`` whose first ``pad`` columns
    are the last ``pad`` of x and vice versa (any pad >= 0, even pad > W). Rows are untouched."""
    if not isinstance(x, torch.Tensor) or x.ndim < 2 or x.shape[-1] < 1:
        raise InputError("x", f"expected a tensor [..., H, W], got {getattr(x, 'shape', type(x).__name__)}")
    if isinstance(pad, bool) or not isinstance(pad, int) or pad < 0:
        raise InputError("pad", f"got {pad!r}; accepted: an integer >= 0 (columns)")
    width = x.shape[-1]
    index = torch.arange(-pad, width + pad, device=x.device) % width
    return x.index_select(-1, index)


def unwrap_crop(x: torch.Tensor, pad: int) -> torch.Tensor:
    """The inverse of ``wrap_pad``: drop ``pad`` columns on each side of ``[..., H, W + 2 pad]``."""
    if not isinstance(x, torch.Tensor) or x.ndim < 2:
        raise InputError("x", f"expected a tensor [..., H, W], got {getattr(x, 'shape', type(x).__name__)}")
    if isinstance(pad, bool) or not isinstance(pad, int) or pad < 0 or x.shape[-1] <= 2 * pad:
        raise InputError("pad", f"got {pad!r} for width {x.shape[-1]}; accepted: 0 <= pad < width / 2")
    return x[..., pad : x.shape[-1] - pad]


def _pad_sphere(pano: torch.Tensor) -> torch.Tensor:
    """One pixel of padding on every side that continues the sphere: columns wrap around the seam; the row
    above the zenith (below the nadir) is the first (last) row turned by 180 deg of yaw (W even), or a
    copy of it (W odd). ``[..., C, H, W]`` -> ``[..., C, H + 2, W + 2]``."""
    width = pano.shape[-1]
    shift = width // 2 if width % 2 == 0 else 0
    top = torch.roll(pano[..., :1, :], shift, dims=-1)
    bottom = torch.roll(pano[..., -1:, :], shift, dims=-1)
    return wrap_pad(torch.cat([top, pano, bottom], dim=-2), 1)


def _work_dtype(x: torch.Tensor) -> torch.dtype:
    return x.dtype if x.dtype in (torch.float32, torch.float64) else torch.float32


# ------------------------------------------------------------------------------------ perspective crops
def equirect_to_perspective(pano: torch.Tensor, yaw_deg: float, pitch_deg: float, fov_deg: float,
                            out_height: int, out_width: int) -> torch.Tensor:
    """A pinhole view of a panorama: a camera with no roll looking at (yaw_deg, pitch_deg), horizontal
    field of view ``fov_deg`` in (0, 180), square pixels. Bilinear sampling on a sphere-padded panorama,
    so crops across the +-180 deg seam (and over the poles) are continuous.

    pano: ``[..., C, H, W]`` float (linear radiance for HDR). Returns ``[..., C, out_height, out_width]``
    in the dtype of pano; row 0 is the top of the view, column 0 its left.
    """
    pano = _check_image(pano, "pano")
    yaw_deg, pitch_deg = _check_angle("yaw_deg", yaw_deg), _check_angle("pitch_deg", pitch_deg, -90.0, 90.0)
    half = math.tan(math.radians(_check_fov(fov_deg)) / 2)  # image-plane half-width at unit focal length
    _check_size(out_height=out_height, out_width=out_width)
    forward, right, up = _camera_basis(yaw_deg, pitch_deg)
    a = ((torch.arange(out_width, dtype=torch.float64) + 0.5) / out_width * 2 - 1) * half  # [w]
    b = (1 - (torch.arange(out_height, dtype=torch.float64) + 0.5) / out_height * 2) * half * out_height / out_width
    rays = forward + a[None, :, None] * right + b[:, None, None] * up  # [h, w, 3]
    height, width = pano.shape[-2:]
    col, row = _direction_to_pixel(rays, height, width)
    # padded image has one extra pixel per side; grid_sample's align_corners=False maps p -> (p + 0.5) / size
    grid = torch.stack([(col + 1.5) / (width + 2), (row + 1.5) / (height + 2)], dim=-1) * 2 - 1  # [h, w, 2]
    return _sample(_pad_sphere(pano), grid)


def _sample(img: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """Bilinear ``grid_sample`` of ``[..., C, H, W]`` at a normalised grid [h, w, 2] (x, y in [-1, 1])."""
    lead, dtype = img.shape[:-3], _work_dtype(img)
    flat = img.reshape(-1, *img.shape[-3:]).to(dtype)  # [N, C, H, W]
    g = grid.to(dtype=dtype, device=img.device).expand(flat.shape[0], *grid.shape)
    out = F.grid_sample(flat, g, mode="bilinear", padding_mode="border", align_corners=False)
    return out.reshape(*lead, *out.shape[-3:]).to(img.dtype)


def perspective_to_equirect(img: torch.Tensor, yaw_deg: float, pitch_deg: float, fov_deg: float,
                            height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Project a pinhole image (camera as in ``equirect_to_perspective``) onto an equirectangular panorama.

    img: ``[..., C, h, w]`` float. Returns ``(pano, mask)``: pano ``[..., C, height, width]`` (bilinear,
    0 where the camera does not see), mask bool ``[height, width]``, True where the pixel centre's
    direction falls inside the image (edges included).
    """
    img = _check_image(img, "img")
    yaw_deg, pitch_deg = _check_angle("yaw_deg", yaw_deg), _check_angle("pitch_deg", pitch_deg, -90.0, 90.0)
    half_w = math.tan(math.radians(_check_fov(fov_deg)) / 2)
    _check_size(height=height, width=width)
    half_h = half_w * img.shape[-2] / img.shape[-1]
    forward, right, up = _camera_basis(yaw_deg, pitch_deg)
    d = direction_grid(height, width)  # [H, W, 3] float64
    z = d @ forward
    x = (d @ right) / z.clamp_min(1e-12) / half_w  # normalised image-plane coordinates, [-1, 1] inside
    y = -(d @ up) / z.clamp_min(1e-12) / half_h
    mask = (z > 0) & (x.abs() <= 1) & (y.abs() <= 1)
    grid = torch.stack([x.clamp(-2, 2), y.clamp(-2, 2)], dim=-1)  # [H, W, 2]
    pano = _sample(img, grid) * mask.to(device=img.device, dtype=img.dtype)
    return pano, mask.to(img.device)


# ------------------------------------------------------------------------------------------- solid angles
def _sin_row_edges(height: int) -> tuple[torch.Tensor, torch.Tensor]:
    """sin(elevation) at the top and bottom edge of each row, float64 [H] each (row 0 touches the zenith)."""
    edges = math.pi / 2 - torch.arange(height + 1, dtype=torch.float64) * (math.pi / height)  # [H + 1]
    s = torch.sin(edges)
    return s[:-1], s[1:]


def solid_angles(height: int, width: int) -> torch.Tensor:
    """Solid angle in steradians of one pixel of each row of an equirectangular image, float64 [H]:
    dOmega_i = (2 pi / W) (sin e_top - sin e_bottom), the exact area of the pixel's patch of the unit sphere
    (H W pixels sum to 4 pi; a pixel at elevation e covers about cos(e) times one at the horizon)."""
    _check_size(height=height, width=width)
    top, bottom = _sin_row_edges(height)
    return (2 * math.pi / width) * (top - bottom)


def horizontal_illuminance_weights(height: int, width: int) -> torch.Tensor:
    """Weights w_i (steradians, float64 [H], one per row) with E = sum_ij L_ij w_i the illuminance on a horizontal
    surface facing up: E = integral over the upper hemisphere of L cos(theta) dOmega, theta from the zenith.

    Exact for radiance constant over each pixel: the integral of sin(e) cos(e) de dphi over the pixel's part
    above the horizon is w_i = (pi / W) (max(0, sin e_top)^2 - max(0, sin e_bottom)^2); rows below the horizon
    weigh 0, a row across it (H odd) counts its upper half. A uniform radiance L gives E = pi L exactly."""
    _check_size(height=height, width=width)
    top, bottom = (s.clamp_min(0.0) for s in _sin_row_edges(height))
    return (math.pi / width) * (top**2 - bottom**2)


# ------------------------------------------------------------------------------------ orientation presets
@dataclass(frozen=True)
class Layout:
    """How one renderer's import maps an equirectangular image to directions, and the roll that suits it.

    After ``orient`` with this preset the renderer sees our image centre (yaw 0, what ``equirect_to_perspective``
    at yaw 0 looks at) along its ``forward`` axis, with ``up`` up and the viewer's right still on the right. No
    preset needs a mirror: each importer maps the image unflipped as seen from inside the sphere (docs/renderers.md
    derives this from the importers' source). ``yaw_deg`` is the ``roll_yaw`` angle of the preset;
    ``centre_unrolled`` is where the renderer puts the centre of an image given as it is."""

    name: str
    renderer: str
    up: str
    forward: str
    yaw_deg: float
    centre_unrolled: str


LAYOUTS: dict[str, Layout] = {layout.name: layout for layout in (
    Layout("openexr", "OpenEXR latlong environment map (ImfEnvmap.cpp LatLongMap)", "+Y", "+Z", 0.0, "+Z"),
    Layout("blender", "Blender World > Environment Texture, equirectangular (Cycles and EEVEE)", "+Z",
           "+Y (the Front view's direction)", 90.0, "+X"),
    Layout("unity", "Unity Skybox/Panoramic shader, Latitude Longitude Layout, 360 degrees", "+Y", "+Z", 90.0,
           "+X"),
    Layout("unreal", "Unreal long-lat .hdr imported as a TextureCube (HDRI Backdrop, Sky Light)", "+Z", "+X", -90.0,
           "-Y"),
)}
DEFAULT_LAYOUT = "openexr"  # our own convention: the identity
MAX_AZIMUTH_DEG = 360.0


def orient(pano: torch.Tensor, layout: str = DEFAULT_LAYOUT, azimuth_deg: float = 0.0) -> tuple[torch.Tensor, dict]:
    """A panorama turned for a renderer (``LAYOUTS``) and by ``azimuth_deg``, losslessly: one circular roll of
    whole columns, ``roll_yaw(pano, yaw_deg + azimuth_deg)`` with the shift rounded to the nearest column (ties to
    even). ``azimuth_deg`` > 0 brings the direction that many degrees right of the image centre (clockwise seen from
    above) to the preset's forward axis. Only multiples of 360 / W are exact, so the record says what was applied:
    ``roll_columns`` k (content moved left by k, 0 <= k < W), ``roll_deg`` = 360 k / W and ``azimuth_deg_applied``
    = roll_deg - yaw_deg in (-180, 180], beside the preset and the angle asked for.

    pano: ``[..., C, H, W]`` with W = 2 H (within 1 %), any values. Returns (the rolled panorama, same shape and
    dtype; the record, json-friendly)."""
    pano = _check_image(pano, "pano")
    preset = LAYOUTS.get(layout) if isinstance(layout, str) else None
    if preset is None:
        raise InputError("layout", f"got {layout!r}; accepted: {', '.join(LAYOUTS)}")
    azimuth_deg = _check_angle("azimuth", azimuth_deg, -MAX_AZIMUTH_DEG, MAX_AZIMUTH_DEG)
    height, width = pano.shape[-2:]
    if not is_equirectangular(height, width):
        raise InputError("layout", f"a {width}x{height} image is not a 2:1 equirectangular panorama; layouts and "
                                   "--azimuth orient panoramas only")
    columns = round((preset.yaw_deg + azimuth_deg) * width / 360.0) % width
    roll_deg = columns * 360.0 / width
    applied = roll_deg - preset.yaw_deg
    applied -= 360.0 * math.ceil((applied - 180.0) / 360.0)  # into (-180, 180]
    record = {"layout": preset.name, "renderer": preset.renderer, "up": preset.up, "centre_faces": preset.forward,
              "preset_yaw_deg": preset.yaw_deg, "azimuth_deg": azimuth_deg, "azimuth_deg_applied": applied,
              "roll_columns": columns, "roll_deg": roll_deg, "width": width}
    return torch.roll(pano, -columns, dims=-1), record
