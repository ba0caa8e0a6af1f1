"""Imagen Video (Ho et al. 2022): the paper's 7-stage cascade at full size.

    imagen-video describe --cascade configs/imagen_video_paper.py
    imagen-video compile --config configs/imagen_video_paper.py:stage=base --topology v5p-128
    imagen-video train --config configs/imagen_video_paper.py:stage=tsr1,source_dir=/data/videos,t5=/ckpt/t5_xxl \\
        --workdir gs://bucket/imagen_video/tsr1

`get_config("stage=NAME")` is one stage's training config (same structure as
configs/base_tiny.py); `get_config()` is the cascade listing (`stages`: name,
config, workdir, sampler, steps, guidance, aug_level) that cascade sampling reads.

Arguments: stage (base, tsr1, ssr1, ssr2, tsr2, tsr3, ssr3; in cascade order),
source_dir (video folder) or manifest (a CSV/JSONL/Parquet table of video URIs and captions), t5 (converted T5-XXL checkpoint dir, `imagen-video
convert-t5`), workdir (root of the stage workdirs), batch (global batch; default per
stage below), mesh (data:fsdp:tensor; default: all devices on fsdp, tensor per stage),
steps.

U-Net sizes. The paper gives only parameter counts, resolutions and the kind of
temporal mixing; widths, multipliers and block counts are ours, chosen so the
U-Net counts (`imagen-video describe`, from nnx.eval_shape) land within a few
percent of the paper's, following Imagen's Efficient U-Net habits: wide low-res
levels and more blocks at low resolution for the base/low-res stages, narrow
high-res levels for the high-res SR stages; attention only at low resolution;
the last SSR is fully convolutional (no spatial or temporal self-attention; text
enters through the pooled FiLM embedding and the middle blocks' cross-attention,
which do not depend on position) and is trained on 192x320 crops (1/4 of each
side), like Imagen's 1024px SR on 256px crops, then samples whole 768x1280 frames.
Likewise in time (`window`): the 192x320 stages and ssr3 mix frames only by temporal
convolution, so they train on 16-frame windows (`data.frames`) and sample whole clips;
at one full 32-frame clip per chip ssr2's train step needs 100.8 GiB of temporaries on a
v5p chip, with 16-frame windows 53.2 GiB in all (docs/aot_paper.md).
Heads x head_dim are global in our U-Net (one width for every attention layer).

Text: frozen T5-XXL (d_model 4096, 128 tokens), run on device in bf16 each step
(`text.precomputed=False`, the data pipeline yields token ids).

Sampler defaults (steps, guidance, conditioning-augmentation level) are ours
where the paper gives none; oscillating guidance (15 / 1) in the first stages as
in the paper; constant weights later.
"""
import collections

import ml_collections

from imagen_video.data import batch as batch_keys
from imagen_video.data import pipeline
from imagen_video.diffusion import objectives
from imagen_video.nn import unet
from imagen_video.text import encoder
from imagen_video.train import guard, optimizer
from imagen_video.utils.config_args import parse_arg

# One row per stage, in cascade order. frames x height x width (the paper writes
# frames x width x height); paper = the paper's parameter count; the U-Net columns
# are our choices (see the docstring). attn/cross = nominal frame heights with
# spatial self-attention / text cross-attention (Video U-Net `attn_resolutions`).
Spec = collections.namedtuple("Spec", [
    "name", "kind", "frames", "height", "width", "fps", "paper",
    "temporal", "channels", "mults", "blocks", "attn", "cross", "heads", "head_dim",
    "batch", "tensor", "crop", "window",
])
STAGES = (
    Spec("base", "base", 16, 24, 40, 3, 5.6e9, "attention", 800, (1, 2, 3, 4), (3, 3, 4, 4),
         (12, 6, 3), (12, 6, 3), 16, 128, 512, 1, None, None),
    Spec("tsr1", "tsr", 32, 24, 40, 6, 1.7e9, "conv", 480, (1, 2, 3, 4), (2, 3, 3, 3),
         (6, 3), (12, 6, 3), 16, 64, 256, 1, None, None),
    Spec("ssr1", "ssr", 32, 48, 80, 6, 1.4e9, "conv", 320, (1, 2, 4, 6), (2, 2, 3, 3),
         (12, 6), (24, 12, 6), 16, 64, 256, 1, None, None),
    Spec("ssr2", "ssr", 32, 192, 320, 6, 1.2e9, "conv", 192, (1, 2, 4, 8, 8), (2, 2, 3, 3, 3),
         (12,), (24, 12), 16, 64, 64, 1, None, 16),
    Spec("tsr2", "tsr", 64, 192, 320, 12, 780e6, "conv", 160, (1, 2, 4, 6, 8), (1, 2, 3, 3, 3),
         (12,), (24, 12), 16, 64, 64, 1, None, 16),
    Spec("tsr3", "tsr", 128, 192, 320, 24, 630e6, "conv", 160, (1, 2, 4, 6, 7), (1, 2, 2, 3, 3),
         (12,), (24, 12), 16, 64, 64, 1, None, 16),
    Spec("ssr3", "ssr", 128, 768, 1280, 24, 340e6, "conv", 144, (1, 2, 4, 8), (1, 2, 2, 3),
         (), (), 16, 64, 64, 1, (192, 320), 16),
)
BY_NAME = {s.name: s for s in STAGES}

# Cascade sampling per stage: (sampler, steps, guidance, aug_level).
OSCILLATING = dict(kind="oscillating", high=15.0, low=1.0)
SAMPLING = {
    "base": ("ddim", 256, OSCILLATING, None),
    "tsr1": ("ddim", 128, OSCILLATING, 0.1),
    "ssr1": ("ddim", 128, OSCILLATING, 0.1),
    "ssr2": ("ddim", 64, 5.0, 0.2),
    "tsr2": ("ddim", 64, 3.0, 0.1),
    "tsr3": ("ddim", 64, 3.0, 0.1),
    "ssr3": ("ddim", 32, 1.0, 0.2),
}
T5_TOKENS = 128
# Remat policy per stage, measured by AOT for v5p-128 (docs/aot_paper.md, "Remat"): the base's
# train step at 8 clips per chip takes 47.0 GiB / 3.48e14 FLOPs per device with 'block', 54.4 /
# 3.21e14 (8% fewer) with 'dots', and does not fit without remat (95.9 GiB). The other stages
# keep 'block', the policy their rows were measured with.
REMAT = {"base": "dots"}
PLACEHOLDER_VIDEOS = "/path/to/videos"
PLACEHOLDER_T5 = "/path/to/t5_xxl"

# Logical axis -> mesh axes. Params: "embed" (output channels) over fsdp, attention
# heads / MLP over tensor; activations: batch over data x fsdp.
SHARDING_RULES = (
    ("batch", ("data", "fsdp")),
    ("embed", "fsdp"), ("conv_in", None), ("text_embed", "fsdp"), ("vocab", "tensor"),
    ("heads", "tensor"), ("kv", None), ("mlp", "tensor"),
)


def previous(spec: Spec) -> Spec | None:
  i = STAGES.index(spec)
  return STAGES[i - 1] if i else None


def get_config(arg=None):
  a = parse_arg(arg, stage="", source_dir=PLACEHOLDER_VIDEOS, manifest="", t5=PLACEHOLDER_T5,
                workdir="workdirs/imagen_video",
                batch=0, mesh="", steps=1_000_000)
  if not a.stage:
    return cascade_config(a)
  if a.stage not in BY_NAME:
    raise ValueError(f"stage={a.stage!r}: expected one of {list(BY_NAME)}")
  return stage_config(BY_NAME[a.stage], a)


def cascade_config(a) -> ml_collections.ConfigDict:
  stages = []
  for s in STAGES:
    sampler, steps, guidance, aug = SAMPLING[s.name]
    stages.append(dict(name=s.name, config=f"configs/imagen_video_paper.py:stage={s.name}",
                       workdir=f"{a.workdir}/{s.name}", sampler=sampler, steps=steps,
                       guidance=guidance, aug_level=aug))
  return ml_collections.ConfigDict(dict(stages=stages))


def stage_config(s: Spec, a) -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  low = previous(s)

  c.data = pipeline.default_data_config()
  c.data.name = "video_folder"
  c.data.builder = ml_collections.ConfigDict(dict(
      source_dir="" if a.manifest else a.source_dir, manifest=a.manifest, path_column="",
      caption_column="", frames=s.frames, height=s.height, width=s.width, fps=float(s.fps),
      image_format="jpeg", jpeg_quality=90, skip_bad=False))
  c.data.frames = s.window or s.frames  # training clips; sampling makes all s.frames
  c.data.batch_size = a.batch or s.batch
  c.data.text = "tokens"
  c.data.tokenizer = f"{a.t5}/spiece.model"
  c.data.max_text_length = T5_TOKENS
  if s.crop:
    c.data.crop = s.crop
  if low:
    c.data.low_res_keys = (batch_keys.low_res_key(low.frames, low.height, low.width),)

  c.text = encoder.default_config(preset="xxl", checkpoint=a.t5, max_length=T5_TOKENS,
                                  dtype="bfloat16", param_dtype="bfloat16", frozen=True)

  c.model = unet.default_config()
  c.model.update(dict(
      channels=s.channels, channel_mults=s.mults, num_res_blocks=s.blocks, resolution=s.height,
      attn_resolutions=s.attn, cross_attn_resolutions=s.cross, mid_spatial_attn=bool(s.attn),
      temporal_mixing=s.temporal, heads=s.heads, head_dim=s.head_dim, text_dim=4096,
      dtype="bfloat16", param_dtype="float32", remat=REMAT.get(s.name, "block"), attention_backend="auto"))

  c.diffusion = objectives.default_diffusion_config()  # cosine schedule, v-parameterisation
  sampler, steps, guidance, aug = SAMPLING[s.name]
  c.stage = ml_collections.ConfigDict(dict(kind=s.kind))
  if low:
    c.stage.update(dict(low_res=(low.frames, low.height, low.width),
                        temporal_upsample="repeat", aug_max_level=0.5, aug_level=aug))

  c.optim = optimizer.default_optim_config()
  c.optim.update(dict(lr=1e-4, warmup_steps=10_000, schedule="constant", grad_clip=1.0))

  c.train = ml_collections.ConfigDict(dict(
      steps=a.steps, seed=0, log_every=100, ckpt_every=2000, keep_checkpoints=3,
      sample_every=0, ema_decay=0.9999, divergence=dict(guard.DEFAULTS)))

  c.sample = ml_collections.ConfigDict(dict(
      prompts=("a teddy bear washing dishes", "a shark swimming in clear caribbean ocean"),
      steps=steps, sampler=sampler,
      guidance=guidance if isinstance(guidance, float) else guidance["high"], seed=0, fps=float(s.fps)))

  sizes = [int(v) for v in a.mesh.split(":")] if a.mesh else [1, -1, s.tensor]
  c.mesh = ml_collections.ConfigDict(dict(zip(("data", "fsdp", "tensor"), sizes)))
  c.sharding_rules = SHARDING_RULES
  return c
