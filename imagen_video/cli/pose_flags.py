"""`sample`'s pose flags: a skeleton sequence from a COCO keypoint JSON or OpenPose JSON files.

  --pose FILE.json|DIR [--pose_width W --pose_height H] [--pose_fill_missing]
  [--pose_retime] [--pose_guidance W]

The sequence must have as many frames as the output (or, with --pose_retime, is resampled
evenly to them); every pose-guided stage gets it at its own frames and size. Errors from
the file (wrong joint count, missing frames, coordinates out of range...) name the file,
the frame and the field (`pose.keypoints_io`). With --out, FILE_pose.mp4 shows the
skeleton beside the first sample and over it.
"""
from __future__ import annotations

import os

import numpy as np
from absl import flags


def define_file_flags(fv):
  """--pose and how to read it (also `pose-video`'s)."""
  flags.DEFINE_string("pose", None, "pose sequence: COCO keypoint JSON, or OpenPose *_keypoints.json "
                      "(a file or a folder of per-frame files)", flag_values=fv)
  flags.DEFINE_integer("pose_width", None, "frame width the pose file's pixels refer to (OpenPose "
                       "files do not record it)", flag_values=fv)
  flags.DEFINE_integer("pose_height", None, "frame height the pose file's pixels refer to", flag_values=fv)
  flags.DEFINE_bool("pose_fill_missing", False, "fill frames without a person from their neighbours "
                    "instead of stopping", flag_values=fv)


def define(fv):
  define_file_flags(fv)
  flags.DEFINE_bool("pose_retime", False, "resample a sequence of another length evenly to the "
                    "output's frames", flag_values=fv)
  flags.DEFINE_float("pose_guidance", None, "pose guidance weight apart from the text's (one stage; "
                     "a cascade takes each stage's pose_guidance)", flag_values=fv)


def read_pose(fv, frames: int):
  """(keypoints [frames, 17, 2], visibility [frames, 17]) from --pose; SystemExit naming the
  file and what is wrong."""
  k, v = load_file(fv)
  if len(k) != frames:
    if not fv.pose_retime:
      raise SystemExit(f"--pose {fv.pose}: {len(k)} frames, but the output has {frames}; give "
                       f"{frames} poses, or --pose_retime to resample the sequence evenly")
    k, v = retime(k, v, frames)
  return k, v


def load_file(fv):
  """(keypoints [T, 17, 2], visibility [T, 17]) of the --pose file as read by its flags;
  a bad file stops with its error, hints naming the flags."""
  from imagen_video.pose import keypoints_io
  try:
    poses = keypoints_io.load(fv.pose, width=fv.pose_width, height=fv.pose_height,
                              interpolate_missing=fv.pose_fill_missing)
  except keypoints_io.PoseFileError as e:
    raise SystemExit(cli_message(e))
  return poses.keypoints, poses.visibility


def cli_message(error) -> str:
  """A PoseFileError as the command line says it: its hints name the flags, not the API."""
  text = str(error).replace("interpolate_missing=True", "--pose_fill_missing")
  text = text.replace("width= and height=", "--pose_width and --pose_height")
  return f"--pose {text}"


def retime(keypoints, visibility, frames: int):
  """The sequence resampled evenly to `frames` (linear between neighbouring poses; a joint is
  visible where both neighbours show it)."""
  n = len(keypoints)
  t = np.linspace(0, n - 1, frames)
  lo = np.floor(t).astype(int)
  hi = np.minimum(lo + 1, n - 1)
  a = (t - lo)[:, None, None]
  k = (1 - a) * keypoints[lo] + a * keypoints[hi]
  v = np.where(a[..., 0] > 0, np.minimum(visibility[lo], visibility[hi]), visibility[lo])
  return k.astype(np.float32), v.astype(np.float32)


def check(fv) -> None:
  if not fv.pose and fv.pose_guidance is not None:
    raise SystemExit("--pose_guidance goes with --pose")
  if fv.pose and fv.extend_to:
    raise SystemExit("--pose with --extend_to: a pose sequence covers one clip; extend without "
                     "--pose, or give one clip's poses")


def request_fields(fv, frames: int) -> dict:
  """`pose` (and `pose_guidance`) for the Request from --pose (none without it)."""
  if not fv.pose:
    return {}
  return {"pose": read_pose(fv, frames), "pose_guidance": fv.pose_guidance}


def write_side_by_side(pose, video, out: str, fps: float) -> str:
  """FILE_pose.mp4 beside --out: skeleton | first sample (uint8 [T, H, W, 3]) | skeleton over it."""
  from imagen_video.pose import render
  path = os.path.splitext(out)[0] + "_pose.mp4"
  render.write_side_by_side(path, *pose, video, fps=fps)
  print(f"wrote {path}")
  return path
