"""Class lists of the datasets of the paper, background first (reference §1).

Names are lowercase snake keys, used verbatim in metric names (``test/dice/<name>``);
abbreviations are the column heads of the paper's tables.
"""

from __future__ import annotations

SYNAPSE_CLASSES: tuple[str, ...] = (
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
    "portal_splenic_veins",
    "pancreas",
    "right_adrenal_gland",
    "left_adrenal_gland",
)

AMOS_CLASSES: tuple[str, ...] = (
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
    """The paper's column head for a class (the class name itself for unknown classes)."""
    return ABBREVIATIONS.get(name, name)
