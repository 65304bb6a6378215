"""The glue every adapter of tests/forks needs and that is the same for every library: the tutorial's
network layout around a library's own modules, its ``mbconv1``/``mbconv6``, and its ``create_stage``.

* ``TutorialLayout``: a network whose children are the tutorial's ``stem``, ``stages``, ``pre``,
  ``pool_flatten`` and ``head``, taken as they are from a model the library built (nothing is rebuilt
  or re-initialised).  An adapter's ``EfficientNet`` subclasses it with the tutorial's constructor;
  its named variants wrap the library's own models with ``wrapping``.
* ``expansion_blocks(MBConv)``: the tutorial's ``mbconv1`` and ``mbconv6`` over the adapter's ``MBConv``.
* ``stage_builder(mbconv6)``: the tutorial's ``create_stage``.  No library builds a stage alone (each
  builds its stages inside its model), so this is the adapters' own: ``num_layers`` blocks, the first
  changing the width and carrying the stride, as every library's model builds a stage.

The adapters are loaded by path (``--impl tests/forks/<adapter>.py``) from the repository root, where
``tests`` is importable (pyproject.toml's pytest ``pythonpath``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Self

from torch import Tensor, nn

Block = Callable[..., nn.Module]


class TutorialLayout(nn.Module):
    """stem, stages (a Sequential of the 7 stages), pre, pool_flatten, head: the tutorial's children."""

    def __init__(self, parts: Sequence[nn.Module]) -> None:
        super().__init__()
        stem, *stages, pre, pool_flatten, head = parts
        self.stem = stem
        self.stages = nn.Sequential(*stages)
        self.pre = pre
        self.pool_flatten = pool_flatten
        self.head = head

    @classmethod
    def wrapping(cls, parts: Sequence[nn.Module]) -> Self:
        """An instance of ``cls`` (an adapter's EfficientNet) around ``parts``, without its constructor:
        the library has built the model already (a named variant)."""
        net = cls.__new__(cls)
        TutorialLayout.__init__(net, parts)
        return net

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.head(self.pool_flatten(self.pre(self.stages(self.stem(x)))))
        return out


def expansion_blocks(mbconv: Block) -> tuple[Block, Block]:
    """The tutorial's mbconv1 and mbconv6: ``mbconv`` (an adapter's MBConv) with expansion 1 and 6."""

    def mbconv1(
        n_in: int, n_out: int, kernel_size: int = 3, stride: int = 1, r: int = 24, dropout: float = 0.1
    ) -> nn.Module:
        return mbconv(n_in, n_out, 1, kernel_size, stride, r, dropout)

    def mbconv6(
        n_in: int, n_out: int, kernel_size: int = 3, stride: int = 1, r: int = 24, dropout: float = 0.1
    ) -> nn.Module:
        return mbconv(n_in, n_out, 6, kernel_size, stride, r, dropout)

    return mbconv1, mbconv6


def stage_builder(mbconv6: Block) -> Callable[..., nn.Sequential]:
    """The tutorial's create_stage, whose default block is the adapter's ``mbconv6``."""

    def create_stage(
        n_in: int,
        n_out: int,
        num_layers: int,
        layer: Block = mbconv6,
        kernel_size: int = 3,
        stride: int = 1,
        r: int = 24,
        ps: float | Sequence[float] = 0,
    ) -> nn.Sequential:
        """num_layers blocks; the first changes the width and carries the stride; ps is one rate for
        every block or one per block."""
        rates = list(ps) if isinstance(ps, Sequence) else [ps] * num_layers
        return nn.Sequential(
            *(
                layer(n_in if i == 0 else n_out, n_out, kernel_size, stride if i == 0 else 1, r, rates[i])
                for i in range(num_layers)
            )
        )

    return create_stage
