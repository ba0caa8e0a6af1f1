"""What a training run leaves in its workdir (local or any `etils.epath` URI, e.g. gs://):
Orbax checkpoints, the resolved config and the tokenizer it was trained with."""
