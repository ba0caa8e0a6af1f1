"""Pose inputs: COCO/OpenPose round trips, the BODY_25 mapping, every validation error
with its message, interpolation on request, skeleton maps drawn where the keypoints are."""
import json
import os
import re

import numpy as np
import pytest

from imagen_video.data import athletes as ath
from imagen_video.media import video_io
from imagen_video.pose import keypoints_io as kio
from imagen_video.pose import render as pr
from imagen_video.pose.skeleton import INDEX, KEYPOINTS

W, H = 640, 480


@pytest.fixture(scope="module")
def clip_poses():
  """A synthetic profile clip's keypoints (its far eye and ear hidden)."""
  clip = next(c for c in (ath.sample_clip(0, "train", i, W / H) for i in range(100)) if c.exercise == "push_ups")
  k, v = clip.keypoints(6)
  assert (v == 0).any()
  return k, v


def _expected(k, v):
  return np.where(v[..., None] > 0, k, 0.0)  # unlabelled points read back as (0, 0)


def _coco(tmp_path, frames=4, **edits):
  """A valid COCO file of `frames` frames (all points labelled); `edits` patch it."""
  rng = np.random.default_rng(0)
  data = {"images": [{"id": i + 1, "file_name": f"f_{i:03d}.png", "width": W, "height": H} for i in range(frames)],
          "annotations": [{"id": i + 1, "image_id": i + 1,
                           "keypoints": [c for x, y in rng.uniform(0, 1, (17, 2)) * (W, H) for c in (x, y, 2)]}
                          for i in range(frames)]}
  for fn in edits.values():
    fn(data)
  path = tmp_path / "poses.json"
  path.write_text(json.dumps(data))
  return str(path), data


def _raises(message, fn, *args, **kwargs):
  """fn raises PoseFileError whose message contains `message` verbatim."""
  with pytest.raises(kio.PoseFileError, match=re.escape(message)) as info:
    fn(*args, **kwargs)
  return str(info.value)


def test_coco_round_trip(tmp_path, clip_poses):
  k, v = clip_poses
  path = kio.write_coco(tmp_path / "clip.json", k, v, W, H)
  for poses in (kio.load_coco(path), kio.load(path)):
    np.testing.assert_allclose(poses.keypoints, _expected(k, v), atol=1e-6)
    np.testing.assert_array_equal(poses.visibility, v)
  with open(path) as f:
    data = json.load(f)
  assert data["categories"][0]["keypoints"] == list(KEYPOINTS)
  assert len(data["annotations"][0]["keypoints"]) == 51


@pytest.mark.parametrize("layout", ["BODY_25", "COCO-18"])
def test_openpose_round_trip(tmp_path, clip_poses, layout):
  k, v = clip_poses
  files = kio.write_openpose(tmp_path / "op", k, v, W, H, layout=layout, prefix="clip")
  assert os.path.basename(files[3]) == "clip_000000000003_keypoints.json"
  poses = kio.load(str(tmp_path / "op"))
  np.testing.assert_allclose(poses.keypoints, _expected(k, v), atol=1e-6)
  np.testing.assert_array_equal(poses.visibility, v)


def test_body_25_maps_to_coco_17_by_joint_name(tmp_path):
  # BODY_25 joint j at (10 (j + 1), 5 (j + 1)): each COCO joint must come from its namesake.
  body_25 = {"nose": 0, "left_eye": 16, "right_eye": 15, "left_ear": 18, "right_ear": 17,
             "left_shoulder": 5, "right_shoulder": 2, "left_elbow": 6, "right_elbow": 3,
             "left_wrist": 7, "right_wrist": 4, "left_hip": 12, "right_hip": 9,
             "left_knee": 13, "right_knee": 10, "left_ankle": 14, "right_ankle": 11}
  flat = [c for j in range(25) for c in (10.0 * (j + 1), 5.0 * (j + 1), 0.9)]
  flat[3 * 21 + 2] = 0.0  # a heel not found: no effect on COCO-17
  (tmp_path / "a_000000000000_keypoints.json").write_text(json.dumps({"people": [{"pose_keypoints_2d": flat}]}))
  poses = kio.load_openpose(str(tmp_path), width=400, height=200)
  for name, j in body_25.items():
    np.testing.assert_allclose(poses.keypoints[0, INDEX[name]], [10 * (j + 1) / 400, 5 * (j + 1) / 200])
  assert poses.visibility.all()


def test_wrong_joint_count(tmp_path):
  path, _ = _coco(tmp_path, a=lambda d: d["annotations"][3]["keypoints"].__delitem__(slice(48, None)))
  msg = _raises("'keypoints' has 48 numbers; expected 51 (17 joints x (x, y, v))", kio.load, path)
  assert msg.startswith(f"frame 3 of {path} (image_id 4, file_name 'f_003.png')")
  (tmp_path / "op").mkdir()
  (tmp_path / "op" / "v_000000000000_keypoints.json").write_text(json.dumps({"people": [{"pose_keypoints_2d": [1.0] * 48}]}))
  _raises("frame 0 of ", kio.load, str(tmp_path / "op"), width=W, height=H)
  _raises("(v_000000000000_keypoints.json): 'people[0].pose_keypoints_2d' has 48 numbers; expected 75 "
          "(BODY_25: 25 joints x (x, y, c)) or 54 (COCO-18: 18 joints x (x, y, c))",
          kio.load, str(tmp_path / "op"), width=W, height=H)


def test_missing_frames_are_errors_unless_interpolation_is_asked_for(tmp_path):
  # An image without an annotation.
  path, _ = _coco(tmp_path, a=lambda d: d["annotations"].pop(2))
  _raises(f"frame 2 of {path} (image_id 3, file_name 'f_002.png'): no annotation has this image_id; "
          "pass interpolate_missing=True to fill missing frames from their neighbours", kio.load, path)
  poses = kio.load(path, interpolate_missing=True)
  a, b = kio.load(path, interpolate_missing=True).keypoints[[1, 3]]
  np.testing.assert_allclose(poses.keypoints[2], (a + b) / 2, atol=1e-6)
  # A gap in the image ids.
  path, _ = _coco(tmp_path, a=lambda d: [d["images"].pop(2), d["annotations"].pop(2)])
  _raises(f"{path}: a gap in the frame numbering between image_id 2, file_name 'f_001.png' and image_id 4, "
          "file_name 'f_003.png': frame 2 is missing (frames count from 0);", kio.load, path)
  assert kio.load(path, interpolate_missing=True).keypoints.shape == (4, 17, 2)
  # The same gap seen through file names.
  _raises("between image_id 2, file_name 'f_001.png' and image_id 4", kio.load, path, order_by="file_name")
  # A gap in OpenPose file numbers and a file without people.
  k = np.full((4, 17, 2), 0.5, np.float32)
  folder = tmp_path / "op"
  kio.write_openpose(folder, k, np.ones((4, 17)), W, H)
  os.remove(folder / "frame_000000000001_keypoints.json")
  _raises(f"{folder}: a gap in the frame numbering between frame_000000000000_keypoints.json and "
          "frame_000000000002_keypoints.json: frame 1 is missing", kio.load, str(folder))
  (folder / "frame_000000000001_keypoints.json").write_text(json.dumps({"people": [], "canvas_width": W, "canvas_height": H}))
  _raises(f"frame 1 of {folder} (frame_000000000001_keypoints.json): 'people' is empty; expected one person;",
          kio.load, str(folder))
  np.testing.assert_allclose(kio.load(str(folder), interpolate_missing=True).keypoints, k)
  # A person without a single labelled point counts as none.
  path, _ = _coco(tmp_path, a=lambda d: d["annotations"][1].__setitem__("keypoints", [0] * 51))
  _raises(f"frame 1 of {path} (image_id 2, file_name 'f_001.png'): the person has no labelled keypoints;",
          kio.load, path)
  assert kio.load(path, interpolate_missing=True).visibility[1].all()


def test_coordinates_out_of_range(tmp_path):
  def far_right(d):
    d["annotations"][1]["keypoints"][3 * INDEX["left_wrist"]: 3 * INDEX["left_wrist"] + 2] = [700.0, 20.0]
  path, _ = _coco(tmp_path, a=far_right)
  _raises(f"frame 1 of {path} (image_id 2, file_name 'f_001.png'): joint 'left_wrist' at (x, y) = (700, 20) "
          "is outside the 640x480 frame (by more than 2% of its size)", kio.load, path)
  # Within the tolerance it is clipped to the frame; unlabelled points are not checked.
  def slightly_out(d):
    d["annotations"][1]["keypoints"][0:3] = [645.0, -3.0, 1]
    d["annotations"][2]["keypoints"][0:3] = [9999.0, 9999.0, 0]
  path, _ = _coco(tmp_path, a=slightly_out)
  poses = kio.load(path)
  np.testing.assert_allclose(poses.keypoints[1, 0], [1.0, 0.0])
  assert poses.visibility[2, 0] == 0 and (poses.keypoints[2, 0] == 0).all()


def test_file_level_errors(tmp_path):
  empty = tmp_path / "empty.json"
  empty.write_text("")
  _raises(f"{empty}: the file is empty (0 bytes); expected JSON", kio.load, str(empty))
  bad = tmp_path / "bad.json"
  bad.write_text("{'images': []")
  _raises(f"{bad}: not valid JSON: Expecting property name enclosed in double quotes at line 1 column 2",
          kio.load, str(bad))
  other = tmp_path / "other.json"
  other.write_text(json.dumps({"frames": []}))
  _raises(f"{other}: expected COCO keypoint JSON: an object with an 'annotations' list", kio.load, str(other))
  path, _ = _coco(tmp_path, a=lambda d: d.pop("images"))
  _raises(f"{path}: no 'images' list to take the frame size from; pass width= and height=", kio.load, path)
  assert kio.load(path, width=W, height=H).keypoints.shape == (4, 17, 2)
  path, _ = _coco(tmp_path, a=lambda d: d["annotations"][0]["keypoints"].__setitem__(2, 3))
  _raises("frame 0 of", kio.load, path)
  _raises("'keypoints' visibility flag of 'nose' is 3; expected 0 (not labelled), 1 (occluded) or 2 (visible)",
          kio.load, path)
  (tmp_path / "none").mkdir()
  _raises(f"{tmp_path / 'none'}: no OpenPose files (*_keypoints.json) in this folder", kio.load, str(tmp_path / "none"))


def test_openpose_needs_the_frame_size(tmp_path):
  k = np.full((2, 17, 2), 0.25, np.float32)
  kio.write_openpose(tmp_path, k, np.ones((2, 17)), W, H, canvas=False)
  _raises(f"{tmp_path / 'frame_000000000000_keypoints.json'}: the frame size is unknown (OpenPose JSON does not "
          "record it); pass width= and height= (the video's size in pixels)", kio.load, str(tmp_path))
  np.testing.assert_allclose(kio.load(str(tmp_path), width=W, height=H).keypoints, k)


def test_skeleton_maps_draw_limbs_where_the_keypoints_are(tmp_path):
  clip = ath.sample_clip(0, "train", 3)
  k, v = clip.keypoints(3)
  size = 64
  maps = pr.render_skeleton(k, v, size, size)
  assert maps.shape == (3, size, size, 3)
  k18, v18 = pr.to_openpose18(k, v)
  f = 0
  drawn = np.zeros((size, size), bool)
  for i, (a, b) in enumerate(pr.OPENPOSE_LIMBS):
    if v18[f, a] and v18[f, b]:
      x, y = ((k18[f, a] + k18[f, b]) / 2 * size).astype(int)
      assert maps[f, y, x].max() > 100, (i, maps[f, y, x])  # coloured at the limb's middle
      drawn[max(0, y - 6): y + 7, max(0, x - 6): x + 7] = True
  assert (maps[f][~drawn].max(-1) == 0).mean() > 0.95  # away from the limbs: black
  # The left upper arm takes its OpenPose hue (limb 4: 80 degrees, yellow-green).
  mid = ((k[f, INDEX["left_shoulder"]] + k[f, INDEX["left_elbow"]]) / 2 * size).astype(int)
  assert np.argmax(maps[f, mid[1], mid[0]]) == 1 and maps[f, mid[1], mid[0], 2] < 60
  # Hidden joints are not drawn: hiding everything leaves a black map.
  assert pr.render_skeleton(k, np.zeros_like(v), 16, 24).max() == 0


def test_side_by_side_writers(tmp_path):
  clip = ath.sample_clip(0, "train", 1, 1.0)
  k, v = clip.keypoints(4)
  video = ath.render(clip, 4, 32, 32)
  path = pr.write_side_by_side(tmp_path / "pose.mp4", k, v, video, fps=4, scale=2)
  frames, fps = video_io.read_video(path)
  assert frames.shape == (4, 64, 2 * (3 * 32 + 4), 3) and fps == 4
  sheet = pr.write_side_by_side(tmp_path / "pose.png", k, v, video, caption=clip.caption)
  assert os.path.getsize(sheet) > 0
  with pytest.raises(ValueError, match="video has 3 frames but the pose sequence 4"):
    pr.write_side_by_side(tmp_path / "x.mp4", k, v, video[:3])
