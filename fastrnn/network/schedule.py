"""The learning rate's cooldown: a linear decay to zero at the end of a training, in pieces of
one rate each, as a function of the update count alone.

Used by the tuner's top networks (:mod:`fastrnn.tuning.halving_top`) and by ``fastrnn train
--cooldown``: updates ``[start, end)`` are cut into :data:`COOLDOWN_PIECES` equal pieces (the
kernels take one rate per call), piece k trained at ``l (1 - (k + 1/2) / COOLDOWN_PIECES)``, and
the network stops at ``end``. Because the rate is a function of the update count, a network
trains the same bits however its training is split, checkpointed and resumed. This is the decay of
a warmup-stable-decay (trapezoidal) schedule (Hägele et al., NeurIPS 2024).
"""

from __future__ import annotations

from dataclasses import dataclass

#: Pieces of one learning rate each that the decay is made of.
COOLDOWN_PIECES = 20


@dataclass(frozen=True)
class Cooldown:
    """A network's decay: from update ``start`` (its full rate) to ``end`` (zero; it stops there)."""

    start: int
    end: int

    @classmethod
    def over_last(cls, share: float, first: int, end: int) -> "Cooldown | None":
        """The decay over the last ``share`` of updates ``[first, end)`` (None for no share)."""
        if not share or end <= first:
            return None
        return cls(end - int(share * (end - first)), end)

    def boundary(self, piece: int) -> int:
        """The first update of ``piece`` (``COOLDOWN_PIECES`` gives ``end``)."""
        return self.start + (self.end - self.start) * piece // COOLDOWN_PIECES

    def runs(self, step: int, count: int) -> list[tuple[int, float]]:
        """Updates ``[step, step + count)`` as ``(updates, factor of the rate)`` runs of one rate,
        in order; ValueError past ``end``."""
        if step + count > self.end:
            raise ValueError(f"updates up to {step + count:,} run past the cooldown's end ({self.end:,})")
        runs = []
        if step < self.start:
            before = min(count, self.start - step)
            runs.append((before, 1.0))
            step, count = step + before, count - before
        piece = 0
        while count > 0:
            while self.boundary(piece + 1) <= step:
                piece += 1
            n = min(count, self.boundary(piece + 1) - step)
            runs.append((n, 1.0 - (piece + 0.5) / COOLDOWN_PIECES))
            step, count = step + n, count - n
        return runs

    def as_list(self) -> list[int]:
        return [self.start, self.end]

    def describe(self, steps: int) -> str:
        """What the decay did to a network stopped at update ``steps``."""
        if steps >= self.end:
            return f"its learning rate decayed to zero over its last {self.end - self.start:,} updates"
        factor = self.runs(steps - 1, 1)[-1][1] if steps > self.start else 1.0
        return (f"its learning rate decayed over its last {steps - self.start:,} updates, to {factor:.0%} of it "
                f"where the time stopped it ({self.end - steps:,} updates before zero)")
