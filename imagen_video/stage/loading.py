"""A stage from its workdir: the resolved config saved there at training, and its EMA params.

    stage, ema, step = loading.load("demo/stages/base")            # or gs://bucket/run
    stage, ema, step = loading.load(workdir, config=config)        # sampling/mesh/data fields from `config`

Nothing here imports training code or builds a dataset. The trainer builds its stage and
the abstract, sharded params with the same functions (`build`, `param_spec`).

What the params mean (network, text encoder, diffusion parameterisation, low-res
conditioning) always comes from the saved config; a given `config` may change how to
sample (`sample`, `mesh`, `sharding_rules`) and where held-out data is (`data`), and is
refused where it disagrees with the saved config on what the params mean.
"""
from __future__ import annotations

import json

import jax

from imagen_video.parallel import sharding
from imagen_video.stage.model import Stage
from imagen_video.workdir import checkpoints, saved_config

SAVED = ("model", "text", "diffusion", "stage")  # what the params mean: never from elsewhere
MOVABLE = ("text.checkpoint", "text.tokenizer")  # paths that may differ between machines


def build(config, mesh=None, text_encoder=None):
  """(mesh, rules, stage) for a resolved config (`text_encoder` shares one T5)."""
  mesh = mesh or sharding.make_mesh(dict(config.mesh))
  rules = tuple(tuple(r) for r in config.sharding_rules)
  return mesh, rules, Stage(config, mesh=mesh, rules=rules, text_encoder=text_encoder)


def param_spec(config, stage, mesh, rules):
  """(abstract trained params, their shardings by the logical rules): the U-Net, plus the
  text encoder when it is trained. The EMA has the same structure."""
  params_abstract = {"unet": stage.abstract_params}
  param_shardings = {"unet": sharding.state_shardings(stage.abstract_params, mesh, rules)}
  if not config.text.frozen:
    params_abstract["text"] = jax.eval_shape(lambda: stage.text.params)
    param_shardings["text"] = sharding.state_shardings(params_abstract["text"], mesh, rules)
  return params_abstract, param_shardings


def differences(saved, given, groups=SAVED, skip=MOVABLE) -> list[tuple[str, object, object]]:
  """(field, saved value, given value) for every field of `groups` (None: all) that differs."""
  flat = lambda c: _flatten(json.loads(c.to_json_best_effort())) if c is not None else {}
  a, b = flat(saved), flat(given)
  keys = sorted(k for k in set(a) | set(b)
                if (groups is None or k.split(".")[0] in groups) and k not in skip)
  return [(k, a.get(k), b.get(k)) for k in keys if a.get(k) != b.get(k)]


def disagreements(saved, given) -> list[tuple[str, object, object]]:
  """`differences` in what the params mean that `given` sets otherwise than `saved` (a field
  `given` leaves unset agrees): why a workdir cannot be loaded with `given`."""
  return [d for d in differences(saved, given) if d[2] is not None]


def _flatten(tree, prefix="") -> dict:
  out = {}
  for k, v in tree.items():
    if isinstance(v, dict):
      out.update(_flatten(v, f"{prefix}{k}."))
    else:
      out[f"{prefix}{k}"] = v
  return out


def resolve(workdir, config=None):
  """The config to sample `workdir` with: the saved one, with `config`'s other groups."""
  saved = saved_config.read(workdir)
  if saved is None:
    raise FileNotFoundError(f"{saved_config.path(workdir) / saved_config.CONFIG}: not found; "
                            f"is {workdir} a training workdir (`imagen-video train ... --workdir`)?")
  if config is None:
    return saved
  given = config.copy_and_resolve_references()
  differ = disagreements(saved, given)
  if differ:
    raise ValueError(f"{workdir}: the config disagrees with the one the checkpoint was trained "
                     "with on " + "; ".join(f"{k} (trained {a!r}, given {b!r})" for k, a, b in differ[:6])
                     + (f" and {len(differ) - 6} more" if len(differ) > 6 else "")
                     + ": use the training config, or retrain")
  with given.unlocked():
    for group in SAVED:
      if group in saved:
        given[group] = saved[group]
    for field in MOVABLE:  # where this machine has the files, if the config says
      group, name = field.split(".")
      value = config[group].get(name) if group in config else None
      if value and value != "dataset":
        given[group][name] = value
  return given


def load(workdir, *, config=None, mesh=None, step: int | None = None, text_encoder=None):
  """(stage, EMA params dict, step) from the newest (or given) checkpoint in `workdir`."""
  config = resolve(workdir, config)
  mesh = mesh or _mesh(config)
  mesh, rules, stage = build(config, mesh, text_encoder)
  ema_abstract, ema_shardings = param_spec(config, stage, mesh, rules)  # no optimizer moments
  ckpt = checkpoints.Checkpoints(f"{checkpoints.absolute(workdir)}/checkpoints", async_save=False)
  try:
    if ckpt.latest_step() is None:
      raise FileNotFoundError(f"no checkpoint in {ckpt.directory}: train first with "
                              f"`imagen-video train --config ... --workdir {workdir}`")
    state, step = ckpt.restore_part({"ema": checkpoints.abstract_like(ema_abstract, ema_shardings)}, step)
  finally:
    ckpt.close()
  return stage, state["ema"], step


def _mesh(config):
  """The config's mesh, or all devices on the data axis where it needs others than these."""
  try:
    return sharding.make_mesh(dict(config.mesh))
  except ValueError as e:
    print(f"[load] {e}; sampling on {jax.device_count()} device(s) along 'data'", flush=True)
    return sharding.make_mesh({"data": -1, "fsdp": 1, "tensor": 1})
