"""Pose inputs: COCO-17 keypoint sequences read from files and drawn as skeleton maps."""
