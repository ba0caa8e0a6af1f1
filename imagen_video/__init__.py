"""Imagen Video cascade in JAX/Flax NNX."""

__version__ = "0.1.0"
