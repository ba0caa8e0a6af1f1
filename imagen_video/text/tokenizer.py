"""Sentencepiece tokenisation with T5's conventions (pad=0, eos=1 appended, unk=2).

`Tokenizer(path, max_length)` pads/truncates to a fixed length and returns a mask, as HF's
`T5Tokenizer(..., padding="max_length", truncation=True)` does (eos kept on truncation).
`train_sentencepiece` builds the tiny configs' vocabulary from the synthetic captions.
"""
from __future__ import annotations

import io
import os
from typing import Iterable, Sequence

import numpy as np
import sentencepiece as spm

PAD_ID, EOS_ID, UNK_ID = 0, 1, 2


class Tokenizer:
  def __init__(self, model_path: str, max_length: int):
    from etils import epath
    path = epath.Path(os.fspath(model_path))
    if not path.is_file():
      raise FileNotFoundError(f"sentencepiece model {model_path!r} not found (expected the checkpoint's "
                              "spiece.model, or one from train_sentencepiece)")
    self.path = os.fspath(model_path)
    # read through epath: a local file or one in a gs:// workdir or checkpoint
    self.sp = spm.SentencePieceProcessor(model_proto=path.read_bytes())
    if self.sp.pad_id() != PAD_ID or self.sp.eos_id() != EOS_ID:
      raise ValueError(f"{model_path}: pad/eos ids are {self.sp.pad_id()}/{self.sp.eos_id()}, "
                       f"T5 expects pad={PAD_ID}, eos={EOS_ID}")
    self.max_length = int(max_length)

  @property
  def vocab_size(self) -> int:
    return self.sp.get_piece_size()

  def check_fits(self, embedding_rows: int, where: str = "checkpoint") -> None:
    """Every id must index the embedding table (32128 rows for 32100 pieces is fine)."""
    if self.vocab_size > embedding_rows:
      raise ValueError(f"tokenizer {self.path} has {self.vocab_size} pieces (ids up to {self.vocab_size - 1}) "
                       f"but the {where} embedding table has only {embedding_rows} rows: "
                       "the tokenizer does not belong to this checkpoint")

  def length(self, text: str) -> int:
    """Tokens `text` needs, eos included (more than max_length: the rest is cut)."""
    return len(self.sp.encode(text)) + 1

  def __call__(self, texts: str | Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """-> (ids int32 [B, max_length], mask bool [B, max_length])."""
    texts = [texts] if isinstance(texts, str) else list(texts)
    ids = np.full((len(texts), self.max_length), PAD_ID, np.int32)
    mask = np.zeros_like(ids, bool)
    for i, pieces in enumerate(self.sp.encode(texts)):
      row = pieces[: self.max_length - 1] + [EOS_ID]
      ids[i, : len(row)] = row
      mask[i, : len(row)] = True
    return ids, mask


def train_sentencepiece(texts: Iterable[str], out_path: str, vocab_size: int) -> str:
  """Trains a T5-id-compatible model in memory (deterministic) and writes `out_path`.

  BPE rather than T5's unigram: on a few dozen distinct captions unigram training collapses
  to single characters, while BPE learns whole words and still spells unseen words.
  """
  writer = io.BytesIO()
  spm.SentencePieceTrainer.train(
      sentence_iterator=iter(list(texts)), model_writer=writer, vocab_size=vocab_size,
      model_type="bpe", character_coverage=1.0, pad_id=PAD_ID, eos_id=EOS_ID, unk_id=UNK_ID, bos_id=-1,
      pad_piece="<pad>", eos_piece="</s>", unk_piece="<unk>",
      hard_vocab_limit=False,  # tiny caption corpora cannot always fill vocab_size
      shuffle_input_sentence=False, num_threads=1, minloglevel=2)
  os.makedirs(os.path.dirname(os.path.abspath(out_path)), exist_ok=True)
  with open(out_path, "wb") as f:
    f.write(writer.getvalue())
  return out_path
