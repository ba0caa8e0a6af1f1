"""Test session set-up: 8 fake CPU devices for sharding tests, quiet TensorFlow, a shared
compilation cache."""
import fcntl
import os
import tempfile

# Tests compile hundreds of tiny programs: LLVM optimisation level 1 compiles the pose
# cascade's programs in 33 s instead of 43 and runs them as fast (level 0: 31 s, but the FVD
# test's I3D runs 32 -> 62 s). Subprocesses that want one device pass ONE_DEVICE_XLA_FLAGS.
# Must happen before jax is imported anywhere. The CLI's CPU options (utils/xla_cpu.py) too, so
# tests compile what the CLI runs and its subprocesses share the compilation cache.
from imagen_video.utils import xla_cpu  # noqa: E402  (imports no JAX)

ONE_DEVICE_XLA_FLAGS = xla_cpu.with_cpu_options("--xla_backend_optimization_level=1")
os.environ.setdefault("XLA_FLAGS", f"--xla_force_host_platform_device_count=8 {ONE_DEVICE_XLA_FLAGS}")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")  # TensorFlow must not grab a GPU JAX uses
# Many tests (and the subprocesses they launch, which inherit this) compile the same tiny
# programs: one persistent compilation cache per test run, shared by the xdist workers.
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", os.path.join(
    tempfile.gettempdir(), f"imagen_video_jax_cache_{os.environ.get('PYTEST_XDIST_TESTRUNUID', os.getpid())}"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "-1")


import pytest

CASCADE_TINY = os.path.join(os.path.dirname(__file__), "..", "configs", "cascade_tiny.py")


@pytest.fixture(scope="session")
def tiny_cascade(tmp_path_factory):
  """The runlocal tiny cascade trained once per test run (cascade tests and the inference
  notebook); returns its cascade config. Under xdist (`-n 3`) the workers share one copy:
  the first to get the lock trains it, the others wait and reuse it."""
  from imagen_video.train import trainer
  from imagen_video.utils import configs_loader
  base = tmp_path_factory.getbasetemp()
  if os.environ.get("PYTEST_XDIST_WORKER"):
    base = base.parent  # shared by the workers of this run
  root = str(base / "tiny_cascade")
  arg = f"runlocal,root={root},data_dir={os.path.join(root, 'tfds')}"
  cascade = configs_loader.load(f"{CASCADE_TINY}:{arg}")
  with open(base / "tiny_cascade.lock", "w") as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)
    if not os.path.exists(os.path.join(root, "trained")):
      for entry in cascade.stages:
        trainer.train_and_evaluate(configs_loader.load(entry["config"]), entry["workdir"])
      open(os.path.join(root, "trained"), "w").close()
  return cascade


# The files that take minutes, longest first (`--durations`, 2 CI cores), so `-n 3 --dist
# loadfile` never leaves one worker alone with a long file at the end. test_cascade leads: it
# trains the shared tiny cascade that the later files reuse.
LONGEST_FIRST = ("test_cascade.py", "test_multihost.py", "test_train.py", "test_conditional_generation.py",
                 "test_pose_cascade.py", "test_run_safety.py", "test_aot.py", "test_distill.py",
                 "test_unet.py", "test_gcs.py", "test_ablation.py", "test_sr_eval.py", "test_colabs.py",
                 "test_device_suite.py", "test_video_folder.py", "test_bench_smoke.py", "test_fvd.py")


def pytest_configure(config):
  # xdist's default re-sorts the files by how many tests each holds, which undid the order
  # below (test_multihost, two tests of ~3 minutes, was sent 36th of 44 files).
  if hasattr(config.option, "loadscopereorder"):
    config.option.loadscopereorder = False


def pytest_collection_modifyitems(items):
  rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
  items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: file order kept
