"""Batch keys and a stage's input/output shapes: the one place they are defined.

A training batch holds `VIDEO` [B, T, H, W, 3] in [-1, 1], the caption's tokens or
embeddings (`text.encoder`), an SR stage's low-res video under `low_res_key(shape)`,
a pose-guided stage's `POSE_MAPS`, and for joint image-video training `IS_IMAGE`.
"""
from __future__ import annotations

VIDEO = "video"
CAPTION = "caption"
POSE_MAPS = "pose_maps"  # skeleton maps at the video's size (pose-guided stages)
IS_IMAGE = "is_image"
FRAME_MASK = "frame_mask"


def low_res_key(frames: int, height: int, width: int) -> str:
  """The dataset feature (and batch key) of the same clips at a lower frame rate or size."""
  return f"video_{int(frames)}x{int(height)}x{int(width)}"


def shape_of_key(key: str) -> tuple[int, int, int] | None:
  """(frames, height, width) a `low_res_key` names; None for another key."""
  prefix, _, dims = key.rpartition("_")
  parts = dims.split("x")
  if prefix != "video" or len(parts) != 3 or not all(p.isdigit() for p in parts):
    return None
  return tuple(int(p) for p in parts)


def low_res_shape(config) -> tuple[int, int, int] | None:
  """(frames, height, width) an SR stage takes from the previous stage (config.stage.low_res);
  None for a base stage."""
  stage = config.get("stage") if "stage" in config else None
  low = stage.get("low_res") if stage else None
  if not low:
    return None
  if len(low) != 3 or any(int(v) < 1 for v in low):
    raise ValueError(f"config.stage.low_res={tuple(low)!r}: expected (frames, height, width)")
  return tuple(int(v) for v in low)


def clip_shape(config, batch: int) -> tuple[int, ...]:
  """[B, T, H, W, 3] of a stage's output: whole clips. A stage trained on crops or frame
  windows (`data.frames`) is convolutional in space and time and samples the full clip."""
  b = config.data.builder
  frames = b.get("frames") or config.data.get("frames")
  return (int(batch), int(frames), int(b.height), int(b.width), 3)
