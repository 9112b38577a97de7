"""Procedural, physically based skies over a lit ground: equirectangular HDR panoramas with captions.

Three kinds (``SkyParams.kind``):
- ``clear``: Mitsuba 3's ``sunsky`` emitter (Hosek & Wilkie 2012, "An analytic model for full spectral sky-dome
  radiance", and their 2013 solar-radiance model), evaluated in the ``scalar_rgb`` variant at every pixel of an
  equirectangular grid; the sun in view at its elevation, with its full radiance.
- ``night``: the same model lit by a full moon instead of the sun. Moonlight is sunlight reflected by the moon,
  so the moon's disk and the moonlit sky are the sun's disk and the sunlit sky at the moon's position scaled by
  :data:`MOON_TO_SUN` (full-moon over sun illuminance, 0.25 lx / 120 000 lx; the two disks have about the same
  size). Added: the natural night-sky background (airglow and unresolved stars, about 22 mag/arcsec^2, relative to
  the full moon's luminance) and stars down to magnitude 6, drawn with the observed counts N(< m) ~ 5000 *
  10^(0.5 (m - 6)) over the sphere, each a point with the irradiance 10^(-0.4 (m - m_moon)) E_moon.
- ``overcast``: the CIE standard overcast sky (Moon & Spencer 1942; CIE S 011/E:2003 type 1),
  L(elevation) = L_z (1 + 2 sin elevation) / 3, neutral white, with a soft brightening where the hidden sun is
  (thin cloud) and a low-contrast cloud texture; no sun disk. Needs no Mitsuba.

Mitsuba is an optional extra (``pip install "latenthdr[skies]"``), imported lazily here and nowhere else; nothing
else in latenthdr needs it.

Radiometry of the clear and night kinds (all linear RGB, Rec.709 primaries, relative units: Mitsuba's radiance, so
a scene's exposure is set later by EV-0 anchoring):
- sky pixel: the sky-only radiance at the pixel centre (the sky is smooth at these resolutions);
- sun: the sun-only radiance at a grid of directions over the solar disk (limb darkening included), each
  standing for Omega_sun / N; each sample's power is added to the pixel it falls in (divided by the pixel's
  solid angle), so the map carries the sun's full irradiance at any resolution;
- ground (below the horizon): a Lambertian plane, L = rho / pi * (E_sky + E_sun), with E_sky the cosine-weighted
  integral of the sky pixels over the upper hemisphere and E_sun the same integral of the disk samples;
  rho is the ground type's albedo modulated by a smooth texture that fades with distance, blended towards the
  horizon sky radiance with distance (aerial perspective, stronger with turbidity). The same mean albedo is
  the sky model's ground albedo, so sky and ground agree.
Directions follow ``latenthdr.panorama`` (Y up, row 0 = zenith, yaw 0 at the image centre); Mitsuba's sunsky is
Z-up, so directions are rotated by +90 degrees about X on the way in.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch

from latenthdr.errors import InputError, LatentHDRError

SUN_APERTURE_DEG = 0.5358  # Mitsuba's default full angle of the solar disk
SUN_SAMPLES = 32  # per axis of the grid of directions over the solar disk (~800 inside it)
TURBIDITY_RANGE = (1.0, 10.0)  # Hosek-Wilkie's fitted range
TEXTURE_CONTRAST = 0.35  # amplitude of the ground's albedo texture near the camera (0: a uniform ground)
TEXTURE_FADE = 30.0  # camera heights over which the texture fades out (it would alias towards the horizon)
HAZE_DISTANCE = 400.0  # camera heights at which turbidity 1 hides 1 - 1/e of the ground behind horizon haze
KINDS = ("clear", "overcast", "night")
KIND_WEIGHTS = (0.6, 0.2, 0.2)  # draw_sky_params' mix
MOON_TO_SUN = 0.25 / 120000.0  # full moon over sun illuminance (lux); the disks subtend about the same angle
MOON_MAGNITUDE = -12.74  # apparent magnitude of the full moon
NIGHT_SKY_TO_MOON = 1.7e-4 / 3900.0  # natural dark-sky luminance (~22 mag/arcsec^2) over the full moon's
STARS_BRIGHTER_THAN_6 = 5000  # stars of magnitude < 6 over the whole sphere
BRIGHTEST_STAR = -1.46  # Sirius: the star magnitudes are drawn in [BRIGHTEST_STAR, 6]
OVERCAST_GLOW = (0.0, 1.2)  # range of the brightening towards the hidden sun (0: a uniform CIE overcast)
OVERCAST_GLOW_WIDTH_DEG = 25.0
CLOUD_CONTRAST = 0.12  # amplitude of the overcast cloud texture

# Ground types: (mean albedo RGB, caption phrases). Albedos are typical broadband values (snow ~0.8, sand ~0.4,
# grass ~0.1, asphalt ~0.07).
GROUNDS: dict[str, tuple[tuple[float, float, float], tuple[str, ...]]] = {
    "sand": ((0.45, 0.38, 0.27), ("bright sandy ground", "a sandy desert", "pale sand")),
    "grass": ((0.06, 0.12, 0.04), ("dark grass", "a green lawn", "green grass")),
    "dry_grass": ((0.30, 0.25, 0.13), ("dry yellow grass", "a dry grassy plain", "straw-coloured grass")),
    "snow": ((0.82, 0.84, 0.88), ("fresh snow", "a snowfield", "white snow")),
    "soil": ((0.17, 0.12, 0.08), ("brown soil", "a ploughed field", "bare brown earth")),
    "asphalt": ((0.07, 0.07, 0.07), ("dark asphalt", "a large empty parking lot", "black tarmac")),
    "rock": ((0.22, 0.21, 0.19), ("grey rock", "a rocky plain", "grey stones")),
}


@dataclass(frozen=True)
class SkyParams:
    """One procedural sky. sun_elevation_deg in (0, 90]: the sun's (the moon's for ``night``; the hidden sun's for
    ``overcast``); sun_yaw_deg in the panorama convention (0 = image centre); turbidity in [1, 10] (1 = very
    clear, 10 = hazy; overcast: the haze over the ground); ground: a key of :data:`GROUNDS`; seed: the ground
    texture, the stars and the clouds; kind: one of :data:`KINDS`."""

    sun_elevation_deg: float
    sun_yaw_deg: float
    turbidity: float
    ground: str
    seed: int = 0
    kind: str = "clear"

    def __post_init__(self):
        if not 0.0 < self.sun_elevation_deg <= 90.0:
            raise InputError("sun_elevation_deg", f"got {self.sun_elevation_deg}; accepted: (0, 90] degrees")
        if not TURBIDITY_RANGE[0] <= self.turbidity <= TURBIDITY_RANGE[1]:
            raise InputError("turbidity", f"got {self.turbidity}; accepted: {TURBIDITY_RANGE[0]:g} to "
                                          f"{TURBIDITY_RANGE[1]:g}")
        if self.ground not in GROUNDS:
            raise InputError("ground", f"got {self.ground!r}; accepted: {', '.join(GROUNDS)}")
        if not math.isfinite(self.sun_yaw_deg):
            raise InputError("sun_yaw_deg", f"got {self.sun_yaw_deg}; accepted: a finite angle in degrees")
        if self.kind not in KINDS:
            raise InputError("kind", f"got {self.kind!r}; accepted: {', '.join(KINDS)}")

    def to_dict(self) -> dict:
        return asdict(self)


def draw_sky_params(n: int, seed: int) -> list[SkyParams]:
    """``n`` skies; sky i from a generator seeded by (seed, i). Kind by :data:`KIND_WEIGHTS`. Sun (or moon)
    elevation: 30% low (0.5-10 degrees, sunrise and sunset light), else uniform in 10-90 degrees; turbidity
    uniform in 1.8-9 (overcast: 4-10); ground and yaw uniform."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise InputError("n", f"got {n!r}; accepted: an integer >= 0")
    out = []
    for i in range(n):
        rng = np.random.default_rng([seed, i])
        kind = str(rng.choice(KINDS, p=KIND_WEIGHTS))
        elevation = rng.uniform(0.5, 10.0) if rng.random() < 0.3 else rng.uniform(10.0, 90.0)
        turbidity = rng.uniform(4.0, 10.0) if kind == "overcast" else rng.uniform(1.8, 9.0)
        out.append(SkyParams(float(elevation), float(rng.uniform(-180.0, 180.0)), float(turbidity),
                             str(rng.choice(list(GROUNDS))), int(rng.integers(0, 2**31 - 1)), kind))
    return out


def sky_captions(params: SkyParams) -> list[str]:
    """Three captions of a sky from its kind and parameters (sun or moon height, haze, ground), e.g. "a clear
    midday sky with the sun high overhead over bright sandy ground"."""
    el, t = params.sun_elevation_deg, params.turbidity
    grounds = GROUNDS[params.ground][1]
    if params.kind == "overcast":
        light = "dull grey" if t > 7.0 else "bright"
        return [f"an overcast sky over {grounds[0]}",
                f"{grounds[1]} under a {light} cloudy sky",
                f"an empty landscape of {grounds[2]} on an overcast day, soft light and no shadows"]
    if params.kind == "night":
        moon = "the full moon low on the horizon" if el < 10.0 else "a bright full moon"
        return [f"a clear night sky with {moon} over {grounds[0]}",
                f"{grounds[1]} at night under a starry sky, lit by moonlight",
                f"a moonlit landscape of {grounds[2]}, stars in a dark blue sky"]
    haze = "crystal clear" if t < 2.5 else "clear" if t < 4.0 else "slightly hazy" if t < 6.5 else "hazy"
    if el < 6.0:
        time_of_day = "sunset" if params.seed % 2 else "sunrise"
        sky, sun = f"{haze} {time_of_day} sky", "the sun low on the horizon"
    elif el < 20.0:
        time_of_day = "late afternoon" if params.seed % 2 else "early morning"
        sky, sun = f"{haze} {time_of_day} sky", "a low sun"
    elif el < 50.0:
        sky, sun = f"{haze} sunny sky", "the sun high in the sky"
    else:
        sky, sun = f"{haze} midday sky", "the sun high overhead"
    blue = "blue " if t < 6.5 and el >= 6.0 else ""
    return [f"a {sky} with {sun} over {grounds[0]}",
            f"{grounds[1]} under a {haze} {blue}sky",
            f"an empty landscape of {grounds[2]}, {sun}, {haze} air"]


def render_sky(params: SkyParams, height: int = 512, width: int = 1024) -> torch.Tensor:
    """Linear RGB equirectangular panorama [3, height, width] float32 (relative radiance, >= 0, row 0 = zenith).

    The clear and night kinds need Mitsuba 3 (the ``skies`` extra); see the module docstring for the radiometry.
    """
    if isinstance(height, bool) or not isinstance(height, int) or height < 8 or width != 2 * height:
        raise InputError("height/width", f"got {height}x{width}; accepted: width = 2 x height, height >= 8")
    yaw, elev = _pixel_angles(height, width)  # [W], [H] radians
    upper = elev > 0  # [H] rows above the horizon
    sun = _sun_direction(params)
    if params.kind == "overcast":
        sky = _overcast(params, yaw, elev, sun)
        L, E_disk = sky.copy(), np.zeros(3)
    else:
        mi = _mitsuba()
        albedo = GROUNDS[params.ground][0]
        sky_emitter = _emitter(mi, sun, params.turbidity, albedo, sky_scale=1.0, sun_scale=0.0)
        sun_emitter = _emitter(mi, sun, params.turbidity, albedo, sky_scale=0.0, sun_scale=1.0)
        sky = np.zeros((height, width, 3), dtype=np.float64)
        sky[upper] = _eval(mi, sky_emitter, _directions(yaw[None, :], elev[upper][:, None]).reshape(-1, 3)) \
            .reshape(int(upper.sum()), width, 3)
        d_sun, L_sun, d_omega_sun = _sun_samples(mi, sun_emitter, sun)
        if params.kind == "night":  # the moon: sunlight at the same place, scaled
            sky *= MOON_TO_SUN
            L_sun = L_sun * MOON_TO_SUN
        E_disk = (L_sun * (d_omega_sun * np.maximum(d_sun[:, 1], 0.0))[:, None]).sum(axis=0)  # [3], horizontal
        if params.kind == "night":
            L_moon = L_sun.mean(axis=0)  # [3] the moon's mean radiance
            sky[upper] += NIGHT_SKY_TO_MOON * L_moon
        L = sky.copy()
        _splat_sun(L, d_sun, L_sun, d_omega_sun)
        if params.kind == "night":
            _splat_stars(L, params.seed, E_moon=L_moon * d_omega_sun * len(d_sun))  # radiance x disk solid angle
    d_omega = (2 * math.pi / width) * (math.pi / height) * np.cos(elev)  # [H] pixel solid angles, sr
    E_sky = (sky * (np.sin(elev) * d_omega)[:, None, None]).sum(axis=(0, 1))  # [3] sky irradiance, horizontal
    L[~upper] = _ground(params, yaw, elev[~upper], E_sky + E_disk, sky[upper][-1])
    return torch.from_numpy(np.maximum(L, 0.0).transpose(2, 0, 1).astype(np.float32)).contiguous()


def _overcast(params: SkyParams, yaw: np.ndarray, elev: np.ndarray, sun: np.ndarray) -> np.ndarray:
    """The CIE standard overcast sky [H, W, 3] (zenith radiance 1, zero below the horizon), brightened towards
    the hidden sun by up to :data:`OVERCAST_GLOW` and modulated by a smooth cloud texture."""
    rng = np.random.default_rng([params.seed, 1])
    d = _directions(yaw[None, :], elev[:, None])  # [H, W, 3]
    L = (1.0 + 2.0 * np.sin(np.maximum(elev, 0.0)))[:, None] / 3.0 * np.ones_like(d[..., 0])
    angle = np.degrees(np.arccos(np.clip(d @ sun, -1.0, 1.0)))
    L = L * (1.0 + rng.uniform(*OVERCAST_GLOW) * np.exp(-0.5 * (angle / OVERCAST_GLOW_WIDTH_DEG) ** 2))
    clouds = np.zeros_like(L)
    for octave in range(4):  # smooth noise on the sphere: random plane waves in 3-D
        axis = rng.normal(size=3)
        clouds += 0.5**octave * np.sin(3.0 * 2.0**octave * (d @ (axis / np.linalg.norm(axis))) + rng.uniform(0, 7))
    L = L * (1.0 + CLOUD_CONTRAST * clouds)
    L[elev <= 0] = 0.0
    return np.repeat(L[..., None], 3, axis=-1)


def _splat_stars(L: np.ndarray, seed: int, E_moon: np.ndarray) -> None:
    """Add stars (magnitudes with the observed counts, :data:`STARS_BRIGHTER_THAN_6`; directions uniform on the
    sphere) to the pixels above the horizon, each with irradiance 10^(-0.4 (m - m_moon)) E_moon, tinted at random
    between warm and cool white."""
    height, width = L.shape[:2]
    rng = np.random.default_rng([seed, 2])
    u = rng.random(STARS_BRIGHTER_THAN_6)
    m = np.maximum(6.0 + 2.0 * np.log10(np.maximum(u, 1e-12)), BRIGHTEST_STAR)  # N(< m) ~ 10^(0.5 m)
    z = rng.uniform(-1.0, 1.0, len(m))  # sin(elevation): uniform on the sphere
    keep = z > 0
    m, elev = m[keep], np.arcsin(z[keep])
    cols = rng.integers(0, width, len(m))
    rows = np.clip(np.floor((math.pi / 2 - elev) * height / math.pi).astype(int), 0, height - 1)
    row_elev = math.pi / 2 - (rows + 0.5) * (math.pi / height)
    omega_pixel = (2 * math.pi / width) * (math.pi / height) * np.cos(row_elev)
    tint = np.array([1.0, 1.0, 1.0]) + rng.uniform(-0.25, 0.25, (len(m), 1)) * np.array([1.0, 0.0, -1.0])
    E = 10.0 ** (-0.4 * (m - MOON_MAGNITUDE))[:, None] * E_moon[None, :] * tint  # [n, 3]
    np.add.at(L, (rows, cols), E / omega_pixel[:, None])


def _mitsuba():
    try:
        import mitsuba as mi
    except ImportError:
        raise LatentHDRError("procedural skies need Mitsuba 3: pip install 'latenthdr[skies]' (or mitsuba)") from None
    if mi.variant() != "scalar_rgb":
        mi.set_variant("scalar_rgb")
    return mi


def _emitter(mi, sun: np.ndarray, turbidity: float, albedo, sky_scale: float, sun_scale: float):
    return mi.load_dict({"type": "sunsky", "sun_direction": _to_mitsuba(sun).tolist(), "turbidity": float(turbidity),
                         "albedo": {"type": "rgb", "value": list(albedo)}, "sky_scale": sky_scale,
                         "sun_scale": sun_scale})


def _to_mitsuba(d: np.ndarray) -> np.ndarray:
    """Our Y-up directions [..., 3] -> Mitsuba sunsky's Z-up frame: +90 degrees about X, (x, y, z) -> (x, -z, y)."""
    return np.stack([d[..., 0], -d[..., 2], d[..., 1]], axis=-1)


def _directions(yaw: np.ndarray, elev: np.ndarray) -> np.ndarray:
    """Unit directions [..., 3] (``latenthdr.panorama`` convention) for yaw and elevation in radians."""
    yaw, elev = np.broadcast_arrays(yaw, elev)
    c = np.cos(elev)
    return np.stack([-np.sin(yaw) * c, np.sin(elev), np.cos(yaw) * c], axis=-1)


def _sun_direction(params: SkyParams) -> np.ndarray:
    return _directions(np.radians(params.sun_yaw_deg), np.radians(params.sun_elevation_deg))


def _pixel_angles(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    yaw = (np.arange(width) + 0.5) * (2 * math.pi / width) - math.pi
    elev = math.pi / 2 - (np.arange(height) + 0.5) * (math.pi / height)
    return yaw, elev


def _eval(mi, emitter, d: np.ndarray) -> np.ndarray:
    """Radiance [N, 3] arriving from directions d [N, 3] (ours), one scalar evaluation per direction."""
    si = mi.SurfaceInteraction3f()
    out = np.empty((len(d), 3))
    for i, v in enumerate(_to_mitsuba(d)):
        si.wi = mi.Vector3f(-v[0], -v[1], -v[2])  # wi points away from the sky, towards the viewer
        out[i] = emitter.eval(si)
    return out


def _sun_samples(mi, emitter, sun: np.ndarray, n: int = SUN_SAMPLES) -> tuple[np.ndarray, np.ndarray, float]:
    """Directions [N, 3] on an n x n grid over the solar disk (those inside it), their sun-only radiance [N, 3]
    (limb darkening included) and the solid angle each stands for (Omega_sun / N, sr)."""
    half = math.radians(SUN_APERTURE_DEG) / 2
    up = np.array([0.0, 1.0, 0.0]) if abs(sun[1]) < 0.99 else np.array([1.0, 0.0, 0.0])
    a = np.cross(sun, up)
    a /= np.linalg.norm(a)
    b = np.cross(sun, a)
    t = ((np.arange(n) + 0.5) / n * 2 - 1) * half
    u, v = (g.reshape(-1, 1) for g in np.meshgrid(t, t))
    inside = (u**2 + v**2 <= half**2).reshape(-1)
    d = sun + u * a + v * b  # tangent-plane offsets (at most a quarter degree)
    d = d[inside] / np.linalg.norm(d[inside], axis=1, keepdims=True)
    omega_sun = 2 * math.pi * (1 - math.cos(half))
    return d, _eval(mi, emitter, d), omega_sun / len(d)


def _splat_sun(L: np.ndarray, d: np.ndarray, radiance: np.ndarray, d_omega: float) -> None:
    """Add each disk sample's power to the pixel it falls in: L += radiance * d_omega / Omega_pixel, so the map
    holds the sun's full irradiance at any resolution, spread over the pixels the disk covers."""
    height, width = L.shape[:2]
    yaw, elev = np.arctan2(-d[:, 0], d[:, 2]), np.arcsin(np.clip(d[:, 1], -1, 1))
    cols = np.floor((yaw + math.pi) * width / (2 * math.pi)).astype(int) % width
    rows = np.clip(np.floor((math.pi / 2 - elev) * height / math.pi).astype(int), 0, height - 1)
    row_elev = math.pi / 2 - (rows + 0.5) * (math.pi / height)
    omega_pixel = (2 * math.pi / width) * (math.pi / height) * np.cos(row_elev)
    keep = elev > 0  # a sun on the horizon is partly hidden by the ground
    np.add.at(L, (rows[keep], cols[keep]), radiance[keep] * (d_omega / omega_pixel[keep])[:, None])


def _ground(params: SkyParams, yaw: np.ndarray, elev: np.ndarray, E: np.ndarray, horizon: np.ndarray) -> np.ndarray:
    """Ground radiance [h, W, 3] for below-horizon rows (elev < 0): Lambertian, textured albedo, aerial haze
    towards ``horizon`` [W, 3] (the sky row just above the horizon). E [3]: irradiance on the ground plane."""
    albedo = np.asarray(GROUNDS[params.ground][0])
    d = _directions(yaw[None, :], elev[:, None])  # [h, W, 3]
    distance = 1.0 / np.maximum(-d[..., 1], 1e-4)  # along the ray to a plane one unit below the camera
    px, pz = d[..., 0] * distance, d[..., 2] * distance  # ground-plane coordinates, camera heights
    rng = np.random.default_rng(params.seed)
    texture = np.zeros_like(px)
    for octave in range(4):
        freq = 0.6 * 2.0**octave
        theta, phase = rng.uniform(0, 2 * math.pi, 2)
        texture += 0.5**octave * np.sin(freq * (px * math.cos(theta) + pz * math.sin(theta)) + phase)
    texture = 1.0 + TEXTURE_CONTRAST * texture * np.exp(-distance / TEXTURE_FADE)
    L = (albedo / math.pi * E)[None, None, :] * texture[..., None]
    haze = 1.0 - np.exp(-distance * params.turbidity / HAZE_DISTANCE)
    return (1 - haze[..., None]) * L + haze[..., None] * horizon[None, :, :]
