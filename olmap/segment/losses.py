"""Pixel-wise losses that skip ignored pixels (label ``IGNORE_INDEX``)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from olmap.segment.data import IGNORE_INDEX


def segmentation_loss(
    logits: torch.Tensor, target: torch.Tensor, *, dice_weight: float = 0.0
) -> torch.Tensor:
    """Cross-entropy (+ ``dice_weight`` x soft Dice loss) over labelled pixels.

    Parameters
    ----------
    logits : tensor (B, K, H, W)
        Model outputs; ``K == 1`` means binary (the logit of class 1): binary cross-entropy
        as in seed 002 sect. 3.6.2, else softmax cross-entropy.
    target : tensor (B, H, W) of int64
        Class indices; ``IGNORE_INDEX`` pixels count for nothing.
    dice_weight : float
        Weight of ``1 - Dice`` (binary: of class 1; multi-class: mean over classes present).

    Returns
    -------
    tensor
        Scalar loss; 0 (with a gradient) when no pixel is labelled.
    """
    valid = target != IGNORE_INDEX
    if not bool(valid.any()):
        return logits.sum() * 0.0
    logits = logits.float()
    if logits.shape[1] == 1:
        x, t = logits[:, 0][valid], target[valid].float()
        loss = F.binary_cross_entropy_with_logits(x, t)
        if dice_weight > 0:
            p = torch.sigmoid(x)
            dice = (2 * (p * t).sum() + 1.0) / (p.sum() + t.sum() + 1.0)
            loss = loss + dice_weight * (1 - dice)
        return loss
    loss = F.cross_entropy(logits, target, ignore_index=IGNORE_INDEX)
    if dice_weight > 0:
        prob = torch.softmax(logits, 1).permute(0, 2, 3, 1)[valid]  # (N, K)
        onehot = F.one_hot(target[valid], logits.shape[1]).float()
        inter, total = (prob * onehot).sum(0), prob.sum(0) + onehot.sum(0)
        present = onehot.sum(0) > 0
        dice = (2 * inter + 1.0) / (total + 1.0)
        loss = loss + dice_weight * (1 - dice[present]).mean()
    return loss
