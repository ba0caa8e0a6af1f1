"""Divergence caught before it is saved.

A step trips the guard when its loss or gradient norm is not finite, or when its loss is
above `ratio` x the median of the last `window` losses for `patience` steps in a row
(config.train.divergence: {ratio, window, patience}; ratio 0 turns the second test off).
While a step is above the limit nothing is saved, and no checkpoint whose params are not
finite is ever committed.
"""
from __future__ import annotations

import collections
import math
import statistics

import jax
import jax.numpy as jnp

DEFAULTS = {"ratio": 100.0, "window": 100, "patience": 3}


class Diverged(RuntimeError):
  """Training stopped: the loss, gradient norm or params went bad."""


class Guard:

  def __init__(self, spec=None):
    spec = dict(DEFAULTS, **dict(spec or {}))
    unknown = set(spec) - set(DEFAULTS)
    if unknown:
      raise ValueError(f"config.train.divergence: unknown fields {sorted(unknown)}; "
                       f"expected {sorted(DEFAULTS)}")
    self.ratio, self.patience = float(spec["ratio"]), int(spec["patience"])
    if self.ratio < 0 or self.patience < 1 or int(spec["window"]) < 1:
      raise ValueError(f"config.train.divergence={spec}: expected ratio >= 0, window >= 1, patience >= 1")
    self.recent = collections.deque(maxlen=int(spec["window"]))
    self.above = 0

  def check(self, step: int, loss: float, grad_norm: float) -> str | None:
    """None, or why the run must stop at `step`."""
    for name, value in (("loss", loss), ("gradient norm", grad_norm)):
      if not math.isfinite(value):
        return f"the {name} is {value} at step {step}"
    if self.ratio and self.recent:
      median = statistics.median(self.recent)
      if loss > self.ratio * median:
        self.above += 1
        if self.above >= self.patience:
          return (f"the loss is {loss:.3g} at step {step}, {loss / median:.3g}x the median "
                  f"({median:.3g}) of the {len(self.recent)} steps before, for {self.above} steps in a row "
                  f"(config.train.divergence.ratio={self.ratio:g}, patience={self.patience})")
        return None  # not yet counted in the median: a spike must not raise its own bar
    self.above = 0
    self.recent.append(loss)
    return None

  @property
  def suspicious(self) -> bool:
    """Whether the last step was above the limit (no save then)."""
    return self.above > 0


@jax.jit
def all_finite(tree) -> jax.Array:
  return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)]))
