"""The camera-like input protocol of the l2h benchmark: an 8-bit JPEG as a camera would write it.

The SI-HDR-like protocol (``l2h.make_case``) makes the input as the paper's bracket frame: clip, gamma 2.2, 8 bits.
Photographs are made otherwise, so this protocol adds what a camera does, in the order a camera does it (the
degradations the AIM 2025 inverse tone mapping challenge builds its inputs from: exposure, sensor noise, clipping,
a camera response, 8-bit JPEG; "AIM 2025 challenge on Inverse Tone Mapping Report", arXiv 2508.13479):

1. anchor the reference so a fraction c of its pixels clip at EV 0 (``exposure.anchor``, as the SI-HDR-like one;
   the noise then moves some pixels near the clip level across it, so about c of them saturate the sensor);
2. sensor noise in linear, before the curve: Poisson-Gaussian (``sensor_noise``), variance lambda_shot x + lambda_read
   with x in [0, 1] relative to the saturation level; lambda_shot and lambda_read drawn as Brooks et al. 2019
   ("Unprocessing Images for Learned Raw Denoising", CVPR 2019, their ``random_noise_levels``):
   log lambda_shot ~ U(log 1e-4, log 0.012), log lambda_read ~ N(2.18 log lambda_shot + 1.20, 0.26) (natural logs;
   fitted to the sensors of real cameras);
3. the sensor saturates: clip to [0, 1];
4. a camera response drawn from the sigmoid family that Eilertsen et al. 2017 ("HDR image reconstruction from a
   single exposure using deep CNNs", SIGGRAPH Asia 2017) fitted to the real curves of the DoRF database
   (Grossberg & Nayar 2003, "What is the space of camera response functions?"):
   f(x) = (1 + sigma) x^n / (x^n + sigma), n ~ N(0.9, 0.1), sigma ~ N(0.6, 0.1), truncated at 3 standard deviations
   (``CameraResponse``; f(0) = 0, f(1) = 1, increasing). The EMoR basis of Grossberg & Nayar 2004 would need the
   DoRF data, which we do not ship;
5. 8-bit quantisation, then JPEG at a quality drawn from 85..95 (OpenCV ``imencode``, libjpeg, 4:2:0 chroma).

Everything a case draws comes from one generator seeded by (base seed, folder, image name, clipped fraction)
(``case_seed``): a case is the same whatever else is benchmarked, in whatever order. The pipeline is not told the
camera's curve: it linearises the JPEG with the curve the user would give ``convert --input-curve`` (srgb or
gamma2.2), which is the realistic case, so the scores include the error of the wrong curve.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

import numpy as np
import torch

from latenthdr import exposure
from latenthdr.bench import l2h
from latenthdr.errors import InputError

# Eilertsen et al. 2017: the sigmoid's parameters as (mean, standard deviation), fitted to DoRF
SIGMOID_N = (0.9, 0.1)
SIGMOID_SIGMA = (0.6, 0.1)
TRUNCATE_STD = 3.0  # draws are clamped to mean +- 3 std: n in [0.6, 1.2], sigma in [0.3, 0.9], all increasing curves
# Brooks et al. 2019: shot-noise variance range and read-noise variance given the shot noise (natural log)
SHOT_VARIANCE_RANGE = (1e-4, 1.2e-2)
READ_LOG_SLOPE, READ_LOG_INTERCEPT, READ_LOG_STD = 2.18, 1.20, 0.26
JPEG_QUALITY_RANGE = (85, 95)  # inclusive
INPUT_CURVES = ("srgb", "gamma2.2")  # what the pipeline may assume: the choices of ``convert --input-curve``


@dataclass(frozen=True)
class CameraResponse:
    """The sigmoid camera response of Eilertsen et al. 2017: f(x) = (1 + sigma) x^n / (x^n + sigma).

    x: linear [0, 1] (1 = saturation); f(x): display-encoded [0, 1]; f(0) = 0, f(1) = 1, increasing for n, sigma > 0.
    """

    n: float
    sigma: float

    def __post_init__(self):
        for name, value in (("n", self.n), ("sigma", self.sigma)):
            if not (math.isfinite(value) and value > 0):
                raise InputError(name, f"got {value!r}; accepted: a finite value > 0")

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Linear ``x`` (any shape; clipped to [0, 1]) -> display-encoded f(x), in x's float dtype (>= float32)."""
        x = x.clamp(0.0, 1.0) if x.dtype in (torch.float32, torch.float64) else x.float().clamp(0.0, 1.0)
        xn = x**self.n
        return (1.0 + self.sigma) * xn / (xn + self.sigma)

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        """Display-encoded ``y`` in [0, 1] -> linear x = (sigma y / (1 + sigma - y))^(1/n) (what a pipeline that
        knew the camera would use)."""
        y = y.clamp(0.0, 1.0) if y.dtype in (torch.float32, torch.float64) else y.float().clamp(0.0, 1.0)
        return (self.sigma * y / (1.0 + self.sigma - y)) ** (1.0 / self.n)


@dataclass(frozen=True)
class Camera:
    """One drawn camera: its response, noise variances (relative to the saturation level squared) and JPEG quality."""

    response: CameraResponse
    shot_variance: float
    read_variance: float
    jpeg_quality: int

    def describe(self) -> dict:
        """JSON-friendly parameters (for benchmark rows)."""
        return {"crf_n": self.response.n, "crf_sigma": self.response.sigma, "shot_variance": self.shot_variance,
                "read_variance": self.read_variance, "jpeg_quality": self.jpeg_quality}


def describe_model() -> dict:
    """The distributions the protocol draws from, for benchmark reports."""
    return {"crf": "sigmoid (1+sigma) x^n / (x^n+sigma), Eilertsen et al. 2017 fit to DoRF",
            "crf_n": {"mean": SIGMOID_N[0], "std": SIGMOID_N[1], "truncate_std": TRUNCATE_STD},
            "crf_sigma": {"mean": SIGMOID_SIGMA[0], "std": SIGMOID_SIGMA[1], "truncate_std": TRUNCATE_STD},
            "noise": "Poisson-Gaussian in linear before the curve, Brooks et al. 2019",
            "shot_variance_log_uniform": list(SHOT_VARIANCE_RANGE),
            "read_log_variance": {"slope": READ_LOG_SLOPE, "intercept": READ_LOG_INTERCEPT, "std": READ_LOG_STD},
            "bits": 8, "jpeg_quality": list(JPEG_QUALITY_RANGE), "jpeg_encoder": "OpenCV imencode (libjpeg, 4:2:0)"}


def case_seed(base_seed: int, dataset: str, name: str, clip_fraction: float) -> int:
    """A 63-bit seed from the case's identity (sha256, so it does not change between Python runs)."""
    if isinstance(base_seed, bool) or not isinstance(base_seed, int) or base_seed < 0:
        raise InputError("seed", f"got {base_seed!r}; accepted: an integer >= 0")
    key = f"{base_seed}\0{dataset}\0{name}\0{clip_fraction!r}".encode()
    return int.from_bytes(hashlib.sha256(key).digest()[:8], "little") >> 1


def draw_camera(generator: torch.Generator) -> Camera:
    """Draw a camera from the protocol's distributions (module docstring, steps 2, 4, 5) with ``generator``."""
    def normal(mean_std):
        mean, std = mean_std
        z = torch.randn((), generator=generator, dtype=torch.float64).clamp(-TRUNCATE_STD, TRUNCATE_STD).item()
        return mean + std * z

    def uniform() -> float:
        return torch.rand((), generator=generator, dtype=torch.float64).item()

    response_ = CameraResponse(n=normal(SIGMOID_N), sigma=normal(SIGMOID_SIGMA))
    lo, hi = (math.log(v) for v in SHOT_VARIANCE_RANGE)
    log_shot = lo + (hi - lo) * uniform()
    log_read = normal((READ_LOG_SLOPE * log_shot + READ_LOG_INTERCEPT, READ_LOG_STD))
    q_lo, q_hi = JPEG_QUALITY_RANGE
    quality = int(torch.randint(q_lo, q_hi + 1, (), generator=generator).item())
    return Camera(response_, math.exp(log_shot), math.exp(log_read), quality)


def sensor_noise(x: torch.Tensor, shot_variance: float, read_variance: float,
                 generator: torch.Generator) -> torch.Tensor:
    """Poisson-Gaussian sensor noise (Foi et al. 2008, "Practical Poissonian-Gaussian noise modeling and fitting
    for single-image raw-data"): x_noisy = lambda_shot P(x / lambda_shot) + N(0, lambda_read), P a Poisson draw.
    Mean x, variance lambda_shot x + lambda_read. x: linear radiance [..., H, W], >= 0 (1 = saturation; larger values
    are allowed: the sensor clips after the noise), on the generator's device. Returns float64, not clipped."""
    for name, value in (("shot_variance", shot_variance), ("read_variance", read_variance)):
        if not (math.isfinite(value) and value >= 0):
            raise InputError(name, f"got {value!r}; accepted: a finite variance >= 0")
    x = x.double().clamp_min(0.0)
    shot = torch.poisson(x / shot_variance, generator=generator) * shot_variance if shot_variance > 0 else x
    read = torch.randn(x.shape, generator=generator, dtype=torch.float64, device=x.device) * math.sqrt(read_variance)
    return shot + read


def jpeg_roundtrip(codes: np.ndarray, quality: int) -> np.ndarray:
    """8-bit RGB codes [H, W, 3] uint8 -> the same image written as a JPEG at ``quality`` and read back (OpenCV)."""
    import cv2

    if isinstance(quality, bool) or not isinstance(quality, int) or not 1 <= quality <= 100:
        raise InputError("jpeg_quality", f"got {quality!r}; accepted: an integer in 1..100")
    params = [cv2.IMWRITE_JPEG_QUALITY, quality]
    if hasattr(cv2, "IMWRITE_JPEG_SAMPLING_FACTOR"):  # 4:2:0 is libjpeg's default; said so for older OpenCVs too
        params += [cv2.IMWRITE_JPEG_SAMPLING_FACTOR, cv2.IMWRITE_JPEG_SAMPLING_FACTOR_420]
    ok, data = cv2.imencode(".jpg", np.ascontiguousarray(codes[..., ::-1]), params)
    if not ok:
        raise RuntimeError("OpenCV could not encode the JPEG")
    return cv2.imdecode(data, cv2.IMREAD_COLOR)[..., ::-1]


def camera_ldr(ref: torch.Tensor, camera: Camera, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """The camera's 8-bit JPEG of the anchored linear reference ``ref`` [3, H, W] (1 = saturation): steps 2-5 of the
    module docstring, drawn with ``generator`` (a CPU generator: the JPEG is made on the CPU anyway).

    Returns (ldr, clipped): ldr display-encoded float32 [3, H, W], code / 255; clipped bool [H, W], the pixels whose
    sensor saturated in any channel (after the noise). JPEG moves saturated codes off 255 (ringing, chroma
    subsampling), so the JPEG alone does not say which pixels were lost; the benchmark scores its clipped-pixel
    metrics on this mask, which the methods never see. Both on ref's device."""
    if not isinstance(ref, torch.Tensor) or ref.ndim != 3 or ref.shape[0] != 3:
        raise InputError("ref", f"expected a tensor [3, H, W], got {getattr(ref, 'shape', type(ref))}")
    x = sensor_noise(ref.cpu(), camera.shot_variance, camera.read_variance, generator)
    clipped = (x >= 1.0).any(dim=0)
    codes = (camera.response(x.clamp(0.0, 1.0)) * 255.0).round().to(torch.uint8)  # [3, H, W]
    jpeg = jpeg_roundtrip(codes.permute(1, 2, 0).numpy(), camera.jpeg_quality)
    ldr = torch.from_numpy(np.ascontiguousarray(jpeg)).permute(2, 0, 1).float() / 255.0
    return ldr.to(ref.device), clipped.to(ref.device)


def make_camera_case(name: str, H: torch.Tensor, clip_fraction: float, dataset: str = "", *, seed: int = 0,
                     input_curve: str = "srgb") -> l2h.Case:
    """A camera-protocol benchmark case: ``H`` [3, H, W] anchored so ``clip_fraction`` of its pixels clip at EV 0,
    then photographed by a camera drawn for this case (``case_seed``). ``input_curve``: the curve the methods assume
    when they linearise the JPEG (srgb or gamma2.2: they do not know the camera's). The case's ``camera`` holds the
    drawn parameters and the seed; its ``clipped``, the pixels whose sensor saturated (``camera_ldr``)."""
    if input_curve not in INPUT_CURVES:
        raise InputError("input_curve", f"got {input_curve!r}; accepted: {', '.join(INPUT_CURVES)}")
    ref, _ = exposure.anchor(H, clipped_fraction=clip_fraction)
    case_seed_ = case_seed(seed, dataset, name, clip_fraction)
    generator = torch.Generator().manual_seed(case_seed_)
    camera = draw_camera(generator)
    ldr, clipped = camera_ldr(ref, camera, generator)
    return l2h.Case(name, clip_fraction, ref, ldr, dataset, input_curve=input_curve,
                    camera={"seed": case_seed_, **camera.describe()}, clipped=clipped)

