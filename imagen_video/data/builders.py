"""Dataset builders by name, prepared in the ArrayRecord format for random access.

Random access lets the input pipeline read any clip by index: every process
reads only its share, the order is a pure function of (seed, epoch), and a run
resumes at any step without replaying the stream.
"""
from __future__ import annotations

import importlib
import os

import tensorflow_datasets as tfds

# name -> (module, builder class, config factory)
_BUILDERS = {
    "moving_shapes": ("imagen_video.data.moving_shapes_tfds", "MovingShapes", "moving_shapes_config"),
    "video_folder": ("imagen_video.data.video_folder_tfds", "VideoFolder", "video_folder_config"),
    "texture_pans": ("imagen_video.data.texture_pans_tfds", "TexturePans", "texture_pans_config"),
    "athletes": ("imagen_video.data.athletes_tfds", "Athletes", "athletes_config"),
}
DEFAULT_DATA_DIR = os.path.join("~", "tensorflow_datasets")


def names() -> list[str]:
  return list(_BUILDERS)


def get_builder(name: str, data_dir: str | None = None, **config_kwargs) -> tfds.core.DatasetBuilder:
  """The builder `name` configured by `config_kwargs` (not prepared)."""
  if name not in _BUILDERS:
    raise ValueError(f"unknown dataset {name!r}; expected one of {names()}")
  module_name, cls_name, factory_name = _BUILDERS[name]
  module = importlib.import_module(module_name)
  config = getattr(module, factory_name)(**config_kwargs)
  data_dir = os.fspath(data_dir or DEFAULT_DATA_DIR)
  data_dir = data_dir if is_uri(data_dir) else os.path.expanduser(data_dir)
  if is_uri(data_dir):
    from imagen_video.data import remote_shards
    remote_shards.install()
  return getattr(module, cls_name)(config=config, data_dir=data_dir,
                                   file_format=tfds.core.FileFormat.ARRAY_RECORD)


TOKENIZER_FILE = "spiece.model"
TOKENIZER_VOCAB = 128


def beam_pipeline_options(text: str):
  """Beam options from the string `tfds build --beam_pipeline_options` takes:
  "runner=DirectRunner,direct_num_workers=2,direct_running_mode=multi_processing"."""
  from apache_beam.options.pipeline_options import PipelineOptions
  items = [item.strip() for item in text.split(",") if item.strip()]
  bad = [item for item in items if "=" not in item and not item.startswith("no_")]
  if bad:
    raise ValueError(f"--beam_pipeline_options {text!r}: {bad} not KEY=VALUE; expected e.g. "
                     "runner=DirectRunner,direct_num_workers=2,direct_running_mode=multi_processing")
  return PipelineOptions(flags=[f"--{item}" for item in items])


def is_uri(path) -> bool:
  return "://" in os.fspath(path or "")


class StaleDataset(ValueError):
  """A prepared dataset whose source files have changed since."""


def prepare(name: str, data_dir: str | None = None, *, beam_options: str | None = None,
            rebuild: bool = False, **config_kwargs) -> tfds.core.DatasetBuilder:
  """Builds the dataset if it is not prepared yet (TFDS writes to a temporary
  folder and renames it only when complete, so a failed build leaves nothing),
  then a sentencepiece model of its training captions beside it (for the tiny
  configs' random T5; real runs use the checkpoint's own spiece.model).
  `beam_options` (a `tfds build --beam_pipeline_options` string) builds it on Apache Beam
  (DirectRunner here; Dataflow, Flink or Spark on a cluster), where the builder can.
  A `data_dir` URI (gs://...): in one process the dataset is built in a local staging folder
  and copied there whole when finished; on Beam every worker writes its shards there
  (`data.remote_shards`). A prepared dataset that records its source (video_folder) and whose
  source has changed stops with `StaleDataset` naming the changes, unless `rebuild`."""
  builder = get_builder(name, data_dir, **config_kwargs)
  if builder.is_prepared() and hasattr(builder, "source_changes"):
    changed = builder.source_changes()
    if changed and not rebuild:
      raise StaleDataset(f"{name} in {builder.data_dir} was prepared from files that have changed "
                         f"since: {changed}; rebuild it (`imagen-video prepare --config ... --rebuild`, "
                         "or prepare(..., rebuild=True)) or restore the files")
    if changed or rebuild:
      return _rebuild(name, data_dir, builder, changed, beam_options, config_kwargs)
  if beam_options is not None:
    if not hasattr(builder, "after_beam"):
      raise ValueError(f"dataset {name!r} builds in one process; Beam builds: video_folder")
    if not builder.is_prepared():
      options = beam_pipeline_options(beam_options)
      builder.beam_options = options
      builder.download_and_prepare(download_config=tfds.download.DownloadConfig(beam_options=options))
      builder.after_beam()
  elif is_uri(data_dir) and not builder.is_prepared():
    _prepare_staged(name, data_dir, builder, config_kwargs)
    builder = get_builder(name, data_dir, **config_kwargs)
  builder.download_and_prepare()
  path = tokenizer_path(builder)
  if not is_uri(path) and not os.path.exists(path) and "train" in builder.info.splits:
    from imagen_video.text import tokenizer
    source = builder.as_data_source("train")
    captions = sorted({source[i]["caption"].decode() for i in range(len(source))})
    tmp = f"{path}.tmp{os.getpid()}"
    tokenizer.train_sentencepiece(captions, tmp, TOKENIZER_VOCAB)
    os.replace(tmp, path)  # never a half-written tokenizer under the final name
  return builder


def _rebuild(name, data_dir, old, changed, beam_options, config_kwargs):
  """Prepares again with the old version set aside, and put back if the new build fails
  (a rebuild that stops on a bad file loses nothing)."""
  from etils import epath
  current = epath.Path(os.fspath(old.data_dir))
  aside = current.parent / f"{current.name}.before_rebuild"
  print(f"{name}: rebuilding {current}" + (f" ({changed})" if changed else ""), flush=True)
  if aside.exists():
    aside.rmtree()
  current.rename(aside)
  try:
    builder = prepare(name, data_dir, beam_options=beam_options, **config_kwargs)
  except BaseException:
    if current.exists():
      current.rmtree()
    aside.rename(current)
    raise
  aside.rmtree()
  return builder


def _prepare_staged(name: str, data_dir: str, remote, config_kwargs) -> None:
  """Builds in a local folder, then copies the finished version folder (shards, info,
  tokenizer) to `remote.data_dir`: one copy per file, none of TFDS's renames on the store."""
  import tempfile
  from etils import epath
  with tempfile.TemporaryDirectory(prefix="imagen_video_stage_") as stage:
    local = epath.Path(os.fspath(prepare(name, stage, **config_kwargs).data_dir))
    target = epath.Path(os.fspath(remote.data_dir))
    target.mkdir(parents=True, exist_ok=True)
    files = sorted(local.iterdir(), key=lambda p: p.name == "dataset_info.json")
    for path in files:  # dataset_info.json, which marks a dataset prepared, comes last
      path.copy(target / path.name, overwrite=True)


def tokenizer_path(builder: tfds.core.DatasetBuilder) -> str:
  """The sentencepiece model trained from this dataset's captions at preparation."""
  return os.path.join(builder.data_dir, TOKENIZER_FILE)
