"""imagen-video pose-video --pose FILE.json --out skeleton.mp4 [--video V.mp4] [--size 64x64]

Renders a pose sequence (COCO keypoint JSON, or OpenPose per-frame JSON: a file or a
folder) as a skeleton video in the OpenPose colours, to check a sequence before sampling
with it; with --video (e.g. a generated sample) side by side: skeleton | video | skeleton
over the video. A .png --out writes a contact sheet instead. Errors name the file, the
frame and the field.
"""
from __future__ import annotations

from absl import flags

from imagen_video.cli import flags_util, pose_flags


def main(argv: list[str]) -> int:
  fv = flags.FlagValues()
  pose_flags.define_file_flags(fv)
  flags.DEFINE_string("out", None, "output .mp4 (or .png: a contact sheet)", flag_values=fv)
  flags.DEFINE_string("video", None, "a video to show beside and under the skeleton", flag_values=fv)
  flags.DEFINE_string("size", "128x128", "HEIGHTxWIDTH of the skeleton video without --video",
                      flag_values=fv)
  flags.DEFINE_float("fps", 8.0, "frames per second", flag_values=fv)
  flags_util.parse(fv, argv, __doc__)
  if not fv.pose or not fv.out:
    raise SystemExit(f"{argv[0]}: give --pose FILE and --out FILE.mp4")
  from imagen_video.media import video_io
  from imagen_video.pose import render
  keypoints, visibility = pose_flags.load_file(fv)
  video, size = None, None
  if fv.video:
    try:
      video = video_io.read_video(fv.video)[0]
    except Exception as e:
      raise SystemExit(f"--video {fv.video}: not a readable video ({e})")
  else:
    try:
      size = tuple(int(v) for v in fv.size.lower().split("x"))
      assert len(size) == 2 and min(size) > 0
    except (ValueError, AssertionError):
      raise SystemExit(f"--size {fv.size!r}: expected HEIGHTxWIDTH, e.g. 128x128")
  try:
    path = render.write_side_by_side(fv.out, keypoints, visibility, video, fps=fv.fps, size=size)
  except ValueError as e:
    raise SystemExit(f"{fv.pose}: {e}")
  print(f"wrote {path} ({len(keypoints)} frames)")
  return 0
