"""Does a base stage use a word of its prompt? x0 error with the caption changed, per noise level.

Held-out clips are noised at fixed log-SNRs (the same noise for every variant) and
denoised with the true caption, with edited captions (e.g. the direction word flipped
or rotated) and with the null text. A word the stage uses raises the error when it
is changed; an unchanged column means the stage ignores that part of the prompt,
which shows long before samples do (docs/results/base_direction.md).
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from imagen_video.data import moving_shapes as ms
from imagen_video.eval import registry
from imagen_video.eval import report as report_lib
from imagen_video.diffusion import objectives
from imagen_video.diffusion.schedule import alpha_sigma

FLIP = {"left": "right", "right": "left", "up": "down", "down": "up"}
ROTATE = {"left": "up", "up": "right", "right": "down", "down": "left"}
LOG_SNRS = (-6.0, -4.0, -2.0, 0.0, 2.0)


def direction_variants(captions: list[str]) -> dict[str, list[str]]:
  """true / flipped / rotated direction word of `moving_shapes` captions."""
  out = {"true": list(captions), "flipped": [], "rotated": []}
  for text in captions:
    color, shape, direction = ms.parse_caption(text)
    out["flipped"].append(ms.caption(color, shape, FLIP[direction]))
    out["rotated"].append(ms.caption(color, shape, ROTATE[direction]))
  return out


def x0_errors(sampler, x0, variants: dict[str, list[str]], log_snrs=LOG_SNRS,
              seed: int = 0) -> dict[str, list[float]]:
  """{variant or 'null': [mean x0-MSE at each log-SNR]} of a `StageSampler`'s network;
  x0 [B, T, H, W, 3] in [-1, 1]."""
  stage, unet_params = sampler.stage, sampler.params["unet"]
  x0 = jnp.asarray(x0, jnp.float32)
  b = x0.shape[0]
  model_fn = jax.jit(stage.model_fn)
  texts = {name: sampler.encode(caps) for name, caps in variants.items()}
  first = next(iter(texts))
  out = {name: [] for name in [*variants, "null"]}
  for i, log_snr in enumerate(log_snrs):
    eps = jax.random.normal(jax.random.fold_in(jax.random.key(seed), i), x0.shape)
    alpha, sigma = alpha_sigma(jnp.float32(log_snr))
    z = alpha * x0 + sigma * eps
    ls = jnp.full((b,), log_snr, jnp.float32)
    for name in out:
      emb, mask = texts[first if name == "null" else name]
      cond = dict(text_emb=emb, text_mask=mask)
      if name == "null":
        cond["drop_text"] = jnp.ones((b,), bool)
      pred = model_fn(unet_params, z, ls, cond)
      x0_hat, _ = objectives.pred_to_x0_eps(pred, z, ls, stage.config.diffusion.objective)
      out[name].append(float(jnp.mean(jnp.square(x0_hat - x0))))
  return out


def table(errors: dict[str, list[float]], log_snrs=LOG_SNRS) -> str:
  names = list(errors)
  lines = ["| log-SNR | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
  for i, ls in enumerate(log_snrs):
    lines.append(f"| {ls:g} | " + " | ".join(f"{errors[n][i]:.4f}" for n in names) + " |")
  return "\n".join(lines)


@registry.register("text_probe")
@dataclasses.dataclass
class TextProbe(registry.Evaluator):
  """x0 error on held-out clips with the true, flipped and rotated direction word and the null
  text, per noise level (a base stage on moving_shapes). Writes text_probe.md."""
  targets = ("stage",)
  num: int = registry.option(8, "text_probe: held-out clips")
  seed: int = registry.option(0, "seed of the noise")

  def run(self, sampler, out_dir: str, log=print) -> dict:
    from imagen_video.data import held_out
    clips = held_out.clips(sampler.config, self.num)
    errors = x0_errors(sampler, clips["video"] * 2 - 1, direction_variants(clips["caption"]),
                       seed=self.seed)
    report = (f"text probe: {registry.describe(sampler)}; x0-MSE on {self.num} test clips\n\n"
              + table(errors))
    log(report)
    report_lib.write(out_dir, "text_probe", report)
    return errors
