"""Image-to-HDR baselines (DESIGN.md "Evaluation"): one call signature, one registry, one module per method.

Every baseline is called as ``BASELINES[name](ldr, curve="gamma2.2")``: ``ldr`` a torch tensor ``[..., 3, H, W]``,
display-encoded in [0, 1] (the library layout; the l2h benchmark's 8-bit gamma-2.2 EV-0 frame), the result linear
relative radiance, float32, ``[..., 3, H, W]``, finite and >= 0, with 1.0 = the input's clipping level, the scale of
the linearised input (``common``). The oracle also needs ``reference`` (the anchored true HDR) and ``evs``.

- ``input``: the linearised input, no expansion (``linearised``): the floor;
- ``akyuz2007``: Akyuz et al. 2007, global linear expansion (``akyuz2007``);
- ``huo2014``: Huo et al. 2014, physiological (retina-response) inverse tone mapping (``huo2014``);
- ``highlight-boost``: HDRCNN's blend (Eilertsen et al. 2017) with a size-driven boost of the saturated regions
  (``highlight_boost``);
- ``expandnet``: ExpandNet (Marnerides et al. 2018) with its released weights (``expandnet``);
- ``oracle``: the true bracket merged (``oracle``): the ceiling for any exposure head.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from latenthdr.baselines.akyuz2007 import expand_Akyuz2007
from latenthdr.baselines.expandnet import expand_Marnerides2018
from latenthdr.baselines.highlight_boost import boost_Eilertsen2017_style
from latenthdr.baselines.huo2014 import expand_Huo2014
from latenthdr.baselines.linearised import linearised_input
from latenthdr.baselines import oracle as _oracle  # the module: its function would shadow it
from latenthdr.errors import InputError


@dataclass(frozen=True)
class Baseline:
    """A named image-to-HDR method. ``reconstruct(ldr, curve=...)`` (or, when ``needs_reference``,
    ``reconstruct(reference, evs)``) returns linear HDR [..., 3, H, W] float32 on the input's scale.
    ``citation``: the paper it implements; ``needs_weights``: it loads a released network."""

    name: str
    reconstruct: Callable[..., torch.Tensor]
    citation: str
    needs_reference: bool = False
    needs_weights: bool = False

    def __call__(self, ldr: torch.Tensor, *, curve: str = "gamma2.2", reference: torch.Tensor | None = None,
                 evs: Sequence[float] | None = None) -> torch.Tensor:
        if not self.needs_reference:
            return self.reconstruct(ldr, curve=curve)
        if reference is None or evs is None:
            raise InputError("reference", f"the {self.name!r} baseline needs the reference HDR and the EV ladder")
        if reference.shape != ldr.shape:
            raise InputError("reference", f"shape {tuple(reference.shape)} differs from ldr's {tuple(ldr.shape)}")
        return self.reconstruct(reference, evs)


BASELINES: dict[str, Baseline] = {b.name: b for b in (
    Baseline("input", linearised_input, "no expansion: the display curve inverted"),
    Baseline("akyuz2007", expand_Akyuz2007, "Akyuz et al., 'Do HDR displays support LDR content? A psychophysical "
                                            "evaluation', SIGGRAPH 2007"),
    Baseline("huo2014", expand_Huo2014, "Huo et al., 'Physiological inverse tone mapping based on retina response', "
                                        "The Visual Computer 2014"),
    Baseline("highlight-boost", boost_Eilertsen2017_style, "the blend of Eilertsen et al., 'HDR image "
             "reconstruction from a single exposure using deep CNNs', SIGGRAPH Asia 2017, with a size-driven boost"),
    Baseline("expandnet", expand_Marnerides2018, "Marnerides et al., 'ExpandNet: A Deep Convolutional Neural "
             "Network for High Dynamic Range Expansion from Low Dynamic Range Content', Eurographics 2018",
             needs_weights=True),
    Baseline("oracle", _oracle.oracle, "the true 8-bit bracket merged with METHOD.md Eq. 9", needs_reference=True),
)}


def get(name: str) -> Baseline:
    """The baseline called ``name``; InputError listing the names otherwise."""
    if name not in BASELINES:
        raise InputError("baseline", f"unknown baseline {name!r}; accepted: {', '.join(BASELINES)}")
    return BASELINES[name]


def as_reconstructor(baseline: Baseline, curve: str = "gamma2.2"):
    """The baseline as an l2h benchmark method: (case, evs) -> hdr [3, H, W], reading ``case.ldr`` (and, for the
    oracle, ``case.ref``)."""
    def reconstruct(case, evs):
        return baseline(case.ldr, curve=curve, reference=case.ref, evs=evs)
    return reconstruct


__all__ = ["BASELINES", "Baseline", "as_reconstructor", "get", "linearised_input"]
