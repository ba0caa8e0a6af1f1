"""DeepFloyd IF's diffusers U-Net -> an inflated Video U-Net stage (a workdir the loader reads).

    fields = model_fields(read_unet_config(src))   # config.model of the same network, per frame
    convert(src, config, out)                     # config: configs/if_inflated.py with `fields`

The spatial layers are IF's, tensor by tensor (`plan`: diffusers name -> our parameter path,
shape, layout change); the temporal layers the Video U-Net adds after every spatial block keep
their zero-initialised output, so the stage on a video is IF on each frame. Weights stream
through `text.hf_convert.planned_tensors` (safetensors / .bin, sharded or not).

Written to `out`: config.json (the resolved stage config) and checkpoints/0 holding
{"ema": {"unet": params}}, which `stage.loading.load` restores and `train.init_from` starts from.
"""
from __future__ import annotations

import os
from typing import Callable

import jax
import ml_collections
import numpy as np
from etils import epath
from flax import nnx

from imagen_video.nn import unet
from imagen_video.stage import conditioning
from imagen_video.stage import model as stage_model
from imagen_video.text.hf_convert import planned_tensors, read_json, weight_files
from imagen_video.workdir import checkpoints, saved_config

ATTN_DOWN, RES_DOWN = "SimpleCrossAttnDownBlock2D", "ResnetDownsampleBlock2D"
MIRROR = {ATTN_DOWN: "SimpleCrossAttnUpBlock2D", RES_DOWN: "ResnetUpsampleBlock2D"}
# Fields that must hold these values (diffusers defaults) for the network to be IF's.
REQUIRED = {"flip_sin_to_cos": True, "freq_shift": 0, "center_input_sample": False,
            "time_embedding_type": "positional", "conv_in_kernel": 3, "conv_out_kernel": 3,
            "resnet_time_scale_shift": "scale_shift", "cross_attention_norm": "group_norm",
            "mid_block_type": "UNetMidBlock2DSimpleCrossAttn", "addition_embed_type": "text",
            "class_embeddings_concat": False, "dual_cross_attention": False, "timestep_post_act": None,
            "time_cond_proj_dim": None, "attention_type": "default", "num_class_embeds": None}
ACTS = {"gelu": "gelu", "silu": "silu", "swish": "silu"}


def read_unet_config(src: str) -> dict:
  path = os.path.join(src, "config.json")
  hf = read_json(path, "a diffusers UNet2DConditionModel directory (e.g. DeepFloyd/IF-I-XL-v1.0/unet: "
                 "config.json + diffusion_pytorch_model.safetensors)")
  hf["_path"] = path
  return hf


def model_fields(hf: dict) -> dict:
  """`config.model` fields expressing this IF U-Net per frame; one line naming the field when
  the checkpoint uses something the Video U-Net does not express."""
  path = hf.get("_path", "config.json")

  def bad(name, why):
    return ValueError(f"{path}: field {name!r}={hf.get(name)!r} unsupported: {why}")
  if hf.get("_class_name", "UNet2DConditionModel") != "UNet2DConditionModel":
    raise bad("_class_name", "expected UNet2DConditionModel (DeepFloyd IF's unet/ folder)")
  for name, want in REQUIRED.items():
    if hf.get(name, want) != want:
      raise bad(name, f"IF's networks use {want!r}")
  down, up = list(hf["down_block_types"]), list(hf["up_block_types"])
  for name in down:
    if name not in MIRROR:
      raise bad("down_block_types", f"block {name!r}; expected {RES_DOWN} or {ATTN_DOWN}")
  if up != [MIRROR[d] for d in reversed(down)]:
    raise bad("up_block_types", f"expected the mirror of down_block_types {[MIRROR[d] for d in reversed(down)]}")
  chans = list(hf["block_out_channels"])
  if any(c % chans[0] for c in chans):
    raise bad("block_out_channels", "each width must be a multiple of the first")
  heads = hf.get("attention_head_dim", 8)
  if isinstance(heads, (list, tuple)):
    if len(set(heads)) != 1:
      raise bad("attention_head_dim", "one head width for all levels")
    heads = heads[0]
  if hf.get("num_attention_heads") is not None:
    raise bad("num_attention_heads", "IF sets attention_head_dim (the head width)")
  act = ACTS.get(hf.get("act_fn", "silu"))
  if act is None:
    raise bad("act_fn", f"expected one of {sorted(ACTS)}")
  only_cross = hf.get("only_cross_attention", False)
  mid_only = hf.get("mid_block_only_cross_attention")
  mid_only = only_cross if mid_only is None and isinstance(only_cross, bool) else bool(mid_only)
  if not isinstance(only_cross, bool) or mid_only != only_cross:
    raise bad("only_cross_attention", "one value for every level and the middle")
  emb_act = hf.get("time_embedding_act_fn")
  if emb_act not in (None, "gelu", "silu", "swish"):
    raise bad("time_embedding_act_fn", "expected None, 'gelu' or 'silu'")
  class_type = hf.get("class_embed_type")
  if class_type not in (None, "timestep"):
    raise bad("class_embed_type", "expected None (IF-I) or 'timestep' (IF-II's noise level)")
  hid = hf.get("encoder_hid_dim")
  hid_type = hf.get("encoder_hid_dim_type") or ("text_proj" if hid else None)
  if hid_type not in (None, "text_proj"):
    raise bad("encoder_hid_dim_type", "expected 'text_proj'")
  cross = hf.get("cross_attention_dim", 1280)
  if isinstance(cross, (list, tuple)):
    raise bad("cross_attention_dim", "one text width for all levels")
  res = int(hf.get("sample_size") or 64)
  return dict(
      layout="adm", in_channels=3, out_channels=int(hf.get("out_channels", 4)),
      channels=chans[0], channel_mults=tuple(c // chans[0] for c in chans),
      num_res_blocks=_per_level(hf.get("layers_per_block", 2), len(chans)),
      resolution=res, attn_resolutions=tuple(res // 2 ** i for i, d in enumerate(down) if d == ATTN_DOWN),
      cross_attn_resolutions=(), mid_spatial_attn=True, heads=0, head_dim=int(heads),
      emb_dim=hf.get("time_embedding_dim") or 4 * chans[0], norm_groups=int(hf.get("norm_num_groups", 32)),
      norm_eps=float(hf.get("norm_eps", 1e-5)), dropout=float(hf.get("dropout", 0.0)), act=act,
      res_skip_time_act=bool(hf.get("resnet_skip_time_act", False)),
      res_out_scale=float(hf.get("resnet_out_scale_factor", 1.0)),
      mid_out_scale=float(hf.get("mid_block_scale_factor", 1.0)),
      text_attention="hybrid", hybrid_self_attention=not only_cross, text_layernorm=False,
      text_pooling="attention", text_pool_heads=int(hf.get("addition_embed_type_num_heads", 64)),
      text_proj_dim=int(cross) if hid_type else 0, use_text_mask=False, time_input="ddpm_index",
      emb_act=None if emb_act is None else ACTS[emb_act], skip_scale=1.0,
      # what the stage fills in (checked against the stage config in `check_stage`):
      _text_dim=int(hid or cross), _cond_channels=int(hf.get("in_channels", 3)) - 3,
      _aug=class_type == "timestep")


def _per_level(value, n: int) -> tuple:
  return (int(value),) * n if isinstance(value, int) else tuple(int(v) for v in value)


def text_width(config) -> int | None:
  """d_model of the stage's T5 (its converted checkpoint, else its preset); None if unknown."""
  from imagen_video.text import t5, t5_checkpoint
  text = config.text
  try:
    if text.checkpoint:
      return t5_checkpoint.load_config(text.checkpoint).d_model
    return t5.preset(text.variant, text.preset).d_model
  except (FileNotFoundError, ValueError, KeyError):
    return None


def check_stage(fields: dict, config, path: str) -> None:
  """The stage config must give the network what IF had: text width, low-res input, noise level."""
  want = {"text width (T5 d_model)": (fields["_text_dim"], text_width(config)),
          "low-res input channels": (fields["_cond_channels"], conditioning.cond_channels(config)),
          "noise-level (class) embedding": (fields["_aug"], conditioning.uses_aug_level(config))}
  for what, (theirs, ours) in want.items():
    if ours is not None and theirs != ours:
      raise ValueError(f"{path}: the checkpoint has {what} {theirs!r}, the stage config "
                       f"(stage.kind={conditioning.kind(config)!r}, text.checkpoint="
                       f"{config.text.checkpoint!r}) gives {ours!r}")


def network_config(config) -> ml_collections.ConfigDict:
  """config.model as the Stage completes it (text width, low-res channels, noise level)."""
  return stage_model.network_config(config, text_width(config) or config.model.text_dim)


# -- the tensor plan: diffusers name -> (our path, diffusers shape, convert) -------------------

def _linear(out_shape=None):
  """torch Linear [out, in] -> kernel [in, *out_shape]."""
  return lambda w: w.T.reshape((w.shape[1],) + tuple(out_shape or (w.shape[0],)))


def _add(plan, theirs, ours, shape, convert=lambda w: w):
  plan[theirs] = (tuple(ours), tuple(shape), convert)


def _dense(plan, theirs, ours, d_in, d_out, out_shape=None):
  _add(plan, f"{theirs}.weight", ours + ("kernel",), (d_out, d_in), _linear(out_shape))
  _add(plan, f"{theirs}.bias", ours + ("bias",), (d_out,), lambda b: b.reshape(out_shape or b.shape))


def _norm(plan, theirs, ours, ch):
  _add(plan, f"{theirs}.weight", ours + ("scale",), (ch,))
  _add(plan, f"{theirs}.bias", ours + ("bias",), (ch,))


def _conv(plan, theirs, ours, c_in, c_out, k=3):
  _add(plan, f"{theirs}.weight", ours + ("kernel",), (c_out, c_in, k, k), lambda w: w.transpose(2, 3, 1, 0))
  _add(plan, f"{theirs}.bias", ours + ("bias",), (c_out,))


def _resblock(plan, theirs, ours, c_in, c_out, emb):
  _norm(plan, f"{theirs}.norm1", ours + ("norm1",), c_in)
  _conv(plan, f"{theirs}.conv1", ours + ("conv1",), c_in, c_out)
  _dense(plan, f"{theirs}.time_emb_proj", ours + ("film",), emb, 2 * c_out)
  _norm(plan, f"{theirs}.norm2", ours + ("norm2",), c_out)
  _conv(plan, f"{theirs}.conv2", ours + ("conv2",), c_out, c_out)
  if c_in != c_out:
    _add(plan, f"{theirs}.conv_shortcut.weight", ours + ("skip", "kernel"), (c_out, c_in, 1, 1),
         lambda w: w[:, :, 0, 0].T)
    _add(plan, f"{theirs}.conv_shortcut.bias", ours + ("skip", "bias"), (c_out,))


def _attention(plan, theirs, ours, ch, text, head_dim, self_attn):
  hs = (ch // head_dim, head_dim)
  _norm(plan, f"{theirs}.group_norm", ours + ("norm",), ch)
  _norm(plan, f"{theirs}.norm_cross", ours + ("text_norm",), text)
  names = [("to_q", "q", ch), ("add_k_proj", "text_k", text), ("add_v_proj", "text_v", text)]
  names += [("to_k", "k", ch), ("to_v", "v", ch)] if self_attn else []
  for t, o, d_in in names:
    _dense(plan, f"{theirs}.{t}", ours + (o,), d_in, ch, hs)
  _add(plan, f"{theirs}.to_out.0.weight", ours + ("out", "kernel"), (ch, ch), lambda w: w.T.reshape(hs + (ch,)))
  _add(plan, f"{theirs}.to_out.0.bias", ours + ("out", "bias"), (ch,))


def plan(m) -> dict:
  """diffusers tensor name -> (our param path, shape, convert) for network config `m`."""
  plan: dict = {}
  n, blocks = unet._levels(m)
  chans = [m.channels * k for k in m.channel_mults]
  emb, text, d = m.emb_dim or 4 * m.channels, m.text_proj_dim or m.text_dim, m.text_dim
  self_attn = m.hybrid_self_attention
  attn = lambda i: (m.resolution // 2 ** i) in tuple(m.attn_resolutions)
  _dense(plan, "time_embedding.linear_1", ("time_mlp", "0"), m.channels, emb)
  _dense(plan, "time_embedding.linear_2", ("time_mlp", "1"), emb, emb)
  if m.use_aug_level_embedding:
    _dense(plan, "class_embedding.linear_1", ("aug_mlp", "0"), m.channels, emb)
    _dense(plan, "class_embedding.linear_2", ("aug_mlp", "1"), emb, emb)
  heads = m.text_pool_heads
  _norm(plan, "add_embedding.norm1", ("text_pool", "norm1"), d)
  _add(plan, "add_embedding.pool.positional_embedding", ("text_pool", "position"), (1, d), lambda w: w[0])
  for p in "qkv":
    _dense(plan, f"add_embedding.pool.{p}_proj", ("text_pool", p), d, d, (heads, d // heads))
  _dense(plan, "add_embedding.proj", ("text_pool", "proj"), d, emb)
  _norm(plan, "add_embedding.norm2", ("text_pool", "norm2"), emb)
  if m.text_proj_dim:
    _dense(plan, "encoder_hid_proj", ("text_proj",), d, text)
  _conv(plan, "conv_in", ("conv_in",), m.in_channels + m.cond_channels, chans[0])
  skips, ch = [chans[0]], chans[0]
  for i in range(n):
    for j in range(blocks[i]):
      ours = ("down", str(i), str(j))
      _resblock(plan, f"down_blocks.{i}.resnets.{j}", ours + ("res",), ch, chans[i], emb)
      ch = chans[i]
      skips.append(ch)
      if attn(i):
        _attention(plan, f"down_blocks.{i}.attentions.{j}", ours + ("spatial",), ch, text, m.head_dim, self_attn)
    if i < n - 1:
      _resblock(plan, f"down_blocks.{i}.downsamplers.0", ("down", str(i), str(blocks[i])), ch, ch, emb)
      skips.append(ch)
  _resblock(plan, "mid_block.resnets.0", ("middle", "0", "res"), ch, ch, emb)
  _attention(plan, "mid_block.attentions.0", ("middle", "0", "spatial"), ch, text, m.head_dim, self_attn)
  _resblock(plan, "mid_block.resnets.1", ("middle", "1", "res"), ch, ch, emb)
  for k, i in enumerate(reversed(range(n))):
    for j in range(blocks[i] + 1):
      ours = ("up", str(k), str(j))
      _resblock(plan, f"up_blocks.{k}.resnets.{j}", ours + ("res",), ch + skips.pop(), chans[i], emb)
      ch = chans[i]
      if attn(i):
        _attention(plan, f"up_blocks.{k}.attentions.{j}", ours + ("spatial",), ch, text, m.head_dim, self_attn)
    if i > 0:
      _resblock(plan, f"up_blocks.{k}.upsamplers.0", ("up", str(k), str(blocks[i] + 1)), ch, ch, emb)
  _norm(plan, "conv_norm_out", ("norm_out",), ch)
  _conv(plan, "conv_out", ("conv_out",), ch, m.out_channels)
  return plan


def _key(path) -> tuple[str, ...]:
  return tuple(str(getattr(p, "key", getattr(p, "idx", p))) for p in path)


def convert(src: str, config, out: str, log: Callable[[str], None] = lambda s: None):
  """Writes the inflated stage for `config` (model fields from `model_fields`) to `out`; returns
  (out, parameters written, whether the null text is T5's embedding of "")."""
  m = network_config(config)
  # T5 first, and let it go before IF's weights load: T5-XXL and IF-I-XL together would need
  # both in host memory at once.
  null = empty_prompt_embedding(config) if m.get("null_text_length", 0) else None
  tensors = plan(m)
  graphdef, abstract = unet.abstract_unet(m)
  flat = {_key(p): v for p, v in jax.tree_util.tree_flatten_with_path(abstract.to_pure_dict())[0]}
  unknown = sorted({ours for ours, _, _ in tensors.values()} - set(flat))
  if unknown:  # a mapping bug, not a user error
    raise RuntimeError(f"IF plan names parameters the network lacks: {unknown[:3]}")
  mapped = {ours for ours, _, _ in tensors.values()}
  # The layers IF lacks (temporal mixing, null text) keep their own init; jit drops the rest.
  fresh = jax.jit(lambda k: {"/".join(p): v for p, v in (
      (_key(q), x) for q, x in jax.tree_util.tree_flatten_with_path(
          nnx.split(unet.VideoUNet(m, rngs=nnx.Rngs(params=k)))[1].to_pure_dict())[0])
      if p not in mapped})(jax.random.key(0))
  params = {p: np.asarray(fresh["/".join(p)]) for p in flat if p not in mapped}
  files, _ = weight_files(src, stem="diffusion_pytorch_model")
  shapes = f"block_out_channels={[m.channels * k for k in m.channel_mults]}, emb_dim={m.emb_dim}"
  for ours, arr, key, path in planned_tensors(src, files, tensors, lambda k: k, shapes,
                                              what="U-Net", model="DeepFloyd IF U-Net"):
    want = flat[ours]
    params[ours] = np.asarray(arr, np.float32).astype(want.dtype)
    log(f"{os.path.basename(path)}: {key} -> {'/'.join(ours)}")
  if null is not None:
    params[("null_text",)] = null.astype(flat[("null_text",)].dtype)
    log(f"null_text <- T5('') from {config.text.checkpoint}")
  state = abstract
  nnx.replace_by_pure_dict(state, _nest(params, abstract.to_pure_dict()))
  os.makedirs(out, exist_ok=True)
  config = config.copy_and_resolve_references()
  if config.text.tokenizer == "dataset":  # no dataset here: the T5 checkpoint's own, or none
    with config.unlocked():
      config.text.tokenizer = ""
  saved_config.write(out, config)
  ckpt = checkpoints.Checkpoints(f"{checkpoints.absolute(out)}/checkpoints", async_save=False)
  try:
    ckpt.save(0, {"ema": {"unet": state}}, {"step": 0}, force=True)
  finally:
    ckpt.close()
  return out, sum(int(np.size(v)) for v in params.values()), null is not None


def empty_prompt_embedding(config) -> np.ndarray | None:
  """T5's embedding of the empty prompt at every position [max_length, d_model]: IF's
  unconditional input. None unless the stage's T5 checkpoint (`--t5`) is on disk."""
  text = config.text
  if not text.checkpoint or not epath.Path(text.checkpoint).is_dir():
    return None
  from imagen_video.text.encoder import TextEncoder
  from imagen_video.text.tokenizer import EOS_ID
  text = text.copy_and_resolve_references()
  with text.unlocked():
    text.tokenizer = ""  # T5's own conventions spell "": eos, then padding
  enc = TextEncoder.from_config(text)
  ids = np.zeros((1, text.max_length), np.int32)
  ids[0, 0] = EOS_ID
  emb, _ = enc.encode(ids, ids == EOS_ID)
  return np.asarray(emb, np.float32)[0]


def _nest(flat: dict, template):
  """Flat {path: array} -> the nested pure dict `template` has (its own key types)."""
  def build(node, prefix):
    if isinstance(node, dict):
      return {k: build(v, prefix + (str(k),)) for k, v in node.items()}
    return flat[prefix]
  return build(template, ())
