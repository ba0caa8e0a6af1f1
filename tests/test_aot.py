"""AOT compilation for TPU slices on a CPU host (skipped without libtpu: `pip install .[tpu]`)."""
import importlib.util

import pytest

from imagen_video.train import aot


@pytest.mark.parametrize("name, topology, chips", [
    ("v5p-8", "v5p:2x2x1", 4), ("v5p-128", "v5p:4x4x4", 64), ("v5p-256", "v5p:4x4x8", 128),
    ("v4-32", "v4:2x2x4", 16), ("v5e-16", "v5e:4x4", 16), ("v5e-8", "v5e:2x4", 8),
    ("v6e-256", "v6e:16x16", 256), ("v5p:4x4x12", "v5p:4x4x12", 192)])
def test_slice_names(name, topology, chips):
  sl = aot.parse_slice(name)
  assert (sl.topology, sl.chips) == (topology, chips)


def test_bad_slice_names():
  for name in ("v5p-7", "v9-8", "v5p-96"):
    with pytest.raises(ValueError):
      aot.parse_slice(name)


def _per_device_bytes(tree) -> int:
  """Bytes one device holds of sharded abstract arrays (its shard of each)."""
  import math
  import jax
  return sum(math.prod(x.sharding.shard_shape(x.shape)) * x.dtype.itemsize for x in jax.tree.leaves(tree))


@pytest.mark.skipif(importlib.util.find_spec("libtpu") is None, reason="libtpu not installed")
def test_compile_tiny_train_and_sample_steps_for_tpu():
  """The tiny base's train step (T5 in the step: tokens in, frozen encoder on device) and
  sampler step, compiled for a 4-chip v5e slice on this CPU host. The memory report's
  arguments hold at least the inputs' per-device shards counted here from the shapes (TPU
  tiles pad small arrays), and the donated train state is aliased to the new one."""
  import jax
  from imagen_video.utils import configs_loader
  config = configs_loader.load("configs/base_tiny.py:runlocal")
  config.text.tokenizer = ""  # shapes only: the preset's vocabulary, no prepared dataset
  # One level (every block kind still in it): the TPU compiler takes 60 s here instead of 89 s.
  config.model.update(dict(channel_mults=(1,), num_res_blocks=(1,), attn_resolutions=(16,),
                           cross_attn_resolutions=(16,)))
  assert not config.text.precomputed and config.text.frozen
  sl = aot.parse_slice("v5e:2x2")
  devices = aot.topology_devices(sl)
  assert len(devices) == 4 and "v5" in devices[0].device_kind.lower()
  _, _, _, args = aot.train_step_args(config, devices, batch=4)
  assert "text_tokens" in args[2] and jax.tree.leaves(args[1])  # tokens in, T5 params frozen in
  train = aot.compile_train_step(config, devices, batch=4)
  want = _per_device_bytes(args)
  print(f"train step on {sl.topology}: arguments {train.argument_bytes} bytes per device (unpadded "
        f"shards {want}), aliased {train.alias_bytes}, outputs {train.output_bytes}, "
        f"temporaries {train.temp_bytes}, {train.flops:.3g} FLOPs")
  assert train.argument_bytes >= want
  assert train.alias_bytes >= 0.95 * train.output_bytes  # the state is updated in place
  assert 0 < train.total_bytes < sl.chip.hbm_gib * 2 ** 30 and train.flops > 0
  sample = aot.compile_sample_step(config, devices, batch=2)
  assert sample.flops > 0 and 0 < sample.total_bytes < train.total_bytes
  for r in (train, sample):
    text = aot.format_report(r, sl)
    assert "GiB HBM" in text and "MFU" in text and "fits" in text


def test_abstract_batch_follows_frame_windows_and_crops():
  """Training on frame windows / crops: the low-res input is cut at the same place, so its
  abstract shape shrinks by the same factors (the 128-frame paper stages rely on this)."""
  import jax
  from imagen_video.parallel import sharding
  from imagen_video.utils import configs_loader
  config = configs_loader.load("configs/cascade_tiny.py:stage=tsr,runlocal=true")
  config.data.frames = 8   # of 16 output frames; the TSR input has 8 of its own
  config.data.crop = (8, 8)
  mesh = sharding.make_mesh((1, 1, 1), jax.devices()[:1])
  batch = aot.abstract_batch(config, mesh, config.sharding_rules, 2)
  assert batch["video"].shape == (2, 8, 8, 8, 3)
  assert batch[config.data.low_res_keys[0]].shape == (2, 4, 8, 8, 3)
  from imagen_video.stage.model import Stage
  config.text.tokenizer = ""  # shapes only: no prepared dataset, no tokenizer
  assert Stage(config).output_shape(2) == (2, 16, 16, 16, 3)  # samples whole clips
