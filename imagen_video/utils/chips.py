"""The one table of accelerator chips: dense bf16 peak FLOP/s and memory per JAX device, found
by `jax.Device.device_kind`; TPU families also carry what AOT slice parsing needs.

Peaks are the vendors' dense (not 2:4 sparse) bf16 figures. v4 and v5p run one JAX device
per chip (megacore), so a chip's peak is a device's.
"""
from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Chip:
  family: str
  kinds: tuple[str, ...]  # device_kind strings (lower case), or their prefixes
  peak_flops: float       # dense bf16 FLOP/s per JAX device
  hbm_gib: float
  cores_per_chip: int = 1  # TPU: TensorCores a slice name counts per JAX device
  dims: int = 0            # TPU: torus dimensions


# Ordered most specific first: "nvidia h100 pcie" before "nvidia h100", "tpu v5 lite" before "tpu v5".
TABLE = (
    Chip("v4", ("tpu v4",), 275e12, 32, 2, 3),
    Chip("v5e", ("tpu v5 lite", "tpu v5e"), 197e12, 16, 1, 2),
    Chip("v5p", ("tpu v5p", "tpu v5"), 459e12, 95, 2, 3),
    Chip("v6e", ("tpu v6 lite", "tpu v6e"), 918e12, 32, 1, 2),
    Chip("h100-pcie", ("nvidia h100 pcie",), 756e12, 80),
    Chip("h100-nvl", ("nvidia h100 nvl",), 835e12, 94),
    Chip("h200-nvl", ("nvidia h200 nvl",), 835e12, 141),
    Chip("h100", ("nvidia h100",), 989e12, 80),
    Chip("h200", ("nvidia h200", "nvidia gh200"), 989e12, 141),
    Chip("a100", ("nvidia a100",), 312e12, 80),
)

TPU = {c.family: c for c in TABLE if c.dims}


def for_kind(device_kind: str) -> Chip | None:
  """The chip a device_kind names ('TPU v5 lite', 'NVIDIA H100 80GB HBM3', ...); None if unknown."""
  kind = " ".join(device_kind.lower().split())
  for chip in TABLE:
    for k in chip.kinds:
      # a prefix matches at a word boundary only ('tpu v5' must not match 'tpu v50')
      if kind == k or (kind.startswith(k) and not kind[len(k)].isalnum()):
        return chip
  return None
