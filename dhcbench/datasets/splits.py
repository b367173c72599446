"""Resolving the train / eval / test and labeled / unlabeled case lists of a run.

Split lists live in the prepared dataset (``splits/*.txt``, also in its manifest). The
labeled list for a ratio r is the file ``labeled_<100r>p`` when the dataset ships one (the
reference's lists must be used as they are: their generation was unseeded, reference §2.1),
otherwise the first ``int(N_train * r)`` cases of a permutation of the sorted training ids
seeded by ``split_seed`` (nested: a smaller ratio's labeled set is inside a larger one's).
The unlabeled list is the rest of the training list.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dhcbench.datasets.storage import PreparedDataset
from dhcbench.errors import UserError


def ratio_tag(ratio: float) -> str:
    """0.2 -> '20p', 0.05 -> '5p', 0.025 -> '2.5p' (the reference's split-file suffix)."""
    return f"{ratio * 100:g}p"


def labeled_count(num_train: int, ratio: float) -> int:
    """``int(N_train * ratio)`` as the reference computes it (robust to float round-off)."""
    return int(num_train * ratio + 1e-9)


def seeded_labeled(train: list[str], ratio: float, split_seed: int) -> list[str]:
    """The first ``int(N * ratio)`` of a seeded permutation of the sorted ids, sorted."""
    order = np.random.default_rng(split_seed).permutation(len(train))
    ids = sorted(train)
    return sorted(ids[i] for i in order[: labeled_count(len(ids), ratio)])


@dataclass(frozen=True)
class Split:
    """The case lists of one run; ``source`` says where the labeled list came from."""

    train: tuple[str, ...]
    eval: tuple[str, ...]
    test: tuple[str, ...]
    labeled: tuple[str, ...]
    unlabeled: tuple[str, ...]
    source: str

    def check(self, dataset: str) -> None:
        """Leakage guards: pairwise-disjoint train/eval/test; labeled ⊎ unlabeled = train."""
        pairs = (("train", "eval"), ("train", "test"), ("eval", "test"),
                 ("labeled", "unlabeled"))
        for a, b in pairs:
            common = sorted(set(getattr(self, a)) & set(getattr(self, b)))
            if common:
                raise UserError(
                    f"{dataset}: splits {a} and {b} overlap in {len(common)} case(s),"
                    f" e.g. {common[0]}"
                )
        if set(self.labeled) | set(self.unlabeled) != set(self.train):
            raise UserError(f"{dataset}: labeled and unlabeled lists do not make up the train list")


def resolve_split(
    ds: PreparedDataset, ratio: float, split_seed: int = 0, need_unlabeled: bool = True
) -> Split:
    """The split of ``ds`` for a labeled ratio; raises UserError when it cannot be used."""
    for required in ("train", "eval", "test"):
        if required not in ds.splits:
            raise UserError(f"{ds.path}: the prepared dataset has no {required!r} split")
    train = sorted(ds.splits["train"])
    tag = ratio_tag(ratio)
    if f"labeled_{tag}" in ds.splits and split_seed == 0:
        labeled = sorted(ds.splits[f"labeled_{tag}"])
        source = f"{ds.name}:labeled_{tag}"
    else:
        labeled = seeded_labeled(train, ratio, split_seed)
        source = f"{ds.name}:seeded(split_seed={split_seed})"
    if not labeled:
        raise UserError(
            f"--ratio {ratio}: int({len(train)} x {ratio}) = 0 labeled cases;"
            f" the smallest usable ratio for {ds.name} is {1 / len(train):.3g}"
        )
    unlabeled = sorted(set(train) - set(labeled))
    if need_unlabeled and not unlabeled:
        raise UserError(
            f"--ratio {ratio}: every training case is labeled, so a semi-supervised method has"
            " no unlabeled data; use a smaller ratio"
        )
    split = Split(
        train=tuple(train),
        eval=tuple(sorted(ds.splits["eval"])),
        test=tuple(sorted(ds.splits["test"])),
        labeled=tuple(labeled),
        unlabeled=tuple(unlabeled),
        source=source,
    )
    split.check(ds.name)
    return split
