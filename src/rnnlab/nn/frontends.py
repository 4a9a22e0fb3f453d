"""Front-ends before the recurrence: learned convolutions that read, and shorten, long series.

A recurrent layer walks its input one step at a time, so its cost and the distance a gradient
must travel grow with the series' length. :class:`Downsample` reads ``stride`` steps into one with
a 1-D convolution (each output step sees the ``2 * stride`` readings around it), so the recurrence
reads a series of 720 readings as 90 learned summaries at stride 8: the cell's memory spans the
whole series, and each step costs what one step costs. With more ``layers``, convolutions of
width 7, 5, 3... come first, at full length: local shapes (an edge, a peak) found before the
recurrence orders them.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

KERNELS = (7, 5, 3)  # the widths of the full-length convolutions, first to last


class Downsample(nn.Module):
    """(B, T, features) -> (B, ceil(T / stride), channels): ``layers`` 1-D convolutions, each
    batch-normalised and rectified, the last one strided (``learned``); or the mean
    of every ``stride`` readings, the features as they are (``learned=False``: what a fixed stride
    gives, for comparison)."""

    def __init__(
        self, features: int, channels: int, stride: int, learned: bool = True, layers: int = 1
    ) -> None:
        super().__init__()
        if stride < 1 or channels < 1 or layers < 1 or (stride == 1 and not learned):
            raise ValueError(
                f"stride, channels and layers must be >= 1 (a mean needs a stride >= 2), got "
                f"{stride}, {channels}, {layers}"
            )
        self.stride = stride
        self.channels = channels if learned else features
        self.convs = nn.ModuleList()
        self.norms = nn.ModuleList()
        if learned:
            for k in range(layers):
                last = k == layers - 1
                width = max(2 * stride, 3) if last else KERNELS[min(k, len(KERNELS) - 1)]
                self.convs.append(
                    nn.Conv1d(
                        features if k == 0 else channels,
                        channels,
                        kernel_size=width,
                        stride=stride if last else 1,
                        padding=width // 2 if not last or stride == 1 else stride // 2,
                    )
                )
                self.norms.append(nn.BatchNorm1d(channels))

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        """x (B, T, F) -> (B, T', C) and the new lengths (each at least 1)."""
        if x.shape[1] < 2 * self.stride:  # shorter than one window: pad it to one
            x = nn.functional.pad(x, (0, 0, 0, 2 * self.stride - x.shape[1]))
        if self.convs:
            out = x.transpose(1, 2)  # (B, F, T): channels first, as convolutions read them
            for conv, norm in zip(self.convs, self.norms, strict=True):
                out = torch.relu(norm(conv(out)))  # (B, C, T')
            out = out.transpose(1, 2)  # (B, T', C)
        else:
            out = nn.functional.avg_pool1d(
                x.transpose(1, 2), self.stride, self.stride, ceil_mode=True
            ).transpose(1, 2)  # (B, T', F)
        if lengths is not None:
            steps = torch.div(lengths, self.stride, rounding_mode="floor")
            lengths = torch.clamp(steps, 1, out.shape[1])
        return out, lengths
