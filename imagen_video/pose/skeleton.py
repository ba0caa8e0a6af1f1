"""The COCO-17 keypoint layout that every pose sequence here uses.

A pose sequence is `keypoints` float32 [T, 17, 2] (x, y normalised to [0, 1] by
the frame's width and height; y grows downwards) and `visibility` float32
[T, 17] (1: the joint's position is known, 0: it is not, its x, y mean nothing).
"Left" is the person's left: on the image's right when they face the camera.
"""
from __future__ import annotations

KEYPOINTS = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear",
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow",
    "left_wrist", "right_wrist", "left_hip", "right_hip",
    "left_knee", "right_knee", "left_ankle", "right_ankle",
)
NUM_KEYPOINTS = len(KEYPOINTS)
INDEX = {name: i for i, name in enumerate(KEYPOINTS)}

# Bones as index pairs (the COCO person category's skeleton, 0-based).
LIMBS = tuple((INDEX[a], INDEX[b]) for a, b in (
    ("left_ankle", "left_knee"), ("left_knee", "left_hip"),
    ("right_ankle", "right_knee"), ("right_knee", "right_hip"),
    ("left_hip", "right_hip"), ("left_shoulder", "left_hip"), ("right_shoulder", "right_hip"),
    ("left_shoulder", "right_shoulder"), ("left_shoulder", "left_elbow"),
    ("right_shoulder", "right_elbow"), ("left_elbow", "left_wrist"), ("right_elbow", "right_wrist"),
    ("left_eye", "right_eye"), ("nose", "left_eye"), ("nose", "right_eye"),
    ("left_eye", "left_ear"), ("right_eye", "right_ear"), ("left_ear", "left_shoulder"),
    ("right_ear", "right_shoulder"),
))
