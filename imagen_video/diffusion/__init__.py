"""Diffusion maths: log-SNR schedules, objectives and losses, guidance, samplers."""
