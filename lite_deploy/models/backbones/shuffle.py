"""Channel shuffle as a static 4-D channel permutation.

The textbook channel shuffle (ShuffleNet, ShuffleNetV2) reshapes ``(B, C, H, W)`` to ``(B, g, C/g, H, W)``,
swaps the two channel axes and flattens them again. That exports as a 5-D Reshape/Transpose pair, which many
edge compilers (TFLite micro delegates, NPU toolchains limited to 4-D) reject or run slowly, and whose Reshape
targets bake the traced batch size in when the shapes are read as Python ints. The permutation itself is fixed
by ``C`` and ``g``, so here it is a constant index and one ``index_select`` along the channel axis: ONNX
``Gather(axis=1)`` on a rank-4 tensor, exact in every precision.

For converters that keep tensors channels-last (litert-torch for TFLite) the same permutation is better written
on the channels-last view (:func:`channel_shuffle_channels_last`): a channel gather becomes TRANSPOSE, GATHER_ND,
TRANSPOSE there, and GATHER_ND is not one of XNNPACK's operators, so every shuffle splits the delegated graph.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def channel_shuffle_index(channels: int, groups: int) -> Tensor:
    """Source channel of every output channel of the textbook shuffle.

    Output channel ``i * groups + j`` takes input channel ``j * (channels // groups) + i``: reshaping the
    channels to ``(groups, channels // groups)``, transposing and flattening, as in the ShuffleNet papers and
    torchvision's ``channel_shuffle``.

    Args:
        channels: number of channels ``C``.
        groups: number of groups ``g``; must divide ``C``.

    Returns:
        (C,) int64 tensor ``perm`` with ``out[:, k] = x[:, perm[k]]``.

    Raises:
        ValueError: ``groups`` does not divide ``channels``.
    """
    if groups < 1 or channels % groups:
        raise ValueError(f"channel shuffle needs groups ({groups}) to divide channels ({channels})")
    return torch.arange(channels).view(groups, channels // groups).t().reshape(-1)


def channel_shuffle_channels_last(x: Tensor, groups: int) -> Tensor:
    """The textbook shuffle of ``x`` computed on its channels-last view; the values of
    ``x.index_select(1, channel_shuffle_index(C, groups))``.

    ``(B, C, H, W)`` is permuted to ``(B, H, W, C)``, its channels split into ``(groups, C / groups)``, those two
    axes swapped and the result permuted back. A channels-last converter cancels the two outer permutes against its
    own layout transposes, leaving one RESHAPE, TRANSPOSE, RESHAPE that XNNPACK runs (float and int8). The shapes
    are read as Python ints: the batch size is fixed in the traced graph (TFLite's is anyway).

    Args:
        x: (B, C, H, W) tensor, ``groups`` dividing ``C``.
        groups: number of groups to interleave.

    Returns:
        (B, C, H, W) tensor, channels permuted.
    """
    b, c, h, w = x.shape
    y = x.permute(0, 2, 3, 1).reshape(b, h * w, groups, c // groups).transpose(2, 3).reshape(b, h, w, c)
    return y.permute(0, 3, 1, 2)


class ChannelShuffle(nn.Module):
    """Textbook channel shuffle over a fixed channel count, written as one rank-4 gather.

    The index is a non-persistent buffer: it moves with ``.to(device)`` but is not part of the state_dict,
    so models keep the state_dict keys of their reference implementations.

    Args:
        channels: number of input (and output) channels.
        groups: number of groups to interleave.

    Attributes:
        channels_last: compute it with :func:`channel_shuffle_channels_last` instead (set for TFLite export).
    """

    index: Tensor

    def __init__(self, channels: int, groups: int) -> None:
        super().__init__()
        self.channels = channels
        self.groups = groups
        self.register_buffer("index", channel_shuffle_index(channels, groups), persistent=False)
        self.channels_last = False

    def forward(self, x: Tensor) -> Tensor:
        """Shuffle channels.

        Args:
            x: (B, C, H, W) tensor with ``C == channels``.

        Returns:
            (B, C, H, W) tensor, channels permuted.
        """
        if self.channels_last:
            return channel_shuffle_channels_last(x, self.groups)
        return x.index_select(1, self.index)

    def extra_repr(self) -> str:
        return f"channels={self.channels}, groups={self.groups}"
