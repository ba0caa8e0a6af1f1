"""Distillation: the halving target is exact, the guidance loss, the zero-init w embedding,
and `imagen-video distill` end to end (guidance + one halving, resumable, in a cascade)."""
import json
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from sampler_call import model_fn_of, run_sampler  # noqa: E402 (tests/ is on sys.path)
from imagen_video.diffusion import distillation, objectives, samplers
from imagen_video.diffusion.guidance import cfg_combine
from imagen_video.diffusion.schedule import alpha_sigma, logsnr_schedule_cosine, t_from_logsnr_cosine

CASCADE = os.path.join(os.path.dirname(__file__), "..", "configs", "cascade_tiny.py")
SCHEDULE = (-20.0, 20.0, 2.0)  # logsnr_min, logsnr_max, resolution_shift
SHAPE = (2, 2, 4, 4, 3)
S2 = jnp.array([0.1, 0.5, 2.0])  # per-channel variance of Gaussian data


def _gaussian_x0(z, log_snr, s2=S2):
  """E[x0 | z] for x0 ~ N(0, s2): the optimal denoiser, in closed form."""
  alpha, sigma = alpha_sigma(log_snr)
  a, s = objectives._bcast(alpha, z), objectives._bcast(sigma, z)
  return a * s2 * z / (a ** 2 * s2 + s ** 2)


def _as_v(x0, z, log_snr):
  return objectives.x0_eps_to_pred(x0, objectives.eps_from_x0(z, x0, log_snr), log_snr, "v")


def _teacher(state, z, log_snr, cond):
  return _as_v(_gaussian_x0(z, log_snr), z, log_snr)


def _student_of(steps):
  """The ideal N-step student: on the grid t = 1 - i/N it outputs the halving target."""
  sched = lambda t: logsnr_schedule_cosine(t, *SCHEDULE)

  def student(state, z, log_snr, cond):
    i = jnp.round((1.0 - t_from_logsnr_cosine(log_snr, *SCHEDULE)) * steps).astype(jnp.int32)
    target = distillation.halving_target(
        lambda zz, ls: _gaussian_x0(zz, ls), z, log_snr, sched(1.0 - (2 * i + 1) / (2 * steps)),
        sched(1.0 - (i + 1) / steps), i == steps - 1)
    return _as_v(target, z, log_snr)
  return student


def test_halving_target_reproduces_two_teacher_steps_in_one():
  noise = jax.random.normal(jax.random.key(0), SHAPE)
  kw = dict(shape=SHAPE, sampler="ddim", guided=False, objective="v", thresholding="none",
            logsnr_min=SCHEDULE[0], logsnr_max=SCHEDULE[1], resolution_shift=SCHEDULE[2], noise=noise)
  for n in (4, 1):
    teacher = run_sampler(_teacher, None, {}, 1, steps=2 * n, **kw)
    student = run_sampler(_student_of(n), None, {}, 1, steps=n, **kw)
    np.testing.assert_allclose(student, teacher, rtol=1e-4, atol=1e-5)
    assert float(jnp.abs(teacher).max()) > 0.1  # not trivially zero


def _diffusion():
  return ml_collections.ConfigDict(dict(objective="v", schedule="cosine", logsnr_min=SCHEDULE[0],
                                        logsnr_max=SCHEDULE[1], resolution_shift=SCHEDULE[2]))


def _distill(phase, steps=4):
  return ml_collections.ConfigDict(dict(phase=phase, steps=steps, guidance_min=0.0, guidance_max=6.0,
                                        weighting="truncated_snr"))


def test_halving_loss_is_zero_for_the_ideal_student_on_the_samplers_grid():
  x0 = jnp.sqrt(S2) * jax.random.normal(jax.random.key(2), SHAPE)
  student = _student_of(4)
  loss, aux = distillation.distill_loss(lambda z, ls, w: student(None, z, ls, None),
                                        lambda z, ls, w: _teacher(None, z, ls, None), x0,
                                        jax.random.key(3), _diffusion(), _distill("halving"))
  assert float(loss) < 1e-8
  wrong, _ = distillation.distill_loss(lambda z, ls, w: _teacher(None, z, ls, None),
                                       lambda z, ls, w: _teacher(None, z, ls, None), x0,
                                       jax.random.key(3), _diffusion(), _distill("halving"))
  assert float(wrong) > 1e-4  # the teacher's own one-step prediction is not the target


def test_guidance_loss_is_zero_when_the_student_equals_the_cfg_combination():
  x0 = jnp.sqrt(S2) * jax.random.normal(jax.random.key(4), SHAPE)
  cond_x0 = lambda z, ls: _gaussian_x0(z, ls)
  uncond_x0 = lambda z, ls: _gaussian_x0(z, ls, s2=1.0)

  def net(state, z, ls, cond):  # a conditional model with a distinct unconditional output
    drop = objectives._bcast(cond["drop_text"], z)
    return _as_v(jnp.where(drop, uncond_x0(z, ls), cond_x0(z, ls)), z, ls)

  def teacher(z, ls, w):  # as the guidance phase runs it: the sampler's two-half forward
    return samplers.guided_forward(net, None, z, ls, {}, w)

  def student(z, ls, w):
    return cfg_combine(_as_v(cond_x0(z, ls), z, ls), _as_v(uncond_x0(z, ls), z, ls), w)
  args = (x0, jax.random.key(5), _diffusion(), _distill("guidance"))
  loss, aux = distillation.distill_loss(student, teacher, *args)
  assert float(loss) < 1e-8 and float(jnp.ptp(aux["guidance_weight"])) > 1.0
  ignores_w, _ = distillation.distill_loss(lambda z, ls, w: _as_v(cond_x0(z, ls), z, ls), teacher, *args)
  assert float(ignores_w) > 1e-3


def test_guidance_embedding_is_zero_init_so_the_student_starts_as_the_teacher():
  from imagen_video.nn import unet
  from imagen_video.train.trainer import init_from_teacher
  c = unet.default_config()
  c.update(dict(channels=8, channel_mults=(1,), num_res_blocks=(1,), resolution=8, attn_resolutions=(),
                cross_attn_resolutions=(), text_dim=0, norm_groups=4, heads=1, head_dim=8,
                temporal_mixing="none", mid_spatial_attn=False))
  graphdef, teacher = unet.init_unet(c, jax.random.key(0))

  @jax.jit
  def perturb(params):  # "trained": no zero-init output layer left
    leaves, tree = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.key(9), len(leaves))
    return jax.tree.unflatten(tree, [x + 0.05 * jax.random.normal(k, x.shape) for x, k in zip(leaves, keys)])
  teacher = perturb(teacher)
  c.use_guidance_embedding = True
  s_graphdef, fresh = unet.init_unet(c, jax.random.key(1))
  student = init_from_teacher(fresh, teacher)
  x = jax.random.normal(jax.random.key(2), (2, 2, 8, 8, 3))
  log_snr = jnp.array([-1.0, 2.0])
  fn = jax.jit(model_fn_of(s_graphdef))
  teacher_out = jax.jit(model_fn_of(graphdef))(teacher, x, log_snr, {})
  assert float(jnp.abs(teacher_out).max()) > 0.01
  for w in (jnp.zeros(2), jnp.array([3.0, 7.5])):
    np.testing.assert_allclose(fn(student, x, log_snr, {"guidance_weight": w}), teacher_out, atol=1e-6)
  with pytest.raises(ValueError, match="needs guidance_weight"):
    fn(student, x, log_snr, {})
  with pytest.raises(ValueError, match="lacks teacher params"):
    init_from_teacher(teacher, student)


# A one-level U-Net without attention for the end-to-end test: compiling is its cost.
SMALL = {"model.channel_mults": (1,), "model.num_res_blocks": (1,), "model.attn_resolutions": (),
         "model.cross_attn_resolutions": (), "model.mid_spatial_attn": False,
         "model.temporal_mixing": "conv", "model.temporal_conv_spatial": 1}


def test_distill_cli_guidance_and_halving_resume_and_cascade(tmp_path, capsys):
  from imagen_video.cascade import cascade as cascade_lib
  from imagen_video.cli import flags_util
  from imagen_video.stage.sampler import Request
  from imagen_video.cli import main as cli
  from imagen_video.train import trainer
  from imagen_video.utils import configs_loader
  root, students = str(tmp_path / "stages"), str(tmp_path / "distilled")
  args = f"runlocal,root={root},data_dir={tmp_path / 'tfds'}"
  small = {k: str(v) for k, v in SMALL.items()}
  # A 2-step teacher and 1-step phases: this checks the plumbing, not the quality.
  trainer.train_and_evaluate(flags_util.load_config(f"{CASCADE}:{args},stage=base,steps=2", small),
                             f"{root}/base")
  cmd = ["distill", f"--config={CASCADE}:{args},stage=base", f"--teacher={root}/base",
         f"--workdir={students}/base", "--from-steps=4", "--to-steps=2", "--train-steps=1",
         *(f"--config.{k}={v}" for k, v in small.items())]
  assert cli.main(cmd) == 0
  out = capsys.readouterr().out
  assert "phase 1/2 guidance" in out and "phase 2/2 steps2: 4 -> 2 DDIM steps" in out
  summary = json.loads((tmp_path / "distilled" / "base" / "distill.json").read_text())
  assert summary["student"].endswith("base/steps2") and summary["guidance_input"]
  assert [p["name"] for p in summary["phases"]] == ["guidance", "steps2"]
  saved = json.loads((tmp_path / "distilled" / "base" / "steps2" / "config.json").read_text())
  assert saved["distill"]["teacher"].endswith("base/guidance") and saved["model"]["use_guidance_embedding"]

  assert cli.main(cmd) == 0  # re-run: both phases finished, nothing trains
  out = capsys.readouterr().out
  assert out.count("finished already") == 2 and "[train]" not in out

  # the students' workdirs describe them (the small U-Net, the guidance embedding)
  listing = configs_loader.load(f"{CASCADE}:{args},distilled={students}")
  cascade = cascade_lib.Cascade.load(listing, stages=["base"])
  run = cascade.runs[0]
  assert run.defaults.steps == 2 and run.stage.guidance_input and "guidance_mlp" in run.params["unet"]
  # the distilled base takes the stochastic sampler, the SR stages keep DDIM
  assert [s["sampler"] for s in listing.stages] == ["stochastic", "ddim", "ddim", "ddim"]
  video = cascade.sample(Request(prompts=("a red circle moving left",), seed=0)).video
  assert video.shape == (1, 8, 16, 16, 3) and np.abs(video).max() <= 1


def test_guidance_weighting_applies_to_the_guidance_phase_only():
  from imagen_video.train import distill
  from imagen_video.utils import configs_loader
  config = configs_loader.load("configs/cascade_tiny.py:stage=base,runlocal")
  phases = distill.plan(config, 8, 2)
  assert [p["phase"] for p in phases] == ["guidance", "halving", "halving"]
  made = [distill.phase_config(config, p, "/teacher", guided=True, guidance_range=(1, 5), train_steps=10,
                               lr=1e-4, guidance_weighting="none") for p in phases]
  assert [c.distill.weighting for c in made] == ["none", "truncated_snr", "truncated_snr"]
  assert (made[0].distill.guidance_min, made[0].distill.guidance_max) == (1.0, 5.0)
