"""Shared by the synthetic clip builders: a config name that encodes every parameter."""
from __future__ import annotations


def config_name(dataset: str, frames, height, width, fps, num_train, num_test, seed,
                extra_resolutions=()) -> tuple[str, tuple]:
  """(name, extra resolutions as int triples), so variants never collide on disk.

  Extra resolutions store the same clips at lower fps/size: their frame count must
  divide `frames` and their aspect equal the main one.
  """
  extra = tuple(tuple(int(v) for v in r) for r in extra_resolutions)
  for f, h, w in extra:
    if frames % f or abs(w / h - width / height) > 1e-6:
      raise ValueError(f"{dataset} extra resolution {f}x{h}x{w}: frames must divide {frames} "
                       f"and the aspect must equal {width}x{height}'s")
  name = f"{frames}x{height}x{width}_fps{fps:g}_n{num_train}-{num_test}_s{seed}"
  return name + "".join(f"_x{f}x{h}x{w}" for f, h, w in extra), extra
