"""Input pipeline from `config.data`: per-host numpy batches on Grain, by random access.

A Grain `MapDataset` over this process's stream of examples: element k is read from the
TFDS ArrayRecord source by index, decoded, windowed and cropped (`map`), and batched;
Grain's iterator decodes on `threads` threads, and with `workers` > 0 in that many worker
processes (`mp_prefetch`). The order of examples is a pure function of (seed, epoch): each
epoch is one global permutation of the split, cut into blocks of the per-process batch b,
and process p of P reads only the blocks p, p+P, p+2P, ... of it. So the shares of all
processes are disjoint and cover the split, the global batch of a step is the same
examples in the same order for any P (when the split size is a multiple of the global
batch), random crops and windows depend on (seed, epoch, clip) only, and the stream starts
at any step (`start_step`, the data position saved in checkpoints) without replaying it:
that position is the iterator's whole state (Grain's own iterator state would also pin the
worker count, which a resumed job may change).

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
  prefetch        batches decoded ahead
  threads         decoding threads in this process (Grain ReadOptions)
  workers         decoding worker processes (Grain mp_prefetch; 0: none)
"""
from __future__ import annotations

import dataclasses
from typing import Iterator

import grain
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
      threads=2,
      workers=0,
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
    if c.text not in ("string", "tokens"):
      raise ValueError(f"config.data.text={c.text!r}: expected 'string' or 'tokens'")
    extra_images = int(c.get("extra_images") or 0)
    if extra_images and c.low_res_keys:
      raise ValueError(f"config.data.extra_images={extra_images} with low_res_keys "
                       f"{tuple(c.low_res_keys)}: extra images are for stages without a "
                       "low-res input (the base); set extra_images=0")
    self.reader = ExampleReader(
        config=c.copy_and_resolve_references(), source=self.source, size=self.size,
        host_batch=self.host_batch, process_index=self.process_index,
        process_count=self.process_count, per_epoch=self.per_epoch,
        tokenizer=_tokenizer_path(c, self.builder) if c.text == "tokens" else None,
        same_caption=_caption_index(c, self.source, self.size) if extra_images else None)
    self.tokenizer = None
    if self.reader.tokenizer:  # built now, so a missing model is reported before reading starts
      from imagen_video.text import tokenizer as tok
      self.tokenizer = self.reader._tok = tok.Tokenizer(self.reader.tokenizer, c.max_text_length)
    self.step = start_step
    self._iter = iter(self._dataset(start_step))

  def _dataset(self, start_step: int) -> grain.IterDataset:
    """This process's examples from batch `start_step` on, batched, as a Grain iterator."""
    c, b = self.config, self.host_batch
    if c.repeat:
      stop = 2 ** 62  # endless: an index range Grain reads lazily
    else:
      stop = self.per_epoch if not c.drop_remainder else self.per_epoch // b * b
    ds = grain.MapDataset.range(min(start_step * b, stop), stop).map(self.reader)
    ds = ds.batch(b, drop_remainder=bool(c.repeat or c.drop_remainder), batch_fn=_collate)
    it = ds.to_iter_dataset(grain.ReadOptions(num_threads=max(1, int(c.get("threads", 2))),
                                              prefetch_buffer_size=max(1, int(c.prefetch))))
    workers = int(c.get("workers") or 0)
    if workers:
      _absl_flags_parsed()
      it = it.mp_prefetch(grain.MultiprocessingOptions(num_workers=workers))
    return it

  def host_positions(self, epoch: int) -> np.ndarray:
    """Source positions this process reads in `epoch`, in order."""
    return self.reader.host_positions(epoch)

  # -- iteration -------------------------------------------------------------
  def __iter__(self) -> Iterator[dict]:
    return self

  def __next__(self) -> dict:
    batch = next(self._iter)
    self.step += 1
    return batch

  def state(self) -> dict:
    """The data position to save beside a checkpoint."""
    return {"step": self.step, "seed": self.config.seed, "process_count": self.process_count}

  def close(self):
    self._iter = iter(())


@dataclasses.dataclass
class ExampleReader:
  """Element k of a process's stream -> its decoded example (a Grain map: pickled into
  worker processes, so it holds the source and settings, not the pipeline)."""
  config: ml_collections.ConfigDict
  source: object
  size: int
  host_batch: int
  process_index: int
  process_count: int
  per_epoch: int
  tokenizer: str | None = None
  same_caption: dict | None = None

  def __post_init__(self):
    self._positions, self._tok = {}, None

  def __getstate__(self):
    state = dict(self.__dict__)
    state.update(_positions={}, _tok=None)  # rebuilt in the worker
    return state

  def _permutation(self, epoch: int) -> np.ndarray:
    if not self.config.shuffle:
      return np.arange(self.size)
    return np.random.default_rng([self.config.seed, epoch]).permutation(self.size)

  def host_positions(self, epoch: int) -> np.ndarray:
    """Source positions this process reads in `epoch`, in order."""
    if epoch not in self._positions:
      # Blocks of host_batch (not single positions) interleaved over processes, so that
      # concatenating the processes' batches in process order gives the 1-process batch.
      blocks = np.arange(self.size) // self.host_batch
      self._positions = {epoch: self._permutation(epoch)[blocks % self.process_count == self.process_index]}
    return self._positions[epoch]

  def __call__(self, k: int) -> dict:
    epoch = int(k) // self.per_epoch
    return self.example(epoch, int(self.host_positions(epoch)[int(k) % self.per_epoch]))

  def example(self, epoch: int, position: int) -> dict:
    c = self.config
    raw = self.source[position]
    rng = np.random.default_rng([c.seed, epoch, position, 1])
    video = np.stack(raw[VIDEO_KEY]) if isinstance(raw[VIDEO_KEY], list) else np.asarray(raw[VIDEO_KEY])
    out = {VIDEO_KEY: video}
    for key in c.low_res_keys:
      if key in raw:
        out[key] = np.stack(raw[key]) if isinstance(raw[key], list) else np.asarray(raw[key])
      else:  # not stored (a video_folder dataset): the clip itself at the lower rate and size
        out[key] = _downsampled(video, key, c.name, sorted(k for k in raw if k.startswith("video")))
    if c.get("pose"):  # rendered before windowing and cropping, which then treat it as a video
      out[POSE_KEY] = _pose_maps(raw, video.shape, c.name)
    if c.frames is not None:
      out = _time_window(out, c.frames, rng if c.shuffle else None)
    if c.crop is not None:
      out = _random_crop(out, tuple(c.crop), rng)
    if self.same_caption is not None:
      out[VIDEO_KEY], out[IS_IMAGE] = self._append_images(out[VIDEO_KEY], raw, position, rng)
    out = {k: v if k == IS_IMAGE else v.astype(np.float32) / 127.5 - 1.0 for k, v in out.items()}
    for key, value in raw.items():
      if key in out or key.startswith(VIDEO_KEY):
        continue
      out[key] = value.decode() if isinstance(value, bytes) else np.asarray(value)
    if self.tokenizer is not None:
      if self._tok is None:
        from imagen_video.text import tokenizer as tok  # sentencepiece only when asked for
        self._tok = tok.Tokenizer(self.tokenizer, max_length=c.max_text_length)
      ids, mask = self._tok(out["caption"])
      out["text_tokens"], out["text_mask"] = ids[0], mask[0]
    return out

  def _append_images(self, video, raw, position: int, rng):
    """video [T, ...] -> ([T + n, ...], is_image [T + n]): n random frames of other clips
    with this clip's caption (of itself only when it is the caption's one clip)."""
    n = int(self.config.extra_images)
    pool = self.same_caption[_text(raw["caption"])]
    others = pool[pool != position] if len(pool) > 1 else pool
    images = []
    for p in rng.choice(others, size=n, replace=len(others) < n):
      frames = self.source[int(p)][VIDEO_KEY]
      frame = np.asarray(frames[int(rng.integers(len(frames)))])[None]
      if self.config.crop is not None:
        frame = _random_crop({VIDEO_KEY: frame}, tuple(self.config.crop), rng)[VIDEO_KEY]
      images.append(frame)
    is_image = np.arange(len(video) + n) >= len(video)
    return np.concatenate([video] + images), is_image


def _downsampled(video, key: str, name: str, stored) -> np.ndarray:
  """uint8 [T, H, W, 3] at the frames x height x width `key` names: every k-th frame and area
  means (as the synthetic datasets render their low-res versions, `stage.conditioning`'s
  `downsample`); only for integer factors."""
  shape = batch_keys.shape_of_key(key)
  if shape is None:
    raise KeyError(f"config.data.low_res_keys names {key!r}, not stored in {name} (features "
                   f"{stored}) nor of the form video_FxHxW")
  t, h, w = shape
  frames, height, width = video.shape[:3]
  if frames % t or height % h or width % w:
    raise ValueError(f"{name}: cannot derive {key} from {frames}x{height}x{width} clips "
                     "(needs integer factors)")
  small = video[::frames // t].astype(np.float32)
  small = small.reshape(t, h, height // h, w, width // w, 3).mean(axis=(2, 4))
  return np.round(small).astype(np.uint8)


def _collate(examples) -> dict:
  batch = {}
  for key in examples[0]:
    values = [e[key] for e in examples]
    batch[key] = np.array(values, dtype=object) if isinstance(values[0], str) else np.stack(values)
  return batch


def _caption_index(c, source, size: int) -> dict[str, np.ndarray]:
  """caption -> positions of the split's clips with that caption (for extra images)."""
  index: dict[str, list[int]] = {}
  for i in range(size):
    caption = source[i].get("caption")
    if caption is None:
      raise KeyError(f"config.data.extra_images needs captions; {c.name} examples have none")
    index.setdefault(_text(caption), []).append(i)
  return {k: np.asarray(v) for k, v in index.items()}


def _absl_flags_parsed() -> None:
  """Grain's worker processes read an absl flag: parse them if no program did (a library
  or notebook caller)."""
  from absl import flags
  if not flags.FLAGS.is_parsed():
    flags.FLAGS.mark_as_parsed()


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


def _tokenizer_path(c, builder) -> str:
  if not c.tokenizer:
    raise ValueError("config.data.text='tokens' needs config.data.tokenizer: a sentencepiece "
                     ".model, or 'dataset' for the one trained from the dataset's captions")
  return builders.tokenizer_path(builder) if c.tokenizer == "dataset" else c.tokenizer
