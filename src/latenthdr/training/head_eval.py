"""Evaluating an exposure head on cached latents: what it reads besides z0, and validation (training/head.py).

- :func:`head_inputs`: the side inputs of ``ExposureHead.forward`` for cached samples (the unseen maps, the EV-0
  frame), made from the samples' anchored HDR: the 8-bit EV-0 frame their z0 encodes.
- :func:`latent_metrics`: latent MSE of the head and of the identity baseline (z0 for every EV), per EV and
  overall, and their ratio.
- :class:`HeadValidator`: the training loop's validation: latent metrics every call, merged-HDR metrics
  (decode, merge, PU21-PSNR, stops) now and then.
"""

from __future__ import annotations

import torch

from latenthdr.training import data


def ev0_frame(group: data.LatentGroup, rows) -> torch.Tensor:
    """The 8-bit gamma-2.2 EV-0 frame of cached samples, from their anchored HDR: [B, 3, H, W] display [0, 1]
    (the frame their z0 encodes)."""
    return data.sample_bracket(group.hdr[rows], (0.0,))[:, 0]


def ev0_unseen(group: data.LatentGroup, rows) -> torch.Tensor:
    """The 8-bit EV-0 frame's clipped / black fractions per latent cell of cached samples (from their anchored
    HDR): [B, 2, h, w] float32 (``exposure.unseen_fractions``)."""
    return head_inputs(group, rows, "cpu", unseen_maps=True, frame=False)["unseen"]


def head_inputs(group: data.LatentGroup, rows, device, unseen_maps: bool, frame: bool) -> dict:
    """What a head reads besides z0 for cached samples, as keyword arguments of ``ExposureHead.forward``
    (``models.head.side_inputs``), from their EV-0 frame (``ev0_frame``, made once), each only when asked for."""
    from latenthdr.models.head import side_inputs

    if not (unseen_maps or frame):
        return {}
    y0 = ev0_frame(group, rows)
    inputs = side_inputs(y0, y0.shape[-1] // group.z0.shape[-1], unseen_maps=unseen_maps, read_frame=frame)
    return {name: value.to(device) for name, value in inputs.items()}


class HeadValidator:
    """Validation on the val cache (EMA weights). Every call: latent MSE of the head and of the identity
    baseline (z0 for every e), overall and per EV, and their ratio identity / head. At steps that are multiples
    of ``merged_every * val_every`` (step-based, so a resumed run keeps the cadence) and on the final call, merged-HDR metrics on the first ``merged_samples`` val samples: decode the
    predicted bracket, merge (METHOD.md Eq. 9), PU21-PSNR (align=True) against the anchored reference and
    stops; the same for the oracle (true latents decoded; computed once) and for the linearised 8-bit EV-0
    input. Needs a cache built with ``keep_hdr=True`` for the merged metrics."""

    def __init__(self, cache: data.LatentCache, codec, batch_size: int = 8, val_every: int = 100,
                 merged_every: int = 5, merged_samples: int = 4, unseen_maps: bool = False, frame: bool = False):
        self.cache, self.codec, self.batch_size, self.unseen_maps = cache, codec, batch_size, unseen_maps
        self.frame = frame
        self.merged_period = val_every * merged_every  # steps
        self.merged_samples, self._reference = merged_samples, None

    @torch.inference_mode()
    def __call__(self, step: int, module, final: bool) -> dict:
        module.eval()
        out = latent_metrics(module, self.cache, self.batch_size, self.unseen_maps, self.frame)
        if self.merged_samples > 0 and (final or step % self.merged_period == 0):
            out.update(self._merged(module))
        return out

    def _merged(self, module) -> dict:
        from latenthdr import metrics

        picks = _first_samples(self.cache, self.merged_samples)
        if not picks:  # a val cache built without HDR references
            return {}
        if self._reference is None:
            self._reference = {"oracle": [], "input": [], "stops_ref": []}
            for group, row in picks:
                H = group.hdr[row]  # [3, H, W] anchored linear reference
                self._reference["oracle"].append(_merged_scores(self.codec, group.z[row].float(), H, self.cache.evs,
                                                                group.panorama))
                x0 = _linearised_input(H)
                self._reference["input"].append({"pu21_psnr": metrics.pu21_psnr(x0, H, align=True),
                                                 "stops": metrics.stops(x0)})
                self._reference["stops_ref"].append(metrics.stops(H))
        device = next(module.parameters()).device
        head = []
        for group, row in picks:
            side = head_inputs(group, [row], device, self.unseen_maps, self.frame)
            z_hat = module(group.z0[row][None].to(device, torch.float32), torch.tensor(self.cache.evs, device=device),
                           panorama=group.panorama, **side)[0].cpu()  # [K, C, h, w]
            head.append(_merged_scores(self.codec, z_hat, group.hdr[row], self.cache.evs, group.panorama))
        out = {f"merged_{k}": _mean(head, k) for k in ("pu21_psnr", "stops", "plow", "phigh")}
        out.update({f"oracle_{k}": _mean(self._reference["oracle"], k) for k in ("pu21_psnr", "stops")})
        out.update({f"input_{k}": _mean(self._reference["input"], k) for k in ("pu21_psnr", "stops")})
        out["reference_stops"] = sum(self._reference["stops_ref"]) / len(picks)
        return out


def latent_metrics(module, cache: data.LatentCache, batch_size: int = 8, unseen_maps: bool = False,
                   frame: bool = False) -> dict:
    """Latent MSE (per element) of the head and of the identity baseline over a whole cache, overall and
    per EV (keys "%g" of the EV), and ``identity_over_head`` = identity MSE / head MSE (> 1: the head helps).
    ``unseen_maps`` / ``frame``: the head reads the EV-0 frame's maps / the frame (``head_inputs``; the cache
    must keep its HDR)."""
    device = next(module.parameters()).device
    evs = torch.tensor(cache.evs, dtype=torch.float32, device=device)
    se_head = torch.zeros(len(cache.evs), dtype=torch.float64)
    se_id = torch.zeros_like(se_head)
    count = 0
    for group in cache.groups:
        for rows in torch.arange(len(group)).split(batch_size):
            z0 = group.z0[rows].to(device, torch.float32)
            z = group.z[rows].to(device, torch.float32)  # [B, K, C, h, w]
            z_hat = module(z0, evs, panorama=group.panorama, **head_inputs(group, rows, device, unseen_maps, frame))
            se_head += (z_hat - z).double().square().sum(dim=(0, 2, 3, 4)).cpu()
            se_id += (z0[:, None] - z).double().square().sum(dim=(0, 2, 3, 4)).cpu()
            count += z[:, 0].numel()
    mse_head, mse_id = se_head / count, se_id / count
    return {"latent_mse": mse_head.mean().item(), "identity_mse": mse_id.mean().item(),
            "identity_over_head": (mse_id.mean() / mse_head.mean()).item(),
            "latent_mse_per_ev": {f"{e:g}": v.item() for e, v in zip(cache.evs, mse_head)},
            "identity_mse_per_ev": {f"{e:g}": v.item() for e, v in zip(cache.evs, mse_id)}}


def _first_samples(cache: data.LatentCache, n: int) -> list:
    """(group, row) of the n lowest sample indices that have a stored HDR reference."""
    rows = [(int(i), group, r) for group in cache.groups if group.hdr is not None
            for r, i in enumerate(group.index.tolist())]
    return [(group, r) for _, group, r in sorted(rows, key=lambda t: t[0])[:n]]


def _merged_scores(codec, z: torch.Tensor, H: torch.Tensor, evs, panorama: bool) -> dict:
    """Decode latents [K, C, h, w], merge, and score against the anchored reference H [3, H, W]."""
    from latenthdr import merge, metrics

    y = codec.decode(z.to(codec.device), panorama=panorama).cpu()  # [K, 3, H, W] display
    result = merge.merge_bracket(y, evs, curve=data.CURVE)
    return {"pu21_psnr": metrics.pu21_psnr(result.hdr, H, align=True), "stops": metrics.stops(result.hdr),
            "plow": result.plow, "phigh": result.phigh}


def _linearised_input(H: torch.Tensor) -> torch.Tensor:
    """The l2h baseline: the 8-bit EV-0 frame linearised (no expansion). H [3, H, W] -> [3, H, W]."""
    from latenthdr import response

    return response.decode(data.sample_bracket(H, (0.0,))[0], data.CURVE)


def _mean(records: list[dict], key: str) -> float:
    return sum(r[key] for r in records) / len(records)
