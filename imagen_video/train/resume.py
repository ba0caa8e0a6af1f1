"""Resume checks its config: before anything is written, the config saved in the workdir is
compared with the new one. Fields that change what the saved params and optimizer state are
(network, text encoder, diffusion, stage, distillation, gradient accumulation) refuse the
resume with the list of differences; the others (lr, steps, logging, data...) are allowed
and appended to the workdir's config history, so config.json always describes the run
now and the history what it was before.
"""
from __future__ import annotations

import time

from imagen_video.stage import loading
from imagen_video.workdir import saved_config

FIXED = loading.SAVED + ("distill",)
FIXED_FIELDS = ("optim.grad_accum_steps",)


class ConfigChanged(ValueError):
  """The new config changes what the workdir's checkpoints hold."""


def check(workdir, config, step: int) -> list[tuple[str, object, object]]:
  """Refuses a config that changes the checkpoints' meaning; records allowed changes.
  Returns the allowed differences (field, saved, new)."""
  saved = saved_config.read(workdir)
  if saved is None:
    return []
  every = loading.differences(saved, config, groups=None)
  fixed = [d for d in every if d[0].split(".")[0] in FIXED or d[0] in FIXED_FIELDS]
  if fixed:
    listed = "; ".join(f"{k} (saved {a!r}, new {b!r})" for k, a, b in fixed[:8])
    more = f" and {len(fixed) - 8} more" if len(fixed) > 8 else ""
    raise ConfigChanged(f"{workdir}: its checkpoints (step {step}) were trained with another "
                        f"network or objective: {listed}{more}. Resume with the saved config "
                        f"({saved_config.path(workdir) / saved_config.CONFIG}) or train in a new --workdir")
  if every:
    saved_config.append_history(workdir, {"time": time.time(), "step": step,
                                          "changed": {k: [a, b] for k, a, b in every}})
  return every
