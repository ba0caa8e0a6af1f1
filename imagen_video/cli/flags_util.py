"""Per-command absl flag parsing (each command owns a FlagValues, not global FLAGS)."""
from __future__ import annotations

import sys

from absl import flags


def parse(fv: flags.FlagValues, argv: list[str], doc: str) -> list[str]:
  """Parses argv into `fv`; prints help and exits 0 on --help, exits 2 on bad flags."""
  if any(a in ("-h", "--help", "-help") for a in argv[1:]):
    print(doc.strip(), "\n\nflags:\n" + fv.get_help(include_special_flags=False))
    raise SystemExit(0)
  try:
    return fv(argv)
  except flags.Error as e:
    print(f"{argv[0]}: {e}\n(see {argv[0]} --help)", file=sys.stderr)
    raise SystemExit(2)
