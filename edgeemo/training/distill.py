"""Distillation targets: a fixed bank of augmented views, each labelled by a teacher.

The student learns the teacher's probabilities on the very view it sees ("consistent
teaching"): labelling only the clean image would tell it the teacher's answer for a face that
the augmentation has since tilted, darkened or half-covered. Running the teacher on every
training step would cost more than the student's own step on this CPU, so the views are drawn
once, up front, and the student samples among them. On a GPU the same holds for a VGG-class
teacher (its forward pass is ten times the student's step), and the bank sits in device memory.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from edgeemo.training.augment import augment
from edgeemo.training.net import Ensemble


@dataclass
class ViewBank:
    views: torch.Tensor  # uint8 (V, N, 1, 48, 48)
    probs: torch.Tensor  # float32 (V, N, 7): the teacher's softmax on each view

    def batch(self, idx: torch.Tensor, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """One random view per image: float images in [0, 1] and the teacher's probabilities."""
        v = torch.randint(0, self.views.shape[0], (len(idx),), generator=g, device=idx.device)
        return self.views[v, idx].float().div_(255), self.probs[v, idx]


@torch.no_grad()
def build_view_bank(
    teacher: torch.nn.Module, images: torch.Tensor, n_views: int, g: torch.Generator, batch: int = 512
) -> ViewBank:
    """images: float (N, 1, 48, 48) in [0, 1]. View 0 is the clean image; the rest augmented."""
    teacher.eval()
    n = len(images)
    views = torch.empty((n_views, *images.shape), dtype=torch.uint8, device=images.device)
    probs = torch.empty((n_views, n, 7), dtype=torch.float32, device=images.device)
    for v in range(n_views):
        for i in range(0, n, batch):
            x = images[i : i + batch].clone()
            if v:
                x = augment(x, g)
            # The student sees the uint8 view, so the teacher labels exactly that.
            q = x.mul(255).round_().to(torch.uint8)
            views[v, i : i + batch] = q
            probs[v, i : i + batch] = teacher_probs(teacher, q.float().div_(255))
    return ViewBank(views, probs)


@torch.no_grad()
def teacher_probs(teacher: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Mean softmax of the teacher's nets: bf16 convolutions, softmax in fp32 so rows sum to 1."""
    nets = list(teacher.nets) if isinstance(teacher, Ensemble) else [teacher]
    x = x.contiguous(memory_format=torch.channels_last)
    out = []
    for net in nets:
        with torch.autocast(x.device.type, dtype=torch.bfloat16):
            logits = net(x)
        out.append(F.softmax(logits.float(), dim=1))
    return torch.stack(out).mean(dim=0)
