"""`train_and_evaluate(config, workdir)`: the one training loop for every stage.

Sections: set-up (mesh, data, stage) / state (created sharded, or restored) /
compile (ahead of time, memory and FLOPs logged) / loop (step, log, checkpoint, sample).
"""
from __future__ import annotations

import errno
import json
import os
import tempfile
import time

import jax
import numpy as np
from etils import epath
from jax.sharding import NamedSharding

from imagen_video.data import builders, pipeline
from imagen_video.nn import unet
from imagen_video.parallel import distributed, sharding
from imagen_video.stage.loading import build, param_spec
from imagen_video.stage.model import network_config, param_count
from imagen_video.stage.sampler import Request, StageSampler
from imagen_video.train import guard, optimizer, progress, resume, train_step
from imagen_video.utils import mfu
from imagen_video.workdir import checkpoints, lock, saved_config


def resolve_config(config):
  """Fills in what depends on the prepared data (the dataset's own tokenizer)."""
  config = config.copy_and_resolve_references()
  if config.text.tokenizer == "dataset":
    # Process 0 prepares first, so processes sharing a disk never build it concurrently.
    builder = distributed.run_first_on_lead(
        lambda: builders.prepare(config.data.name, config.data.data_dir, **dict(config.data.builder)),
        "prepare_data")
    with config.unlocked():
      config.text.tokenizer = builders.tokenizer_path(builder)
      config.data.tokenizer = config.text.tokenizer
  return config


def _batch_sharding(mesh, rules, shape: tuple[int, ...]):
  names = ("batch",) + (None,) * (len(shape) - 1)
  return NamedSharding(mesh, sharding.spec_for(names, rules, mesh, shape))


def to_global(batch: dict, mesh, rules, global_batch: int) -> dict:
  """Per-host numpy batch -> global jax arrays sharded over the batch axes."""
  out = {}
  for key, x in batch.items():
    if x.dtype == object:  # captions stay on the host
      continue
    shape = (global_batch,) + x.shape[1:]
    s = _batch_sharding(mesh, rules, shape)
    if jax.process_count() > 1 and s.is_fully_replicated:
      # Each process holds only its rows: a replicated batch cannot be assembled from them.
      raise ValueError(f"global batch {global_batch} is not divisible by the batch mesh axes "
                       f"{dict(mesh.shape)} (rules {dict(rules).get('batch')}); with "
                       f"{jax.process_count()} processes the batch must be sharded")
    out[key] = jax.make_array_from_process_local_data(s, x, shape)
  return out


def _log_memory(compiled, name: str, seconds: float):
  try:
    m = compiled.memory_analysis()
    print(f"[{name}] compiled in {seconds:.1f} s: arguments {m.argument_size_in_bytes / 2**20:.1f} MiB, "
          f"temporaries {m.temp_size_in_bytes / 2**20:.1f} MiB, "
          f"outputs {m.output_size_in_bytes / 2**20:.1f} MiB per device", flush=True)
  except Exception as e:  # not every backend reports memory
    print(f"[{name}] compiled in {seconds:.1f} s (no memory analysis: {e})", flush=True)


def _flops_and_peak(compiled, mesh, accum_steps: int, lead: bool):
  """The compiled step's FLOPs per device (XLA's cost analysis; accumulation is a loop) and
  the peak the log's MFU is taken against."""
  flops = mfu.step_flops(compiled, accum_steps)
  local = [d for d in mesh.devices.flat if d.process_index == jax.process_index()]
  peak = mfu.device_peak(local) if flops else None
  if lead:
    print(f"[train_step] {flops or float('nan'):.4g} FLOPs per device per step (XLA cost analysis); "
          f"MFU against {peak.label if peak else 'no known peak (TFLOP/s only)'}", flush=True)
  return flops, peak


def train_and_evaluate(config, workdir: str, *, mesh=None, stop_after: int | None = None) -> dict:
  """Trains `config` in `workdir`, resuming from its newest checkpoint.

  Returns {"losses": [(step, loss), ...], "step": final step}. `stop_after`
  ends the run after that many steps of this call (tests), as if killed.
  """
  # ---- set-up ----------------------------------------------------------------
  t = config.train
  if not isinstance(t.steps, int) or isinstance(t.steps, bool) or t.steps < 1:
    raise ValueError(f"config.train.steps={t.steps!r}: expected a number of steps >= 1")
  evals = build_evals(config)
  divergence = guard.Guard(t.get("divergence"))
  held = lock.Lock(workdir) if jax.process_index() == 0 else None
  distributed.run_on_lead_or_stop_all(held.acquire if held else None, "workdir_lock")
  try:  # everything below, data preparation included, runs under the workdir's lock
    return _train(resolve_config(config), workdir, mesh, stop_after, evals, divergence, held)
  finally:
    if held:
      held.release()


def _train(config, workdir, mesh, stop_after, evals, divergence, held):
  lead = jax.process_index() == 0
  t = config.train
  ckpt = checkpoints.Checkpoints(f"{checkpoints.absolute(workdir)}/checkpoints", save_every=t.ckpt_every,
                                 max_to_keep=t.get("keep_checkpoints", 3))
  latest = ckpt.latest_step()
  if lead:
    if latest is not None:
      changed = resume.check(workdir, config, latest)
      if changed:
        print(f"resuming with changed settings (kept in {saved_config.HISTORY}): "
              + ", ".join(f"{k} {a!r} -> {b!r}" for k, a, b in changed[:6]), flush=True)
    saved_config.write(workdir, config)
  mesh, rules, stage = build(config, mesh)
  tx, schedule = optimizer.make_optimizer(config.optim, t.steps)

  # ---- state: restored or created sharded --------------------------------------
  text_trainable = not config.text.frozen
  abstract_state, state_shardings = state_spec(config, stage, tx, mesh, rules)
  frozen = {} if text_trainable else {"text": stage.text.params}
  teacher = None
  if config.get("distill"):  # a student: the frozen teacher rides in `frozen`
    if text_trainable:
      raise ValueError("config.distill needs config.text.frozen=True (the teacher's text params "
                       "are not loaded)")
    teacher = frozen["teacher"] = load_teacher(config, stage, mesh, rules)
  init = None
  if t.get("init_from") and latest is None:  # fine-tuning: start from another workdir's EMA
    source = saved_config.read(t.init_from)
    if source is None:
      raise FileNotFoundError(f"train.init_from={t.init_from!r}: no config.json there (a training "
                              "workdir or `imagen-video convert-if` output)")
    _, abstract = unet.abstract_unet(network_config(source, stage.text.d_model))
    init = load_ema(t.init_from, abstract, mesh, rules, "train.init_from")

  data_step = 0
  if latest is not None:
    target = checkpoints.abstract_like(abstract_state, state_shardings)
    state, data_state, step = ckpt.restore_newest_intact(target, log=print if lead else None)
    data_step = int(data_state["step"])
    print(f"resumed from {ckpt.directory} step {step} (data position {data_step})", flush=True)
  else:
    def create(key, teacher, init):
      unet_params = stage.init_params(key)
      source = teacher if init is None else init
      params = {"unet": unet_params if source is None else init_from_teacher(unet_params, source)}
      if text_trainable:
        params["text"] = stage.text.params
      return train_step.init_state(params, tx)
    state = sharding.run_once(create, jax.random.key(t.seed), teacher, init, out_shardings=state_shardings)
  n_params = param_count(state["params"]["unet"])
  if lead:
    print(f"U-Net {n_params / 1e6:.2f}M params; text encoder {param_count(stage.text.params) / 1e6:.2f}M "
          f"({'trained' if text_trainable else 'frozen'}); mesh {dict(mesh.shape)}", flush=True)

  data = pipeline.VideoBatches(config.data, start_step=data_step)
  step_fn = train_step.make_train_step(stage, optimizer.tx_for(config.optim, t.steps),
                                       accum_steps=config.optim.grad_accum_steps)

  # ---- compile ahead, log memory and FLOPs --------------------------------------
  first = to_global(next(data), mesh, rules, config.data.batch_size)
  batch_shardings = jax.tree.map(lambda x: x.sharding, first)
  frozen_shardings = jax.tree.map(lambda x: x.sharding, frozen)
  replicated = NamedSharding(mesh, jax.sharding.PartitionSpec())
  hyper = jax.tree.map(lambda v: jax.make_array_from_callback((), replicated, lambda _: v),
                       train_step.run_hyperparameters(config))
  started = time.time()
  with jax.set_mesh(mesh), sharding.activation_rules(mesh, rules):
    jitted = jax.jit(step_fn, in_shardings=(state_shardings, frozen_shardings, batch_shardings,
                                            jax.tree.map(lambda _: replicated, hyper)),
                     out_shardings=(state_shardings, replicated), donate_argnums=(0,))
    compiled = jitted.lower(state, frozen, first, hyper).compile()
  _log_memory(compiled, "train_step", time.time() - started)  # traced and compiled (or read from a cache)
  flops, peak = _flops_and_peak(compiled, mesh, config.optim.grad_accum_steps, lead)

  # ---- loop ------------------------------------------------------------------
  start = int(state["step"])
  prog = progress.Progress(t.steps, start, config.data.batch_size, workdir, is_lead=lead,
                           flops_per_step=flops, peak=peak)
  losses, batch = [], first
  step = start
  end = t.steps if stop_after is None else min(t.steps, start + stop_after)
  try:
    while step < end:
      state, metrics = compiled(state, frozen, batch, hyper)
      step += 1
      loss = float(metrics["loss"])
      why = divergence.check(step, loss, float(metrics["grad_norm"]))
      if held:
        held.check()
      final = step == t.steps
      if why is None and ckpt.due(step, force=final) and not divergence.suspicious:
        if not bool(guard.all_finite(state["params"])):
          why = f"the params are not finite after step {step}"
      if why:
        raise _diverged(why, ckpt)
      losses.append((step, loss))
      if step % t.log_every == 0 or step == end:
        prog.update(step, {k: float(v) for k, v in metrics.items()} | {"lr": float(schedule(step))})
      if not divergence.suspicious:  # a step above the limit is never saved
        ckpt.save(step, state, {"step": data.step}, force=final)
      if t.get("sample_every") and step % t.sample_every == 0:  # every process samples, 0 writes
        write_samples(stage, state, config, os.path.join(workdir, "samples"), step)
      run_evals(evals, stage, state, step, workdir, prog)
      if step < end:
        batch = to_global(next(data), mesh, rules, config.data.batch_size)
  except OSError as e:
    if e.errno != errno.ENOSPC:
      raise
    # The disk filled while an asynchronous save was writing, and a metrics or sample write
    # hit it first: let the save finish and report itself (naming the newest intact
    # checkpoint); its threads would otherwise print tracebacks at exit.
    ckpt.wait()
    raise
  ckpt.close()
  data.close()
  prog.close()
  return {"losses": losses, "step": step, "state": state, "stage": stage, "mesh": mesh}


def _diverged(why: str, ckpt) -> guard.Diverged:
  ckpt.wait()  # the newest step named below has finished writing
  last = ckpt.latest_step()
  ckpt.close()
  where = (f"the last checkpoint is step {last} in {ckpt.directory} (saved before the trouble; "
           "resume from it with a lower config.optim.lr)") if last is not None else "no checkpoint was saved"
  return guard.Diverged(f"training diverged: {why}; nothing after it was saved; {where}")


def state_spec(config, stage, tx, mesh, rules):
  """(abstract train state, its shardings): params/EMA by the logical rules."""
  params_abstract, param_shardings = param_spec(config, stage, mesh, rules)
  abstract_state = jax.eval_shape(lambda p: train_step.init_state(p, tx), params_abstract)
  return abstract_state, _state_shardings(abstract_state, param_shardings, mesh)


def load_teacher(config, stage, mesh, rules):
  """The EMA U-Net params of the newest checkpoint in `config.distill.teacher`."""
  return load_ema(config.distill.teacher, stage.teacher_abstract_params, mesh, rules,
                  "config.distill.teacher", "distillation teacher")


def load_ema(workdir, abstract, mesh, rules, field: str, what: str = "initialised from"):
  """The EMA U-Net params of the newest checkpoint in `workdir` (e.g. `imagen-video convert-if`
  output for `train.init_from`)."""
  directory = f"{checkpoints.absolute(workdir)}/checkpoints"
  if not checkpoints.exists(directory):
    raise FileNotFoundError(f"{field}={workdir!r}: no checkpoints/ folder there")
  part = checkpoints.abstract_like(abstract, sharding.state_shardings(abstract, mesh, rules))
  ckpt = checkpoints.Checkpoints(directory, async_save=False)
  state, step = ckpt.restore_part({"ema": {"unet": part}})
  ckpt.close()
  if jax.process_index() == 0:
    print(f"{what}: {workdir} step {step} (EMA)", flush=True)
  return state["ema"]["unet"]


def init_from_teacher(student, teacher):
  """The student's params: the teacher's wherever their paths agree; the rest (a new
  guidance embedding) keep their own (zero-initialised output) init."""
  key = jax.tree_util.keystr
  flat = {key(p): x for p, x in jax.tree_util.tree_flatten_with_path(teacher)[0]}

  def pick(path, x):
    y = flat.pop(key(path), None)
    if y is not None and y.shape != x.shape:
      raise ValueError(f"teacher param {key(path)} has shape {y.shape}, the student's {x.shape}")
    return x if y is None else y.astype(x.dtype)
  out = jax.tree_util.tree_map_with_path(pick, student)
  if flat:
    raise ValueError(f"the student lacks teacher params {sorted(flat)[:3]}...: is "
                     "config.model.use_guidance_embedding the teacher's?")
  return out


def _state_shardings(abstract_state, param_shardings, mesh):
  """Shardings for the whole train state: params/EMA by rules, optimizer moments alike."""
  replicated = NamedSharding(mesh, jax.sharding.PartitionSpec())
  flat_params = {jax.tree_util.keystr(p): s for p, s in
                 jax.tree_util.tree_flatten_with_path(param_shardings)[0]}

  def for_opt(path, leaf):
    # optax states hold copies of the param tree (mu, nu): match them by path suffix.
    key = jax.tree_util.keystr(path)
    return next((s for pkey, s in flat_params.items() if key.endswith(pkey)), replicated)
  opt = jax.tree_util.tree_map_with_path(for_opt, abstract_state["opt"])
  return {"step": replicated, "params": param_shardings, "ema": param_shardings, "opt": opt}


def build_evals(config) -> list:
  """(name, every, evaluator) for each entry of `config.evals` ({name: {type, every, options}},
  big_vision's evaluator list), built before training so a bad entry stops it at once."""
  from imagen_video.eval import registry
  out = []
  for name, spec in (config.get("evals") or {}).items():
    spec = dict(spec)
    kind, every = spec.pop("type", name), spec.pop("every", None)
    if not isinstance(every, int) or every < 1:
      raise ValueError(f"config.evals.{name}.every={every!r}: expected a step interval >= 1")
    try:
      evaluator = registry.build(kind, **spec)
    except ValueError as e:
      raise ValueError(f"config.evals.{name}: {e}") from None
    if "stage" not in evaluator.targets:
      raise ValueError(f"config.evals.{name}: {kind} does not measure one stage")
    out.append((name, every, evaluator))
  return out


def run_evals(evals, stage, state, step: int, workdir: str, prog) -> None:
  """Runs the evaluators due at `step` on the EMA params, through the CLI's sampler; their
  headline figures go to the log and TensorBoard as eval/NAME/..."""
  due = [(name, ev) for name, every, ev in evals if step % every == 0]
  if not due:
    return
  sampler = StageSampler(stage, state["ema"], step, name=os.path.basename(os.path.normpath(workdir)))
  scalars = {}
  for name, evaluator in due:
    result = evaluator.run(sampler, os.path.join(workdir, "eval", name, f"step_{step:07d}"),
                           log=lambda line: None)
    scalars.update({f"eval/{name}/{k}": v for k, v in evaluator.scalars(result).items()})
  prog.record(step, scalars)


def write_samples(stage, state, config, out_dir: str, step: int) -> str:
  """Samples the config's prompts with the EMA params; writes mp4 + contact sheet."""
  from imagen_video.media import contact_sheet, video_io
  s = config.sample
  prompts = tuple(s.prompts)
  out = StageSampler(stage, state["ema"], step).sample(Request(prompts=prompts, seed=s.seed))
  if jax.process_index() != 0:
    return None
  clips = video_io.to_uint8(out.video)
  name = f"step_{step:07d}"
  with tempfile.TemporaryDirectory() as local:  # written here, then copied (out_dir may be gs://)
    path = os.path.join(local, name)
    video_io.write_mp4(path + ".mp4", np.concatenate(list(clips), axis=2), fps=config.sample.fps, scale=4)
    contact_sheet.contact_sheet(list(clips), list(prompts), path + ".png", title=f"step {step}")
    with open(path + ".json", "w") as f:
      json.dump({"step": step, "prompts": list(prompts), "time": time.time()}, f)
    target = epath.Path(out_dir)
    target.mkdir(parents=True, exist_ok=True)
    for suffix in (".mp4", ".png", ".json"):
      epath.Path(path + suffix).copy(target / (name + suffix), overwrite=True)
  return os.path.join(out_dir, name)
