"""Per-command absl flag parsing (each command owns a FlagValues, not global FLAGS)."""
from __future__ import annotations

import sys

from absl import flags
from ml_collections import config_flags


def define_config(fv: flags.FlagValues, argv: list[str], name: str = "config",
                  help_string: str = "config file[:args] (`get_config(args)`)") -> None:
  """`--config FILE[:ARGS]` with `--config.a.b=value` overrides read from `argv`."""
  config_flags.DEFINE_config_file(name, None, help_string, flag_values=fv, sys_argv=argv)


def parse(fv: flags.FlagValues, argv: list[str], doc: str) -> list[str]:
  """Parses argv into `fv`; prints help and exits 0 on --help, exits 2 on bad flags."""
  if any(a in ("-h", "--help", "-help") for a in argv[1:]):
    print(doc.strip(), "\n\nflags:\n" + fv.get_help(include_special_flags=False))
    raise SystemExit(0)
  argv = [argv[0]] + [_underscored(a, fv) for a in argv[1:]]
  try:
    return fv(argv)
  except (flags.Error, KeyError, AttributeError) as e:
    # ml_collections names the unknown config field and suggests the closest one.
    msg = str(e.args[0] if e.args else e).replace("\\n", " ").replace("\\'", "").strip("'\"")
    msg = f"unknown config field {msg}" if "Did you mean" in msg else msg
    if "Error whilst parsing config file" in msg:  # the config's own error, not its traceback
      flag = msg.split(": Error whilst", 1)[0] if msg.startswith("flag ") else "--config"
      cause = [line for line in msg.splitlines() if line.strip()][-1]
      msg = f"{flag}: {cause.split(': ', 1)[-1] if cause.startswith(('ValueError', 'TypeError')) else cause}"
    print(f"{argv[0]}: {msg}\n(see {argv[0]} --help)", file=sys.stderr)
    raise SystemExit(2)


def _underscored(arg: str, fv: flags.FlagValues) -> str:
  """--first-frame=x -> --first_frame=x where that flag exists (both spellings work)."""
  name, eq, value = arg[2:].partition("=")
  if arg.startswith("--") and "-" in name and name.replace("-", "_") in fv:
    return f"--{name.replace('-', '_')}{eq}{value}"
  return arg


def load_config(spec: str, overrides: dict[str, str] | None = None):
  """The config `FILE[:ARGS]` with `key=value` overrides applied exactly as the commands'
  `--config.key=value` flags apply them (same parsing, same errors)."""
  fv = flags.FlagValues()
  argv = ["load_config", f"--config={spec}", *(f"--config.{k}={v}" for k, v in (overrides or {}).items())]
  define_config(fv, argv)
  parse(fv, argv, "")
  return fv.config
