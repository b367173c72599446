"""Class lists of the datasets of the paper, background first (reference §1).

Names are lowercase snake keys, used verbatim in metric names (``test/dice/<name>``);
abbreviations are the column heads of the paper's tables.
"""

from __future__ import annotations

#: Background and the nine organs Synapse and AMOS both label, with the same values (0-9).
_SHARED_HEAD: tuple[str, ...] = (
    "background",
    "spleen",
    "right_kidney",
    "left_kidney",
    "gallbladder",
    "esophagus",
    "liver",
    "stomach",
    "aorta",
    "inferior_vena_cava",
)

#: Synapse's 13 organs: label values 10-13 follow the shared head.
SYNAPSE_CLASSES: tuple[str, ...] = (
    *_SHARED_HEAD,
    "portal_splenic_veins",
    "pancreas",
    "right_adrenal_gland",
    "left_adrenal_gland",
)

#: AMOS's 15 organs: no portal/splenic veins, so its pancreas and adrenal glands are 10-12.
AMOS_CLASSES: tuple[str, ...] = (
    *_SHARED_HEAD,
    "pancreas",
    "right_adrenal_gland",
    "left_adrenal_gland",
    "duodenum",
    "bladder",
    "prostate_uterus",
)

ABBREVIATIONS: dict[str, str] = {
    "background": "Bg",
    "spleen": "Sp",
    "right_kidney": "RK",
    "left_kidney": "LK",
    "gallbladder": "Ga",
    "esophagus": "Es",
    "liver": "Li",
    "stomach": "St",
    "aorta": "Ao",
    "inferior_vena_cava": "IVC",
    "portal_splenic_veins": "PSV",
    "pancreas": "Pa",
    "right_adrenal_gland": "RAG",
    "left_adrenal_gland": "LAG",
    "duodenum": "Du",
    "bladder": "Bl",
    "prostate_uterus": "P/U",
}


def abbreviation(name: str) -> str:
    """The paper's column head for a class.

    ``right_kidney`` -> ``RK``; a class the paper does not have (nnU-Net data) keeps its name.
    """
    return ABBREVIATIONS.get(name, name)
