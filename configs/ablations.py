"""The papers' ablations at small scale on `moving_shapes`, run by `imagen-video ablate`.

    imagen-video ablate --ablation v_vs_eps --root workdirs/ablations
    imagen-video ablate --ablation all --root workdirs/ablations

`get_config("name=NAME")` is one ablation: the stage config its variants train
from (the tiny cascade's base or first SSR stage, at `steps`), the variants (a
name and config overrides; `reference`, the shipped base settings, is trained
once and reused by every ablation that lists it), what to measure (`eval`),
the papers' finding and, per row, the direction the papers lead one to expect
against the row it is compared with (`vs`). Arguments: name, steps / sr_steps
(training budgets), runlocal (seconds-long, for tests).

Budgets, measured on 2 CPU cores (docs/results/ablations.md): a base run of 1000
steps x batch 8 takes ~9 min (11.6 with 8 extra images per video), an SSR run of
400 steps ~2.5 min; measuring a base row ~6 min (FVD of 64 samples is 3.5 of
them), an SR row ~1 min. Whole ablations: v_vs_eps 33 min, cond_aug 9, guidance
37, joint_images 47 (temporal_mixing and width: ~55 together, estimated; only their
runlocal smoke run has been timed).
"""
import ml_collections

from imagen_video.utils.config_args import parse_arg

ABLATIONS = ("v_vs_eps", "cond_aug", "joint_images", "guidance", "temporal_mixing", "width")

BASE_METRICS = (("x0_mse", "lower"), ("color", "higher"), ("color_direction", "higher"),
                ("fvd", "lower"), ("clip_score", "higher"), ("r_precision", "higher"),
                ("color_shift", "lower"), ("diversity", "higher"))
SR_METRICS = (("psnr_clean", "higher"), ("ssim_clean", "higher"), ("psnr_degraded", "higher"),
              ("ssim_degraded", "higher"))


def _v(name, label, overrides="", vs="", run="", **expect):
  """A row: `overrides` of the stage config; `run`: measure that variant's trained run
  (for overrides that only change sampling) instead of training one of its own."""
  return dict(name=name, label=label, overrides=overrides, vs=vs, run=run, expect=expect)


REFERENCE = _v("reference", "v-prediction, conv+attention, 16 channels, videos only")

SPECS = {
    "v_vs_eps": dict(
        title="v-prediction vs epsilon-prediction (base stage)",
        paper="Imagen Video (Sec. 2.4): v-parameterisation converges faster in sample quality "
              "and avoids the temporal colour shifting that eps-prediction shows.",
        variants=[REFERENCE,
                  _v("eps", "eps-prediction, plain eps-MSE loss",
                     "diffusion.objective=eps diffusion.weighting=snr", vs="reference",
                     x0_mse="+", color="-", fvd="+", color_shift="+")]),
    "joint_images": dict(
        title="joint image-video training: 0 / 4 / 8 extra images per video (base stage)",
        paper="Video Diffusion Models (Table 4): appending 4 and 8 independent images per video "
              "improves sample quality (FVD 202 -> 68 -> 58 at 8 images).",
        variants=[REFERENCE,
                  _v("images4", "4 extra images per video", "data.extra_images=4", vs="reference",
                     x0_mse="-", fvd="-", color_direction="+"),
                  _v("images8", "8 extra images per video", "data.extra_images=8", vs="images4",
                     x0_mse="-", fvd="-", color_direction="+")]),
    "temporal_mixing": dict(
        title="temporal mixing in the base: attention vs convolution",
        paper="Imagen Video uses temporal attention in the base (global dependencies) and "
              "temporal convolutions in SR stages (cheap at high resolution).",
        variants=[REFERENCE,
                  _v("attention", "temporal attention only", "model.temporal_mixing=attention",
                     vs="reference"),
                  _v("conv", "temporal convolution only", "model.temporal_mixing=conv",
                     vs="attention", color_direction="-", fvd="+")]),
    "width": dict(
        title="model width: 8 / 16 / 32 base channels",
        paper="Imagen Video (Fig. 10) and Imagen: larger video U-Nets give better samples.",
        variants=[_v("channels8", "8 base channels", "model.channels=8 model.norm_groups=4"),
                  REFERENCE | dict(vs="channels8", expect=dict(x0_mse="-", fvd="-")),
                  _v("channels32", "32 base channels", "model.channels=32", vs="reference",
                     x0_mse="-", fvd="-")]),
    "cond_aug": dict(
        title="conditioning augmentation on / off (SSR 16x16 -> 32x32)",
        paper="Imagen Video (Sec. 2.3; from Cascaded Diffusion Models): Gaussian noise on the "
              "low-res input in training makes SR stages robust to the artifacts of the "
              "previous stage's samples; critical for cascade quality.",
        stage="ssr1",
        variants=[_v("ssr1_aug_on", "aug U(0, 0.5) in training, 0.1 at sampling (shipped)"),
                  _v("ssr1_aug_off", "no augmentation", "stage.aug_max_level=0.0 stage.aug_level=0.0",
                     vs="ssr1_aug_on", psnr_degraded="-", ssim_degraded="-"),
                  # back-projection (sampling only) pins the output to the degraded input
                  _v("ssr1_aug_on_nobp", "aug on, sampled without back-projection",
                     "stage.back_projection=0", vs="ssr1_aug_on", run="ssr1_aug_on"),
                  _v("ssr1_aug_off_nobp", "aug off, sampled without back-projection",
                     "stage.aug_max_level=0.0 stage.aug_level=0.0 stage.back_projection=0",
                     vs="ssr1_aug_on_nobp", run="ssr1_aug_off", psnr_degraded="-",
                     ssim_degraded="-")]),
    "guidance": dict(
        title="classifier-free guidance weight: constant vs oscillating (base stage)",
        paper="Imagen Video (Sec. 2.5): larger guidance weights improve text alignment at the "
              "cost of diversity and saturation artifacts; oscillating guidance (high / 1) "
              "keeps the alignment with fewer artifacts.",
        variants=[REFERENCE], train_only=("reference",),
        settings=[_v("w1", "no guidance (w 1)"),
                  _v("w3", "constant 3 (shipped)", vs="w1", color="+", color_direction="+",
                     diversity="-"),
                  _v("w6", "constant 6", vs="w3", color_direction="+", diversity="-", fvd="+"),
                  _v("w10", "constant 10", vs="w6", color_direction="+", diversity="-", fvd="+"),
                  _v("osc10", "oscillating 10 / 1 after the first quarter", vs="w10", fvd="-")]),
}
GUIDANCE = {"w1": 1.0, "w3": 3.0, "w6": 6.0, "w10": 10.0,
            "osc10": dict(kind="oscillating", high=10.0, low=1.0, constant_fraction=0.25)}


def get_config(arg=None):
  a = parse_arg(arg, name="v_vs_eps", runlocal=False, steps=1000, sr_steps=400)
  if a.name not in SPECS:
    raise ValueError(f"ablation {a.name!r}: expected one of {ABLATIONS}")
  s = dict(SPECS[a.name])
  stage = s.pop("stage", "base")
  small = ",runlocal=true" if a.runlocal else ""
  steps = 4 if a.runlocal else (a.sr_steps if stage != "base" else a.steps)
  c = ml_collections.ConfigDict(dict(
      name=a.name, stage=stage, steps=steps,
      # {data_dir} is filled in by the runner (ROOT/tensorflow_datasets unless given)
      train_config=f"configs/cascade_tiny.py:stage={stage},steps={steps},data_dir={{data_dir}}{small}",
      train_only=s.pop("train_only", ()), settings=s.pop("settings", []),
      guidance=GUIDANCE, metrics=SR_METRICS if stage != "base" else BASE_METRICS, **s))
  c.eval = ml_collections.ConfigDict(dict(
      kind="sr" if stage != "base" else ("guidance" if a.name == "guidance" else "base"),
      caption_num=1 if a.runlocal else 2,  # samples per color x direction prompt (28 prompts)
      diversity_prompts=3 if a.runlocal else 8, diversity_samples=2 if a.runlocal else 4,
      x0_clips=4 if a.runlocal else 32, fvd_num=0 if a.runlocal else 64,
      sr_clips=4 if a.runlocal else 16, batch=8 if a.runlocal else 32, seed=0,
      # the errors of a previous stage's samples, emulated on the true low-res input
      degrade=dict(blur_sigma=0.5, noise_std=0.04, color_offset=0.03)))
  return c
