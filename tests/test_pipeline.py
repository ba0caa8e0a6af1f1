"""Input pipeline: per-process shares, deterministic resume, normalisation, paired crops."""
import numpy as np
import pytest

from imagen_video.data import builders, pipeline


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  d = str(tmp_path_factory.mktemp("tfds"))
  builders.prepare("moving_shapes", d, frames=8, height=16, width=16, num_train=37, num_test=5,
                   extra_resolutions=((4, 8, 8),))
  return d


def _config(data_dir, **overrides):
  c = pipeline.default_data_config()
  c.builder.update(dict(frames=8, height=16, width=16, num_train=37, num_test=5,
                        extra_resolutions=((4, 8, 8),)))
  c.data_dir = data_dir
  c.batch_size = 4
  c.update(overrides)
  return c


def _indices(batches):
  return [int(i) for batch in batches for i in batch["index"]]


@pytest.mark.parametrize("shuffle", [False, True])
def test_two_processes_read_disjoint_shares_that_cover_the_split(data_dir, shuffle):
  shares = []
  for p in range(2):
    c = _config(data_dir, shuffle=shuffle, repeat=False, drop_remainder=False)
    shares.append(_indices(pipeline.VideoBatches(c, process_index=p, process_count=2)))
  a, b = set(shares[0]), set(shares[1])
  assert not a & b
  assert a | b == set(range(37))
  assert len(shares[0]) + len(shares[1]) == 37  # no clip read twice within a process


def test_each_process_gets_its_share_of_the_global_batch(data_dir):
  batch = next(pipeline.VideoBatches(_config(data_dir), process_index=1, process_count=2))
  assert batch["video"].shape == (2, 8, 16, 16, 3)


def test_resume_at_a_step_gives_the_same_stream(data_dir):
  c = _config(data_dir, seed=3)
  full = pipeline.VideoBatches(c, process_index=0, process_count=1)
  stream = [next(full) for _ in range(15)]  # crosses several epochs of 37 clips
  resumed = pipeline.VideoBatches(c, process_index=0, process_count=1, start_step=11)
  for expected in stream[11:]:
    got = next(resumed)
    np.testing.assert_array_equal(got["index"], expected["index"])
    np.testing.assert_array_equal(got["video"], expected["video"])
  assert resumed.state()["step"] == 15


def test_epochs_are_reshuffled_and_seeds_differ(data_dir):
  b = pipeline.VideoBatches(_config(data_dir), process_index=0, process_count=1)
  assert not np.array_equal(b.host_positions(0), b.host_positions(1))
  other = pipeline.VideoBatches(_config(data_dir, seed=1), process_index=0, process_count=1)
  assert not np.array_equal(b.host_positions(0), other.host_positions(0))


def test_batch_contents_are_normalised_with_captions_and_labels(data_dir):
  batch = next(pipeline.VideoBatches(_config(data_dir, low_res_keys=("video_4x8x8",)),
                                     process_index=0, process_count=1))
  v = batch["video"]
  assert v.dtype == np.float32 and v.min() >= -1.0 and v.max() <= 1.0 and v.max() > 0.9
  assert batch["video_4x8x8"].shape == (4, 4, 8, 8, 3)
  assert all(c.startswith("a ") for c in batch["caption"])
  assert batch["positions"].shape == (4, 8, 2)


def test_random_crop_keeps_low_and_high_res_aligned(data_dir):
  c = _config(data_dir, low_res_keys=("video_4x8x8",), crop=(8, 8), frames=4)
  batch = next(pipeline.VideoBatches(c, process_index=0, process_count=1))
  hi, lo = batch["video"], batch["video_4x8x8"]
  assert hi.shape == (4, 4, 8, 8, 3) and lo.shape == (4, 2, 4, 4, 3)
  down = hi.reshape(4, 4, 4, 2, 4, 2, 3).mean(axis=(3, 5))[:, ::2]
  assert np.abs(down - lo).mean() < 0.02


def test_clear_errors_for_bad_config(data_dir):
  with pytest.raises(ValueError, match="not divisible"):
    pipeline.VideoBatches(_config(data_dir, batch_size=3), process_index=0, process_count=2)
  with pytest.raises(KeyError, match="names .low., not stored in moving_shapes .* nor of the form video_FxHxW"):
    next(pipeline.VideoBatches(_config(data_dir, low_res_keys=("low",)),
                               process_index=0, process_count=1))
  with pytest.raises(ValueError, match="crop"):
    next(pipeline.VideoBatches(_config(data_dir, crop=(32, 32)), process_index=0, process_count=1))


def test_token_ids_from_the_tokenizer_trained_at_preparation(data_dir):
  c = _config(data_dir, text="tokens", tokenizer="dataset", max_text_length=12, shuffle=False)
  batches = pipeline.VideoBatches(c, process_index=0, process_count=1)
  batch = next(batches)
  assert batch["text_tokens"].shape == (4, 12) and batch["text_mask"].dtype == bool
  for ids, mask, caption in zip(batch["text_tokens"], batch["text_mask"], batch["caption"]):
    n = int(mask.sum())
    assert ids[n - 1] == 1 and (ids[n:] == 0).all()  # eos then padding, as T5 expects
    assert batches.tokenizer.sp.decode(ids[:n - 1].tolist()) == caption


def test_extra_images_are_frames_of_other_clips_with_the_same_caption(data_dir):
  batches = pipeline.VideoBatches(_config(data_dir, extra_images=3), process_index=0, process_count=1)
  batch = next(batches)
  assert batch["video"].shape == (4, 11, 16, 16, 3)
  assert batch["is_image"].shape == (4, 11) and batch["is_image"].dtype == bool
  assert (batch["is_image"].sum(1) == 3).all() and not batch["is_image"][:, :8].any()
  source = batches.source
  captions = [source[i]["caption"].decode() for i in range(len(source))]
  ids = [int(source[i]["index"]) for i in range(len(source))]
  for b, caption in enumerate(batch["caption"]):
    same = [i for i, c in enumerate(captions) if c == caption]
    others = [i for i in same if ids[i] != int(batch["index"][b])] or same  # itself if alone
    for image in batch["video"][b, 8:]:
      found = [i for i in others if (np.abs(np.asarray(source[i]["video"]) / 127.5 - 1 - image)
                                     .max(axis=(1, 2, 3)) < 1e-6).any()]
      assert found, f"extra image of {caption!r} is no frame of another clip with that caption"
  assert any(len([c for c in captions if c == cap]) > 1 for cap in batch["caption"])
  with pytest.raises(ValueError, match="extra_images=2 with low_res_keys"):
    pipeline.VideoBatches(_config(data_dir, extra_images=2, low_res_keys=("video_4x8x8",)),
                          process_index=0, process_count=1)


def test_a_low_res_video_not_stored_is_derived_from_the_clip(data_dir):
  """A low-res key the dataset does not store (as video_folder's) is the clip at that rate and
  size: every 4th frame and 4x4 area means here, computed again below; a shape that is no
  integer factor of the clip is refused."""
  derived = next(pipeline.VideoBatches(_config(data_dir, low_res_keys=("video_2x4x4",)),
                                       process_index=0, process_count=1))
  video = derived["video"]  # [-1, 1]
  want = video[:, ::4].reshape(4, 2, 4, 4, 4, 4, 3).mean(axis=(3, 5))
  np.testing.assert_allclose(derived["video_2x4x4"], want, atol=1 / 127.5)  # uint8 rounding
  with pytest.raises(ValueError, match="cannot derive video_3x8x8"):
    next(pipeline.VideoBatches(_config(data_dir, low_res_keys=("video_3x8x8",)), process_index=0, process_count=1))


@pytest.mark.slow
def test_grain_worker_processes_give_the_threads_batches(data_dir):
  """Decoding in 2 Grain worker processes changes nothing: same batches, same order, from any
  start step (crops and windows depend on the seed, epoch and clip only)."""
  c = _config(data_dir, seed=5, crop=(8, 8), frames=4, low_res_keys=("video_4x8x8",))
  threads = pipeline.VideoBatches(c, process_index=0, process_count=1, start_step=7)
  c2 = _config(data_dir, seed=5, crop=(8, 8), frames=4, low_res_keys=("video_4x8x8",), workers=2)
  workers = pipeline.VideoBatches(c2, process_index=0, process_count=1, start_step=7)
  for _ in range(12):  # crosses an epoch
    a, b = next(threads), next(workers)
    assert set(a) == set(b)
    for key in a:
      np.testing.assert_array_equal(a[key], b[key])
  workers.close()
