"""2D rotary position embedding of the VGGT aggregator (spec vggt-model.md section 3.3).

Each head vector of dim D is split in two halves: the first half is rotated by the token's row
position, the second by its column position. Within a half, "rotate-half" pairing is used (dim i
pairs with dim i + D/4) with frequencies ``base ** (-j / (D/4))``. Special tokens sit at (0, 0),
patch (r, c) at (r + 1, c + 1).

The angle table is built once per forward pass (it only depends on the patch grid) and shared by all
blocks; cos/sin are evaluated lazily per dtype, after casting the float32 angles to the q/k dtype as
the reference does (relevant under autocast only).
"""

from __future__ import annotations

import torch


def grid_positions(h: int, w: int, num_special: int,
                   device: torch.device | str | None = None) -> torch.Tensor:
    """Integer (row, col) positions ``[num_special + h*w, 2]``: specials (0, 0), patches row-major + 1."""
    rows = torch.arange(1, h + 1, device=device).repeat_interleave(w)
    cols = torch.arange(1, w + 1, device=device).repeat(h)
    patch = torch.stack([rows, cols], dim=-1)
    special = torch.zeros(num_special, 2, dtype=patch.dtype, device=device)
    return torch.cat([special, patch], dim=0)


def rope_frequencies(head_dim: int, base: float, device: torch.device | str | None = None) -> torch.Tensor:
    """The ``head_dim/4`` float32 frequencies of one axis: ``1 / base**(arange(0, D/2, 2) / (D/2))``."""
    if head_dim % 4:
        raise ValueError(f"2D RoPE needs a head dim divisible by 4, got {head_dim}")
    axis_dim = head_dim // 2
    exponents = torch.arange(0, axis_dim, 2, device=device).float() / axis_dim
    return 1.0 / (base ** exponents)


class RopeTable:
    """Rotation angles for one token layout, ``[N, head_dim]`` float32 (row half, then column half).

    ``apply`` rotates q or k ``[..., N, head_dim]``; ``repeat(n)`` tiles the layout for global
    attention over ``n`` concatenated frames (every frame repeats the same positions).
    """

    def __init__(self, angles: torch.Tensor) -> None:
        self.angles = angles
        self._cos_sin: dict[torch.dtype, tuple[torch.Tensor, torch.Tensor]] = {}

    @classmethod
    def for_grid(cls, h: int, w: int, num_special: int, head_dim: int, base: float,
                 device: torch.device | str | None = None) -> RopeTable:
        """Angles for ``num_special`` unrotated tokens followed by an h x w patch grid."""
        freqs = rope_frequencies(head_dim, base, device)
        pos = grid_positions(h, w, num_special, device).float()
        row = pos[:, :1] * freqs  # [N, D/4], one fp32 product each, as the reference table
        col = pos[:, 1:] * freqs
        return cls(torch.cat([row, row, col, col], dim=-1))

    def repeat(self, n: int) -> RopeTable:
        """The same table tiled ``n`` times along the token axis (frame-major concatenation)."""
        table = RopeTable(self.angles.repeat(n, 1))
        for dtype, (cos, sin) in self._cos_sin.items():
            table._cos_sin[dtype] = (cos.repeat(n, 1), sin.repeat(n, 1))
        return table

    def cos_sin(self, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """cos/sin of the angles cast to ``dtype`` first (reference numerics under autocast)."""
        if dtype not in self._cos_sin:
            a = self.angles.to(dtype)
            self._cos_sin[dtype] = (a.cos(), a.sin())
        return self._cos_sin[dtype]

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        """Rotate ``x`` ``[..., N, D]``: ``x * cos + rotate_half_per_axis(x) * sin``."""
        cos, sin = self.cos_sin(x.dtype)
        d = x.shape[-1]
        # [..., axis(2), pair half(2), D/4]: rotate-half independently inside each axis half.
        parts = x.unflatten(-1, (2, 2, d // 4))
        rotated = torch.stack([-parts[..., 1, :], parts[..., 0, :]], dim=-2).flatten(-3)
        return x * cos + rotated * sin
