"""Batched augmentation on tensors, shaped like the daemon's face crops.

The daemon crops the detector's box plus a margin, so at inference the face is shifted and
scaled a little, tilted, lit differently, blurred by motion or focus and sometimes partly
hidden (hands, glasses). Doing this per batch with tensor ops keeps the CPU cores on the
network rather than on per-image Python, and runs on the GPU unchanged: every random draw is
made on the batch's own device, from a generator on that device.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def _gaussian_kernels(sigmas: torch.Tensor, size: int = 5) -> torch.Tensor:
    r = torch.arange(size, dtype=torch.float32, device=sigmas.device) - size // 2
    k = torch.exp(-(r[None, :] ** 2) / (2 * sigmas[:, None] ** 2))
    k = k / k.sum(dim=1, keepdim=True)
    return k[:, :, None] * k[:, None, :]  # (N, size, size)


def augment(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """x: float (N, 1, H, W) in [0, 1] → augmented batch, same shape and range.

    ``g`` must live on ``x.device`` (``torch.Generator(device=x.device)``).
    """
    n, _, h, w = x.shape
    dev = x.device

    def rand(*shape: int) -> torch.Tensor:
        return torch.rand(shape, generator=g, device=dev)

    def u(lo: float, hi: float) -> torch.Tensor:
        return rand(n) * (hi - lo) + lo

    # Geometry: the crop the detector gives (scale, shift), head tilt, mirror.
    angle = u(-15, 15) * math.pi / 180
    scale = u(0.85, 1.15)
    tx, ty = u(-0.1, 0.1), u(-0.1, 0.1)
    flip = torch.where(rand(n) < 0.5, -1.0, 1.0)
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos * flip, -sin, tx], 1), torch.stack([sin * flip, cos, ty], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)

    # Light: contrast around the mean, brightness, gamma.
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = (x - mean) * u(0.6, 1.4).view(n, 1, 1, 1) + mean + u(-0.2, 0.2).view(n, 1, 1, 1)
    x = x.clamp(0, 1) ** torch.exp(u(-0.4, 0.4)).view(n, 1, 1, 1)

    # Focus / motion blur on a quarter of the batch.
    blur = rand(n) < 0.25
    sigmas = u(0.3, 1.5)
    if blur.any():
        k = _gaussian_kernels(sigmas[blur]).unsqueeze(1)  # (B, 1, 5, 5)
        xb = x[blur].transpose(0, 1)  # (1, B, H, W): one group per image
        x[blur] = F.conv2d(F.pad(xb, (2, 2, 2, 2), mode="replicate"), k, groups=k.shape[0]).transpose(0, 1)

    # Sensor noise.
    noisy = (rand(n) < 0.2).view(n, 1, 1, 1)
    x = x + noisy * torch.randn(x.shape, generator=g, device=dev) * u(0.0, 0.05).view(n, 1, 1, 1)

    # Partial occlusion: a grey or dark rectangle over up to a quarter of the face. One mask
    # for the whole batch (no per-image loop: that is a kernel launch per face on a GPU).
    occ = rand(n) < 0.4
    oh = (u(0.15, 0.5) * h).long()
    ow = (u(0.15, 0.5) * w).long()
    oy = (rand(n) * (h - oh)).long()
    ox = (rand(n) * (w - ow)).long()
    fill = u(0.0, 0.6)
    ys = torch.arange(h, device=dev).view(1, h, 1)
    xs = torch.arange(w, device=dev).view(1, 1, w)
    inside = (
        (ys >= oy.view(n, 1, 1))
        & (ys < (oy + oh).view(n, 1, 1))
        & (xs >= ox.view(n, 1, 1))
        & (xs < (ox + ow).view(n, 1, 1))
        & occ.view(n, 1, 1)
    )
    x = torch.where(inside.unsqueeze(1), fill.view(n, 1, 1, 1), x)
    return x.clamp(0, 1)
