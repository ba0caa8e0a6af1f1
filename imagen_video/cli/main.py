"""`imagen-video` entry point: dispatches to one module per sub-command.

Each command module defines `main(argv: list[str]) -> int` and parses its own
flags, so commands stay independent and importable by tests.
"""
import importlib
import logging
import os
import sys
import tempfile
import traceback

from absl import logging as absl_logging

from imagen_video.utils import xla_cpu

# command name -> (module, one-line help)
COMMANDS = {
    "demo": ("imagen_video.cli.demo", "main job on built-in defaults"),
    "prepare": ("imagen_video.cli.prepare", "build a TFDS dataset (moving_shapes, texture_pans, video_folder)"),
    "preview": ("imagen_video.cli.preview", "write an mp4 + contact sheet of dataset clips"),
    "train": ("imagen_video.cli.train", "train one stage from a config"),
    "sample": ("imagen_video.cli.sample", "sample one stage from its checkpoint"),
    "pose-video": ("imagen_video.cli.pose_video", "render a pose sequence (COCO/OpenPose JSON) as a skeleton video"),
    "eval": ("imagen_video.cli.eval", "measure a trained stage (caption check, ...)"),
    "convert-t5": ("imagen_video.cli.convert_t5", "convert a Hugging Face T5 checkpoint to an Orbax encoder"),
    "convert-if": ("imagen_video.cli.convert_if", "inflate a DeepFloyd IF U-Net (diffusers) into a video stage"),
    "convert-clip": ("imagen_video.cli.convert_clip", "convert a Hugging Face CLIP checkpoint (CLIP score / R-Precision)"),
    "clip-score": ("imagen_video.cli.clip_score", "CLIP score + R-Precision of sampled videos (a samples.jsonl index)"),
    "encode-text": ("imagen_video.cli.encode_text", "write T5 embeddings + masks of prompts to .npz"),
    "ablate": ("imagen_video.cli.ablate", "train + measure the papers' ablations, write reports"),
    "distill": ("imagen_video.cli.distill", "distill a stage to few sampling steps (guidance + halvings)"),
    "describe": ("imagen_video.cli.describe", "table of a cascade's stages and parameter counts"),
    "compile": ("imagen_video.cli.compile", "AOT-compile a stage for a TPU slice: memory, FLOPs"),
}


def usage() -> str:
  width = max(map(len, COMMANDS))
  lines = ["usage: imagen-video <command> [flags]", "", "commands:"]
  lines += [f"  {name:<{width}}  {help_}" for name, (_, help_) in COMMANDS.items()]
  lines += ["", "`imagen-video <command> --help` lists a command's flags; `--verbose` shows the "
            "traceback of a failure (else written to a log file named in the one-line error)."]
  return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
  argv = sys.argv[1:] if argv is None else argv
  if not argv or argv[0] in ("-h", "--help", "help"):
    print(usage())
    return 0
  name, rest = argv[0], argv[1:]
  if name not in COMMANDS:
    import difflib
    close = difflib.get_close_matches(name, COMMANDS, n=1)
    hint = f" (did you mean `{close[0]}`?)" if close else ""
    print(f"imagen-video: unknown command `{name}`{hint}\n\n{usage()}", file=sys.stderr)
    return 2
  verbose = "--verbose" in rest and name not in ("convert-t5", "convert-clip", "convert-if")  # they have their own
  if verbose:
    rest = [a for a in rest if a != "--verbose"]
  log = None if verbose else _TracebacksToFile(name)
  if name != "compile":  # which compiles for TPU: its figures stay XLA's defaults
    xla_cpu.set_cpu_options()  # before the command imports JAX
  module = importlib.import_module(COMMANDS[name][0])
  try:
    return int(module.main([f"imagen-video {name}", *rest]) or 0)
  except (KeyboardInterrupt, SystemExit):
    raise
  except Exception as e:  # noqa: BLE001 - one line for the user, the traceback kept
    if verbose:
      raise
    print(f"imagen-video {name}: error: {one_line(e)} (traceback in {log.write_exception()}; "
          "--verbose prints it)", file=sys.stderr, flush=True)
    return 1


class _TracebacksToFile:
  """Log records that carry a traceback (Orbax's and asyncio's, from their threads, when a
  save fails) go to one log file instead of the terminal; the rest print as usual."""

  def __init__(self, name: str):
    self.name, self.path = name, None
    outer = self

    class Divert(logging.Filter):
      def filter(self, record):
        if not record.exc_info:
          return True
        outer._append(logging.Formatter().format(record))
        return False
    self.divert = Divert()
    # On the loggers (Orbax logs through absl's), so handlers added later are covered too.
    for logger in ("absl", "asyncio", ""):
      logging.getLogger(logger).addFilter(self.divert)
    absl_logging.get_absl_handler().addFilter(self.divert)

  def _append(self, text: str) -> str:
    if self.path is None:
      fd, self.path = tempfile.mkstemp(prefix=f"imagen-video-{self.name}-", suffix=".log")
      os.close(fd)
    with open(self.path, "a") as f:
      f.write(text.rstrip() + "\n\n")
    return self.path

  def write_exception(self) -> str:
    return self._append(traceback.format_exc())


def one_line(e: BaseException) -> str:
  """The failure in one line: its message (with its type unless it is a plain ValueError or
  RuntimeError, whose messages here say everything), and an OS error behind it (disk full,
  permission) when there is one."""
  text = " ".join(str(e).split()) or type(e).__name__
  if type(e) not in (ValueError, RuntimeError) and not type(e).__module__.startswith("imagen_video"):
    text = f"{type(e).__name__}: {text}"
  inner = e.__cause__ or e.__context__
  while inner is not None:
    if isinstance(inner, OSError) and inner.strerror and inner.strerror not in text:
      text += f" (cause: {inner.strerror}{': ' + str(inner.filename) if inner.filename else ''})"
      break
    inner = inner.__cause__ or inner.__context__
  return text[:800]


if __name__ == "__main__":
  sys.exit(main())
