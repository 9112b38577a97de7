"""CRF correction before scoring an HDR reconstruction (Hanji et al. 2022), and a gamma-and-scale variant.

A single-image HDR method may get the tones of an image slightly wrong everywhere (a different camera curve, a
different contrast) while reconstructing its structure well; PU21-PSNR then punishes the tone curve more than the
content. Hanji, Mantiuk, Eilertsen, Hajisharif & Unger, "Comparison of single image HDR reconstruction methods -
the caveats of quality assessment" (SIGGRAPH 2022) therefore score SI-HDR methods with and without a per-image,
closed-form correction that maps the reconstruction's tones onto the reference's before the metric. We follow the
authors' released implementation (gfxdisp/pu21 ``crf_correction.m``, called by ``pu21_metric(...,
'crf_correction', true)``), with its defaults (degree 3, regularisation 0.01, PQ, Luv):

1. both images are absolute (cd/m2, after the SI-HDR peak mapping) and clamped to >= L_min = 0.005 per channel;
2. RGB (Rec.709) -> XYZ -> "Luv": L = Y, (u, v) = 410/255 (4x, 9y) / (-2x + 12y + 3) with x, y the chromaticity;
3. luminance: PQ-encode L (SMPTE ST 2084 with the reference code's rounded constants, L_max = 10^4), fit the
   reference's PQ value as a degree-3 polynomial of the reconstruction's, least squares, no regularisation;
4. chromaticity: fit (u_ref, v_ref) as a degree-3 polynomial of (u, v) with the cross term u v, in linear values,
   ridge-regularised towards the identity: W = (X'X + s I)^-1 (X'Y + s W0), s = lambda N / P (N pixels, P terms);
5. apply both fits to the reconstruction, clamp the results at the low end (L_min), decode and go back to RGB.
One deviation: the fitted PQ value is also clamped at PQ(L_max) = 1 (the reference code leaves it, and beyond
c2/c3 ~ 1.0088 its inverse has no real value); PU21 clamps luminance at 10^4 cd/m2 anyway.

``gamma_correction`` is the simpler model one may have in mind for "CRF correction": log10 Y_ref = a log10 Y + b
over all pixels (a gamma and a scale, least squares in log luminance), each pixel's chromaticity kept.
"""

from __future__ import annotations

import torch

from latenthdr.errors import InputError

L_MIN_NITS, L_MAX_NITS = 0.005, 1e4  # crf_correction.m params.L_min, params.L_max
PQ_M, PQ_N, PQ_C1, PQ_C2, PQ_C3 = 78.8438, 0.1593, 0.8359, 18.8516, 18.6875  # crf_correction.m's rounded ST 2084
RGB_TO_XYZ = ((0.412424, 0.357579, 0.180464),
              (0.212656, 0.715158, 0.072186),
              (0.019332, 0.119193, 0.950444))  # crf_correction.m rgb2xyzMat (Rec.709 primaries, D65)
UV_SCALE = 410.0 / 255.0
XYZ_RANGE = (1e-4, 1e8)
CRF_MODELS = ("hanji2022", "gamma")


def pq_encode(L: torch.Tensor) -> torch.Tensor:
    """PQ of absolute luminance L (cd/m2, >= 0): V = ((c1 + c2 Lp) / (1 + c3 Lp))^m, Lp = (L / L_max)^n."""
    Lp = (L / L_MAX_NITS) ** PQ_N
    return ((PQ_C1 + PQ_C2 * Lp) / (1 + PQ_C3 * Lp)) ** PQ_M


def pq_decode(V: torch.Tensor) -> torch.Tensor:
    """The inverse of ``pq_encode`` for V in [PQ(0), 1]: L = L_max ((c1 - V^(1/m)) / (c3 V^(1/m) - c2))^(1/n)."""
    Vm = V ** (1.0 / PQ_M)
    return L_MAX_NITS * ((PQ_C1 - Vm) / (PQ_C3 * Vm - PQ_C2)).clamp_min(0.0) ** (1.0 / PQ_N)


def _matrix(like: torch.Tensor) -> torch.Tensor:
    return torch.tensor(RGB_TO_XYZ, dtype=like.dtype, device=like.device)


def rgb_to_luv(rgb: torch.Tensor) -> torch.Tensor:
    """[N, 3] linear Rec.709 RGB -> [N, 3] (L = Y, u, v) as crf_correction.m's ``rgb2luv``."""
    xyz = (rgb @ _matrix(rgb).T).clamp(*XYZ_RANGE)
    x, y = xyz[:, 0] / xyz.sum(dim=1), xyz[:, 1] / xyz.sum(dim=1)
    d = -2.0 * x + 12.0 * y + 3.0
    return torch.stack([xyz[:, 1], 4.0 * x / d * UV_SCALE, 9.0 * y / d * UV_SCALE], dim=1)


def luv_to_rgb(luv: torch.Tensor) -> torch.Tensor:
    """The inverse of ``rgb_to_luv`` (crf_correction.m's ``luv2rgb``), negative RGB set to 0."""
    L, u, v = luv[:, 0], luv[:, 1] / UV_SCALE, luv[:, 2] / UV_SCALE
    d = 6.0 * u - 16.0 * v + 12.0
    x, y = 9.0 * u / d, 4.0 * v / d
    Y = L.clamp(*XYZ_RANGE)
    X = (x / y * L).clamp(*XYZ_RANGE)
    Z = ((1.0 - x - y) / y * L).clamp(*XYZ_RANGE)
    return (torch.stack([X, Y, Z], dim=1) @ torch.linalg.inv(_matrix(luv)).T).clamp_min(0.0)


def design_matrix(x: torch.Tensor, degree: int) -> torch.Tensor:
    """crf_correction.m's ``lin_matrix``: x [N, C] -> [N, P] with columns
    [x^degree, ..., x^2, (x_i x_j for i < j), x, 1] (each power over all C channels)."""
    columns = [x[:, i:i + 1] * x[:, j:j + 1] for i in range(x.shape[1]) for j in range(i + 1, x.shape[1])]
    columns += [x, torch.ones_like(x[:, :1])]
    for d in range(2, degree + 1):
        columns.insert(0, x**d)
    return torch.cat(columns, dim=1)


def fit_polynomial(x: torch.Tensor, y: torch.Tensor, degree: int, regularisation: float) -> torch.Tensor:
    """crf_correction.m's ``corr_opt`` without its transfer functions: y [N, C] fitted as ``design_matrix(x)`` W by
    least squares, ridge-regularised towards the identity map W0 (module docstring, step 4).
    Returns the fitted values X W [N, C]. float64 throughout."""
    X = design_matrix(x, degree)  # [N, P]
    P, C = X.shape[1], x.shape[1]
    W0 = torch.zeros(P, C, dtype=X.dtype, device=X.device)
    W0[P - 1 - C:P - 1] = torch.eye(C, dtype=X.dtype, device=X.device)  # the linear terms: y = x
    s = regularisation * X.shape[0] / P
    A = X.T @ X + s * torch.eye(P, dtype=X.dtype, device=X.device)
    W = torch.linalg.pinv(A) @ (X.T @ y + s * W0)  # pinv: a flat image makes X'X singular
    return X @ W


def _flat(image: torch.Tensor, argument: str) -> torch.Tensor:
    """[3, H, W] -> [H W, 3] float64, finite."""
    if not isinstance(image, torch.Tensor) or image.ndim != 3 or image.shape[0] != 3 or image.numel() == 0:
        raise InputError(argument, f"expected a tensor [3, H, W], got {getattr(image, 'shape', type(image))}")
    flat = image.double().reshape(3, -1).T
    if not torch.isfinite(flat).all():
        raise InputError(argument, "contains NaN or Inf values; accepted: finite values")
    return flat


def crf_correction_Hanji2022(pred: torch.Tensor, ref: torch.Tensor, degree: int = 3,
                             regularisation: float = 0.01) -> torch.Tensor:
    """``pred`` with its tones and colours mapped onto ``ref``'s (module docstring; gfxdisp/pu21 ``crf_correction``
    with cspace 'luv' and ptf 'pq'). pred, ref: absolute linear RGB [3, H, W] in cd/m2 (after the peak mapping),
    same shape. Returns float64 [3, H, W], >= 0."""
    x, y = _flat(pred, "pred"), _flat(ref, "ref")
    if x.shape != y.shape:
        raise InputError("pred", f"shape {tuple(pred.shape)} differs from ref's {tuple(ref.shape)}")
    x_luv, y_luv = rgb_to_luv(x.clamp_min(L_MIN_NITS)), rgb_to_luv(y.clamp_min(L_MIN_NITS))
    pq_low, pq_high = pq_encode(torch.tensor(L_MIN_NITS, dtype=x.dtype)), 1.0
    L = fit_polynomial(pq_encode(x_luv[:, :1]), pq_encode(y_luv[:, :1]), degree, 0.0).clamp(pq_low, pq_high)
    uv = fit_polynomial(x_luv[:, 1:], y_luv[:, 1:], degree, regularisation).clamp_min(L_MIN_NITS)
    rgb = luv_to_rgb(torch.cat([pq_decode(L), uv], dim=1))
    return rgb.T.reshape(pred.shape)


def gamma_correction(pred: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """``pred`` with the gamma a and scale 10^b of log10 Y_ref = a log10 Y_pred + b (least squares over all pixels,
    luminances clamped to >= L_min) applied to its luminance, chromaticity kept. pred, ref: absolute linear RGB
    [3, H, W] (cd/m2), same shape. Returns float64 [3, H, W], >= 0."""
    x, y = _flat(pred, "pred"), _flat(ref, "ref")
    if x.shape != y.shape:
        raise InputError("pred", f"shape {tuple(pred.shape)} differs from ref's {tuple(ref.shape)}")
    luma = _matrix(x)[1]
    Yx, Yy = (x @ luma).clamp_min(L_MIN_NITS), (y @ luma).clamp_min(L_MIN_NITS)
    fitted = 10.0 ** fit_polynomial(Yx.log10()[:, None], Yy.log10()[:, None], 1, 0.0)[:, 0]
    return (x.clamp_min(0.0) * (fitted / Yx)[:, None]).T.reshape(pred.shape)


def correct(pred: torch.Tensor, ref: torch.Tensor, model: str = "hanji2022") -> torch.Tensor:
    """The CRF correction called ``model`` (``CRF_MODELS``) of pred against ref (absolute [3, H, W], cd/m2)."""
    if model == "hanji2022":
        return crf_correction_Hanji2022(pred, ref)
    if model == "gamma":
        return gamma_correction(pred, ref)
    raise InputError("crf", f"got {model!r}; accepted: {', '.join(CRF_MODELS)}")
