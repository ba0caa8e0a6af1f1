"""texture_pans: consistent resolutions, disjoint photos, determinism, TFDS preparation."""
import numpy as np
import pytest

from imagen_video.data import builders
from imagen_video.data import texture_pans as tp


def _box_down(video, f):
  t, h, w, c = video.shape
  return video.astype(np.float64).reshape(t, h // f, f, w // f, f, c).mean(axis=(2, 4))


def test_low_res_is_the_area_downsample_of_high_res():
  for i in range(6):
    clip = tp.sample_clip(0, "train", i)
    high = tp.render(clip, 8, 32, 32)
    low = tp.render(clip, 4, 16, 16)
    # Same times (frame i of the low-fps clip is frame 2i), same footprints: only uint8 rounding.
    assert np.abs(_box_down(high[::2], 2) - low).max() <= 1.0


def test_photos_split_disjoint_and_all_bundled():
  photos = {k: set(v) for k, v in tp.SPLIT_PHOTOS.items()}
  assert set(photos) == {"train", "test", "validation"}
  for a in photos:
    assert photos[a]
    assert all(not photos[a] & photos[b] for b in photos if b != a), a
    assert {tp.sample_clip(0, a, i).photo for i in range(50)} <= photos[a]
  for name in set().union(*photos.values()):  # read from the installed wheel: no network
    photo = tp.load_photo(name)
    assert photo.ndim == 3 and photo.shape[2] == 3 and 0 <= photo.min() and photo.max() <= 1


def test_clips_are_deterministic_and_stay_inside_the_photo():
  assert tp.sample_clip(2, "train", 5) == tp.sample_clip(2, "train", 5)
  assert tp.sample_clip(2, "train", 5) != tp.sample_clip(3, "train", 5)
  np.testing.assert_array_equal(tp.render(tp.sample_clip(1, "test", 0), 4, 16, 16),
                                tp.render(tp.sample_clip(1, "test", 0), 4, 16, 16))
  for i in range(100):
    clip = tp.sample_clip(0, "train", i, aspect=1.5)
    ph, pw = tp.load_photo(clip.photo).shape[:2]
    centers, heights = clip.views(2)  # t = 0 and 1/2; check t = 1 too
    centers = np.concatenate([centers, np.add(clip.center, clip.velocity)[None]])
    heights = np.append(heights, clip.view_height * clip.zoom)
    half = np.stack([heights * 1.5, heights], 1) / 2
    assert (centers - half >= -1e-6).all() and (centers + half <= [pw + 1e-6, ph + 1e-6]).all()
    assert clip.caption.startswith(("a pan ", "a zoom ")) and "photograph of" in clip.caption


def test_bad_render_size_names_the_aspect():
  with pytest.raises(ValueError, match="aspect"):
    tp.render(tp.sample_clip(0, "train", 0), 4, 16, 24)


def test_builder_prepares_with_extra_resolutions(tmp_path):
  b = builders.prepare("texture_pans", str(tmp_path), frames=4, height=16, width=16, num_train=6,
                       num_test=2, extra_resolutions=((2, 16, 16), (4, 8, 8)))
  test = b.as_data_source("test")
  assert len(b.as_data_source("train")) == 6 and len(test) == 2
  ex = test[0]
  clip = tp.sample_clip(0, "test", int(ex["index"]))
  assert ex["caption"].decode() == clip.caption and ex["photo"].decode() in tp.SPLIT_PHOTOS["test"]
  np.testing.assert_array_equal(np.stack(ex["video"]), tp.render(clip, 4, 16, 16))
  np.testing.assert_array_equal(np.stack(ex["video_2x16x16"]), np.stack(ex["video"])[::2])
  assert np.stack(ex["video_4x8x8"]).shape == (4, 8, 8, 3)
  assert "validation" not in b.info.splits  # only when asked for


def test_builder_validation_split_uses_its_own_photos(tmp_path):
  b = builders.prepare("texture_pans", str(tmp_path), frames=2, height=8, width=8, num_train=2,
                       num_test=2, num_validation=3)
  assert "_v3" in b.builder_config.name
  val = b.as_data_source("validation")
  assert len(val) == 3
  for ex in val:
    clip = tp.sample_clip(0, "validation", int(ex["index"]))
    assert ex["photo"].decode() == clip.photo and clip.photo in tp.SPLIT_PHOTOS["validation"]
    np.testing.assert_array_equal(np.stack(ex["video"]), tp.render(clip, 2, 8, 8))
