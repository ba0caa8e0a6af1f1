"""The tiny cascade on `moving_shapes`: base -> TSR -> SSR -> SSR, on CPU.

    8x16x16 @4fps (base) -> 16x16x16 @8fps (TSR) -> 16x32x32 (SSR) -> 16x64x64 (SSR)

    imagen-video demo                                   # trains all four, samples
    imagen-video sample --cascade configs/cascade_tiny.py --prompt "a red circle moving left" --out a.mp4
    imagen-video train --config configs/cascade_tiny.py:stage=tsr --workdir workdirs/cascade_tiny/tsr

`get_config()` is the cascade listing (the stages' configs, workdirs and
samplers); `get_config("stage=NAME")` one stage's training config. Arguments:
stage (base, tsr, ssr1, ssr2), root (workdirs root, default demo/stages,
where `imagen-video demo` trains them), data_dir (TFDS dir), steps (override every stage's
training steps), residual (default true; false: the paper's plain SR stages),
runlocal (seconds-long smoke configs for tests), distilled (root of `imagen-video distill`
students DIR/{base,tsr,ssr1,ssr2}: the same cascade with every stage at its final student,
DIR/NAME/steps8, sampled with 8 steps; runlocal: steps2 and 2 steps), wrap (base only:
`moving_shapes` with wrap-around motion, whose continuation has a ground truth at any
length: video extension), sample_steps (sampling steps per stage in ORDER, e.g.
256/128/128/128, the paper's undistilled counts; default SAMPLING's).

Every stage trains on ground-truth (low-res, high-res) pairs of the same
`moving_shapes` clips (the dataset's `extra_resolutions`), with conditioning
augmentation; the SSR stages train on 16x16 crops (the last is fully convolutional).
"""
import ml_collections

from imagen_video.data import batch as batch_keys
from imagen_video.utils import configs_loader
from imagen_video.utils.config_args import parse_arg

# name, kind, (frames, height, width), low-res input, U-Net, train steps, batch, crop,
# residual scale (about frames' std / residual std, see `sr_stage`), highest training
# augmentation level (default 0.5; the TSR's in-between detail, rms 0.03, drowns in more),
# highest training blur of the low-res input (std in low-res pixels, `stage.blur_max`)
SR_STAGES = {
    "tsr": dict(kind="tsr", out=(16, 16, 16), low=(8, 16, 16), channels=16, mults=(1, 2),
                blocks=(1, 1), cross=(8,), steps=120, batch=16, crop=None, scale=8, aug_max=0.1),
    "ssr1": dict(kind="ssr", out=(16, 32, 32), low=(16, 16, 16), channels=16, mults=(1, 2, 2),
                 blocks=(1, 1, 1), cross=(8,), steps=600, batch=8, crop=(16, 16), scale=4, blur=0.75),
    "ssr2": dict(kind="ssr", out=(16, 64, 64), low=(16, 32, 32), channels=16, mults=(1, 2),
                 blocks=(1, 1), cross=(), steps=600, batch=8, crop=(16, 16), scale=4, blur=1.0),
}
# The demo's budget: under 15 minutes on 2 cores for all four stages
# (docs/results/demo.md); the standalone base_tiny config trains longer.
# Base schedule shift, measured at the demo's budget on 28 prompts x 2 (base output, ddim 64,
# guidance 3; docs/results/demo_quality.md): shift 4 shape 38% direction 27%, 1 shape 55%
# direction 80%, 0.5 shape 68% direction 96%.
BASE_SCHEDULE_SHIFT = 0.5
# Shapes of circumradius 0.2-0.28 frame heights (3.2-4.5 px at the base's 16x16; the dataset's
# default 0.14-0.22 is 2.2-3.5 px, where a circle, a square and a triangle differ by about a
# pixel: a 0.9 px blur of those clips reads only 52-59% of their shapes, 78-83% of these),
# 0.035 from the borders (half a base pixel; the default gap, a quarter of the size, would
# leave them 3.97 px of travel at 16x16 on average instead of 4.46; the default data's: 5.46).
SHAPE_SIZES, SHAPE_GAP = (0.2, 0.28), 0.035
BASE_OFFSET_NOISE = 0.1  # std of the per-video, per-channel constant in the base's training noise
BASE_STEPS, BASE_BATCH = 2000, 8  # batch 8 learns more per second than 16 (docs/results);
# 2000 steps (1600 before session 25): every prompt's shape and direction at the base in 112
# samples, where 1600 read 89% of directions; 2400 cleaner by 0.3 grey levels for 80 s more
# (docs/results/demo_quality.md section 9)
# TSR 120 steps pay for the base's 3x3x3 conv (+14% per step) within 15 minutes
# The SSR stages' 600 steps (150 before session 24) sharpen and clean what they upsample: on the
# same base and TSR, final edges 3.46 -> 2.52 px, background 10.2 -> 7.6 grey levels, for ~65 s
# more per stage (docs/results/demo_quality.md section 8). Trained on blurred low-res input
# (blur augmentation) they learn to sharpen the cascade's softer samples; back-projection is
# then off, as it would pull each output back towards its blurrier input (same base and TSR:
# final edges 2.50 -> 1.66 px, background 6.5 -> 4.2 grey levels; section 9).
SR_TRAIN_CLIPS = 1000  # random 16x16 crops of 1000 clips: rendering more costs more than it gives
ORDER = ("base", "tsr", "ssr1", "ssr2")
DISTILLED_STEPS = 8  # Imagen Video's distilled stages
# The distilled base samples with the N-step stochastic sampler (Meng et al.'s for distilled
# guided models): 85% caption check vs 76% with DDIM, teacher 82% (docs/results/fast_sampling.md)
DISTILLED_SAMPLER = {"base": "stochastic"}
# Ancestral sampling at every stage: on the demo's cascade (28 prompts, shift-0.5 base) final
# color + direction 100% vs 96% with DDIM, shape 64% vs 57%, background 10.7 vs 13.4 grey
# levels (docs/results/demo_quality.md); the SR stages add the least grain with it.
# The base guides only its noisiest three quarters of steps (guidance in a limited interval,
# Kynkaenniemi et al. 2024): the prompt is settled by then, and unguided last steps leave
# less haze (a 2400-step base, 56 samples: background 4.58 -> 4.05 grey levels, shape and
# direction 100% either way; docs/results/demo_quality.md section 9).
BASE_GUIDED_UNTIL = 0.75
SAMPLING = {  # sampler, steps, guidance, aug_level
    "base": ("ancestral", 64, 3.0, None),
    "tsr": ("ancestral", 16, 1.0, 0.02),
    "ssr1": ("ancestral", 16, 1.0, 0.1),
    "ssr2": ("ancestral", 16, 1.0, 0.1),
}


def get_config(arg=None):
  a = parse_arg(arg, stage="", root="demo/stages", data_dir="demo/tensorflow_datasets", steps=0,
                runlocal=False, residual=True, distilled="", wrap=False, sample_steps="")
  if not a.stage:
    return _cascade(a)
  if a.stage == "base":
    c = _base(a)
    if a.wrap:
      c.data.builder.wrap = True
  elif a.stage in SR_STAGES:
    c = sr_stage(SR_STAGES[a.stage], a, aug_level=SAMPLING[a.stage][3], residual=a.residual)
  else:
    raise ValueError(f"stage={a.stage!r}: expected one of {ORDER}")
  if a.data_dir:
    c.data.data_dir = a.data_dir
  if a.steps:
    c.train.steps = a.steps
  return c


def _args(a, **extra) -> str:
  keep = dict(root=a.root, data_dir=a.data_dir, steps=a.steps, runlocal=a.runlocal, **extra)
  if not a.residual:
    keep["residual"] = "false"
  return ",".join(f"{k}={v}" for k, v in keep.items() if v not in ("", 0, False))


def _cascade(a):
  stages = []
  counts = [int(n) for n in a.sample_steps.split("/")] if a.sample_steps else None
  if counts is not None and (len(counts) != len(ORDER) or min(counts) < 1):
    raise ValueError(f"sample_steps={a.sample_steps!r}: expected {len(ORDER)} positive step "
                     f"counts separated by '/' ({'/'.join(ORDER)})")
  if counts is not None and a.distilled:
    raise ValueError("sample_steps: a distilled cascade samples each student with the steps it "
                     f"was distilled to ({DISTILLED_STEPS})")
  for i, name in enumerate(ORDER):
    sampler, steps, guidance, aug = SAMPLING[name]
    steps = counts[i] if counts else 4 if a.runlocal else steps
    workdir = f"{a.root}/{name}"
    config = f"configs/cascade_tiny.py:{_args(a, stage=name)}"
    if a.distilled:  # the distilled student: its workdir's config describes it
      steps = 2 if a.runlocal else DISTILLED_STEPS
      sampler = DISTILLED_SAMPLER.get(name, "ddim")  # students learnt DDIM's steps
      workdir, config = f"{a.distilled}/{name}/steps{steps}", ""
    if name == "base" and not a.distilled:  # (students were distilled at a constant w)
      guidance = dict(kind="interval", weight=guidance, start=0.0, end=BASE_GUIDED_UNTIL)
    stages.append(dict(name=name, config=config, workdir=workdir, sampler=sampler, steps=steps,
                       guidance=guidance, aug_level=aug))
  return ml_collections.ConfigDict(dict(stages=stages))


def _base(a):
  c = configs_loader.load("base_tiny.py:runlocal" if a.runlocal else "base_tiny.py")
  c.data.builder.fps = 4.0  # 8 frames over the same 2 s that the TSR output fills with 16
  c.data.builder.update(dict(sizes=SHAPE_SIZES, gap=SHAPE_GAP))
  # A 3x3x3 space-time conv before each temporal attention: its taps encode motion
  # directly, so "left" vs "right" is learnt within the demo's budget (attention alone
  # learns the axis but not the sign in 1600 steps; docs/results/base_direction.md).
  c.model.update(dict(temporal_mixing="conv+attention", temporal_conv_spatial=3))
  if not a.runlocal:
    c.train.steps = BASE_STEPS
    c.data.batch_size = BASE_BATCH
    c.optim.warmup_steps = 100
    c.train.sample_every = 0
    c.evals = ml_collections.ConfigDict()  # the demo's budget: its caption check comes after
  c.sample.fps = 4.0
  c.sample.sampler = SAMPLING["base"][0]
  # No thresholding while sampling (the output is clipped once, as frames): clipping each
  # step's x0 at -1, where the background truly is, turns the prediction's zero-mean error
  # there into a positive bias that every step feeds back into z, a grey haze (base output,
  # 56 samples, guidance 3: background 12.1 grey levels with static clipping, 7.4 without;
  # dynamic thresholding lifted it further, docs/results/base_direction.md).
  c.sample.thresholding = "none"
  # Offset noise (Guttenberg 2023): the background's haze is a per-channel offset, which iid
  # noise never teaches the network to remove (with both: 5.4 grey levels, same probe;
  # docs/results/demo_quality.md section 7).
  c.diffusion.offset_noise = BASE_OFFSET_NOISE
  # More noise at every t (log-SNR moved by 2 log SHIFT): a 16x16 clip's shape and path are
  # a few pixels, decided at high noise, where the cosine schedule spends little training.
  c.diffusion.resolution_shift = BASE_SCHEDULE_SHIFT
  return c


def sr_stage(s, a, *, aug_level, data="moving_shapes", builder=None, residual=True):
  """An SR stage: the base config's data/text/optim, its own data sizes and U-Net.

  `s` is an SR_STAGES-style entry; `data` the dataset builder and `builder` any
  further builder parameters (configs/sr_textures.py reuses this for its stages).
  `residual`: diffuse the difference to the upsampled input (linear frame blend /
  bilinear), so that a few hundred CPU steps refine the classical upsampling
  instead of learning to reproduce the input; False is the paper's plain SR.
  Residuals are several times smaller than frames (std 0.03-0.13 vs 0.4 measured on
  both datasets), so a residual stage diffuses the residual scaled up by `s["scale"]`
  (`stage.residual_scale`): training is not spent on levels where the residual is pure
  noise, and the network's v target, whose error becomes the residual's error divided
  by the scale, stays at the frames' scale (docs/results/sr_psnr_progress.md, session 10).
  """
  c = configs_loader.load("base_tiny.py:runlocal" if a.runlocal else "base_tiny.py")
  frames, height, width = s["out"]
  low = s["low"]
  c.data.name = data
  c.data.builder.update({**dict(frames=frames, height=height, width=width, fps=8.0,
                                extra_resolutions=(low,)), **(builder or {})})
  if data == "moving_shapes":
    c.data.builder.update(dict(sizes=SHAPE_SIZES, gap=SHAPE_GAP))
  if data == "moving_shapes" and not a.runlocal:
    c.data.builder.num_train = SR_TRAIN_CLIPS
  c.data.low_res_keys = (batch_keys.low_res_key(*low),)
  c.data.batch_size = 4 if a.runlocal else s["batch"]
  c.data.crop = s["crop"]
  c.model.update(dict(channels=s["channels"], channel_mults=s["mults"], num_res_blocks=s["blocks"],
                      resolution=height, attn_resolutions=(), cross_attn_resolutions=s["cross"],
                      mid_spatial_attn=False, temporal_mixing="conv"))
  if s["crop"]:  # trained on crops: the nominal resolution is the crop's
    c.model.resolution = s["crop"][0]
  if a.runlocal:  # two levels at most: what the smoke tests need, and half the compiling
    c.model.update(dict(channel_mults=s["mults"][:2], num_res_blocks=s["blocks"][:2]))
  c.stage = ml_collections.ConfigDict(dict(kind=s["kind"], low_res=tuple(low),
                                           temporal_upsample="linear" if residual else "repeat",
                                           aug_max_level=s.get("aug_max", 0.5), aug_level=aug_level,
                                           residual=residual,
                                           residual_scale=float(s["scale"]) if residual else 1.0,
                                           back_projection=3 if residual and not s.get("blur") else 0))
  if s.get("blur"):  # (absent otherwise: stages saved before the field existed still load)
    c.stage.blur_max = float(s["blur"])
  c.train.steps = 4 if a.runlocal else s["steps"]
  if not a.runlocal:  # base_tiny's warmup would outlast these short runs
    c.optim.warmup_steps = 20
  c.train.sample_every = 0  # samples need a low-res input: see the cascade
  c.evals = ml_collections.ConfigDict()  # likewise (`eval --metric sr_psnr` on the workdir)
  c.sample.update(dict(fps=8.0, steps=4 if a.runlocal else 16, guidance=1.0))
  return c
