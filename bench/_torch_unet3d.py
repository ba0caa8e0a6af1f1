"""The imagen-pytorch side of the comparison: `Unet3D` with imagen-pytorch's own
training and sampling arithmetic, in eager PyTorch, fp32.

Train step (what `ImagenTrainer` does per batch with the continuous-time
cosine schedule and the v objective): random t, noise, forward with
`cond_drop_prob`, MSE on v, backward, grad clipping, AdamW, EMA update.
Sampling (what `Imagen.p_sample_loop` does): a Python loop over the time grid;
each step `unet.forward_with_cond_scale` (two forwards of batch B: with text
and with `cond_drop_prob=1`), x0 from v, dynamic thresholding with
`torch.quantile`, the posterior mean/variance step (`q_posterior`) plus noise.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def cosine_log_snr(t, s: float = 0.008):
  """imagen-pytorch's `alpha_cosine_log_snr`."""
  return -torch.log(((torch.cos((t + s) / (1 + s) * math.pi * 0.5) ** -2) - 1).clamp(min=1e-5))


def alpha_sigma(log_snr, ndim: int):
  shape = log_snr.shape + (1,) * (ndim - 1)
  return torch.sigmoid(log_snr).sqrt().view(shape), torch.sigmoid(-log_snr).sqrt().view(shape)


def param_count(module) -> int:
  return sum(p.numel() for p in module.parameters())


class TorchTrain:
  def __init__(self, unet, video, text, mask, *, lr=1e-4, ema=0.9999, cond_drop_prob=0.1):
    self.unet, self.video, self.text, self.mask = unet.train(), video, text, mask
    self.params = [p for p in unet.parameters() if p.requires_grad]
    # Same hyper-parameters as the JAX side's optax chain (clip 1.0, AdamW b2 0.99, no decay).
    self.opt = torch.optim.AdamW(self.params, lr=lr, betas=(0.9, 0.99), eps=1e-8, weight_decay=0.0)
    self.ema = [p.detach().clone() for p in self.params]
    self.ema_decay, self.cond_drop_prob = ema, cond_drop_prob

  def step(self) -> float:
    x0 = self.video
    t = torch.rand(x0.shape[0])
    log_snr = cosine_log_snr(t)
    alpha, sigma = alpha_sigma(log_snr, x0.ndim)
    noise = torch.randn_like(x0)
    pred = self.unet(alpha * x0 + sigma * noise, log_snr, text_embeds=self.text, text_mask=self.mask,
                     cond_drop_prob=self.cond_drop_prob)
    loss = F.mse_loss(pred, alpha * noise - sigma * x0)
    self.opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(self.params, 1.0)
    self.opt.step()
    with torch.no_grad():
      torch._foreach_lerp_(self.ema, self.params, 1.0 - self.ema_decay)
    return loss.item()


class TorchSample:
  def __init__(self, unet, shape, text, mask, *, guidance=3.0, percentile=0.995):
    self.unet, self.shape, self.text, self.mask = unet, shape, text, mask
    self.guidance, self.percentile = guidance, percentile

  @torch.inference_mode()
  def run(self, steps: int):
    self.unet.eval()
    x = torch.randn(self.shape)
    b = self.shape[0]
    times = torch.linspace(1.0, 0.0, steps + 1)
    for i in range(steps):
      t, t_next = times[i].expand(b), times[i + 1].expand(b)
      log_snr, log_snr_next = cosine_log_snr(t), cosine_log_snr(t_next)
      v = self.unet.forward_with_cond_scale(x, log_snr, text_embeds=self.text, text_mask=self.mask,
                                            cond_scale=self.guidance)
      alpha, sigma = alpha_sigma(log_snr, x.ndim)
      x0 = alpha * x - sigma * v
      s = torch.quantile(x0.reshape(b, -1).abs(), self.percentile, dim=-1).clamp(min=1.0)
      s = s.view(b, *(1,) * (x.ndim - 1))
      x0 = x0.clamp(-s, s) / s
      alpha_n, sigma_n = alpha_sigma(log_snr_next, x.ndim)
      c = -torch.expm1(log_snr - log_snr_next).view_as(alpha)
      mean = alpha_n * (x * (1 - c) / alpha + c * x0)
      x = mean if i == steps - 1 else mean + (sigma_n ** 2 * c).sqrt() * torch.randn_like(x)
    return x.clamp(-1.0, 1.0)
