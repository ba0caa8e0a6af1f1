"""Test session set-up: 8 fake CPU devices for sharding tests, quiet TensorFlow."""
import os

# Must happen before jax is imported anywhere.
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")  # TensorFlow must not grab a GPU JAX uses


import pytest

CASCADE_TINY = os.path.join(os.path.dirname(__file__), "..", "configs", "cascade_tiny.py")


@pytest.fixture(scope="session")
def tiny_cascade(tmp_path_factory):
  """The runlocal tiny cascade trained once per session (cascade tests and the inference
  notebook); returns its cascade config."""
  from imagen_video.train import trainer
  from imagen_video.utils import configs_loader
  root = str(tmp_path_factory.mktemp("cascade"))
  arg = f"runlocal,root={root},data_dir={os.path.join(root, 'tfds')}"
  cascade = configs_loader.load(f"{CASCADE_TINY}:{arg}")
  for entry in cascade.stages:
    trainer.train_and_evaluate(configs_loader.load(entry["config"]), entry["workdir"])
  return cascade
