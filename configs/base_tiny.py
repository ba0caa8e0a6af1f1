"""Base stage, tiny: text-to-video on `moving_shapes` (8 frames x 16x16) on CPU.

    imagen-video train --config configs/base_tiny.py --workdir workdirs/base_tiny
    imagen-video sample --config configs/base_tiny.py --workdir workdirs/base_tiny \\
        --prompt "a red circle moving left" --out red_circle.mp4

Arguments: runlocal (a few steps on one device, for tests), steps=N, mesh=data:fsdp:tensor
(e.g. mesh=2:4:1 on 8 devices; default -1:1:1, every device on the data axis).

Budget: 3000 steps x batch 32, 1.4 steps/s on 2 idle CPU cores (~36 min). Measured
(docs/results/base_tiny_caption_eval.md): all 28 color x direction prompts x 4 samples,
color 100%, direction 83.9%, both 83.9%.
"""
import ml_collections

from imagen_video.data import pipeline
from imagen_video.diffusion import objectives
from imagen_video.nn import unet
from imagen_video.text import encoder
from imagen_video.train import guard, optimizer
from imagen_video.utils.config_args import parse_arg

# Logical axis -> mesh axes (MaxText-style); names not listed stay replicated.
SHARDING_RULES = (
    ("batch", ("data", "fsdp")),
    ("embed", "fsdp"), ("conv_in", None), ("text_embed", "fsdp"), ("vocab", "tensor"),
    ("heads", "tensor"), ("kv", None), ("mlp", "tensor"),
)


def get_config(arg=None):
  a = parse_arg(arg, runlocal=False, steps=3000, mesh="", batch=32)
  # runlocal trains on one device (a smoke run: no partitioning to compile, one replica to
  # checkpoint); otherwise every device on the data axis
  a.mesh = a.mesh or ("1:1:1" if a.runlocal else "-1:1:1")
  c = ml_collections.ConfigDict()

  c.data = pipeline.default_data_config()
  c.data.builder.update(dict(frames=8, height=16, width=16, fps=8.0,
                             num_train=64 if a.runlocal else 4000, num_test=16 if a.runlocal else 200))
  c.data.batch_size = 4 if a.runlocal else a.batch
  c.data.text = "tokens"
  c.data.tokenizer = "dataset"
  c.data.max_text_length = 8

  c.text = encoder.default_config(preset="tiny", tokenizer="dataset", max_length=8)

  c.model = unet.default_config()
  # Cheap at full resolution, wider and attentive at low resolution (Efficient U-Net).
  c.model.update(dict(channels=16, channel_mults=(1, 2, 2), num_res_blocks=(1, 1, 2), resolution=16,
                      attn_resolutions=(8, 4), cross_attn_resolutions=(8, 4), heads=2, head_dim=16,
                      norm_groups=8, temporal_mixing="attention"))
  if a.runlocal:
    c.model.update(dict(channels=16, channel_mults=(1, 2), num_res_blocks=(1, 1),
                        attn_resolutions=(8,), cross_attn_resolutions=(8,), norm_groups=4))

  c.diffusion = objectives.default_diffusion_config()
  c.stage = ml_collections.ConfigDict(dict(kind="base"))

  c.optim = optimizer.default_optim_config()
  c.optim.update(dict(lr=2e-3, warmup_steps=10 if a.runlocal else 200, schedule="cosine"))

  c.train = ml_collections.ConfigDict(dict(
      steps=8 if a.runlocal else a.steps, seed=0, log_every=1 if a.runlocal else 50,
      ckpt_every=4 if a.runlocal else 500, keep_checkpoints=3,
      sample_every=0 if a.runlocal else 1000, ema_decay=0.999,
      divergence=dict(guard.DEFAULTS)))  # stop before saving a diverged state (train/guard.py)

  # Evaluators run during training (eval/registry.py): {name: {type, every, options}}.
  c.evals = ml_collections.ConfigDict(
      {} if a.runlocal else {"caption": dict(type="caption", every=1000, num=1)})

  c.sample = ml_collections.ConfigDict(dict(
      prompts=("a red circle moving left", "a green square moving up",
               "a blue triangle moving right", "a yellow circle moving down"),
      steps=8 if a.runlocal else 64, sampler="ddim", guidance=3.0, seed=0, fps=8.0))

  sizes = [int(v) for v in a.mesh.split(":")]
  c.mesh = ml_collections.ConfigDict(dict(zip(("data", "fsdp", "tensor"), sizes)))
  c.sharding_rules = SHARDING_RULES
  return c
