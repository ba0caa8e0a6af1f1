"""Contact sheets: videos as rows of frames in one PNG, each row under its caption.

    contact_sheet([video_a, video_b], ["a red circle moving left", ...], "sheet.png")
    stack_rows([base, tsr, ssr], ["base 16x24x40", "TSR 32x24x40", "SSR 32x48x80"], "stages.png")

A PNG shows every frame losslessly side by side, which is what one checks
samples with (motion, colour, caption match); mp4 previews come from video_io.
Tiny frames are enlarged with nearest-neighbour so pixels stay visible.
"""
from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from imagen_video.media import video_io

MARGIN = 6  # px around the sheet
GAP = 2  # px between frames of a row
ROW_GAP = 8  # px between a row and the next caption
MAX_CAPTION_LINES = 2
BACKGROUND = (255, 255, 255)
TEXT = (0, 0, 0)


def auto_scale(height: int, width: int, min_size: int = 64) -> int:
  """Smallest integer factor that makes the shorter side at least `min_size` px."""
  return max(1, math.ceil(min_size / max(1, min(height, width))))


def pick_frames(video: np.ndarray, max_frames: int) -> np.ndarray:
  """At most `max_frames` frames evenly spread over the clip (first and last included),
  so rows of different lengths over the same time span line up."""
  t = len(video)
  if t <= max_frames:
    return video
  return video[np.round(np.linspace(0, t - 1, max_frames)).astype(int)]


def contact_sheet(videos, captions=None, path=None, *, max_frames: int = 16, scale: int | None = None,
                  min_size: int = 64, title: str | None = None, row_height: int | None = None) -> np.ndarray:
  """Lays out `videos` (each [T, H, W, 3], uint8 or float in [0, 1]) one per row and
  writes a PNG to `path` (if given). Returns the sheet, uint8 [H, W, 3].

  scale: integer nearest-neighbour enlargement of every frame; default: per row,
    the smallest factor bringing the shorter side to >= `min_size` px.
  row_height: instead, resize every row's frames to this height (keeping aspect).
  Captions longer than the sheet is wide are wrapped, then cut to two lines with "...".
  """
  videos = list(videos)
  if not videos:
    raise ValueError("contact_sheet: expected at least one video, got none")
  if captions is not None and len(captions) != len(videos):
    raise ValueError(f"contact_sheet: {len(captions)} captions for {len(videos)} videos; expected one each")
  rows = [_row(video_io._as_uint8_rgb(v), max_frames, scale, min_size, row_height) for v in videos]
  font = ImageFont.load_default()
  line_h = _line_height(font)
  width = max(r.shape[1] for r in rows) + 2 * MARGIN
  text_w = width - 2 * MARGIN
  wrapped = [_wrap(c, font, text_w) if c else [] for c in (captions or [None] * len(rows))]
  title_lines = _wrap(title, font, text_w) if title else []
  height = MARGIN + (len(title_lines) * line_h + ROW_GAP if title_lines else 0)
  height += sum(len(w) * line_h + r.shape[0] for w, r in zip(wrapped, rows))
  height += ROW_GAP * (len(rows) - 1) + MARGIN

  sheet = Image.new("RGB", (width, height), BACKGROUND)
  draw = ImageDraw.Draw(sheet)
  y = MARGIN
  for line in title_lines:
    draw.text((MARGIN, y), line, fill=TEXT, font=font)
    y += line_h
  if title_lines:
    y += ROW_GAP
  for lines, row in zip(wrapped, rows):
    for line in lines:
      draw.text((MARGIN, y), line, fill=TEXT, font=font)
      y += line_h
    sheet.paste(Image.fromarray(row), (MARGIN, y))
    y += row.shape[0] + ROW_GAP
  out = np.asarray(sheet)
  if path is not None:
    with video_io.atomic_path(path) as tmp:
      sheet.save(tmp, format="PNG")
  return out


def stack_rows(videos, captions=None, path=None, *, max_frames: int = 16, min_size: int = 64,
               title: str | None = None) -> np.ndarray:
  """A sheet of videos of different sizes (e.g. one row per cascade stage), every
  row resized (nearest-neighbour) to one common height: that of the largest
  frame, enlarged to at least `min_size` px."""
  videos = [video_io._as_uint8_rgb(v) for v in videos]
  tallest = max(v.shape[1] for v in videos)
  height = max(tallest, min(auto_scale(v.shape[1], v.shape[2], min_size) * v.shape[1] for v in videos))
  return contact_sheet(videos, captions, path, max_frames=max_frames, title=title, row_height=height)


def _row(video: np.ndarray, max_frames: int, scale, min_size: int, row_height) -> np.ndarray:
  """Frames of one video side by side, GAP px apart (gaps in the background colour)."""
  frames = pick_frames(video, max_frames)
  _, h, w, _ = frames.shape
  if row_height is not None:
    new_w = max(1, round(w * row_height / h))
    frames = np.stack([np.asarray(Image.fromarray(f).resize((new_w, row_height), Image.NEAREST))
                       for f in frames])
  else:
    frames = video_io.upscale(frames, scale or auto_scale(h, w, min_size))
  n, h, w, _ = frames.shape
  row = np.empty((h, n * w + (n - 1) * GAP, 3), np.uint8)
  row[:] = BACKGROUND
  for i, f in enumerate(frames):
    row[:, i * (w + GAP): i * (w + GAP) + w] = f
  return row


def _line_height(font) -> int:
  left, top, right, bottom = font.getbbox("Ag|")
  return bottom + 3


def _wrap(text: str, font, width: int) -> list[str]:
  """Greedy word wrap to `width` px, at most MAX_CAPTION_LINES lines; overflow ends in '...'."""
  fits = lambda s: font.getlength(s) <= width
  lines, line = [], ""
  for word in str(text).split():
    candidate = f"{line} {word}" if line else word
    if fits(candidate) or not line:
      line = candidate
    else:
      lines.append(line)
      line = word
  if line:
    lines.append(line)
  lines = [_cut(l, fits) for l in lines]  # one very long word
  if len(lines) > MAX_CAPTION_LINES:
    lines = lines[:MAX_CAPTION_LINES]
    lines[-1] = _cut(lines[-1] + " ...", fits, force=True)
  return lines


def _cut(line: str, fits, force: bool = False) -> str:
  """`line`, or its longest prefix that fits followed by '...'."""
  if fits(line) and not force:
    return line
  body = line[:-4] if force else line
  while body and not fits(body + "..."):
    body = body[:-1]
  return body.rstrip() + "..."
