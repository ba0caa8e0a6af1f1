"""The synthetic `moving_shapes` dataset alone (for `prepare` and `preview`).

    imagen-video prepare --config configs/moving_shapes.py
    imagen-video preview --config configs/moving_shapes.py:frames=16,height=64,width=64 --out_dir out/

Arguments: frames, height, width, fps, num_train, num_test, seed, runlocal
(a few clips only).
"""
from imagen_video.data import pipeline
from imagen_video.utils.config_args import parse_arg


def get_config(arg=None):
  a = parse_arg(arg, frames=16, height=32, width=32, fps=8.0, num_train=2000, num_test=200,
                seed=0, runlocal=False)
  config = pipeline.default_data_config()
  config.builder.update(dict(frames=a.frames, height=a.height, width=a.width, fps=a.fps,
                             num_train=64 if a.runlocal else a.num_train,
                             num_test=16 if a.runlocal else a.num_test, seed=a.seed))
  config.seed = a.seed
  return _wrap(config)


def _wrap(data):
  import ml_collections
  return ml_collections.ConfigDict({"data": data})
