"""Input pipeline from `config.data`: per-host numpy batches by random access.

The order of examples is a pure function of (seed, epoch): each epoch is one
global permutation of the split, cut into blocks of the per-process batch b,
and process p of P reads only the blocks p, p+P, p+2P, ... of it. So the shares
of all processes are disjoint and cover the split, the global batch of a step
is the same examples in the same order for any P (when the split size is a
multiple of the global batch), and the stream can start at any step
(`start_step`, the data position saved in checkpoints) without replaying it.

`config.data` fields:
  name            dataset builder ("moving_shapes", "texture_pans", "video_folder")
  builder         ConfigDict of builder parameters (frames, height, width, ...)
  data_dir        TFDS data dir (None: ~/tensorflow_datasets)
  split           "train", "test", or any TFDS split string ("train[:90%]")
  batch_size      GLOBAL batch size; each process yields batch_size // process_count
  shuffle, seed   shuffle each epoch with a permutation seeded by (seed, epoch)
  repeat          True: endless; False: one pass (the last batch may be short
                  unless drop_remainder)
  drop_remainder  drop a short last batch in one-pass mode
  frames          take a window of this many frames (None: all); random start
                  when shuffling, else the first frames
  crop            (height, width) random crop, None for the full frame; paired
                  low-res videos are cropped at the same place, scaled
  low_res_keys    extra video features to return (e.g. "video_8x16x16")
  extra_images    joint image-video training (Video Diffusion Models): append this
                  many independent images to each video, each a random frame of
                  another clip with the same caption (so the caption describes
                  them too), and return `is_image` [T + extra_images] bool, which
                  keeps them out of the temporal layers. 0: videos only
  pose            True: return `pose_maps`, skeleton maps rendered from the examples'
                  `keypoints`/`visibility` at the video's size (datasets with keypoints,
                  e.g. athletes), windowed and cropped with the video
  text            "string" (captions as str) or "tokens" (adds `text_tokens`,
                  `text_mask` from the sentencepiece model `tokenizer`, padded
                  to `max_text_length`; tokenizer "dataset" = the one trained
                  from the dataset's captions at preparation)
  prefetch        batches decoded ahead on worker threads
"""
from __future__ import annotations

import concurrent.futures
import collections
from typing import Iterator

import ml_collections
import numpy as np

from imagen_video.data import batch as batch_keys
from imagen_video.data import builders

VIDEO_KEY, POSE_KEY, IS_IMAGE = batch_keys.VIDEO, batch_keys.POSE_MAPS, batch_keys.IS_IMAGE


def default_data_config() -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(dict(
      name="moving_shapes",
      builder=ml_collections.ConfigDict(dict(frames=16, height=32, width=32)),
      data_dir=ml_collections.FieldReference(None, field_type=str),
      split="train",
      batch_size=8,
      shuffle=True,
      seed=0,
      repeat=True,
      drop_remainder=True,
      frames=ml_collections.FieldReference(None, field_type=int),
      crop=ml_collections.FieldReference(None, field_type=tuple),
      low_res_keys=(),
      extra_images=0,
      pose=False,
      text="string",
      tokenizer=ml_collections.FieldReference(None, field_type=str),
      max_text_length=32,
      prefetch=2,
  ))


def _process_info(process_index, process_count) -> tuple[int, int]:
  if process_index is None or process_count is None:
    import jax  # only when not given explicitly (tests simulate processes)
    process_index = jax.process_index() if process_index is None else process_index
    process_count = jax.process_count() if process_count is None else process_count
  if not 0 <= process_index < process_count:
    raise ValueError(f"process_index {process_index} not in [0, {process_count})")
  return process_index, process_count


class VideoBatches:
  """Iterator of per-host batches (dicts of numpy arrays) from `config.data`."""

  def __init__(self, data_config, *, process_index: int | None = None,
               process_count: int | None = None, start_step: int = 0, prepare: bool = True):
    c = data_config
    self.config = c
    self.process_index, self.process_count = _process_info(process_index, process_count)
    if c.batch_size % self.process_count:
      raise ValueError(f"config.data.batch_size={c.batch_size} is not divisible by the "
                       f"{self.process_count} processes")
    self.host_batch = c.batch_size // self.process_count
    kwargs = dict(c.builder) if c.builder is not None else {}
    make = builders.prepare if prepare else builders.get_builder
    self.builder = make(c.name, c.data_dir, **kwargs)
    self.source = self.builder.as_data_source(c.split)
    self.size = len(self.source)
    if self.size < self.process_count:
      raise ValueError(f"split {c.split!r} of {c.name} has {self.size} examples, fewer than "
                       f"the {self.process_count} processes")
    self.per_epoch = int(np.sum(np.arange(self.size) // self.host_batch % self.process_count
                                == self.process_index))
    if c.repeat and self.per_epoch < self.host_batch:
      raise ValueError(f"split {c.split!r} gives {self.per_epoch} examples per process, "
                       f"fewer than the per-process batch {self.host_batch}")
    self.tokenizer = _make_tokenizer(c, self.builder) if c.text == "tokens" else None
    if c.text not in ("string", "tokens"):
      raise ValueError(f"config.data.text={c.text!r}: expected 'string' or 'tokens'")
    self.extra_images = int(c.get("extra_images") or 0)
    self._same_caption = self._caption_index() if self.extra_images else None
    self.step = start_step
    self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=2)
    self._pending: collections.deque = collections.deque()
    self._next_to_submit = start_step

  def _caption_index(self) -> dict[str, np.ndarray]:
    """caption -> positions of the split's clips with that caption (for extra images)."""
    c = self.config
    if c.low_res_keys:
      raise ValueError(f"config.data.extra_images={self.extra_images} with low_res_keys "
                       f"{tuple(c.low_res_keys)}: extra images are for stages without a "
                       "low-res input (the base); set extra_images=0")
    index: dict[str, list[int]] = {}
    for i in range(self.size):
      caption = self.source[i].get("caption")
      if caption is None:
        raise KeyError(f"config.data.extra_images needs captions; {c.name} examples have none")
      index.setdefault(_text(caption), []).append(i)
    return {k: np.asarray(v) for k, v in index.items()}

  # -- order -----------------------------------------------------------------
  def _permutation(self, epoch: int) -> np.ndarray:
    if not self.config.shuffle:
      return np.arange(self.size)
    return np.random.default_rng([self.config.seed, epoch]).permutation(self.size)

  def host_positions(self, epoch: int) -> np.ndarray:
    """Source positions this process reads in `epoch`, in order."""
    # Blocks of host_batch (not single positions) interleaved over processes, so that
    # concatenating the processes' batches in process order gives the 1-process batch.
    blocks = np.arange(self.size) // self.host_batch
    return self._permutation(epoch)[blocks % self.process_count == self.process_index]

  def _batch_plan(self, step: int) -> list[tuple[int, int]] | None:
    """(epoch, source position) for each example of batch `step`; None at the end."""
    first = step * self.host_batch
    ks = range(first, first + self.host_batch)
    if not self.config.repeat:
      ks = range(first, min(first + self.host_batch, self.per_epoch))
      if not ks or (self.config.drop_remainder and len(ks) < self.host_batch):
        return None
    plan, cache = [], {}
    for k in ks:
      epoch = k // self.per_epoch
      if epoch not in cache:
        cache[epoch] = self.host_positions(epoch)
      plan.append((epoch, int(cache[epoch][k % self.per_epoch])))
    return plan

  # -- decoding --------------------------------------------------------------
  def _example(self, epoch: int, position: int) -> dict:
    c = self.config
    raw = self.source[position]
    rng = np.random.default_rng([c.seed, epoch, position, 1])
    video = np.stack(raw[VIDEO_KEY]) if isinstance(raw[VIDEO_KEY], list) else np.asarray(raw[VIDEO_KEY])
    out = {VIDEO_KEY: video}
    for key in c.low_res_keys:
      if key not in raw:
        raise KeyError(f"config.data.low_res_keys names {key!r}, but {c.name} examples have "
                       f"{sorted(k for k in raw if k.startswith('video'))}")
      out[key] = np.stack(raw[key]) if isinstance(raw[key], list) else np.asarray(raw[key])
    if c.get("pose"):  # rendered before windowing and cropping, which then treat it as a video
      out[POSE_KEY] = _pose_maps(raw, video.shape, c.name)
    if c.frames is not None:
      out = _time_window(out, c.frames, rng if c.shuffle else None)
    if c.crop is not None:
      out = _random_crop(out, tuple(c.crop), rng)
    if self.extra_images:
      out[VIDEO_KEY], out[IS_IMAGE] = self._append_images(out[VIDEO_KEY], raw, position, rng)
    out = {k: v if k == IS_IMAGE else v.astype(np.float32) / 127.5 - 1.0 for k, v in out.items()}
    for key, value in raw.items():
      if key in out or key.startswith(VIDEO_KEY):
        continue
      out[key] = value.decode() if isinstance(value, bytes) else np.asarray(value)
    if self.tokenizer is not None:
      ids, mask = self.tokenizer(out["caption"])
      out["text_tokens"], out["text_mask"] = ids[0], mask[0]
    return out

  def _append_images(self, video, raw, position: int, rng):
    """video [T, ...] -> ([T + n, ...], is_image [T + n]): n random frames of other clips
    with this clip's caption (of itself only when it is the caption's one clip)."""
    pool = self._same_caption[_text(raw["caption"])]
    others = pool[pool != position] if len(pool) > 1 else pool
    images = []
    for p in rng.choice(others, size=self.extra_images, replace=len(others) < self.extra_images):
      frames = self.source[int(p)][VIDEO_KEY]
      frame = np.asarray(frames[int(rng.integers(len(frames)))])[None]
      if self.config.crop is not None:
        frame = _random_crop({VIDEO_KEY: frame}, tuple(self.config.crop), rng)[VIDEO_KEY]
      images.append(frame)
    is_image = np.arange(len(video) + self.extra_images) >= len(video)
    return np.concatenate([video] + images), is_image

  def _collate(self, examples: list[dict]) -> dict:
    batch = {}
    for key in examples[0]:
      values = [e[key] for e in examples]
      batch[key] = np.array(values, dtype=object) if isinstance(values[0], str) else np.stack(values)
    return batch

  def _submit(self, step: int):
    plan = self._batch_plan(step)
    if plan is None:
      return None
    return [self._pool.submit(self._example, e, p) for e, p in plan]

  # -- iteration -------------------------------------------------------------
  def __iter__(self) -> Iterator[dict]:
    return self

  def __next__(self) -> dict:
    while len(self._pending) <= max(self.config.prefetch, 0):
      futures = self._submit(self._next_to_submit)
      self._next_to_submit += 1
      self._pending.append(futures)
      if futures is None:
        break
    futures = self._pending.popleft()
    if futures is None:
      self._pending.appendleft(None)
      raise StopIteration
    batch = self._collate([f.result() for f in futures])
    self.step += 1
    return batch

  def state(self) -> dict:
    """The data position to save beside a checkpoint."""
    return {"step": self.step, "seed": self.config.seed, "process_count": self.process_count}

  def close(self):
    self._pool.shutdown(wait=False, cancel_futures=True)


def _text(value) -> str:
  """A caption as stored (bytes) or already decoded, as str."""
  return value.decode() if isinstance(value, bytes) else str(value)


def _pose_maps(raw, shape, name: str) -> np.ndarray:
  from imagen_video.pose import render
  if "keypoints" not in raw or "visibility" not in raw:
    raise KeyError(f"config.data.pose=True, but {name} examples have no 'keypoints'/'visibility' "
                   f"(features: {sorted(raw)})")
  keypoints, visibility = np.asarray(raw["keypoints"]), np.asarray(raw["visibility"])
  if len(keypoints) != shape[0]:
    raise ValueError(f"{name}: {len(keypoints)} keypoint frames for a {shape[0]}-frame video")
  return render.render_skeleton(keypoints, visibility, shape[1], shape[2])


def _time_window(videos: dict, frames: int, rng) -> dict:
  """Same time window for all videos; low-fps videos get the matching frames."""
  full = videos[VIDEO_KEY].shape[0]
  if full < frames:
    raise ValueError(f"clip has {full} frames, fewer than config.data.frames={frames}")
  align = max(full // v.shape[0] for v in videos.values())  # low-fps frames must line up
  start = int(rng.integers(0, (full - frames) // align + 1)) * align if rng is not None else 0
  out = {}
  for key, v in videos.items():
    ratio = full // v.shape[0]
    if (start % ratio) or (frames % ratio):
      raise ValueError(f"{key}: window start {start} / length {frames} not aligned to its "
                       f"frame-rate ratio {ratio}")
    out[key] = v[start // ratio:(start + frames) // ratio]
  return out


def _random_crop(videos: dict, crop: tuple[int, int], rng) -> dict:
  """Crop all videos at the same place (positions scaled by each one's size)."""
  _, height, width, _ = videos[VIDEO_KEY].shape
  ch, cw = crop
  if ch > height or cw > width:
    raise ValueError(f"config.data.crop={crop} is larger than the frames {height}x{width}")
  scales = {k: (height // v.shape[1], width // v.shape[2]) for k, v in videos.items()}
  step_y = max(s[0] for s in scales.values())
  step_x = max(s[1] for s in scales.values())
  y = int(rng.integers(0, (height - ch) // step_y + 1)) * step_y
  x = int(rng.integers(0, (width - cw) // step_x + 1)) * step_x
  out = {}
  for key, v in videos.items():
    sy, sx = scales[key]
    if ch % sy or cw % sx:
      raise ValueError(f"config.data.crop={crop} is not divisible by {key}'s scale {sy}x{sx}")
    out[key] = v[:, y // sy:(y + ch) // sy, x // sx:(x + cw) // sx]
  return out


def _make_tokenizer(c, builder):
  if not c.tokenizer:
    raise ValueError("config.data.text='tokens' needs config.data.tokenizer: a sentencepiece "
                     ".model, or 'dataset' for the one trained from the dataset's captions")
  from imagen_video.text import tokenizer as tok  # sentencepiece only when asked for
  path = builders.tokenizer_path(builder) if c.tokenizer == "dataset" else c.tokenizer
  return tok.Tokenizer(path, max_length=c.max_text_length)
