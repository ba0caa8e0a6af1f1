"""Writing an evaluation's report: only process 0 writes, markdown beside its JSON."""
from __future__ import annotations

import json
import os


def write(out_dir: str, stem: str, markdown: str, summary: dict | None = None) -> bool:
  """Process 0 writes out_dir/STEM.md (and STEM.json of `summary`); True there, where the
  caller then draws its pictures."""
  import jax
  if jax.process_index() != 0:
    return False
  os.makedirs(out_dir, exist_ok=True)
  with open(os.path.join(out_dir, stem + ".md"), "w") as f:
    f.write(markdown + "\n")
  if summary is not None:
    with open(os.path.join(out_dir, stem + ".json"), "w") as f:
      json.dump(summary, f, indent=2)
  return True
