"""Tiny random Hugging Face CLIP directories (transformers' PyTorch CLIPModel) and a tiny BPE
vocabulary learnt here, for the CLIP parity and CLI tests."""
import collections
import json
import os

# A caption corpus for the tiny BPE (moving_shapes-like words plus a few others).
CORPUS = ["a red circle moving left", "a blue square moving up", "a green triangle moving right",
          "a photo of a cat", "a dog running on the beach", "athletes sprinting on a track",
          "a close-up of stone texture", "panning over a landscape", "yellow magenta cyan white"]

# (name, text_config, vision_config, projection_dim, weights format, preprocessor size)
CONFIGS = [
    ("b32like-quickgelu", dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                               max_position_embeddings=16, hidden_act="quick_gelu"),
     dict(hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4, image_size=32,
          patch_size=8, hidden_act="quick_gelu"), 16, "safetensors", 32),
    ("l14like-gelu-sharded", dict(hidden_size=48, intermediate_size=96, num_hidden_layers=3, num_attention_heads=6,
                                  max_position_embeddings=20, hidden_act="gelu"),
     dict(hidden_size=64, intermediate_size=128, num_hidden_layers=3, num_attention_heads=4, image_size=28,
          patch_size=14, hidden_act="gelu"), 24, "sharded", 28),
    ("oldeos2-bin", dict(hidden_size=40, intermediate_size=80, num_hidden_layers=1, num_attention_heads=5,
                         max_position_embeddings=12, hidden_act="quick_gelu", eos_token_id=2),
     dict(hidden_size=48, intermediate_size=96, num_hidden_layers=2, num_attention_heads=3, image_size=48,
          patch_size=16, hidden_act="quick_gelu"), 32, "bin", 48),
]


def byte_table():
  from imagen_video.clip.tokenizer import byte_chars
  return byte_chars()


def learn_bpe(texts, merges: int):
  """The tiny vocabulary: 256 byte symbols, each also with '</w>', `merges` learnt merges,
  then the two special tokens (end-of-text last: the largest id, as in OpenAI's vocabulary)."""
  chars = byte_table()
  words = collections.Counter()
  for t in texts:
    for w in t.lower().split():
      sym = [chars[b] for b in w.encode()]
      sym[-1] += "</w>"
      words[tuple(sym)] += 1
  vocab = list(chars.values()) + [c + "</w>" for c in chars.values()]
  learnt = []
  for _ in range(merges):
    pairs = collections.Counter()
    for w, n in words.items():
      for p in zip(w, w[1:]):
        pairs[p] += n
    if not pairs:
      break
    best = max(sorted(pairs), key=pairs.get)
    learnt.append(best)
    vocab.append(best[0] + best[1])
    new = collections.Counter()
    for w, n in words.items():
      out, i = [], 0
      while i < len(w):
        if i + 1 < len(w) and (w[i], w[i + 1]) == best:
          out.append(w[i] + w[i + 1])
          i += 2
        else:
          out.append(w[i])
          i += 1
      new[tuple(out)] += n
    words = new
  vocab += ["<|startoftext|>", "<|endoftext|>"]
  return {t: i for i, t in enumerate(vocab)}, learnt


def write_tokenizer(path, merges=60):
  vocab, learnt = learn_bpe(CORPUS, merges)
  with open(os.path.join(path, "vocab.json"), "w") as f:
    json.dump(vocab, f)
  with open(os.path.join(path, "merges.txt"), "w") as f:
    f.write("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in learnt))
  return vocab


def build(path, index: int = 0, seed: int = 0):
  """Writes CONFIGS[index] as an HF CLIP directory at `path`; -> (torch model, HF tokenizer, processor)."""
  import torch
  import transformers
  _, text, vision, proj, fmt, size = CONFIGS[index]
  os.makedirs(path, exist_ok=True)
  vocab = write_tokenizer(path)
  eos = vocab["<|endoftext|>"]
  text = {"vocab_size": len(vocab), "bos_token_id": vocab["<|startoftext|>"], "eos_token_id": eos,
          "pad_token_id": eos, **text}
  cfg = transformers.CLIPConfig(text_config=text, vision_config=vision, projection_dim=proj)
  torch.manual_seed(seed)
  model = transformers.CLIPModel(cfg).eval()
  with torch.no_grad():  # non-trivial norms and biases, so every tensor's mapping matters
    for name, p in model.named_parameters():
      if "norm" in name and name.endswith("weight"):
        p.copy_(1 + 0.3 * torch.randn_like(p))
      elif name.endswith("bias") or "class_embedding" in name:
        p.copy_(0.3 * torch.randn_like(p))
  if fmt == "bin":
    cfg.save_pretrained(path)
    torch.save(model.state_dict(), os.path.join(path, "pytorch_model.bin"))
  else:
    model.save_pretrained(path, **({"max_shard_size": "50KB"} if fmt == "sharded" else {}))
  proc = transformers.CLIPImageProcessor(size={"shortest_edge": size}, crop_size={"height": size, "width": size})
  proc.save_pretrained(path)
  tok = transformers.CLIPTokenizer.from_pretrained(path)
  tok.save_pretrained(path)
  return model, tok, proc
