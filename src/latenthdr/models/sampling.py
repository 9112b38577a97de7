"""Samplers of the embedded prior over its discrete DDPM: DPM-Solver++ 2M, DDIM and Euler, without diffusers.

Each one reproduces, operation for operation and so bit for bit, the diffusers scheduler the prior was sampled
with before (tests/test_startup.py compares them with diffusers on every step count it checks):
- ``dpmsolver``: ``DPMSolverMultistepScheduler(algorithm_type="dpmsolver++", solver_order=2)``, midpoint solver,
  first order on the first and the last step (the final sigma is 0). DPM-Solver++ 2M, Lu et al. 2022,
  "DPM-Solver++: Fast Solver for Guided Sampling of Diffusion Probabilistic Models", Algorithm 2;
- ``ddim``: ``DDIMScheduler(clip_sample=False, set_alpha_to_one=True)`` with eta = 0 (Song et al. 2021, Eq. 12);
- ``euler``: ``EulerDiscreteScheduler`` (Karras et al. 2022, Algorithm 2 without churn) on the DDPM's sigmas.
All use ``timestep_spacing="trailing"`` and the DDPM of :class:`DDPMSchedule` (diffusers' ``num_train_timesteps``,
``beta_schedule`` and ``prediction_type``). Why not diffusers itself: importing one of its schedulers costs 1.3-2 s
of start-up on a laptop CPU (its utilities, and scipy.stats for a sigma option we never use), more than the whole
diffusion run of the embedded prior; training (``training/prior.py``) still uses diffusers' DDPMScheduler.

The interface is diffusers': ``set_timesteps(steps, device)``, ``timesteps`` [n], ``init_noise_sigma``,
``scale_model_input(x, t)``, ``step(model_output, t, x) -> x_prev``; latents x [B, C, h, w] float32, scaled so
that x_T = noise * init_noise_sigma; the timesteps are int64 (float32 for Euler, as in diffusers).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import torch

from latenthdr.errors import InputError

SAMPLERS = ("dpmsolver", "ddim", "euler")
BETA_SCHEDULES = ("squaredcos_cap_v2", "linear", "scaled_linear")
BETA_START, BETA_END = 0.0001, 0.02  # diffusers' defaults for the linear schedules
MAX_BETA = 0.999  # the cosine schedule's cap (Nichol & Dhariwal 2021, Sec. 3.2)


@dataclass(frozen=True)
class DDPMSchedule:
    """The discrete forward process: ``num_train_timesteps`` steps of ``beta_schedule``; the denoiser predicts
    ``prediction_type`` ("v_prediction": v = alpha_t eps - sigma_t x0, Salimans & Ho 2022; or "epsilon")."""

    num_train_timesteps: int = 1000
    beta_schedule: str = "squaredcos_cap_v2"
    prediction_type: str = "v_prediction"

    def __post_init__(self):
        if self.beta_schedule not in BETA_SCHEDULES:
            raise InputError("beta_schedule", f"got {self.beta_schedule!r}; accepted: {', '.join(BETA_SCHEDULES)}")
        if self.prediction_type not in ("v_prediction", "epsilon"):
            raise InputError("prediction_type", f"got {self.prediction_type!r}; accepted: v_prediction, epsilon")


@functools.lru_cache(maxsize=8)
def _alphas_cumprod(num_train_timesteps: int, beta_schedule: str) -> torch.Tensor:
    n = num_train_timesteps
    if beta_schedule == "squaredcos_cap_v2":  # Nichol & Dhariwal 2021, Eq. 17, in float64 then float32
        def alpha_bar(t):
            return math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2

        betas = torch.tensor([min(1 - alpha_bar((i + 1) / n) / alpha_bar(i / n), MAX_BETA) for i in range(n)],
                             dtype=torch.float32)
    elif beta_schedule == "linear":
        betas = torch.linspace(BETA_START, BETA_END, n, dtype=torch.float32)
    else:  # scaled_linear
        betas = torch.linspace(BETA_START**0.5, BETA_END**0.5, n, dtype=torch.float32) ** 2
    return torch.cumprod(1.0 - betas, dim=0)


def alphas_cumprod(schedule: DDPMSchedule) -> torch.Tensor:
    """alpha-bar_t [num_train_timesteps] float32 on the CPU (a fresh copy)."""
    return _alphas_cumprod(schedule.num_train_timesteps, schedule.beta_schedule).clone()


def trailing_timesteps(num_train_timesteps: int, steps: int) -> np.ndarray:
    """diffusers' "trailing" spacing: T - 1, T - 1 - T/n, ... rounded (int64, decreasing; Lin et al. 2024, Table 2)."""
    step_ratio = num_train_timesteps / steps
    timesteps = np.arange(num_train_timesteps, 0, -step_ratio).round().copy().astype(np.int64)
    timesteps -= 1
    return timesteps


class _Sampler:
    """Shared state: the schedule, alpha-bar, the timesteps of the run and the step counter."""

    init_noise_sigma = 1.0

    def __init__(self, schedule: DDPMSchedule):
        self.schedule = schedule
        self.alphas_cumprod = alphas_cumprod(schedule)
        self.timesteps: torch.Tensor | None = None
        self.num_inference_steps: int | None = None
        self._index = 0

    def set_timesteps(self, num_inference_steps: int, device=None) -> None:
        if isinstance(num_inference_steps, bool) or not isinstance(num_inference_steps, int) \
                or not 1 <= num_inference_steps <= self.schedule.num_train_timesteps:
            raise InputError("num_inference_steps", f"got {num_inference_steps!r}; accepted: an integer from 1 to "
                                                    f"{self.schedule.num_train_timesteps}")
        self.num_inference_steps = num_inference_steps
        self._index = 0
        self._set_timesteps(trailing_timesteps(self.schedule.num_train_timesteps, num_inference_steps), device)

    def _set_timesteps(self, timesteps: np.ndarray, device) -> None:
        self.timesteps = torch.from_numpy(timesteps).to(device=device, dtype=torch.int64)

    def scale_model_input(self, x: torch.Tensor, t) -> torch.Tensor:
        return x

    def _check_ready(self) -> None:
        if self.timesteps is None:
            raise InputError("sampler", "call set_timesteps(steps) before step()")


class DPMSolverPP2M(_Sampler):
    """DPM-Solver++ 2M (Lu et al. 2022, Algorithm 2, midpoint form) in the data-prediction (x0) parametrisation,
    over lambda_t = log(alpha_t / sigma_t); first order on the first step and on the last (sigma = 0) one."""

    def __init__(self, schedule: DDPMSchedule):
        super().__init__(schedule)
        self.model_outputs: list[torch.Tensor | None] = [None, None]
        self.sigmas: torch.Tensor | None = None

    def _set_timesteps(self, timesteps, device) -> None:
        ac = self.alphas_cumprod
        sigmas = (((1 - ac) / ac) ** 0.5).numpy()[timesteps]  # float32 sigma_t / alpha_t at the timesteps
        self.sigmas = torch.from_numpy(np.concatenate([sigmas, [0]]).astype(np.float32))
        self.timesteps = torch.from_numpy(timesteps).to(device=device, dtype=torch.int64)
        self.model_outputs = [None, None]

    @staticmethod
    def _alpha_sigma(sigma: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        alpha_t = 1 / ((sigma**2 + 1) ** 0.5)
        return alpha_t, sigma * alpha_t

    def step(self, model_output: torch.Tensor, t, sample: torch.Tensor) -> torch.Tensor:
        self._check_ready()
        i = self._index
        alpha_s0, sigma_s0 = self._alpha_sigma(self.sigmas[i])
        if self.schedule.prediction_type == "v_prediction":
            x0 = alpha_s0 * sample - sigma_s0 * model_output
        else:
            x0 = (sample - sigma_s0 * model_output) / alpha_s0
        self.model_outputs = [self.model_outputs[1], x0]
        sample = sample.to(torch.float32)
        alpha_t, sigma_t = self._alpha_sigma(self.sigmas[i + 1])
        lambda_t = torch.log(alpha_t) - torch.log(sigma_t)
        lambda_s0 = torch.log(alpha_s0) - torch.log(sigma_s0)
        h = lambda_t - lambda_s0
        if i == 0 or i == len(self.timesteps) - 1:  # first order (DPM-Solver-1 = DDIM in x0 form)
            x_t = (sigma_t / sigma_s0) * sample - (alpha_t * (torch.exp(-h) - 1.0)) * x0
        else:
            alpha_s1, sigma_s1 = self._alpha_sigma(self.sigmas[i - 1])
            lambda_s1 = torch.log(alpha_s1) - torch.log(sigma_s1)
            m0, m1 = self.model_outputs[-1], self.model_outputs[-2]
            h_0 = lambda_s0 - lambda_s1
            r0 = h_0 / h
            D0, D1 = m0, (1.0 / r0) * (m0 - m1)
            x_t = ((sigma_t / sigma_s0) * sample - (alpha_t * (torch.exp(-h) - 1.0)) * D0
                   - 0.5 * (alpha_t * (torch.exp(-h) - 1.0)) * D1)
        self._index += 1
        return x_t.to(model_output.dtype)


class DDIM(_Sampler):
    """Deterministic DDIM (eta = 0; Song et al. 2021, Eq. 12), alpha-bar = 1 after the last step."""

    def step(self, model_output: torch.Tensor, t, sample: torch.Tensor) -> torch.Tensor:
        self._check_ready()
        timestep = int(t)
        prev_timestep = timestep - self.schedule.num_train_timesteps // self.num_inference_steps
        alpha_prod_t = self.alphas_cumprod[timestep]
        alpha_prod_t_prev = self.alphas_cumprod[prev_timestep] if prev_timestep >= 0 else torch.tensor(1.0)
        beta_prod_t = 1 - alpha_prod_t
        if self.schedule.prediction_type == "v_prediction":
            x0 = (alpha_prod_t**0.5) * sample - (beta_prod_t**0.5) * model_output
            eps = (alpha_prod_t**0.5) * model_output + (beta_prod_t**0.5) * sample
        else:
            x0 = (sample - beta_prod_t ** (0.5) * model_output) / alpha_prod_t ** (0.5)
            eps = model_output
        beta_prod_t_prev = 1 - alpha_prod_t_prev
        variance = (beta_prod_t_prev / beta_prod_t) * (1 - alpha_prod_t / alpha_prod_t_prev)
        std_dev_t = 0.0 * variance ** (0.5)  # eta = 0, kept in the expression as diffusers computes it
        direction = (1 - alpha_prod_t_prev - std_dev_t**2) ** (0.5) * eps
        self._index += 1
        return alpha_prod_t_prev ** (0.5) * x0 + direction


class Euler(_Sampler):
    """Euler steps of the probability-flow ODE in sigma = sqrt((1 - alpha-bar) / alpha-bar) (Karras et al. 2022,
    Algorithm 2 with no churn); inputs scaled by 1 / sqrt(sigma^2 + 1); float32 timesteps."""

    def __init__(self, schedule: DDPMSchedule):
        super().__init__(schedule)
        self.sigmas: torch.Tensor | None = None

    def _set_timesteps(self, timesteps, device) -> None:
        ac = self.alphas_cumprod
        sigmas = (((1 - ac) / ac) ** 0.5).numpy()[timesteps]
        self.sigmas = torch.from_numpy(np.concatenate([sigmas, [0]]).astype(np.float32))
        self.timesteps = torch.from_numpy(timesteps.astype(np.float32)).to(device=device)

    @property
    def init_noise_sigma(self):
        return self.sigmas.max() if self.sigmas is not None else 1.0

    def scale_model_input(self, x: torch.Tensor, t) -> torch.Tensor:
        sigma = self.sigmas[self._index]
        return x / ((sigma**2 + 1) ** 0.5)

    def step(self, model_output: torch.Tensor, t, sample: torch.Tensor) -> torch.Tensor:
        self._check_ready()
        sample = sample.to(torch.float32)
        sigma = self.sigmas[self._index]
        if self.schedule.prediction_type == "v_prediction":
            x0 = model_output * (-sigma / (sigma**2 + 1) ** 0.5) + (sample / (sigma**2 + 1))
        else:
            x0 = sample - sigma * model_output
        derivative = (sample - x0) / sigma
        dt = self.sigmas[self._index + 1] - sigma
        self._index += 1
        return (sample + derivative * dt).to(model_output.dtype)


SAMPLER_CLASSES = {"dpmsolver": DPMSolverPP2M, "ddim": DDIM, "euler": Euler}


def make_sampler(kind: str, schedule: DDPMSchedule) -> _Sampler:
    """A fresh sampler (they hold per-run state) of ``kind`` (one of :data:`SAMPLERS`) over ``schedule``."""
    if kind not in SAMPLER_CLASSES:
        raise InputError("scheduler", f"got {kind!r}; accepted: {', '.join(SAMPLERS)}")
    return SAMPLER_CLASSES[kind](schedule)
