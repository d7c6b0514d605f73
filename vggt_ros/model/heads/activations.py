"""Output activations of the dense heads (spec 5.5 step 7, checklist 9.10)."""

from __future__ import annotations

import torch

VALUE_ACTIVATIONS = ("exp", "inv_log", "linear")
CONF_ACTIVATIONS = ("expp1", "sigmoid", "linear")


def activate_values(v: torch.Tensor, activation: str) -> torch.Tensor:
    """Map value logits to predictions: ``exp`` (depth), ``inv_log`` (points), ``linear``."""
    if activation == "exp":
        return torch.exp(v)
    if activation == "inv_log":
        return torch.sign(v) * torch.expm1(torch.abs(v))
    if activation == "linear":
        return v
    raise ValueError(f"unknown value activation {activation!r}; expected one of {VALUE_ACTIVATIONS}")


def activate_confidence(c: torch.Tensor, activation: str) -> torch.Tensor:
    """Map confidence logits: ``expp1`` = 1 + exp(c) (unbounded, ≥ 1), ``sigmoid``, ``linear``."""
    if activation == "expp1":
        return 1 + torch.exp(c)
    if activation == "sigmoid":
        return torch.sigmoid(c)
    if activation == "linear":
        return c
    raise ValueError(f"unknown confidence activation {activation!r}; expected one of {CONF_ACTIVATIONS}")
