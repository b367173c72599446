"""Named split manifests: the reference's split lists, shipped as package data.

The reference generated its splits without a seed (reference §2.1–§2.2), so they cannot be
regenerated: the published lists are used as they are, under these names:

- ``synapse:dhc2023`` — the 2023 lists (train 20 / eval 4 / test 6, labeled 10/20/40 %) that
  the paper-era code used; deleted from the reference repository in 2024.
- ``synapse:dhc2024`` — the test list at the reference's HEAD only (6 cases, 5 of which were
  *training* cases in 2023). Train, eval and labeled lists are drawn by the seeded generator
  from the other cases and never touch these test ids.
- ``amos:dhc`` — train 216 / eval 24 / test 120 and labeled 2/5/10 %. The 20 % pair is
  inconsistent with train/eval (3 labeled and 17 unlabeled ids are eval cases, 44 train ids
  are missing; reference §2.4) and is refused unless asked for explicitly.

Each manifest has a SHA-256 over its canonical JSON, logged with every run.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from importlib import resources

from dhcbench.errors import UserError


@dataclass(frozen=True)
class SplitManifest:
    """The fixed case lists of a shipped manifest.

    ``train``/``eval`` may be empty (then drawn by the seeded sampler); ``labeled`` maps a
    ratio tag (``10p``) to its ids; ``refused`` maps a ratio tag to why it is not used.
    """

    name: str
    test: tuple[str, ...]
    train: tuple[str, ...] = ()
    eval: tuple[str, ...] = ()
    labeled: dict[str, tuple[str, ...]] = field(default_factory=dict)  # ratio tag -> ids
    refused: dict[str, str] = field(default_factory=dict)  # ratio tag -> why
    note: str = ""

    def to_json(self) -> dict[str, object]:
        """The hashed content: the name and the id lists (labeled by ratio tag, sorted).

        ``refused`` and ``note`` are explanations, not content, and are left out.
        """
        return {"name": self.name, "train": list(self.train), "eval": list(self.eval),
                "test": list(self.test),
                "labeled": {k: list(v) for k, v in sorted(self.labeled.items())}}

    def sha256(self) -> str:
        """SHA-256 (hex) of :meth:`to_json` as canonical JSON (sorted keys, no spaces)."""
        text = json.dumps(self.to_json(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()


def _read(folder: str, name: str) -> tuple[str, ...]:
    path = resources.files("dhcbench.data").joinpath("splits", folder, f"{name}.txt")
    return tuple(sorted(line.strip() for line in path.read_text().splitlines() if line.strip()))


def _labeled(folder: str, tags: tuple[str, ...]) -> dict[str, tuple[str, ...]]:
    return {tag: _read(folder, f"labeled_{tag}") for tag in tags}


AMOS_20P_REASON = (
    "the reference's AMOS 20% lists are inconsistent with its train/eval split (3 labeled"
    " and 17 unlabeled ids are eval cases and 44 train ids are missing; they look drawn"
    " from a 192-case train list), and the paper does not use them; set"
    " data.allow_inconsistent_split=true to use them anyway"
)


def load_manifest(name: str, allow_inconsistent: bool = False) -> SplitManifest:
    """A shipped manifest by name (``synapse:dhc2023``, ``synapse:dhc2024``, ``amos:dhc``).

    With ``allow_inconsistent``, ``amos:dhc`` also offers the reference's 20 % labeled list
    instead of refusing it. Raises UserError for an unknown name, listing the valid ones.
    """
    if name == "synapse:dhc2023":
        return SplitManifest(
            name=name, train=_read("synapse-2023", "train"), eval=_read("synapse-2023", "eval"),
            test=_read("synapse-2023", "test"),
            labeled=_labeled("synapse-2023", ("10p", "20p", "40p")),
            note="the 2023 lists of the reference (paper era)",
        )
    if name == "synapse:dhc2024":
        return SplitManifest(
            name=name, test=_read("synapse-2024", "test"),
            note="only the test list exists at the reference's HEAD; train/eval/labeled are"
                 " drawn by the seeded generator (split_seed) from the remaining cases",
        )
    if name == "amos:dhc":
        labeled = _labeled("amos", ("2p", "5p", "10p"))
        refused = {"20p": AMOS_20P_REASON}
        if allow_inconsistent:
            labeled["20p"] = _read("amos", "labeled_20p")
            refused = {}
        return SplitManifest(
            name=name, train=_read("amos", "train"), eval=_read("amos", "eval"),
            test=_read("amos", "test"), labeled=labeled, refused=refused,
            note="the reference's AMOS lists (216/24/120; CT and MRI, ids >= 500 are MRI)",
        )
    raise UserError(f"unknown split manifest {name!r} (valid: {', '.join(MANIFEST_NAMES)})")


def amos_unlabeled_20p() -> tuple[str, ...]:
    """The reference's unlabeled 20 % AMOS list, sorted.

    Used only with ``data.allow_inconsistent_split`` (see :data:`AMOS_20P_REASON`).
    """
    return _read("amos", "unlabeled_20p")


MANIFEST_NAMES = ("synapse:dhc2023", "synapse:dhc2024", "amos:dhc")
