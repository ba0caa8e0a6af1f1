"""imagen-video train --config CONFIG[:ARGS] --workdir DIR [--config.FIELD=VALUE ...]

Trains one stage (`train_and_evaluate`), resuming from the newest checkpoint in
DIR. Progress, TensorBoard scalars (DIR/tensorboard), checkpoints
(DIR/checkpoints) and periodic samples (DIR/samples) go into the workdir.

Multi-process (one process per host, or several on one machine): every process
runs the same command; JAX's distributed runtime is started from
--coordinator/--num_processes/--process_id, else JAX_COORDINATOR_ADDRESS /
JAX_NUM_PROCESSES / JAX_PROCESS_ID, else auto-detected (Cloud TPU, SLURM).
Launchers in launch/ set these. Each process reads its own share of the data;
process 0 writes logs, metrics and samples; checkpoints are written by all.

--print_shardings prints every parameter's sharding and the per-device bytes of
params, EMA and optimizer state on the config's mesh, then exits.
"""
from __future__ import annotations

from absl import flags

from imagen_video.cli import flags_util
from imagen_video.parallel import distributed


def _define(fv: flags.FlagValues):
  flags.DEFINE_string("workdir", None, "where checkpoints, logs and samples go", flag_values=fv)
  flags.DEFINE_bool("print_shardings", False, "print the train state's shardings and bytes per "
                    "device for this config and mesh, then exit", flag_values=fv)
  flags.DEFINE_enum("distributed", "auto", list(distributed.MODES), "start JAX's distributed runtime: "
                    "auto = when settings are given or a cluster is detected", flag_values=fv)
  flags.DEFINE_string("coordinator", None, "HOST:PORT of process 0's coordinator "
                      "(env JAX_COORDINATOR_ADDRESS)", flag_values=fv)
  flags.DEFINE_integer("num_processes", None, "number of processes (env JAX_NUM_PROCESSES)",
                       flag_values=fv)
  flags.DEFINE_integer("process_id", None, "this process's id in [0, num_processes) "
                       "(env JAX_PROCESS_ID)", flag_values=fv)
  flags.DEFINE_integer("init_timeout", 300, "seconds to wait for every process to join",
                       flag_values=fv)
  flags.DEFINE_integer("heartbeat_timeout", 100, "seconds without heartbeats after which a peer "
                       "counts as dead and every process stops with an error", flag_values=fv)
  flags.DEFINE_integer("shutdown_timeout", 300, "seconds a finished process waits at exit for "
                       "the others", flag_values=fv)


def _print_shardings(config) -> None:
  from imagen_video.parallel import state_report
  from imagen_video.train import optimizer, trainer
  config = trainer.resolve_config(config)
  mesh, rules, stage = trainer.build(config)
  tx, _ = optimizer.make_optimizer(config.optim, config.train.steps)
  abstract_state, shardings = trainer.state_spec(config, stage, tx, mesh, rules)
  print(state_report.report(abstract_state, shardings, mesh, rules))


def main(argv: list[str]) -> int:
  fv = flags.FlagValues()
  flags_util.define_config(fv, argv)
  _define(fv)
  flags_util.parse(fv, argv, __doc__)
  if fv.config is None or not (fv.workdir or fv.print_shardings):
    raise SystemExit(f"{argv[0]}: --config and --workdir are required")
  # Before any other JAX call: the runtime fixes the set of devices.
  distributed.initialize(fv.distributed, distributed.Settings(
      coordinator=fv.coordinator, num_processes=fv.num_processes, process_id=fv.process_id,
      init_timeout=fv.init_timeout, heartbeat_timeout=fv.heartbeat_timeout,
      shutdown_timeout=fv.shutdown_timeout))
  if fv.print_shardings:
    _print_shardings(fv.config)
    return 0
  from imagen_video.train import trainer
  result = trainer.train_and_evaluate(fv.config, fv.workdir)
  print(f"done: step {result['step']}, last loss {result['losses'][-1][1] if result['losses'] else 'n/a'}")
  return 0
