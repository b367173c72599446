"""``dhcbench splits show|verify``: a split manifest, its hash and its guards.

``show`` gives each ratio's lists, the split's hash and the labeled set's per-class voxel
counts (when the dataset is prepared here); ``verify`` checks the guards.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dhcbench.datasets.base import DATASETS, data_root
from dhcbench.datasets.classes import abbreviation
from dhcbench.datasets.manifests import MANIFEST_NAMES, SplitManifest, load_manifest
from dhcbench.datasets.splits import Split, ratio_tag, resolve_split, tag_ratio
from dhcbench.datasets.storage import PreparedDataset
from dhcbench.errors import UserError


@dataclass
class SplitView:
    """What ``splits show`` prints for one ratio.

    ``lists`` holds the id lists by name; ``class_counts`` the labeled set's voxels per
    class (by abbreviation), None when the dataset is not prepared here.
    """

    title: str
    sha256: str
    lists: dict[str, tuple[str, ...]]
    class_counts: dict[str, int] | None
    notes: list[str]


def _try_open(dataset: str, options: Mapping[str, Any], root: Path | None
              ) -> PreparedDataset | None:
    source = DATASETS.get(dataset)
    try:
        spec = source.spec(options, None, root or data_root())
        return source.open(spec, options, root or data_root())
    except UserError:
        return None


def show(name: str, ratio: float | None, split_seed: int = 0,
         options: Mapping[str, Any] | None = None, root: Path | None = None) -> list[SplitView]:
    """Views of a manifest (``synapse:dhc2023``…) or of a dataset's split (``phantom``).

    One view per ratio: ``ratio``, else every ratio of the manifest or dataset. Where the
    dataset is prepared under ``root`` the resolved split is shown with class counts,
    otherwise a manifest's shipped lists only.

    Raises:
        UserError: for a name that is neither a manifest nor a prepared dataset, or a
            refused ratio.
    """
    options = dict(options or {})
    views: list[SplitView] = []
    if name in MANIFEST_NAMES:
        manifest = load_manifest(name)
        dataset = name.split(":")[0]
        ds = _try_open(dataset, options, root)
        ratios = [ratio] if ratio is not None else [tag_ratio(t) for t in manifest.labeled]
        if ds is None:
            notes = [manifest.note, f"{dataset} is not prepared here: showing the shipped lists"
                     " only (prepare it to see class counts and drawn lists)"]
            for r in ratios or [None]:
                lists = _manifest_lists(manifest, r)
                views.append(SplitView(_title(name, r), manifest.sha256(), lists, None, notes))
            return views
        # A manifest without labeled lists (synapse:dhc2024): the dataset's ratios, drawn.
        for r in ratios or list(DATASETS.get(dataset).ratios):
            split = resolve_split(ds, r, split_seed, manifest=name)
            views.append(_view(name, r, split, ds, [manifest.note]))
        return views
    dataset, _, option = name.partition(":")
    if option:
        options["name"] = option
    ds = _try_open(dataset, options, root)
    if ds is None:
        raise UserError(f"{name}: not a split manifest ({', '.join(MANIFEST_NAMES)}) nor a"
                        " prepared dataset here")
    source = DATASETS.get(dataset)
    for r in [ratio] if ratio is not None else list(source.ratios):
        split = resolve_split(ds, r, split_seed, manifest=source.default_split(options))
        views.append(_view(name, r, split, ds, []))
    return views


def _title(name: str, ratio: float | None) -> str:
    return f"{name} {ratio_tag(ratio)}" if ratio is not None else name


def _manifest_lists(m: SplitManifest, ratio: float | None) -> dict[str, tuple[str, ...]]:
    lists = {"train": m.train, "eval": m.eval, "test": m.test}
    if ratio is not None:
        tag = ratio_tag(ratio)
        if tag in m.refused:
            raise UserError(f"{m.name} {tag}: {m.refused[tag]}")
        lists["labeled"] = m.labeled.get(tag, ())
    return lists


def _view(name: str, ratio: float, split: Split, ds: PreparedDataset, notes: list[str]
          ) -> SplitView:
    counts = ds.class_counts(split.labeled)
    return SplitView(
        title=_title(name, ratio),
        sha256=split.sha256(),
        lists={k: getattr(split, k) for k in ("train", "eval", "test", "labeled", "unlabeled")},
        class_counts={abbreviation(c): int(n) for c, n in zip(ds.class_names, counts,
                                                              strict=True)},
        notes=[n for n in notes if n] + [f"source: {split.source}"],
    )


def verify(name: str, ratio: float | None = None, options: Mapping[str, Any] | None = None,
           root: Path | None = None) -> list[str]:
    """Check a manifest and, when its dataset is prepared, the splits resolved from it.

    For a name that is not a manifest (``phantom``, ``nnunet:<name>``), the dataset's own
    splits are resolved and guarded instead.

    Returns:
        One line per check passed.

    Raises:
        UserError: on the first failed check.
    """
    done: list[str] = []
    if name not in MANIFEST_NAMES:
        views = show(name, ratio, options=options, root=root)
        return [f"{v.title}: guards pass (sha256 {v.sha256[:16]})" for v in views]
    m = load_manifest(name)
    for a, b in (("train", "eval"), ("train", "test"), ("eval", "test")):
        common = set(getattr(m, a)) & set(getattr(m, b))
        if common:
            raise UserError(f"{name}: {a} and {b} share {sorted(common)[0]}")
    for tag, ids in m.labeled.items():
        if not ids:
            raise UserError(f"{name}: labeled_{tag} is empty")
        if m.train and not set(ids) <= set(m.train):
            raise UserError(f"{name}: labeled_{tag} has ids outside train, e.g."
                            f" {sorted(set(ids) - set(m.train))[0]}")
    done.append(f"{name}: lists disjoint, labeled lists inside train (sha256 {m.sha256()[:16]})")
    for tag, why in m.refused.items():
        done.append(f"{name}: {tag} refused — {why}")
    ds = _try_open(name.split(":")[0], dict(options or {}), root)
    if ds is not None:
        dataset = name.split(":")[0]
        for tag in m.labeled or [ratio_tag(r) for r in DATASETS.get(dataset).ratios]:
            split = resolve_split(ds, tag_ratio(tag), manifest=name)
            done.append(f"{name} {tag}: ids present in {ds.path.name}, guards pass"
                        f" (split sha256 {split.sha256()[:16]})")
    else:
        done.append(f"{name}: dataset not prepared here; ids not checked against data")
    return done
