"""Tiny TSR and SSR stages on real-texture clips (`texture_pans`), on CPU.

    TSR: 8x32x32 @4fps -> 16x32x32 @8fps      SSR: 16x16x16 -> 16x32x32

    imagen-video prepare --config configs/sr_textures.py:stage=tsr     # one dataset serves both
    imagen-video train --config configs/sr_textures.py:stage=tsr --workdir demo/textures/tsr
    imagen-video train --config configs/sr_textures.py:stage=ssr --workdir demo/textures/ssr
    imagen-video eval --config configs/sr_textures.py:stage=ssr --workdir demo/textures/ssr \\
        --metric sr_psnr --num 16 --out_dir demo/textures/ssr/eval

Arguments: stage (tsr, ssr), data_dir (TFDS dir), steps (training steps),
residual (default true: diffuse the difference to the linear-blend / bilinear
upsampled input; residual=false is the paper's plain SR), runlocal
(seconds-long smoke config for tests). The stages are built exactly
like cascade_tiny's SR stages (`sr_stage`), on a dataset whose test split
holds only photographs that training never sees.
"""
from imagen_video.utils import configs_loader
from imagen_video.utils.config_args import parse_arg

_tiny = configs_loader.load_module("cascade_tiny.py")

# Same U-Net for both, convolutional but for text cross-attention: trained on 16x16 crops
# (4x cheaper per clip), sampled on full 32x32 frames. Steps as measured in
# docs/results/sr_psnr_progress.md (session 12): TSR 6000 (~1 h on 2 cores) ties the linear blend per
# draw on all 64 test clips and wins on the textured half (at 1500 it was 1.5 dB below); SSR 3000
# (2000 -> 3000 added 0.1 dB).
STAGES = {
    "tsr": dict(kind="tsr", out=(16, 32, 32), low=(8, 32, 32), channels=16, mults=(1, 2, 2),
                blocks=(1, 1, 1), cross=(8,), steps=6000, batch=16, crop=(16, 16), scale=4, aug_max=0.1),
    "ssr": dict(kind="ssr", out=(16, 32, 32), low=(16, 16, 16), channels=16, mults=(1, 2, 2),
                blocks=(1, 1, 1), cross=(8,), steps=3000, batch=16, crop=(16, 16), scale=4, aug_max=0.1),
}
# DDIM steps, chosen on the validation split (4 photos that train and test never use; 32 clips,
# per-draw PSNR at 16/8/4/2/1 steps, docs/results/sr_psnr_progress.md, session 13): PSNR rewards
# the posterior mean, which fewer steps approach; `--steps 16` gives sharper, noisier draws.
SAMPLE_STEPS = {"tsr": 2, "ssr": 1}
# Augmentation: training U(0, 0.1), sampling 0.02, as cascade_tiny's TSR (whose in-between detail
# drowned in U(0, 0.5)); sampling the texture TSR at 0 or 0.005 instead changes < 0.1 dB
# (docs/results/sr_psnr_progress.md, session 11).
AUG_LEVEL = 0.02
# One dataset holds both stages' low-res inputs, so it is prepared once.
LOW_RES = tuple(s["low"] for s in STAGES.values())
PROMPTS = ("a pan left over a photograph of a cat", "a zoom in over a photograph of gravel")


def get_config(arg=None):
  a = parse_arg(arg, stage="tsr", data_dir="demo/tensorflow_datasets", steps=0, runlocal=False,
                residual=True)
  if a.stage not in STAGES:
    raise ValueError(f"stage={a.stage!r}: expected one of {sorted(STAGES)}")
  sizes = dict(num_train=16, num_test=4, num_validation=4) if a.runlocal else \
      dict(num_train=1000, num_test=64, num_validation=32)
  c = _tiny.sr_stage(STAGES[a.stage], a, aug_level=AUG_LEVEL, data="texture_pans",
                     builder=dict(extra_resolutions=LOW_RES, **sizes), residual=a.residual)
  c.data.data_dir = a.data_dir or None
  if a.steps:
    c.train.steps = a.steps
  c.sample.prompts = PROMPTS
  if not a.runlocal:
    c.sample.steps = SAMPLE_STEPS[a.stage]
  c.data.max_text_length = c.text.max_length = 16  # whole captions (cascade_tiny's are 5 words)
  return c
