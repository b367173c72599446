"""One fixed colour per organ, shared by every figure, and the colour checks behind it.

The 16 organs of Synapse (13) and AMOS (15) each have a hand-picked colour from Paul Tol's
qualitative sets (bright, vibrant, muted, light, medium-contrast) and Okabe & Ito's
colour-blind-safe set; gray and near-white were left out (invisible over CT, or on white).
The subset and its assignment were chosen by maximising, over candidate pools from those
sets, the smallest CIE76 colour difference ΔE*ab between any two organs, for normal vision
and under a simulated deuteranopia (:func:`simulate_cvd`), with the largest differences
kept for organs that touch in the body or sit next to each other in the class order (RK/LK,
Ga/Es, RAG/LAG, Li/St, Sp/IVC …). Measured, the 16 organ colours (with the black of the
background) are at least ΔE 18 apart for normal vision and ΔE 15 under deuteranopia
(protanopia: 10); organs that touch or are neighbours in the class order at least ΔE 30 in
both. A ΔE of 2.3 is a just-noticeable difference; 15 keeps small markers and thin lines
apart at a glance.

A class that is not one of these organs (an imported nnU-Net dataset) gets, in class
order, the palette colours its dataset's known organs leave unused; past the 16 colours they
repeat, and line plots also vary the line style (:func:`class_linestyle`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

#: Organ -> colour (hex), in the class order of Synapse and then AMOS's extra organs.
ORGAN_COLOURS: dict[str, str] = {
    "spleen": "#88CCEE",  # Tol muted cyan
    "right_kidney": "#EE8866",  # Tol light orange
    "left_kidney": "#009E73",  # Okabe-Ito bluish green
    "gallbladder": "#EE7733",  # Tol vibrant orange
    "esophagus": "#EE6677",  # Tol bright red
    "liver": "#6699CC",  # Tol medium-contrast light blue
    "stomach": "#CC3311",  # Tol vibrant red
    "aorta": "#CC79A7",  # Okabe-Ito reddish purple
    "inferior_vena_cava": "#E69F00",  # Okabe-Ito orange
    "portal_splenic_veins": "#117733",  # Tol muted green
    "pancreas": "#004488",  # Tol high-contrast blue
    "right_adrenal_gland": "#EE99AA",  # Tol medium-contrast light red
    "left_adrenal_gland": "#0077BB",  # Tol vibrant blue
    "duodenum": "#882255",  # Tol muted wine
    "bladder": "#EECC66",  # Tol medium-contrast light yellow
    "prostate_uterus": "#AA4499",  # Tol muted purple
}

#: The background, where a figure draws it (a class-weight line): black.
BACKGROUND_COLOUR = "#000000"

#: Line styles cycled by class index, so lines stay apart where colours come close.
LINESTYLES = ("-", "--", "-.", ":")

#: Machado, Oliveira & Fernandes (2009), severity 1: linear-RGB matrices of dichromacy.
CVD_MATRICES: dict[str, np.ndarray] = {
    "deuteranopia": np.array([[0.367322, 0.860646, -0.227968],
                              [0.280085, 0.672501, 0.047413],
                              [-0.011820, 0.042940, 0.968881]]),
    "protanopia": np.array([[0.152286, 1.052583, -0.204868],
                            [0.114503, 0.786281, 0.099216],
                            [-0.003882, -0.048116, 1.051998]]),
}

_SRGB_TO_XYZ = np.array([[0.4124564, 0.3575761, 0.1804375],
                         [0.2126729, 0.7151522, 0.0721750],
                         [0.0193339, 0.1191920, 0.9503041]])
_D65 = np.array([0.95047, 1.0, 1.08883])


def class_colours(class_names: Sequence[str]) -> list[str]:
    """The colour (hex) of every class, in the order of ``class_names``.

    Known organs get :data:`ORGAN_COLOURS`, the background :data:`BACKGROUND_COLOUR`, any
    other class the next palette colour the known organs of the list leave unused (cycling
    when there are more than 16).
    """
    taken = {ORGAN_COLOURS[c] for c in class_names if c in ORGAN_COLOURS}
    spare = [h for h in ORGAN_COLOURS.values() if h not in taken] or list(ORGAN_COLOURS.values())
    out, k = [], 0
    for name in class_names:
        if name == "background":
            out.append(BACKGROUND_COLOUR)
        elif name in ORGAN_COLOURS:
            out.append(ORGAN_COLOURS[name])
        else:
            out.append(spare[k % len(spare)])
            k += 1
    return out


def class_linestyle(index: int) -> str:
    """The line style of the class at ``index`` of its class list."""
    return LINESTYLES[index % len(LINESTYLES)]


def organ_colours(class_names: Sequence[str]) -> list[tuple[float, float, float, float]]:
    """RGBA of every class for label-map overlays: the background fully transparent.

    Indexed by label value (the class's position in ``class_names``).
    """
    rgba = [(*hex_to_rgb(h), 1.0) for h in class_colours(class_names)]
    if class_names and class_names[0] == "background":
        rgba[0] = (0.0, 0.0, 0.0, 0.0)
    return rgba


def hex_to_rgb(colour: str) -> tuple[float, float, float]:
    """``#RRGGBB`` as sRGB floats in [0, 1]."""
    h = colour.lstrip("#")
    return (int(h[0:2], 16) / 255.0, int(h[2:4], 16) / 255.0, int(h[4:6], 16) / 255.0)


def _linear(rgb: np.ndarray) -> np.ndarray:
    return np.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)


def simulate_cvd(rgb: np.ndarray, kind: str = "deuteranopia") -> np.ndarray:
    """How sRGB colours ``(n, 3)`` in [0, 1] look to a dichromat, as sRGB ``(n, 3)``.

    ``kind`` is a key of :data:`CVD_MATRICES`; the matrix acts on linear RGB.
    """
    lin = np.clip(_linear(np.asarray(rgb, dtype=float)) @ CVD_MATRICES[kind].T, 0.0, 1.0)
    return np.where(lin <= 0.0031308, 12.92 * lin, 1.055 * lin ** (1 / 2.4) - 0.055)


def srgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """CIE L*a*b* (D65) of sRGB colours ``(n, 3)`` in [0, 1]."""
    xyz = _linear(np.asarray(rgb, dtype=float)) @ _SRGB_TO_XYZ.T / _D65
    d = 6.0 / 29.0
    f = np.where(xyz > d**3, np.cbrt(xyz), xyz / (3 * d * d) + 4.0 / 29.0)
    return np.stack([116 * f[:, 1] - 16, 500 * (f[:, 0] - f[:, 1]),
                     200 * (f[:, 1] - f[:, 2])], axis=-1)


def min_delta_e(colours: Sequence[Sequence[float]], cvd: str | None = None) -> float:
    """The smallest CIE76 ΔE*ab between two of the sRGB colours (RGB or RGBA in [0, 1]).

    ``cvd`` (``deuteranopia``, ``protanopia``) compares them as that dichromat sees them.
    Fewer than two colours give infinity.
    """
    rgb = np.array([tuple(c)[:3] for c in colours], dtype=float).reshape(-1, 3)
    if len(rgb) < 2:
        return float("inf")
    if cvd is not None:
        rgb = simulate_cvd(rgb, cvd)
    lab = srgb_to_lab(rgb)
    dist = np.linalg.norm(lab[:, None] - lab[None], axis=-1)
    return float(dist[np.triu_indices(len(rgb), 1)].min())
