"""Text conditioning: T5 encoder (Flax NNX), sentencepiece tokenizer, HF checkpoint import."""
