"""Sinusoidal embeddings used by the VGGT heads (spec sections 5.4 and 6.2).

Three flavours share one idea (sin/cos of coordinates times a frequency ladder) but differ in
coordinates, frequency base, channel order and precision; each must match the checkpoint's training
code bit-for-bit in spirit, so they are spelled out separately here.
"""

from __future__ import annotations

from functools import lru_cache

import torch


def _sincos_float64(pos: torch.Tensor, dim: int, base: float) -> torch.Tensor:
    """``[sin(pos ω), cos(pos ω)]`` with ``dim // 2`` frequencies ω_m = base^(-m/(dim/2)), in float64."""
    omega = torch.arange(dim // 2, dtype=torch.float64, device=pos.device) / (dim / 2.0)
    omega = 1.0 / base**omega
    out = pos.to(torch.float64).reshape(-1, 1) * omega.reshape(1, -1)
    return torch.cat([torch.sin(out), torch.cos(out)], dim=1)


def dpt_position_embedding(
    channels: int, height: int, width: int, aspect_ratio: float, dtype: torch.dtype, device: torch.device
) -> torch.Tensor:
    """DPT map embedding ``[channels, height, width]`` (spec 5.4, before the 0.1 factor).

    Coordinates are cell centres of a grid spanning the unit diagonal with the *image* aspect ratio,
    built in the map's dtype (as the reference does), then embedded in float64 with base 100.
    """
    diag = (aspect_ratio**2 + 1.0) ** 0.5
    span_x, span_y = aspect_ratio / diag, 1.0 / diag
    half_x = span_x * (width - 1) / width
    half_y = span_y * (height - 1) / height
    xs = torch.linspace(-half_x, half_x, steps=width, dtype=dtype, device=device)
    ys = torch.linspace(-half_y, half_y, steps=height, dtype=dtype, device=device)
    uu = xs.reshape(1, width).expand(height, width)
    vv = ys.reshape(height, 1).expand(height, width)
    emb_x = _sincos_float64(uu.reshape(-1), channels // 2, 100.0)
    emb_y = _sincos_float64(vv.reshape(-1), channels // 2, 100.0)
    emb = torch.cat([emb_x, emb_y], dim=1).to(torch.float32)  # [h*w, C]
    return emb.reshape(height, width, channels).permute(2, 0, 1)


@lru_cache(maxsize=64)
def scaled_dpt_position_embedding(
    channels: int, height: int, width: int, aspect_ratio: float, dtype: torch.dtype, device: torch.device
) -> torch.Tensor:
    """``(0.1 · pe).to(dtype)`` ``[1, C, h, w]``, memoised per (shape, ratio, dtype, device).

    Each DPT head adds this at 5 map sizes per frame chunk; building it (float64 sin/cos of every
    cell) costs more than the addition itself, and it only depends on the arguments. Built outside
    inference mode and without autograd so the cached tensor can be reused in any mode; callers must
    not modify it in place.
    """
    with torch.inference_mode(False), torch.no_grad():
        pe = dpt_position_embedding(channels, height, width, aspect_ratio, dtype, device)
        return (pe * 0.1).to(dtype).unsqueeze(0)


def add_dpt_position_embedding(x: torch.Tensor, image_width: int, image_height: int) -> torch.Tensor:
    """``x + 0.1 · pe`` for a map batch ``[N, C, h, w]`` inside an ``image_height × image_width`` image."""
    _, channels, height, width = x.shape
    ratio = image_width / image_height
    if torch.compiler.is_compiling():  # traced once into the graph: no need for (and no tracing of) the memo
        pe = (dpt_position_embedding(channels, height, width, ratio, x.dtype, x.device) * 0.1).to(x.dtype)
        return x + pe.unsqueeze(0)
    return x + scaled_dpt_position_embedding(channels, height, width, ratio, x.dtype, x.device)


def grid_position_embedding(
    dim: int, height: int, width: int, device: torch.device | None = None
) -> torch.Tensor:
    """Tracker feature-grid embedding ``[1, dim, height, width]`` (spec 6.2).

    Integer cell indices, base 10000, channel blocks ``[sin x, cos x, sin y, cos y]`` (column first),
    float64 math cast to float32.
    """
    ys, xs = torch.meshgrid(
        torch.arange(height, dtype=torch.float64), torch.arange(width, dtype=torch.float64), indexing="ij"
    )
    emb_x = _sincos_float64(xs.reshape(-1), dim // 2, 10000.0)
    emb_y = _sincos_float64(ys.reshape(-1), dim // 2, 10000.0)
    emb = torch.cat([emb_x, emb_y], dim=1).to(torch.float32)
    return emb.reshape(height, width, dim).permute(2, 0, 1).unsqueeze(0).to(device)


def flow_embedding(flows: torch.Tensor, channels: int) -> torch.Tensor:
    """Embed 2-D flows ``[..., 2]`` into ``[..., 2·channels]`` float32 values (spec 6.2).

    Per component, ``channels`` interleaved ``sin(d·k_m), cos(d·k_m)`` with k_m = 2m·1000/channels.
    The products are float32, in this order, because the high frequencies amplify any rounding
    difference in the coordinates (checklist 9.15).
    """
    freqs = torch.arange(0, channels, 2, dtype=torch.float32, device=flows.device) * (1000.0 / channels)
    parts = []
    for comp in range(2):
        arg = flows[..., comp : comp + 1].to(torch.float32) * freqs
        parts.append(torch.stack([torch.sin(arg), torch.cos(arg)], dim=-1).flatten(-2))
    return torch.cat(parts, dim=-1)
