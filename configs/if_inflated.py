"""DeepFloyd IF inflated into Video U-Net stages: IF-I (64x64 base) and IF-II (256x256 SSR).

    imagen-video convert-t5 --src IF-I-XL-v1.0/text_encoder --out ckpt/t5_xxl \\
        --tokenizer IF-I-XL-v1.0/tokenizer/spiece.model
    imagen-video convert-if --src IF-I-XL-v1.0/unet --out workdirs/if/base --stage base \\
        --t5 ckpt/t5_xxl
    imagen-video train --config configs/if_inflated.py:variant=I-XL,t5=ckpt/t5_xxl,init_from=workdirs/if/base \\
        --workdir workdirs/if/base_video

Arguments: variant (I-XL, I-L, I-M: base; II-L, II-M: SSR; tiny-I, tiny-II: CPU tests),
t5 (converted T5-XXL), init_from (a `convert-if` output: training starts from its weights),
trainable ('temporal': only the inserted temporal layers learn, IF's spatial weights stay
frozen; 'all'), frames, fps, source_dir (video_folder data; default moving_shapes), batch,
extra_images (joint image-video training: images per clip), mesh (data:fsdp:tensor), steps.

What carries over from IF: its network per frame (convert-if writes the exact `model` fields
of the checkpoint's config.json; the architecture below is what AOT sizing compiles), its
schedule (1000 discrete steps of the capped cosine, `diffusion.schedule='ddpm_cosine'`), its
parameterisation (epsilon; out_channels 6 = epsilon + learned variance: `learned_variance`
makes the ancestral (DDPM) sampler interpolate its log-variance per pixel exactly as diffusers'
'learned_range' does; DDIM drops that half), its per-image dynamic thresholding (95th
percentile, at most 1.5 / 1.0), its guidance (7 / 4) and noise level (250 of 1000), and its
text as its pipeline gives it: T5's outputs at every one of the 77 positions, padding included
(`text.pad_outputs='keep'`), and T5's embedding of the empty prompt as the unconditional input
(`model.null_text_length=77`; `convert-if --t5` writes it).
"""
import ml_collections

from imagen_video.data import batch as batch_keys
from imagen_video.data import pipeline
from imagen_video.diffusion import objectives
from imagen_video.nn import unet
from imagen_video.text import encoder
from imagen_video.train import guard, optimizer
from imagen_video.utils import configs_loader
from imagen_video.utils.config_args import parse_arg

SHARDING_RULES = configs_loader.load_module("imagen_video_paper.py").SHARDING_RULES
PLACEHOLDER_T5 = "/path/to/t5_xxl"
IF_TOKENS = 77  # IF's pipelines pad/truncate prompts to 77 T5 tokens

# The IF U-Net as `model` fields (convert-if replaces them by the checkpoint's own).
_IF = dict(layout="adm", in_channels=3, out_channels=6, heads=0, head_dim=64, norm_groups=32,
           norm_eps=1e-5, act="gelu", text_attention="hybrid", text_layernorm=False,
           text_pooling="attention", text_pool_heads=64, use_text_mask=False, time_input="ddpm_index",
           skip_scale=1.0, mid_spatial_attn=True, cross_attn_resolutions=())
# name: (kind, size, channels, mults, blocks, attention at, text_proj_dim, extra model fields).
# I-XL and II-L are the published unet/config.json files (DeepFloyd/IF-I-XL-v1.0: widths
# 704..2816, text projected to 2816; IF-II-L-v1.0: widths 160..1280, blocks 2,2,3,5,5, text to
# 1280, time embedding 1280); I-L, I-M and II-M are scaled to their stated sizes (0.9B, 0.4B,
# 0.45B) for AOT sizing only: convert-if always uses the checkpoint's own config.json.
_II = dict(emb_act="gelu", res_skip_time_act=True, res_out_scale=1.4142271248762552,
           mid_out_scale=1.4142271248762552)
VARIANTS = {
    "I-XL": ("base", 64, 704, (1, 2, 3, 4), 3, (32, 16, 8), 2816, {}),
    "I-L": ("base", 64, 320, (1, 2, 3, 4), 3, (32, 16, 8), 1280, {}),
    "I-M": ("base", 64, 192, (1, 2, 3, 4), 3, (32, 16, 8), 768, {}),
    "II-L": ("ssr", 256, 160, (1, 2, 4, 6, 8), (2, 2, 3, 5, 5), (32, 16), 1280, dict(_II, emb_dim=1280)),
    "II-M": ("ssr", 256, 96, (1, 2, 4, 6, 8), (2, 2, 3, 5, 5), (32, 16), 768, dict(_II, emb_dim=768)),
    # diffusers' own IF test fixtures' shapes (tests/pipelines/deepfloyd_if), with our tiny T5
    "tiny-I": ("base", 16, 32, (1, 2), 1, (8,), 32, dict(head_dim=8, text_pool_heads=2)),
    "tiny-II": ("ssr", 32, 32, (1, 2), (1, 2), (16,), 32,
                dict(head_dim=8, text_pool_heads=2, emb_dim=32, emb_act="gelu", mid_out_scale=1.414)),
}
SAMPLING = {"base": dict(steps=100, guidance=7.0, threshold_max=1.5),
            "ssr": dict(steps=50, guidance=4.0, threshold_max=1.0)}
NOISE_LEVEL = 250  # IF-II's default noise level of its 64x64 input (of 1000 steps)


def get_config(arg=None):
  a = parse_arg(arg, variant="I-XL", t5=PLACEHOLDER_T5, init_from="", trainable="temporal",
                frames=16, fps=3.0, source_dir="", batch=0, extra_images=0, mesh="", steps=20_000)
  if a.variant not in VARIANTS:
    raise ValueError(f"variant={a.variant!r}: expected one of {list(VARIANTS)}")
  kind, size, channels, mults, blocks, attn, proj, extra = VARIANTS[a.variant]
  tiny = a.variant.startswith("tiny")
  c = ml_collections.ConfigDict()

  c.data = pipeline.default_data_config()
  height = size
  low = (a.frames, size // 4, size // 4) if kind == "ssr" else None
  if a.source_dir:
    c.data.name = "video_folder"
    c.data.builder = ml_collections.ConfigDict(dict(
        source_dir=a.source_dir, manifest="", path_column="", caption_column="", frames=a.frames,
        height=height, width=height, fps=a.fps, image_format="jpeg", jpeg_quality=90, skip_bad=False))
  else:
    c.data.builder.update(dict(frames=a.frames, height=height, width=height, fps=a.fps,
                               num_train=64 if tiny else 4000, num_test=16 if tiny else 200))
    if low:
      c.data.builder.extra_resolutions = (low,)
  if low:
    c.data.low_res_keys = (batch_keys.low_res_key(*low),)
  c.data.batch_size = a.batch or (4 if tiny else 64)
  c.data.extra_images = a.extra_images
  c.data.text = "tokens"
  c.data.tokenizer = "dataset" if tiny else f"{a.t5}/spiece.model"
  c.data.max_text_length = 8 if tiny else IF_TOKENS

  given_t5 = {} if a.t5 == PLACEHOLDER_T5 else {"checkpoint": a.t5}  # tiny: random T5 unless given
  c.text = (encoder.default_config(preset="tiny", tokenizer="dataset", max_length=8, **given_t5) if tiny else
            encoder.default_config(preset="xxl", checkpoint=a.t5, max_length=IF_TOKENS,
                                   dtype="bfloat16", param_dtype="bfloat16", frozen=True))
  c.text.pad_outputs = "keep"  # IF's pipeline feeds T5's outputs at padded positions too

  c.model = unet.default_config()
  blocks = (blocks,) * len(mults) if isinstance(blocks, int) else blocks
  c.model.update(dict(_IF, channels=channels, channel_mults=mults, num_res_blocks=blocks,
                      resolution=size, attn_resolutions=attn, text_proj_dim=proj,
                      temporal_mixing="attention" if kind == "base" else "conv",
                      null_text_length=c.text.max_length))  # T5("") at every position, as IF
  c.model.update(extra)
  if not tiny:
    c.model.update(dict(dtype="bfloat16", param_dtype="float32", remat="block", attention_backend="auto"))

  c.diffusion = objectives.default_diffusion_config()
  c.diffusion.update(dict(schedule="ddpm_cosine", num_timesteps=1000, objective="eps",
                          weighting="snr", learned_variance=True))
  c.stage = ml_collections.ConfigDict(dict(kind=kind))
  if low:  # noise level k of 1000 is diffusion time (k + 1) / 1000 of the discrete schedule
    c.stage.update(dict(low_res=low, temporal_upsample="repeat", aug_max_level=0.5,
                        aug_level=(NOISE_LEVEL + 1) / 1000))

  c.optim = optimizer.default_optim_config()
  c.optim.update(dict(lr=1e-3 if tiny else 1e-4, warmup_steps=2 if tiny else 500, schedule="constant",
                      trainable=a.trainable))

  c.train = ml_collections.ConfigDict(dict(
      steps=a.steps, seed=0, log_every=1 if tiny else 100, ckpt_every=1000, keep_checkpoints=3,
      sample_every=0, ema_decay=0.999 if tiny else 0.9999, init_from=a.init_from,
      divergence=dict(guard.DEFAULTS)))
  c.evals = ml_collections.ConfigDict()

  s = SAMPLING[kind]
  c.sample = ml_collections.ConfigDict(dict(
      prompts=("a red circle moving left",) if tiny else ("a teddy bear washing dishes",),
      steps=8 if tiny else s["steps"], sampler="ancestral", guidance=s["guidance"], seed=0, fps=a.fps,
      thresholding="dynamic_per_frame", percentile=95.0, threshold_max=s["threshold_max"]))

  sizes = [int(v) for v in a.mesh.split(":")] if a.mesh else [1 if tiny else 1, -1, 1]
  c.mesh = ml_collections.ConfigDict(dict(zip(("data", "fsdp", "tensor"), sizes)))
  c.sharding_rules = SHARDING_RULES
  return c
