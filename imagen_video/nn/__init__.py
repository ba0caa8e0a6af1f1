"""The Video U-Net and its layers (Flax NNX, logical axis names on every parameter)."""
from imagen_video.nn.unet import VideoUNet, abstract_unet, default_config, init_unet

__all__ = ["VideoUNet", "abstract_unet", "default_config", "init_unet"]
