"""`sample`'s conditional-generation flags: known frames or pixels from image/video files.

  --first_frame IMG | --keyframes IMG@FRAME,... | --init_video V [--mask M | --extend_to N]

with `sampling_flags`' --context, --conditioning, --recon_weight, --refresh. Inputs are
resized to the output's size and become `Request` fields (`known`, or `extension`).
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


def check(fv) -> None:
  """Which inputs go together, before anything is loaded."""
  given = [f for f in ("first_frame", "keyframes", "init_video") if getattr(fv, f)]
  if len(given) > 1:
    raise SystemExit(f"give at most one of --first_frame, --keyframes, --init_video (got {given})")
  if (fv.mask or fv.extend_to) and not fv.init_video:
    raise SystemExit("--mask and --extend_to go with --init_video")
  if fv.mask and fv.extend_to:
    raise SystemExit("--mask (inpainting) and --extend_to (extension) exclude each other")
  if fv.refresh and not fv.extend_to:
    raise SystemExit("--refresh goes with --extend_to")
  for flag in ("first_frame", "init_video", "mask"):
    path = getattr(fv, flag)
    if path and not os.path.isfile(path):
      raise SystemExit(f"--{flag} {path}: no such file")


def request_fields(fv, output_shape) -> dict:
  """`known` or `extension` for the Request from the files (none without them)."""
  from imagen_video.stage import known as known_lib
  from imagen_video.stage.sampler import Extension
  _, frames, height, width, _ = output_shape
  if fv.first_frame:
    image = read_frames(fv.first_frame, height, width, "--first_frame")[None, 0]
    return {"known": known_lib.first_frame(image, frames)}
  if fv.keyframes:
    images, positions = [], []
    for item in fv.keyframes.split(","):
      path, _, index = item.rpartition("@")
      if not path or not index.isdigit():
        raise SystemExit(f"--keyframes item {item!r}: expected IMAGE@FRAME (e.g. a.png@0)")
      images.append(read_frames(path, height, width, "--keyframes")[0])
      positions.append(int(index))
    try:
      return {"known": known_lib.keyframes(np.stack(images)[None], positions, frames)}
    except ValueError as e:
      raise SystemExit(f"--keyframes: {e}")
  if not fv.init_video:
    return {}
  video = read_frames(fv.init_video, height, width, "--init_video")[None]
  context = fv.context or known_lib.default_context(frames)
  if fv.mask:
    mask = read_frames(fv.mask, height, width, "--mask").mean(-1) > 0  # white: generate
    if mask.shape[0] not in (1, video.shape[1]):
      raise SystemExit(f"--mask {fv.mask}: {mask.shape[0]} frames; expected 1 or the "
                       f"--init_video's {video.shape[1]}")
    return {"known": known_lib.inpainting(video, mask[None])}
  if fv.extend_to:
    if fv.extend_to <= video.shape[1]:
      raise SystemExit(f"--extend_to {fv.extend_to}: expected more frames than --init_video's "
                       f"{video.shape[1]}")
    if not 0 < context < frames:
      raise SystemExit(f"--context {context}: expected 1..{frames - 1} frames of a {frames}-frame window")
    return {"extension": Extension(video, fv.extend_to, context, fv.refresh, fv.refresh_floor)}
  return {"known": known_lib.prefix(video[:, -context:] if video.shape[1] >= frames else video, frames)}


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
