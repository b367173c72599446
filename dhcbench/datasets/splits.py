"""Resolving the train / eval / test and labeled / unlabeled case lists of a run.

Three sources, in this order:

1. a named manifest (``data.split``, or the dataset's default): the reference's lists,
   shipped as package data (:mod:`dhcbench.datasets.manifests`); lists a manifest lacks are
   drawn by the seeded generator from the remaining cases, never touching its test ids;
2. the prepared dataset's own ``splits/*.txt`` (the phantom, the reference's npy layout);
3. the seeded generator alone (a new dataset): 1/5 test, 1/6 of the rest eval.

The labeled list for ratio r is the shipped ``labeled_<100r>p`` list when there is one and
``split_seed`` is 0, otherwise the first ``int(N_train * r)`` cases of a seeded permutation
of the sorted training ids (nested across ratios), optionally redrawn until every class
present in the training set appears in the labeled set. The unlabeled list is the rest of
the training list. :meth:`Split.check` enforces the leakage guards.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from dhcbench.datasets.manifests import amos_unlabeled_20p, load_manifest
from dhcbench.datasets.storage import PreparedDataset, first_duplicate
from dhcbench.errors import UserError


def ratio_tag(ratio: float) -> str:
    """The reference's split-file suffix of a labeled ratio.

    0.2 -> '20p', 0.05 -> '5p', 0.025 -> '2.5p'.
    """
    return f"{ratio * 100:g}p"


def tag_ratio(tag: str) -> float:
    """The labeled ratio of a split-file suffix, the inverse of :func:`ratio_tag`.

    '20p' -> 0.2, '5p' -> 0.05.
    """
    return float(tag[:-1]) / 100


def labeled_count(num_train: int, ratio: float) -> int:
    """How many training cases are labeled at ``ratio``.

    ``int(N_train * ratio)`` as the reference computes it, made robust to float round-off
    (``int(90 * 0.7)`` would give 62).
    """
    return int(num_train * ratio + 1e-9)


def seeded_labeled(
    train: Sequence[str],
    ratio: float,
    split_seed: int,
    present: dict[str, np.ndarray] | None = None,
) -> list[str]:
    """The first ``int(N * ratio)`` of a seeded permutation of the sorted ids, sorted.

    With ``present`` (case id -> bool vector of the classes in its label map), permutations
    are redrawn (same seed, next draws) until the labeled cases cover every class present in
    the training set; UserError after 1000 draws.
    """
    ids = sorted(train)
    n = labeled_count(len(ids), ratio)
    rng = np.random.default_rng(split_seed)
    needed = None
    if present is not None:
        needed = np.any([present[i] for i in ids], axis=0)
    for _ in range(1000 if needed is not None else 1):
        chosen = [ids[i] for i in rng.permutation(len(ids))[:n]]
        if needed is None:
            return sorted(chosen)
        covered = np.any([present[i] for i in chosen], axis=0) if chosen else needed & False
        if np.all(covered[needed]):
            return sorted(chosen)
    raise UserError(f"no draw of {n} labeled cases covers every class; use a larger ratio or"
                    " drop data.cover_classes")


def _seeded_partition(ids: Sequence[str], fraction: float, seed: int, salt: int
                      ) -> tuple[list[str], list[str]]:
    """Split sorted ``ids`` into (rest, picked) with ``round(N * fraction)`` picked."""
    ids = sorted(ids)
    n = max(1, int(round(len(ids) * fraction)))
    order = np.random.default_rng([seed, salt]).permutation(len(ids))
    picked = sorted(ids[i] for i in order[:n])
    return sorted(set(ids) - set(picked)), picked


@dataclass(frozen=True)
class Split:
    """The case lists of one run; ``source`` says where the lists came from.

    Every list is a sorted tuple of case ids; ``source`` reads like
    ``synapse:dhc2023:labeled_20p`` or ``phantom:seeded(1)``.
    """

    train: tuple[str, ...]
    eval: tuple[str, ...]
    test: tuple[str, ...]
    labeled: tuple[str, ...]
    unlabeled: tuple[str, ...]
    source: str

    def check(self, dataset: str) -> None:
        """Leakage guards; UserError naming ``dataset`` and the first guard that fails.

        Train, eval and test are pairwise disjoint, no list repeats an id, labeled and
        unlabeled are disjoint and make up train, and the labeled set is not empty.
        """
        pairs = (("train", "eval"), ("train", "test"), ("eval", "test"),
                 ("labeled", "unlabeled"))
        for a, b in pairs:
            common = sorted(set(getattr(self, a)) & set(getattr(self, b)))
            if common:
                raise UserError(
                    f"{dataset}: splits {a} and {b} overlap in {len(common)} case(s),"
                    f" e.g. {common[0]}"
                )
        for name in ("train", "eval", "test", "labeled", "unlabeled"):
            dup = first_duplicate(getattr(self, name))
            if dup is not None:
                raise UserError(f"{dataset}: split {name} lists {dup} twice")
        if not self.labeled:
            raise UserError(f"{dataset}: the labeled set is empty")
        if set(self.labeled) | set(self.unlabeled) != set(self.train):
            raise UserError(f"{dataset}: labeled and unlabeled lists do not make up the train list")

    def sha256(self) -> str:
        """SHA-256 (hex) of the five lists as sorted-key JSON (logged with every run)."""
        d = {k: list(getattr(self, k)) for k in ("train", "eval", "test", "labeled", "unlabeled")}
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()


def _present(ds: PreparedDataset) -> dict[str, np.ndarray]:
    return {cid: np.asarray(rec.class_counts) > 0 for cid, rec in ds.cases.items()}


def _require_ids(ds: PreparedDataset, ids: Sequence[str], what: str) -> None:
    missing = sorted(set(ids) - set(ds.cases))
    if missing:
        raise UserError(
            f"{what}: {len(missing)} id(s) are not in the prepared data {ds.path}"
            f" (e.g. {missing[0]})"
        )


def resolve_split(
    ds: PreparedDataset,
    ratio: float,
    split_seed: int = 0,
    need_unlabeled: bool = True,
    manifest: str | None = None,
    cover_classes: bool = False,
    allow_inconsistent: bool = False,
) -> Split:
    """The split of ``ds`` for a labeled ratio, checked by :meth:`Split.check`.

    The lists come from ``manifest`` when given, else from the prepared dataset's own
    ``splits/``, else from the seeded generator (module docstring).

    Args:
        ds: the prepared dataset; every id of the split must be among its cases.
        ratio: the labeled fraction of the training list (0.05 = 5 %).
        split_seed: 0 takes the shipped labeled lists where they exist; any seed draws them.
        need_unlabeled: refuse a ratio that leaves no unlabeled case.
        manifest: the name of a shipped split manifest, or None.
        cover_classes: redraw until the labeled cases contain every class of train.
        allow_inconsistent: use a manifest's refused lists (AMOS 20 %).

    Raises:
        UserError: when the split cannot be used (unknown ids, a refused ratio, an empty
            labeled or unlabeled list, a failed guard).
    """
    tag = ratio_tag(ratio)
    present = _present(ds) if cover_classes else None
    shipped: tuple[str, ...] | None = None
    unlabeled_override: tuple[str, ...] | None = None
    if manifest is not None:
        m = load_manifest(manifest, allow_inconsistent)
        _require_ids(ds, [*m.test, *m.train, *m.eval, *[i for v in m.labeled.values() for i in v]],
                     f"split manifest {manifest}")
        test = list(m.test)
        if m.train:
            train, evaluation = list(m.train), list(m.eval)
        else:
            rest = sorted(set(ds.cases) - set(test))
            train, evaluation = _seeded_partition(rest, 1 / 6, split_seed, 11)
        if tag in m.refused and split_seed == 0:
            raise UserError(f"--ratio {ratio}: {m.refused[tag]}")
        if tag in m.labeled and split_seed == 0:
            shipped = m.labeled[tag]
            if manifest == "amos:dhc" and tag == "20p":
                # Used as published: the training set is the reference's labeled + unlabeled
                # lists; eval ids that also appear there leave the eval set (no leakage).
                unlabeled_override = amos_unlabeled_20p()
                train = sorted(set(shipped) | set(unlabeled_override))
                evaluation = sorted(set(evaluation) - set(train))
        source = f"{manifest}:{f'labeled_{tag}' if shipped else f'seeded({split_seed})'}"
    elif {"train", "eval", "test"} <= set(ds.splits):
        train, evaluation, test = (sorted(ds.splits[k]) for k in ("train", "eval", "test"))
        if f"labeled_{tag}" in ds.splits and split_seed == 0:
            shipped = tuple(sorted(ds.splits[f"labeled_{tag}"]))
        source = f"{ds.name}:{f'labeled_{tag}' if shipped else f'seeded({split_seed})'}"
    else:
        rest, test = _seeded_partition(list(ds.cases), 1 / 5, split_seed, 5)
        train, evaluation = _seeded_partition(rest, 1 / 6, split_seed, 11)
        source = f"{ds.name}:generated({split_seed})"
    labeled = sorted(shipped) if shipped is not None else seeded_labeled(
        train, ratio, split_seed, present)
    if not labeled:
        raise UserError(
            f"--ratio {ratio}: int({len(train)} x {ratio}) = 0 labeled cases;"
            f" the smallest usable ratio for {ds.name} is {1 / len(train):.3g}"
        )
    unlabeled = (sorted(unlabeled_override) if unlabeled_override is not None
                 else sorted(set(train) - set(labeled)))
    if need_unlabeled and not unlabeled:
        raise UserError(
            f"--ratio {ratio}: every training case is labeled, so a semi-supervised method has"
            " no unlabeled data; use a smaller ratio"
        )
    split = Split(
        train=tuple(train), eval=tuple(evaluation), test=tuple(test),
        labeled=tuple(labeled), unlabeled=tuple(unlabeled), source=source,
    )
    split.check(ds.name)
    return split
