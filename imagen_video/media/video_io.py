"""Reading and writing video files (mp4, webm, gif, anything ffmpeg reads).

Uses the ffmpeg binary bundled with `imageio-ffmpeg`, so no system ffmpeg is
needed. `mediapy.read_video` is not used: it passes `-vsync`, which the
bundled ffmpeg rejects (DESIGN.md, "What this machine can and cannot do").

    write_video("out.mp4", frames_uint8, fps=8, scale=4)   # mp4 / webm / gif by suffix
    frames, fps = read_video("out.mp4")                    # uint8 [T, H, W, 3]

Writes are atomic: the file is encoded under a temporary name in the same
folder and renamed only once ffmpeg succeeded, so a crash never leaves a
half-written file under the final name.
"""
from __future__ import annotations

import contextlib
import os
import re
import subprocess
import tempfile
from fractions import Fraction

import imageio_ffmpeg
import numpy as np
from PIL import Image

# suffix -> (ffmpeg encoder, extra output args). yuv420p plays everywhere
# (browsers, QuickTime) but needs even width and height, see `_prepare`.
_ENCODERS = {
    ".mp4": ("libx264", ["-pix_fmt", "yuv420p", "-movflags", "+faststart"]),
    ".mov": ("libx264", ["-pix_fmt", "yuv420p", "-movflags", "+faststart"]),
    ".mkv": ("libx264", ["-pix_fmt", "yuv420p"]),
    ".webm": ("libvpx-vp9", ["-pix_fmt", "yuv420p", "-b:v", "0", "-row-mt", "1"]),
}
_GIF_DELAY_TAG = "imagen-video frame delay cs="
VIDEO_SUFFIXES = (".mp4", ".webm", ".gif", ".mov", ".mkv", ".avi")


class VideoReadError(ValueError):
  """A video file that cannot be decoded: missing, empty, corrupt or truncated."""

  def __init__(self, path, reason: str):
    self.path = os.fspath(path)
    self.reason = reason
    super().__init__(f"cannot read video {self.path!r}: {reason}")


def to_uint8(x, value_range=(-1.0, 1.0)) -> np.ndarray:
  """Float frames in `value_range` (model outputs use (-1, 1)) -> uint8 [0, 255],
  clipped and rounded. uint8 input is returned unchanged."""
  x = np.asarray(x)
  if x.dtype == np.uint8:
    return x
  lo, hi = value_range
  x = (x.astype(np.float32) - lo) / (hi - lo)
  return np.round(np.clip(x, 0.0, 1.0) * 255.0).astype(np.uint8)


def _as_uint8_rgb(frames) -> np.ndarray:
  """uint8 or float-in-[0, 1] frames [T, H, W(, 1 or 3)] -> uint8 [T, H, W, 3]."""
  frames = np.asarray(frames)
  if frames.dtype != np.uint8:
    if not np.issubdtype(frames.dtype, np.floating):
      raise TypeError(f"frames: expected uint8 or float in [0, 1], got dtype {frames.dtype}")
    if frames.size and (frames.min() < -1e-6 or frames.max() > 1 + 1e-6):
      raise ValueError(f"frames: float values must lie in [0, 1], got [{frames.min():g}, {frames.max():g}]"
                       "; convert with to_uint8(x, value_range=(lo, hi))")
    frames = to_uint8(frames, (0.0, 1.0))
  if frames.ndim == 3:
    frames = frames[..., None]
  if frames.ndim != 4 or frames.shape[-1] not in (1, 3) or 0 in frames.shape[:3]:
    raise ValueError(f"frames: expected a non-empty [T, H, W, 3] array, got shape {frames.shape}")
  if frames.shape[-1] == 1:
    frames = np.repeat(frames, 3, axis=-1)
  return frames


def upscale(frames: np.ndarray, scale: int) -> np.ndarray:
  """Nearest-neighbour enlargement of [..., H, W, C] by an integer factor (keeps pixels crisp)."""
  if scale == 1:
    return frames
  if int(scale) != scale or scale < 1:
    raise ValueError(f"scale: expected a positive integer, got {scale!r}")
  return np.repeat(np.repeat(frames, int(scale), axis=-3), int(scale), axis=-2)


@contextlib.contextmanager
def atomic_path(path):
  """Yields a temporary path next to `path` (same suffix, so tools pick the same
  format) and renames it to `path` only if the block finishes without error."""
  path = os.fspath(path)
  folder, name = os.path.split(os.path.abspath(path))
  os.makedirs(folder, exist_ok=True)
  stem, suffix = os.path.splitext(name)
  fd, tmp = tempfile.mkstemp(prefix=f".{stem}.", suffix=f".tmp{suffix}", dir=folder)
  os.close(fd)
  try:
    yield tmp
    os.replace(tmp, path)
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)


def write_video(path, frames, fps: float, *, scale: int = 1, crf: int | None = None) -> str:
  """Writes frames (uint8 or float in [0, 1], [T, H, W, 3]) to mp4/mov/mkv (H.264),
  webm (VP9) or gif, chosen by the suffix of `path`. Returns `path`.

  scale: integer nearest-neighbour enlargement, for previews of tiny videos
    (players show 16x16 as a speck, and some refuse sizes below ~32 px).
  crf: quality, lower is better (default 18 for H.264, 24 for VP9: near-lossless).
  Odd heights/widths are padded by one replicated row/column, because yuv420p
  (the one pixel format every player supports) needs even sizes; reading the
  file back then gives the padded size.
  """
  suffix = os.path.splitext(os.fspath(path))[1].lower()
  if suffix == ".gif":
    return write_gif(path, frames, fps, scale=scale)
  if suffix not in _ENCODERS:
    raise ValueError(f"{os.fspath(path)!r}: unsupported suffix {suffix!r}; expected one of "
                     f"{sorted(_ENCODERS) + ['.gif']}")
  if not fps > 0:
    raise ValueError(f"fps: expected a positive number, got {fps!r}")
  frames = upscale(_as_uint8_rgb(frames), scale)
  t, h, w, _ = frames.shape
  frames = np.pad(frames, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), mode="edge")
  codec, extra = _ENCODERS[suffix]
  if crf is None:
    crf = 24 if codec == "libvpx-vp9" else 18
  rate = Fraction(fps).limit_denominator(1001)
  with atomic_path(path) as tmp:
    cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-v", "error",
           "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{frames.shape[2]}x{frames.shape[1]}",
           "-r", str(rate), "-i", "-", "-an", "-c:v", codec, "-crf", str(crf), *extra, tmp]
    done = subprocess.run(cmd, input=np.ascontiguousarray(frames).tobytes(), capture_output=True)
    if done.returncode != 0:
      raise OSError(f"ffmpeg failed to write {os.fspath(path)!r} ({codec}, {t} frames "
                    f"{frames.shape[2]}x{frames.shape[1]}): {done.stderr.decode(errors='replace').strip()}")
  return os.fspath(path)


def write_mp4(path, frames, fps: float, *, scale: int = 1, crf: int | None = None) -> str:
  """H.264 mp4 (see `write_video`)."""
  if not os.fspath(path).lower().endswith(".mp4"):
    raise ValueError(f"write_mp4: {os.fspath(path)!r} should end in .mp4")
  return write_video(path, frames, fps, scale=scale, crf=crf)


def write_gif(path, frames, fps: float, *, scale: int = 1, loop: int = 0) -> str:
  """Animated GIF via PIL (256-colour palette per frame; exact for few-colour clips).

  GIF delays are whole hundredths of a second, so the stored rate is
  100 / round(100 / fps): 8 fps is stored as 12.5 -> 12 cs (8.33 fps)."""
  if not fps > 0:
    raise ValueError(f"fps: expected a positive number, got {fps!r}")
  frames = upscale(_as_uint8_rgb(frames), scale)
  images = [Image.fromarray(f) for f in frames]
  delay_cs = max(2, round(100 / fps))  # browsers slow delays under 2 cs down to 10 cs
  # PIL merges repeated frames into one longer frame; the comment keeps the
  # frame delay so `read_video` restores the original frame count.
  with atomic_path(path) as tmp:
    images[0].save(tmp, format="GIF", save_all=True, append_images=images[1:],
                   duration=10 * delay_cs, loop=loop, disposal=1,
                   comment=f"{_GIF_DELAY_TAG}{delay_cs}")
  return os.fspath(path)


def read_video(path) -> tuple[np.ndarray, float]:
  """Decodes a video file into (uint8 frames [T, H, W, 3], fps).

  Frames come out at a constant rate: frame i shows time i / fps. Variable-rate
  sources (phone videos; GIFs whose frames have different delays, including the
  ones PIL writes when it merges repeated frames) are resampled to that rate by
  repeating or dropping frames.
  Raises VideoReadError for a missing, empty, corrupt or truncated file.
  """
  path = os.fspath(path)
  if os.path.isdir(path):
    raise VideoReadError(path, "a folder, not a video file")
  if not os.path.isfile(path):
    raise VideoReadError(path, "no such file")
  if os.path.getsize(path) == 0:
    raise VideoReadError(path, "the file is empty (0 bytes)")
  if _is_gif(path):
    return _read_gif(path)
  return _read_ffmpeg(path)


def _is_gif(path: str) -> bool:
  with open(path, "rb") as f:
    return f.read(6) in (b"GIF87a", b"GIF89a")


def _read_ffmpeg(path: str) -> tuple[np.ndarray, float]:
  """Any ffmpeg-readable file, through imageio-ffmpeg's frame reader."""
  # First only the header, for the stream's rate: asking ffmpeg for a constant
  # rate without naming it lets it pick the container's time base (e.g. 1000 fps).
  meta = _ffmpeg_meta(path)
  w, h = meta.get("size") or (0, 0)
  fps = float(meta.get("fps") or 0.0)
  if w <= 0 or h <= 0:
    raise VideoReadError(path, "no video stream found")
  if fps <= 0:
    raise VideoReadError(path, "the video stream has no frame rate")
  rate = str(Fraction(fps).limit_denominator(1001))
  # -xerror: stop at the first decoding error instead of concealing it.
  gen, _ = _open(path, "decoding failed", output_params=["-fps_mode", "cfr", "-r", rate, "-xerror"])
  try:
    chunks = list(gen)
  except (OSError, RuntimeError) as e:
    raise VideoReadError(path, f"decoding failed: {_ffmpeg_reason(e)}") from e
  finally:
    gen.close()
  if not chunks:
    raise VideoReadError(path, "it contains no decodable frames")
  frames = np.frombuffer(b"".join(chunks), np.uint8).reshape(len(chunks), h, w, 3)
  # A truncated file may still open; its header still knows the full duration.
  # (The header's duration covers all streams: a file whose audio runs >10%
  # longer than its video is reported as truncated too.)
  duration = float(meta.get("duration") or 0.0)
  expected = duration * fps
  if expected >= 4 and len(frames) < 0.9 * expected - 1:
    raise VideoReadError(path, f"truncated: decoded {len(frames)} frames, but the header says "
                         f"{duration:g} s at {fps:g} fps (~{expected:.0f} frames)")
  return frames, fps


def _ffmpeg_meta(path: str) -> dict:
  gen, meta = _open(path, "ffmpeg cannot open it as a video")
  gen.close()
  return meta


def _open(path: str, what: str, attempts: int = 3, **kwargs):
  """(imageio-ffmpeg's frame generator, the header it read); VideoReadError(`what`: reason)."""
  for attempt in range(attempts):
    gen = imageio_ffmpeg.read_frames(path, **kwargs)
    try:
      return gen, next(gen)
    except (OSError, RuntimeError, StopIteration) as e:
      gen.close()
      # imageio-ffmpeg gives ffmpeg 10 s to print the header: on a host busy with other
      # decoders a good file can miss it, with nothing on stderr (both reads of a file, the
      # header's and the frames', once failed so in CI). Only that is retried.
      timed_out = str(e).startswith("Could not load meta") and not any(
          _REASON.search(line) for line in _ffmpeg_lines(str(e).split("=== stderr ===", 1)[-1]))
      if not timed_out or attempt == attempts - 1:
        raise VideoReadError(path, f"{what}: {_ffmpeg_reason(e)}") from e


_REASON = re.compile(r"error|invalid|not found|could not|cannot|truncat|missing|corrupt", re.I)


# glog/absl lines ("E1206 12:17:20.192516 30901 file.cc:373] ...") that threads of this
# process (gRPC, after Beam) can leave in the decoder's stderr: not ffmpeg's words.
_FOREIGN = re.compile(r"^[IWEF]\d{4} \d\d:\d\d:\d\d\.\d+\s+\d+ \S+:\d+\]")


def _ffmpeg_lines(text: str) -> list[str]:
  return [line for line in text.splitlines() if not _FOREIGN.match(line.strip())]


def _ffmpeg_reason(e: BaseException) -> str:
  """The first line of ffmpeg's log (inside imageio-ffmpeg's error) that names a problem."""
  for line in _ffmpeg_lines(str(e)):
    line = re.sub(r"^(\[[^]]*\]\s*)+", "", line.strip())  # drop "[h264 @ 0x...]" tags
    if _REASON.search(line) and not line.startswith(("configuration:", "Could not load meta")):
      return line[:200]
  return str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__


def _read_gif(path: str) -> tuple[np.ndarray, float]:
  """GIFs through PIL, which gives each frame's own delay (ffmpeg only guesses
  one rate for the file, wrongly when delays differ)."""
  try:
    with Image.open(path) as im:
      tag = re.search(rb"%s(\d+)" % _GIF_DELAY_TAG.encode(), im.info.get("comment") or b"")
      images, delays = [], []
      for i in range(getattr(im, "n_frames", 1)):
        im.seek(i)
        images.append(np.asarray(im.convert("RGB")))
        delays.append(int(im.info.get("duration") or 100))
  except Exception as e:  # PIL raises many types for bad data (OSError, IndexError, SyntaxError, ...)
    raise VideoReadError(path, f"cannot decode the GIF: {e}") from e
  if not images:
    raise VideoReadError(path, "it contains no decodable frames")
  # Browsers show delays under 20 ms as 100 ms; GIF delays are whole centiseconds.
  delays_cs = [10 if d < 20 else max(1, round(d / 10)) for d in delays]
  step = int(np.gcd.reduce(delays_cs))  # every frame boundary falls on this grid
  if tag and step % int(tag.group(1)) == 0:  # written by write_gif: its own frame delay
    step = int(tag.group(1))
  elif step < 2:  # irregular delays: a ~50 fps grid would blow the clip up; use the typical delay
    step = int(np.median(delays_cs))
  ends = np.cumsum(delays_cs)
  count = max(1, int(round(ends[-1] / step)))
  # Output frame j shows time j * step: the source frame whose interval holds it.
  index = np.searchsorted(ends, np.arange(count) * step, side="right")
  frames = np.stack(images)[np.minimum(index, len(images) - 1)]
  return frames, 100.0 / step
