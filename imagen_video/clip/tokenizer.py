"""CLIP's byte-level BPE tokenizer, read from vocab.json + merges.txt (no `transformers`).

As HF's CLIPTokenizer: NFC, whitespace runs -> one space, lower case; split by CLIP's pattern
(contractions, letter runs, single digits, other non-space runs); each piece's UTF-8 bytes
mapped to printable characters (GPT-2's table), '</w>' on its last symbol, merged by merge
rank; then <|startoftext|> ids <|endoftext|>, cut and padded to the model's text length.
"""
from __future__ import annotations

import collections
import functools
import json
import os
import unicodedata
from typing import Sequence

import numpy as np
import regex

PATTERN = regex.compile(r"<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|\p{L}+|\p{N}|[^\s\p{L}\p{N}]+")
WHITESPACE = regex.compile(r"\s+")
FILES = ("vocab.json", "merges.txt", "special_tokens.json")
DEFAULT_SPECIALS = {"bos": "<|startoftext|>", "eos": "<|endoftext|>", "pad": "<|endoftext|>"}


@functools.lru_cache(maxsize=1)
def byte_chars() -> dict[int, str]:
  """GPT-2's reversible byte -> printable unicode character table."""
  keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
  table, extra = {b: chr(b) for b in keep}, 0
  for b in range(256):
    if b not in table:
      table[b] = chr(256 + extra)
      extra += 1
  return table


def _special(value, path: str, key: str) -> str:
  """A special token as written in HF json files: a string or {'content': ...}."""
  if isinstance(value, dict):
    value = value.get("content")
  if not isinstance(value, str):
    raise ValueError(f"{path}: field {key!r} = {value!r}: expected a token string")
  return value


class Tokenizer:
  def __init__(self, vocab: dict[str, int], merges: list[tuple[str, str]], specials: dict[str, str],
               max_length: int, where: str = "tokenizer"):
    self.vocab, self.max_length, self.where = vocab, int(max_length), where
    self.ranks = {pair: i for i, pair in enumerate(merges)}
    self.specials = dict(specials)
    for role, token in self.specials.items():
      if token not in vocab:
        raise ValueError(f"{where}: the {role} token {token!r} is not in the vocabulary")
    self.bos, self.eos, self.pad = (vocab[self.specials[k]] for k in ("bos", "eos", "pad"))
    self.cache: dict[str, list[int]] = {}

  @property
  def vocab_size(self) -> int:
    return max(self.vocab.values()) + 1

  # -- reading ------------------------------------------------------------------------------
  @classmethod
  def from_hf_dir(cls, src: str, max_length: int) -> "Tokenizer":
    """vocab.json + merges.txt (or tokenizer.json) and the special tokens of an HF directory."""
    vocab_path, merges_path, tj_path = (os.path.join(src, n) for n in ("vocab.json", "merges.txt", "tokenizer.json"))
    if os.path.isfile(vocab_path) and os.path.isfile(merges_path):
      vocab, merges = _read_vocab(vocab_path), _read_merges(merges_path)
    elif os.path.isfile(tj_path):
      vocab, merges = _from_tokenizer_json(tj_path)
    else:
      raise FileNotFoundError(f"{src}: no vocab.json + merges.txt (or tokenizer.json): the CLIP tokenizer files "
                              "are needed (they come with every Hugging Face CLIP model)")
    specials = dict(DEFAULT_SPECIALS)
    for name in ("tokenizer_config.json", "special_tokens_map.json"):  # the map wins, as in HF
      path = os.path.join(src, name)
      if os.path.isfile(path):
        with open(path) as f:
          conf = json.load(f)
        specials.update({k: _special(conf[f"{k}_token"], path, f"{k}_token") for k in specials
                         if conf.get(f"{k}_token") is not None})
    return cls(vocab, merges, specials, max_length, where=src)

  @classmethod
  def from_dir(cls, path: str, max_length: int) -> "Tokenizer":
    """The files `save` wrote (a converted checkpoint)."""
    from etils import epath
    root = epath.Path(os.fspath(path))
    for name in FILES:
      if not (root / name).is_file():
        raise FileNotFoundError(f"{root / name}: not found; {path} is not a CLIP checkpoint written by "
                                "`imagen-video convert-clip`")
    vocab = json.loads((root / "vocab.json").read_text())
    merges = [tuple(line.split(" ")) for line in (root / "merges.txt").read_text().splitlines() if line]
    return cls(vocab, merges, json.loads((root / "special_tokens.json").read_text()), max_length, where=str(root))

  def save(self, out: str) -> None:
    with open(os.path.join(out, "vocab.json"), "w") as f:
      json.dump(self.vocab, f, ensure_ascii=False)
    merges = sorted(self.ranks, key=self.ranks.get)
    with open(os.path.join(out, "merges.txt"), "w") as f:
      f.writelines(f"{a} {b}\n" for a, b in merges)
    with open(os.path.join(out, "special_tokens.json"), "w") as f:
      json.dump(self.specials, f, ensure_ascii=False)

  # -- encoding -----------------------------------------------------------------------------
  def _bpe(self, piece: str) -> list[int]:
    if piece in self.cache:
      return self.cache[piece]
    chars = byte_chars()
    word = [chars[b] for b in piece.encode("utf-8")]
    word[-1] += "</w>"
    while len(word) > 1:
      pairs = {(a, b) for a, b in zip(word, word[1:])}
      best = min(pairs, key=lambda p: self.ranks.get(p, float("inf")))
      if best not in self.ranks:
        break
      merged, i = [], 0
      while i < len(word):
        if i + 1 < len(word) and (word[i], word[i + 1]) == best:
          merged.append(word[i] + word[i + 1])
          i += 2
        else:
          merged.append(word[i])
          i += 1
      word = merged
    unk = self.vocab[self.specials["eos"]]  # HF's CLIP unk token is <|endoftext|>
    ids = [self.vocab.get(w, unk) for w in word]
    self.cache[piece] = ids
    return ids

  def encode(self, text: str) -> list[int]:
    """Token ids of `text`, without bos/eos."""
    text = WHITESPACE.sub(" ", unicodedata.normalize("NFC", text)).lower()
    out = []
    for piece in PATTERN.findall(text):
      out += [self.vocab[piece]] if piece in self.vocab and piece.startswith("<|") else self._bpe(piece)
    return out

  def __call__(self, texts: str | Sequence[str]) -> np.ndarray:
    """-> ids int32 [B, max_length]: bos, the text (cut to fit), eos, padding."""
    texts = [texts] if isinstance(texts, str) else list(texts)
    ids = np.full((len(texts), self.max_length), self.pad, np.int32)
    for i, text in enumerate(texts):
      row = [self.bos, *self.encode(text)[: self.max_length - 2], self.eos]
      ids[i, : len(row)] = row
    return ids


def _read_vocab(path: str) -> dict[str, int]:
  try:
    with open(path, encoding="utf-8") as f:
      vocab = json.load(f)
  except ValueError as e:
    raise ValueError(f"{path}: not valid JSON ({e})") from None
  if not isinstance(vocab, dict) or not all(isinstance(v, int) for v in vocab.values()):
    raise ValueError(f"{path}: expected a mapping token -> id")
  return vocab


def _read_merges(path: str) -> list[tuple[str, str]]:
  merges = []
  with open(path, encoding="utf-8") as f:
    for n, line in enumerate(f, 1):
      line = line.rstrip("\n")
      if not line or (n == 1 and line.startswith("#version")):
        continue
      parts = line.split(" ")
      if len(parts) != 2:
        raise ValueError(f"{path}: line {n} {line[:40]!r}: expected two symbols separated by one space")
      merges.append((parts[0], parts[1]))
  return merges


def _from_tokenizer_json(path: str) -> tuple[dict[str, int], list[tuple[str, str]]]:
  with open(path, encoding="utf-8") as f:
    model = json.load(f).get("model") or {}
  if model.get("type") != "BPE" or not isinstance(model.get("vocab"), dict):
    raise ValueError(f"{path}: field 'model' is not a BPE model with a vocab")
  merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model.get("merges", [])]
  return model["vocab"], merges


def train_bpe(texts, merges: int) -> tuple[dict[str, int], list[tuple[str, str]]]:
  """A small CLIP-style vocabulary learnt from `texts` (tests, random-init plumbing checks):
  the 256 byte symbols, each also with '</w>', up to `merges` merges by pair frequency, then
  <|startoftext|> and <|endoftext|> (the largest id, as in OpenAI's vocabulary)."""
  chars = byte_chars()
  words = collections.Counter()
  for text in texts:
    for piece in PATTERN.findall(WHITESPACE.sub(" ", unicodedata.normalize("NFC", text)).lower()):
      symbols = [chars[b] for b in piece.encode("utf-8")]
      symbols[-1] += "</w>"
      words[tuple(symbols)] += 1
  vocab = list(chars.values()) + [c + "</w>" for c in chars.values()]
  learnt = []
  for _ in range(merges):
    pairs = collections.Counter()
    for word, n in words.items():
      for pair in zip(word, word[1:]):
        pairs[pair] += n
    if not pairs:
      break
    best = max(sorted(pairs), key=pairs.get)
    learnt.append(best)
    vocab.append(best[0] + best[1])
    merged = collections.Counter()
    for word, n in words.items():
      out, i = [], 0
      while i < len(word):
        if i + 1 < len(word) and (word[i], word[i + 1]) == best:
          out.append(word[i] + word[i + 1])
          i += 2
        else:
          out.append(word[i])
          i += 1
      merged[tuple(out)] += n
    words = merged
  vocab += ["<|startoftext|>", "<|endoftext|>"]
  return {t: i for i, t in enumerate(vocab)}, learnt
