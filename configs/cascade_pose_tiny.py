"""The tiny pose-guided cascade on `athletes`: base -> TSR -> SSR, every stage pose-guided.

    8x16x16 @4fps (base) -> 16x16x16 @8fps (TSR) -> 16x32x32 (SSR)

    imagen-video train --config configs/cascade_pose_tiny.py:stage=base --workdir demo/pose_stages/base
    imagen-video sample --cascade configs/cascade_pose_tiny.py --pose poses.json \\
        --prompt "a tall thin person with tan skin in a red shirt and blue shorts doing squats on a sky background" \\
        --out squats.mp4

Each stage takes the skeleton maps (`pose/render.py`) of the pose sequence at its own
frames and size through the pose guider (`nn/pose_guider.py`), trained with the pose
dropped for `diffusion.pose_drop_prob` of the examples, so sampling has separate pose
and text guidance weights. Arguments as `cascade_tiny.py`: stage (base, tsr, ssr), root
(default demo/pose_stages), data_dir, steps, runlocal; and pose_guidance (the base's
pose weight when sampling the cascade, default 1).

Data: `athletes` train split; the test split holds only (exercise, body type) pairs never
seen together in training (`data/athletes.py` HELD_OUT), the must-show's held-out poses.
"""
import ml_collections

from imagen_video.utils import configs_loader
from imagen_video.utils.config_args import parse_arg

cascade_tiny = configs_loader.load_module("cascade_tiny.py")
SR_STAGES = {
    "tsr": dict(cascade_tiny.SR_STAGES["tsr"], steps=300, aug_max=0.5),  # the augmentation of docs/results/pose.md
    "ssr": dict(cascade_tiny.SR_STAGES["ssr1"], steps=300),
}
ORDER = ("base", "tsr", "ssr")
BASE_STEPS, BASE_BATCH = 2400, 8
TRAIN_CLIPS, TEST_CLIPS = 4000, 100
RUNLOCAL_CLIPS = (16, 16)  # train, test: runlocal trains a few batches of 4 (each clip renders in ~50 ms)
MAX_TOKENS = 32  # the captions run to ~21 words
POSE_CHANNELS = 3  # RGB skeleton maps (OpenPose colours)
SAMPLING = {  # sampler, steps, text guidance, aug_level
    "base": ("ddim", 64, 3.0, None),
    "tsr": ("ddim", 16, 1.0, 0.1),
    "ssr": ("ddim", 16, 1.0, 0.1),
}
# The base's pose weight apart from its text weight (1: the pose-conditional model itself,
# guided by text only); the SR stages, unguided, take the pose as given (weight 1).
POSE_GUIDANCE = 1.0


def get_config(arg=None):
  a = parse_arg(arg, stage="", root="demo/pose_stages", data_dir="demo/tensorflow_datasets",
                steps=0, runlocal=False, pose_guidance=POSE_GUIDANCE)
  if not a.stage:
    return _cascade(a)
  if a.stage == "base":
    c = _base(a)
  elif a.stage in SR_STAGES:
    c = cascade_tiny.sr_stage(SR_STAGES[a.stage], a, aug_level=SAMPLING[a.stage][3], data="athletes",
                              builder=_clip_counts(a))
  else:
    raise ValueError(f"stage={a.stage!r}: expected one of {ORDER}")
  _pose_and_text(c, a)
  if a.data_dir:
    c.data.data_dir = a.data_dir
  if a.steps:
    c.train.steps = a.steps
  return c


def _cascade(a):
  args = ",".join(f"{k}={v}" for k, v in dict(root=a.root, data_dir=a.data_dir, steps=a.steps,
                                                runlocal=a.runlocal).items() if v not in ("", 0, False))
  stages = []
  for name in ORDER:
    sampler, steps, guidance, aug = SAMPLING[name]
    stages.append(dict(name=name, config=f"configs/cascade_pose_tiny.py:{args},stage={name}",
                       workdir=f"{a.root}/{name}", sampler=sampler, steps=4 if a.runlocal else steps,
                       guidance=guidance, pose_guidance=float(a.pose_guidance) if name == "base" else 1.0,
                       aug_level=aug))
  return ml_collections.ConfigDict(dict(stages=stages))


def _clip_counts(a) -> dict:
  """The athletes builder's clip counts, the same for every stage."""
  train, test = RUNLOCAL_CLIPS if a.runlocal else (TRAIN_CLIPS, TEST_CLIPS)
  return dict(num_train=train, num_test=test)


def _base(a):
  c = configs_loader.load("base_tiny.py:runlocal" if a.runlocal else "base_tiny.py")
  c.data.name = "athletes"
  c.data.builder.update(dict(fps=4.0, **_clip_counts(a)))
  c.model.update(dict(temporal_mixing="conv+attention", temporal_conv_spatial=3))
  if not a.runlocal:
    c.train.steps = BASE_STEPS
    c.data.batch_size = BASE_BATCH
    c.optim.warmup_steps = 100
  c.train.sample_every = 0  # samples need pose maps: see the cascade
  c.evals = ml_collections.ConfigDict()  # `eval --metric pose` on the cascade instead
  c.sample.fps = 4.0
  c.sample.thresholding = "static"
  return c


def _pose_and_text(c, a):
  c.data.pose = True
  c.model.pose_channels = POSE_CHANNELS
  c.diffusion.pose_drop_prob = 0.1
  c.data.max_text_length = MAX_TOKENS
  c.text.max_length = MAX_TOKENS
