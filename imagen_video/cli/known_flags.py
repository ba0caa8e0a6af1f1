"""`sample`'s conditional-generation flags: known frames or pixels from image/video files.

  --first_frame IMG | --keyframes IMG@FRAME,... | --init_video V [--mask M | --extend_to N]
  [--context K] [--conditioning reconstruction|replacement] [--recon_weight W] [--refresh T]

Inputs are resized to the output's size; `conditioned(generate, fv)` wraps a sampler
`generate(prompts, seed, **known_args)` (one stage or the cascade) with them.
"""
from __future__ import annotations

import os

import numpy as np
from absl import flags


def define(fv):
  flags.DEFINE_string("first_frame", None, "image-to-video: the first frame (image file)", flag_values=fv)
  flags.DEFINE_string("keyframes", None, "interpolation: IMAGE@FRAME,IMAGE@FRAME,...", flag_values=fv)
  flags.DEFINE_string("init_video", None, "prediction/extension (or with --mask inpainting): a video",
                      flag_values=fv)
  flags.DEFINE_string("mask", None, "inpainting: image or video, white = generate", flag_values=fv)
  flags.DEFINE_integer("extend_to", None, "with --init_video: extend autoregressively to N frames",
                       flag_values=fv)
  flags.DEFINE_integer("context", None, "frames of context per extension window (default three "
                       "quarters of a window)", flag_values=fv)
  flags.DEFINE_float("refresh", 0.0, "with --extend_to: re-denoise each window from this time "
                     "(SDEdit, text only) before its frames are kept; 0 = off", flag_values=fv)
  flags.DEFINE_enum("conditioning", "reconstruction", ["reconstruction", "replacement"],
                    "how known frames/pixels condition the sample", flag_values=fv)
  flags.DEFINE_float("recon_weight", None, "reconstruction guidance weight (default "
                     "config.sample.recon_weight, else 4)", flag_values=fv)


def conditioned(generate, fv):
  """`generate` conditioned on the --first_frame / --keyframes / --init_video [--mask] inputs
  (unchanged without them); extension returns only the final video (no per-stage rows)."""
  from imagen_video.stage import known as known_lib
  given = [f for f in ("first_frame", "keyframes", "init_video") if getattr(fv, f)]
  if len(given) > 1:
    raise SystemExit(f"give at most one of --first_frame, --keyframes, --init_video (got {given})")
  if (fv.mask or fv.extend_to) and not fv.init_video:
    raise SystemExit("--mask and --extend_to go with --init_video")
  if fv.mask and fv.extend_to:
    raise SystemExit("--mask (inpainting) and --extend_to (extension) exclude each other")
  if fv.refresh and not fv.extend_to:
    raise SystemExit("--refresh goes with --extend_to")
  check_refresh(fv.refresh)
  if not given:
    return generate
  _, frames, height, width, _ = generate.output_shape(1)
  args = dict(conditioning=fv.conditioning, recon_weight=fv.recon_weight)
  if fv.first_frame:
    known = known_lib.first_frame(read_frames(fv.first_frame, height, width, "--first_frame")[None, 0],
                                  frames)
  elif fv.keyframes:
    images, positions = [], []
    for item in fv.keyframes.split(","):
      path, _, index = item.rpartition("@")
      if not path or not index.isdigit():
        raise SystemExit(f"--keyframes item {item!r}: expected IMAGE@FRAME (e.g. a.png@0)")
      images.append(read_frames(path, height, width, "--keyframes")[0])
      positions.append(int(index))
    try:
      known = known_lib.keyframes(np.stack(images)[None], positions, frames)
    except ValueError as e:
      raise SystemExit(f"--keyframes: {e}")
  else:
    video = read_frames(fv.init_video, height, width, "--init_video")[None]
    context = fv.context or known_lib.default_context(frames)
    if fv.mask:
      mask = read_frames(fv.mask, height, width, "--mask").mean(-1) > 0  # white: generate
      if mask.shape[0] not in (1, video.shape[1]):
        raise SystemExit(f"--mask {fv.mask}: {mask.shape[0]} frames; expected 1 or the "
                         f"--init_video's {video.shape[1]}")
      known = known_lib.inpainting(video, mask[None])
    elif fv.extend_to:
      return _extender(generate, video, fv.extend_to, frames, context, args, fv.refresh)
    else:
      known = known_lib.prefix(video[:, -context:] if video.shape[1] >= frames else video, frames)
  known_args = dict(args, known=known)
  return lambda prompts, seed: generate(prompts, seed, **known_args)


def check_refresh(value: float) -> None:
  """--refresh (sample's and eval's): a time in [0, 1) to re-denoise each window from, 0 = off."""
  if not 0.0 <= value < 1.0:
    raise SystemExit(f"--refresh {value}: expected a time in [0, 1) (0 = off)")


def _extender(generate, video, total, window, context, args, refresh=0.0):
  from imagen_video.stage import known as known_lib

  def extended(prompts, seed):
    calls = iter(range(1 << 30))
    given = np.repeat(video, len(prompts), axis=0)

    def window_fn(known):  # a new seed per window, so windows do not repeat their noise
      clips, _ = generate(prompts, seed + 7919 * next(calls), known=known, **args)
      return clips.astype(np.float32) / 127.5 - 1

    def refresh_fn(window_video, known):  # text only, like eval --refresh
      clips, _ = generate(prompts, seed + 7919 * next(calls), init=window_video, start=refresh)
      return clips.astype(np.float32) / 127.5 - 1
    out = known_lib.extend(window_fn, given, total, window=window, context=context,
                           refresh=refresh_fn if refresh else None)
    return ((out + 1) * 127.5).round().clip(0, 255).astype(np.uint8), None
  return extended


def read_frames(path: str, height: int, width: int, flag: str) -> np.ndarray:
  """An image or video file as float frames [T, height, width, 3] in [-1, 1] (resized)."""
  from PIL import Image
  from imagen_video.media import video_io
  if not os.path.isfile(path):
    raise SystemExit(f"{flag} {path}: no such file")
  try:
    with Image.open(path) as im:
      frames = [np.asarray(im.convert("RGB"))] if getattr(im, "n_frames", 1) == 1 else None
  except Exception:  # not an image: a video
    frames = None
  if frames is None:
    try:
      frames = list(video_io.read_video(path)[0])
    except Exception as e:
      raise SystemExit(f"{flag} {path}: neither an image nor a readable video ({e})")
  out = [f if f.shape[:2] == (height, width)
         else np.asarray(Image.fromarray(f).resize((width, height), Image.BILINEAR)) for f in frames]
  return np.stack(out).astype(np.float32) / 127.5 - 1
