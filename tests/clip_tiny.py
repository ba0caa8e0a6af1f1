"""Tiny random Hugging Face CLIP directories (transformers' PyTorch CLIPModel) and a tiny BPE
vocabulary learnt here, for the CLIP parity and CLI tests."""
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


def tiny_random_config():
  """A random-init CLIP small enough to score a caption check in seconds (plumbing, not quality)."""
  from imagen_video.clip.model import ClipConfig
  return ClipConfig(text_length=24, text_width=32, text_mlp=64, text_layers=1, text_heads=4, image_size=32,
                    patch_size=8, vision_width=32, vision_mlp=64, vision_layers=1, vision_heads=4, projection_dim=16)


def write_tokenizer(path, merges=60):
  from imagen_video.clip.tokenizer import train_bpe
  vocab, learnt = train_bpe(CORPUS, merges)
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
