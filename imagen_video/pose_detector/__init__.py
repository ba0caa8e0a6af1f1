"""A small keypoint detector for `athletes` renderings: the pose-following metric's eye
(model and file format, training, its own accuracy)."""
