"""Hard cross pseudo-labels: CPS (Chen et al., CVPR 2021), the DHC default."""

from __future__ import annotations

from dhcbench.methods.pseudo.base import (
    OTHER,
    PseudoInput,
    PseudoLabeler,
    PseudoTargets,
    pseudo_labeler,
)


@pseudo_labeler("hard")
class HardLabels(PseudoLabeler):
    """Each branch is taught the other's argmax on every voxel (reference §7 step 5).

    Through the method's configured unsupervised loss, with the learner's own class weights.
    """

    def targets(self, inp: PseudoInput) -> dict[str, PseudoTargets]:
        """The other branch's argmax (B, D, H, W) int64, unmasked, with this one's weights."""
        pseudo = {k: inp.argmax_of(k) for k in inp.logits}
        return {k: PseudoTargets(pseudo[OTHER[k]], weight=inp.weights.get(k))
                for k in inp.logits}
