"""The layering of DESIGN.md, read from the imports of every module (function-level ones too):
bottom packages (nn, diffusion, text, media, pose, utils, parallel, workdir, clip) import nothing
above them; data, stage, cascade, eval, train and cli each import only what sits below; no
package and no module imports itself round a cycle."""
import ast
import collections
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[1] / "imagen_video"
BOTTOM = {"nn", "diffusion", "text", "media", "pose", "utils", "parallel", "workdir", "clip"}
# What a bottom package may import of the others (parallel: meshes, rules, multi-host only;
# nn -> diffusion.schedule: a network fed discrete DDPM timesteps, e.g. DeepFloyd IF's, maps log-SNR to them).
BOTTOM_DEPS = {"nn": {"parallel", "diffusion"}, "text": {"parallel"}, "pose": {"media"}, "clip": {"parallel", "text"}}
RANK = {**{p: 0 for p in BOTTOM}, "data": 1, "pose_detector": 2, "stage": 2, "cascade": 3,
        "eval": 4, "train": 5, "cli": 6}


def _modules() -> dict[str, pathlib.Path]:
  out = {}
  for path in ROOT.rglob("*.py"):
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
  return out


def _imports(modules) -> dict[str, set[str]]:
  """module -> the project modules it imports (a package where the name is not a module)."""
  edges = collections.defaultdict(set)
  for name, path in modules.items():
    for node in ast.walk(ast.parse(path.read_text())):
      if isinstance(node, ast.Import):
        edges[name].update(a.name for a in node.names if a.name.startswith("imagen_video."))
      elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("imagen_video."):
        for a in node.names:
          full = f"{node.module}.{a.name}"
          edges[name].add(full if full in modules else node.module)
  return edges


def _package(module: str) -> str:
  return module.split(".")[1]


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
  found, state, stack = [], {}, []

  def visit(u):
    state[u] = 1
    stack.append(u)
    for v in sorted(graph.get(u, ())):
      if state.get(v) == 1:
        found.append(stack[stack.index(v):] + [v])
      elif v in graph and not state.get(v):
        visit(v)
    stack.pop()
    state[u] = 2
  for u in sorted(graph):
    if not state.get(u):
      visit(u)
  return found


def test_packages_import_only_what_sits_below_them_and_nothing_cycles():
  modules = _modules()
  edges = _imports(modules)
  packages = {_package(m) for m in modules if m.count(".")}
  assert packages == set(RANK), f"place the new package(s) {packages ^ set(RANK)} in RANK"
  package_graph = collections.defaultdict(set)
  wrong = []
  for module, targets in edges.items():
    src = _package(module)
    for target in targets:
      dst = _package(target)
      if dst == src:
        continue
      package_graph[src].add(dst)
      allowed = (dst in BOTTOM_DEPS.get(src, set()) if src in BOTTOM else RANK[dst] < RANK[src])
      if not allowed:
        wrong.append(f"{module} imports {target}")
  print("package imports (final tree):")
  for src in sorted(package_graph, key=lambda p: (RANK[p], p)):
    print(f"  {src} (layer {RANK[src]}) -> {', '.join(sorted(package_graph[src]))}")
  assert not wrong, "upward or sideways imports:\n" + "\n".join(sorted(wrong))
  assert not _cycles(package_graph), _cycles(package_graph)
  module_graph = {m: {t for t in targets if t in modules} for m, targets in edges.items()}
  assert not _cycles(module_graph), _cycles(module_graph)
  for upper in ("stage", "cascade"):  # DESIGN.md's named rules, spelled out
    assert not package_graph[upper] & {"train", "eval", "cli"}
  assert "cli" not in package_graph["eval"] and not package_graph["parallel"]


def test_the_checker_finds_a_cycle_and_an_upward_import():
  assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c", "a"]]
  assert not _cycles({"a": {"b"}, "b": {"c"}, "c": set()})
  assert RANK["stage"] < RANK["train"] and "eval" not in BOTTOM_DEPS.get("stage", set())
