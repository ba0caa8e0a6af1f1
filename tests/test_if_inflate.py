"""DeepFloyd IF inflated into video stages: `convert-if` on tiny random IF-I- and IF-II-shaped
diffusers U-Nets; the stage on a T-frame video equals diffusers' UNet2DConditionModel on each
frame; a DDPM step and a DDIM run equal diffusers' schedulers configured as IF's (needs torch
and diffusers)."""
import contextlib
import io
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from imagen_video.diffusion import samplers
from imagen_video.diffusion.guidance import apply_threshold
from imagen_video.diffusion.objectives import pred_to_x0_eps
from imagen_video.diffusion.schedule import ddpm_index_from_logsnr, ddpm_log_snr_table
from imagen_video.stage import loading

torch = pytest.importorskip("torch")
diffusers = pytest.importorskip("diffusers")

TEXT_DIM = 64  # the tiny T5 preset's d_model (IF: T5-XXL's 4096)
# diffusers' own IF test fixtures (tests/pipelines/deepfloyd_if), IF-II with the published
# IF-II-L config's resnet_skip_time_act / resnet_out_scale_factor as well.
COMMON = dict(block_out_channels=[32, 64], down_block_types=["ResnetDownsampleBlock2D", "SimpleCrossAttnDownBlock2D"],
              mid_block_type="UNetMidBlock2DSimpleCrossAttn",
              up_block_types=["SimpleCrossAttnUpBlock2D", "ResnetUpsampleBlock2D"], out_channels=6,
              cross_attention_dim=32, encoder_hid_dim=TEXT_DIM, attention_head_dim=8, addition_embed_type="text",
              addition_embed_type_num_heads=2, cross_attention_norm="group_norm",
              resnet_time_scale_shift="scale_shift", act_fn="gelu")
CONFIGS = {
    "base": dict(variant="tiny-I", unet=dict(sample_size=16, layers_per_block=1, in_channels=3)),
    "ssr": dict(variant="tiny-II", unet=dict(
        sample_size=32, layers_per_block=[1, 2], in_channels=6, class_embed_type="timestep",
        mid_block_scale_factor=1.414, time_embedding_act_fn="gelu", time_embedding_dim=32,
        resnet_skip_time_act=True, resnet_out_scale_factor=1 / 0.7071)),
}
IF_SCHEDULER = dict(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2", prediction_type="epsilon",
                    thresholding=True, dynamic_thresholding_ratio=0.95, sample_max_value=1.5,
                    timestep_spacing="trailing")


def build_hf(path, stage):
  from diffusers.models.attention_processor import AttnAddedKVProcessor
  torch.manual_seed(0)
  model = diffusers.UNet2DConditionModel(**COMMON, **CONFIGS[stage]["unet"])
  model.set_attn_processor(AttnAddedKVProcessor())  # the math the others implement
  with torch.no_grad():  # off the init (zero biases, unit norms), so every mapping matters
    for p in model.parameters():
      p.add_(0.1 * torch.randn_like(p))
  model.eval().save_pretrained(path)
  return model


def convert(src, out, stage, variant=None, *extra):
  from imagen_video.cli import main as cli
  return cli.main(["convert-if", "--src", src, "--out", out, "--stage", stage,
                   "--variant", variant or CONFIGS[stage]["variant"], *extra])


@pytest.fixture(scope="module", params=list(CONFIGS))
def inflated(request, tmp_path_factory):
  """(stage, diffusers model, its folder, our converted workdir, the T5 reference or None): the
  base stage is converted with a tiny IF text encoder (`--t5`), the SSR stage without one."""
  from imagen_video.text import hf_convert
  stage = request.param
  root = tmp_path_factory.mktemp(stage)
  model = build_hf(str(root / "hf"), stage)
  t5_ref, extra = None, []
  if stage == "base":
    t5_ref = build_t5(str(root / "t5_hf"))
    hf_convert.convert(str(root / "t5_hf"), str(root / "t5"))
    extra = ["--t5", str(root / "t5")]
  with contextlib.redirect_stdout(io.StringIO()) as out:
    assert convert(str(root / "hf"), str(root / "ours"), stage, None, *extra) == 0
  # what the command says of the null text: T5's, or random without --t5
  assert ("T5's embedding of the empty prompt" if extra else "null text: random") in out.getvalue()
  return stage, model, str(root / "hf"), str(root / "ours"), t5_ref


def test_inflated_stage_is_diffusers_on_each_frame(inflated):
  stage_kind, model, _, workdir, _ = inflated
  stage, ema, step = loading.load(workdir)
  assert step == 0 and stage.config.diffusion.schedule == "ddpm_cosine"
  b, t, length = 2, 3, 5
  size = model.config.sample_size
  rng = np.random.RandomState(0)
  x = rng.randn(b, t, size, size, 3).astype(np.float32)
  text = rng.randn(b, length, TEXT_DIM).astype(np.float32)
  steps = np.array([999, 417])
  log_snr = ddpm_log_snr_table(1000)[steps + 1].astype(np.float32)  # the table starts at index -1
  cond = {"text_emb": jnp.asarray(text), "text_mask": jnp.ones((b, length), bool)}
  frames = torch.tensor(x).permute(0, 1, 4, 2, 3).reshape(b * t, 3, size, size)
  extra = {}
  if stage_kind == "ssr":  # the upsampled low-res input and its noise level (IF-II's class label)
    low = rng.randn(b, t, size, size, 3).astype(np.float32)
    levels = np.array([250, 40])
    cond.update(cond_video=jnp.asarray(low), aug_level=jnp.asarray((levels + 1) / 1000, jnp.float32))
    frames = torch.cat([frames, torch.tensor(low).permute(0, 1, 4, 2, 3).reshape(b * t, 3, size, size)], 1)
    extra["class_labels"] = torch.tensor(np.repeat(levels, t))
  # Compiled, as the sampler runs it (eagerly: ~500 one-op programs to compile instead of one)
  ours = np.asarray(jax.jit(stage.model_fn)(ema["unet"], jnp.asarray(x), jnp.asarray(log_snr), cond))
  with torch.no_grad():
    ref = model(frames, torch.tensor(np.repeat(steps, t)),
                encoder_hidden_states=torch.tensor(np.repeat(text, t, axis=0)), **extra).sample
  ref = ref.reshape(b, t, 6, size, size).permute(0, 1, 3, 4, 2).numpy()
  err = np.abs(ours - ref).max()
  print(f"\n{stage_kind}: max |ours - diffusers| over {b}x{t} frames {err:.2e} (output scale {np.abs(ref).max():.1f})")
  assert err <= 1e-4
  # the inserted temporal layers (zero output init, so the stage is IF per frame) are what
  # optim.trainable='temporal' trains; IF's own layers stay frozen
  from imagen_video.train.optimizer import temporal_labels
  labels = jax.tree.leaves(temporal_labels(ema["unet"]))
  assert 0 < labels.count("train") < len(labels)


def build_t5(path):
  """IF's text encoder, tiny: test_t5_convert's random T5-v1.1 at the U-Net's text width."""
  from test_t5_convert import build_hf as build_t5_hf  # tests/ is on sys.path
  return build_t5_hf(path, "gated-gelu", d_model=TEXT_DIM)


@pytest.mark.parametrize("inflated", ["base"], indirect=True)  # the stage converted with --t5
def test_prompt_and_empty_prompt_reach_the_unet_as_in_ifs_pipeline(inflated):
  """IF's pipeline feeds T5's outputs at all 77 positions (padding included) and, for the
  unconditional half, T5's embedding of "": our text encoder keeps padded outputs for IF
  stages and `convert-if --t5` writes T5("") as the null text, so one guided forward pass
  (conditional + unconditional) equals diffusers' UNet on what the pipeline would give it."""
  _, model, _, workdir, t5_ref = inflated
  with open(os.path.join(workdir, "config.json")) as f:
    assert json.load(f)["text"]["checkpoint"]  # converted with --t5
  stage, ema, _ = loading.load(workdir)
  length = stage.config.text.max_length
  ids = np.zeros((2, length), np.int64)
  ids[0, :5], ids[1, :3] = [17, 5, 60, 9, 1], [33, 71, 1]  # prompts, eos, then padding
  empty = np.zeros((1, length), np.int64)
  empty[0, 0] = 1
  with torch.no_grad():
    t5 = lambda i: t5_ref(input_ids=torch.tensor(i), attention_mask=torch.tensor((i > 0).astype(np.int64)))
    ref_text, ref_null = t5(ids).last_hidden_state.numpy(), t5(empty).last_hidden_state.numpy()[0]
  emb, mask = stage.text.encode(ids, ids > 0)
  assert np.abs(ref_text[ids == 0]).min() > 0  # padded positions carry T5's outputs ...
  err_text = np.abs(np.asarray(emb) - ref_text).max()  # ... and so do ours
  null = np.asarray(jax.tree.leaves(ema["unet"]["null_text"])[0])
  err_null = np.abs(null - ref_null).max()

  b, t, size = 2, 2, model.config.sample_size
  x = np.random.RandomState(0).randn(b, t, size, size, 3).astype(np.float32)
  steps = np.array([700, 300])
  log_snr = ddpm_log_snr_table(1000)[steps + 1].astype(np.float32)
  cond = {"text_emb": emb, "text_mask": mask, "drop_text": jnp.array([False, True])}
  ours = np.asarray(jax.jit(stage.model_fn)(ema["unet"], jnp.asarray(x), jnp.asarray(log_snr), cond))
  hidden = np.repeat(np.stack([ref_text[0], ref_null]), t, axis=0)  # sample 0 with its prompt, 1 with ""
  with torch.no_grad():
    ref = model(_frames(x), torch.tensor(np.repeat(steps, t)), encoder_hidden_states=torch.tensor(hidden)).sample
  err = np.abs(ours - _video(ref, (b, t, size, size, 6))).max()
  print(f"\nmax |ours - transformers| text {err_text:.2e}, null text {err_null:.2e}; "
        f"guided pair vs diffusers {err:.2e}")
  assert err_text <= 1e-4 and err_null <= 1e-4 and err <= 1e-4


def _frames(a):  # [B, T, H, W, C] -> diffusers' [B*T, C, H, W]
  return torch.tensor(np.asarray(a)).permute(0, 1, 4, 2, 3).reshape(-1, a.shape[-1], *a.shape[2:4])


def _video(a, shape):
  return a.reshape(shape[0], shape[1], shape[4], shape[2], shape[3]).permute(0, 1, 3, 4, 2).numpy()


def test_ddpm_step_equals_diffusers_learned_range():
  """One ancestral step with the learned variance = DDPMScheduler(variance_type='learned_range')."""
  shape = (2, 2, 8, 8, 3)
  rng = np.random.RandomState(1)
  z = rng.randn(*shape).astype(np.float32)
  pred = np.concatenate([1.5 * rng.randn(*shape), rng.uniform(-1, 1, shape)], -1).astype(np.float32)
  sched = diffusers.DDPMScheduler(variance_type="learned_range", **IF_SCHEDULER)
  sched.set_timesteps(100)
  t = int(sched.timesteps[1])
  prev = int(sched.timesteps[2])
  assert (t, prev) == (989, 979)
  noise = torch.randn(shape[0] * shape[1], 3, 8, 8, generator=torch.Generator().manual_seed(0))
  ref = sched.step(torch.cat([_frames(pred[..., :3]), _frames(pred[..., 3:])], 1), t, _frames(z),
                   generator=torch.Generator().manual_seed(0)).prev_sample
  table = ddpm_log_snr_table(1000)
  ls_t, ls_s = (jnp.full((shape[0],), table[k + 1], jnp.float32) for k in (t, prev))
  x0 = pred_to_x0_eps(jnp.asarray(pred[..., :3]), jnp.asarray(z), ls_t, "eps")[0]
  x0 = apply_threshold(x0, "dynamic_per_frame", 95.0, 1.5)
  times = samplers.Times(jnp.int32(1), ls_t, ls_s, ls_s, (jnp.asarray(pred[..., 3:]) + 1) / 2)
  ours = samplers.STEP[samplers.Sampler.ANCESTRAL](jnp.asarray(z), x0, times, None,
                                                   lambda: jnp.asarray(_video(noise, shape)))
  err = np.abs(np.asarray(ours) - _video(ref, shape)).max()
  print(f"\nDDPM step {t}->{prev}: max |ours - diffusers| {err:.2e}")
  assert err <= 1e-4


def test_ddim_sampling_equals_diffusers():
  """A whole 10-step DDIM run of our sampler (IF's schedule, per-frame dynamic thresholding,
  learned-variance half dropped) = DDIMScheduler with timestep_spacing='trailing', step by step."""
  shape = (1, 2, 8, 8, 3)
  z0 = np.random.RandomState(2).randn(*shape).astype(np.float32)

  def eps(z, index):  # any smooth function of (z, timestep) stands in for the network
    return 1.2 * jnp.tanh(z + 0.002 * index) + 0.3 * z

  def model_fn(state, z, log_snr, cond):
    index = ddpm_index_from_logsnr(log_snr)[:, None, None, None, None]
    return jnp.concatenate([eps(z, index), 0.5 * jnp.tanh(z)], -1)
  plan = samplers.Plan(shape, 10, "ddim", "eps", "dynamic_per_frame", ("ddpm_cosine", 1000),
                       guided=False, learned_variance=True)
  ours = samplers.sample(model_fn, None, {}, samplers.seed_keys([0]), plan,
                         samplers.Controls(percentile=95.0, threshold_max=1.5), noise=jnp.asarray(z0))
  sched = diffusers.DDIMScheduler(clip_sample=False, set_alpha_to_one=True, **IF_SCHEDULER)
  sched.set_timesteps(10)
  assert list(sched.timesteps[:2]) == [999, 899]
  x = _frames(z0)
  for t in sched.timesteps:
    e = eps(jnp.asarray(_video(x, shape)), float(t))
    x = sched.step(_frames(np.asarray(e)), int(t), x, eta=0.0, use_clipped_model_output=True).prev_sample
  err = np.abs(np.asarray(ours) - _video(x, shape)).max()
  print(f"\nDDIM x10: max |ours - diffusers| {err:.2e}")
  assert err <= 1e-4


def _rewrite_config(src, dst, **changes):
  import shutil
  shutil.copytree(src, dst)
  with open(os.path.join(dst, "config.json")) as f:
    cfg = json.load(f)
  cfg.update(changes)
  with open(os.path.join(dst, "config.json"), "w") as f:
    json.dump(cfg, f)


@pytest.mark.parametrize("inflated", ["base"], indirect=True)  # the error paths are the same for both
def test_bad_input_is_one_line(inflated, tmp_path, capsys):
  stage, _, hf_dir, _, _ = inflated
  from safetensors.numpy import load_file, save_file
  cases = []
  # a missing tensor
  missing = tmp_path / "missing"
  import shutil
  shutil.copytree(hf_dir, missing)
  weights = load_file(str(missing / "diffusion_pytorch_model.safetensors"))
  del weights["mid_block.attentions.0.add_k_proj.weight"]
  save_file(weights, str(missing / "diffusion_pytorch_model.safetensors"))
  cases.append((missing, "mid_block.attentions.0.add_k_proj.weight"))
  # a tensor of the wrong shape: config.json says wider text than the weights hold
  _rewrite_config(hf_dir, tmp_path / "shape", cross_attention_dim=48)
  cases.append((tmp_path / "shape", "has shape"))
  # an unsupported block type
  _rewrite_config(hf_dir, tmp_path / "block", down_block_types=["DownBlock2D", "SimpleCrossAttnDownBlock2D"])
  cases.append((tmp_path / "block", "down_block_types"))
  # IF-II weights given as a base stage
  _rewrite_config(hf_dir, tmp_path / "kind", class_embed_type="timestep")
  cases.append((tmp_path / "kind", "noise-level"))
  for src, needle in cases:
    assert convert(str(src), str(tmp_path / "out"), "base") == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and needle in err and str(src) in err, err
  # a --t5 checkpoint that is not there: said before anything is converted
  missing_t5 = str(tmp_path / "no_t5")
  assert convert(hf_dir, str(tmp_path / "out_t5"), "base", None, "--t5", missing_t5) == 1
  err = capsys.readouterr().err.strip()
  assert len(err.splitlines()) == 1 and f"--t5 {missing_t5}" in err and not os.path.exists(tmp_path / "out_t5")


def test_trainable_temporal_freezes_the_spatial_layers():
  from imagen_video.train import optimizer
  optim = optimizer.default_optim_config()
  optim.update(dict(trainable="temporal", warmup_steps=0))
  params = {"unet": {"down": {"0": {"res": {"kernel": jnp.ones(3)}, "temporal": {"kernel": jnp.ones(3)},
                                    "temporal_conv": {"bias": jnp.ones(3)}}}}}
  tx, _ = optimizer.make_optimizer(optim, 10)
  updates, _ = tx.update(jax.tree.map(jnp.ones_like, params), tx.init(params), params)
  block = updates["unet"]["down"]["0"]
  assert not np.any(block["res"]["kernel"])
  assert np.all(block["temporal"]["kernel"] != 0) and np.all(block["temporal_conv"]["bias"] != 0)
