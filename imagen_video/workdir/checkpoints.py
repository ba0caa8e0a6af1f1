"""Orbax checkpoints of the train state plus the data position.

Orbax writes each step into a temporary folder and renames it only once every
process has finished, so an interrupted save never replaces a good checkpoint;
restore takes the newest finished step. Arrays are restored straight into the
shardings of the abstract target (which may be another mesh than the one that
saved them).
"""
from __future__ import annotations

import functools
import os

import jax
import orbax.checkpoint as ocp
from etils import epath

# Orbax's replica-parallel save splits every replicated array across its replicas with one
# eager slice per shard (one tiny compile per shape): ~7 s of a tiny 8-device run's first save.
# Arrays whose per-replica slice is under this size are written whole by one replica; large
# ones (a pod's parameters) keep the parallel write.
REPLICA_PARALLEL_MIN_BYTES = 2 ** 20


@functools.cache  # a process-wide registration: once, not per Checkpoints
def _register_array_handler():
  # As Orbax's own default jax.Array handler (with its array metadata store), plus the floor.
  from orbax.checkpoint._src.metadata import array_metadata_store
  ocp.type_handlers.register_type_handler(
      jax.Array, ocp.type_handlers.ArrayHandler(
          array_metadata_store=array_metadata_store.Store(),
          min_slice_bytes_for_replica_parallel=REPLICA_PARALLEL_MIN_BYTES), override=True)


class Checkpoints:
  """`CheckpointManager` for items "state" (pytree of arrays) and "data" (json)."""

  def __init__(self, directory: str, *, max_to_keep: int = 3, save_every: int = 1000,
               async_save: bool = True):
    self.directory = absolute(directory)
    _register_array_handler()
    options = ocp.CheckpointManagerOptions(
        max_to_keep=max_to_keep, save_interval_steps=save_every,
        enable_async_checkpointing=async_save, create=True)
    self.manager = ocp.CheckpointManager(self.directory, options=options,
                                         item_names=("state", "data"))

  def latest_step(self) -> int | None:
    return self.manager.latest_step()

  def due(self, step: int, *, force: bool = False) -> bool:
    """Whether `save(step, ...)` would write."""
    return force or self.manager.should_save(step)

  def save(self, step: int, state, data_state: dict, *, force: bool = False) -> bool:
    """Saves if the interval says so (or `force`); returns whether it did. A failed save
    (here, or the previous asynchronous one) raises CheckpointError naming the cause and
    the newest intact checkpoint."""
    try:
      return self.manager.save(step, args=ocp.args.Composite(
          state=ocp.args.StandardSave(state), data=ocp.args.JsonSave(data_state)), force=force)
    except Exception as e:  # noqa: BLE001 - re-raised as one clear line
      raise self._failed(e) from e

  def _failed(self, e: BaseException) -> "CheckpointError":
    intact = sorted(int(p.name) for p in epath.Path(self.directory).iterdir()
                    if p.name.isdigit() and (p / "_CHECKPOINT_METADATA").exists()) \
        if epath.Path(self.directory).exists() else []
    safe = (f"the newest intact checkpoint is step {intact[-1]} (a failed save never replaces it)"
            if intact else "no checkpoint was finished before")
    return CheckpointError(f"saving a checkpoint in {self.directory} failed: {_cause(e)}; {safe}")

  def _step(self, step: int | None) -> int:
    step = self.latest_step() if step is None else step
    if step is None:
      raise FileNotFoundError(f"no finished checkpoint in {self.directory}")
    return step

  def restore(self, abstract_state, step: int | None = None):
    """(state, data_state, step) from `step` (default newest), into abstract_state's shardings."""
    step = self._step(step)
    restored = self.manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract_state), data=ocp.args.JsonRestore()))
    return restored["state"], restored["data"], step

  def restore_newest_intact(self, abstract_state, log=print):
    """`restore()` of the newest step that reads back whole; a damaged newer one is moved
    to ../checkpoints_damaged/STEP (kept for inspection) with one line saying why."""
    while True:
      step = self._step(None)
      try:
        return self.restore(abstract_state, step)
      except Exception as e:  # noqa: BLE001 - any read failure: try the next older step
        why = _first_line(e)
        older = [s for s in self.manager.all_steps() if s < step]
        if not older:
          raise RuntimeError(f"checkpoint {step} in {self.directory} cannot be read ({why}) and "
                             "there is no older one") from e
        moved = self._set_aside(step)
        if log:
          log(f"checkpoint {step} in {self.directory} cannot be read ({why}); moved to {moved}; "
              f"resuming from step {max(older)}")

  def _set_aside(self, step: int) -> str:
    root = epath.Path(self.directory)
    target = root.parent / f"{root.name}_damaged" / str(step)
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists():
      target.rmtree()
    (root / str(step)).rename(target)
    self.manager.reload()
    return str(target)

  def restore_part(self, abstract_part, step: int | None = None):
    """(part, step): only the leaves named in `abstract_part` (a subtree of the saved state,
    e.g. {"ema": ...}), so sampling never reads the optimizer moments (2x the params)."""
    step = self._step(step)
    restored = self.manager.restore(step, args=ocp.args.Composite(state=ocp.args.PyTreeRestore(
        item=abstract_part, restore_args=ocp.checkpoint_utils.construct_restore_args(abstract_part),
        partial_restore=True)))
    return restored["state"], step

  def wait(self):
    try:
      self.manager.wait_until_finished()
    except Exception as e:  # noqa: BLE001 - an asynchronous save failed
      raise self._failed(e) from e

  def close(self):
    self.wait()
    self.manager.close()


class CheckpointError(RuntimeError):
  """A save failed; the message names the cause and the newest intact checkpoint."""


def _cause(e: BaseException) -> str:
  """The innermost error's first line (disk full, permission...), not the asyncio layers."""
  seen = []
  while e is not None and e not in seen:
    seen.append(e)
    e = e.__cause__ or e.__context__
  for err in reversed(seen):
    text = str(err).strip()
    if "No space left on device" in text or "ENOSPC" in text:
      return "No space left on device"
  return _first_line(seen[-1])


def _first_line(e: BaseException) -> str:
  text = str(e).strip()
  return f"{type(e).__name__}: {text.splitlines()[0][:200]}" if text else type(e).__name__


def absolute(path) -> str:
  """A local path made absolute; a URI (gs://...) as given."""
  path = os.fspath(path)
  return path if "://" in path else os.path.abspath(path)


def exists(directory) -> bool:
  return epath.Path(absolute(directory)).exists()


def abstract_like(tree, shardings):
  """ShapeDtypeStructs of `tree` (arrays or ShapeDtypeStructs) carrying `shardings`."""
  return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), tree, shardings)
