"""The regularization path: its points, selection of one, saving and loading.

Example:
    >>> path = fit_path(X, y, X_val=X_val, y_val=y_val)
    >>> i = path.select(features_per_class=5)    # path.selected: exactly 5 features per class
    >>> path[i].metrics["val_accuracy"], path.selected.metrics["features_per_class"]
    >>> path.save("my_path"); same = RegularizationPath.load("my_path")
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from safetensors.torch import load_file, save_file

from ..constants import PATH_CONFIG_NAME as CONFIG_NAME
from ..constants import PATH_WEIGHTS_NAME as WEIGHTS_NAME
from ..utils import file_sha256 as _sha256

FORMAT_VERSION = 1


@dataclass
class PathPoint:
    """One solution: ``weight`` (k, d) and ``bias`` (k,) take raw (unstandardized) features."""

    lam: float
    indices: torch.Tensor   # (2, nnz) row/column of each nonzero weight
    values: torch.Tensor    # (nnz,)
    bias: torch.Tensor      # (k,)
    shape: tuple[int, int]
    metrics: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dense(cls, lam: float, weight: torch.Tensor, bias: torch.Tensor, metrics=None) -> "PathPoint":
        weight = weight.detach().cpu()
        indices = torch.nonzero(weight).T.contiguous()
        return cls(float(lam), indices, weight[indices[0], indices[1]].contiguous(),
                   bias.detach().cpu().clone(), tuple(weight.shape), dict(metrics or {}))

    @property
    def weight(self) -> torch.Tensor:
        dense = torch.zeros(self.shape, dtype=self.values.dtype)
        dense[self.indices[0], self.indices[1]] = self.values
        return dense

    @property
    def support(self) -> torch.Tensor:
        """Boolean (k, d): which weights are nonzero."""
        mask = torch.zeros(self.shape, dtype=torch.bool)
        mask[self.indices[0], self.indices[1]] = True
        return mask

    def __repr__(self) -> str:
        m = self.metrics
        acc = m.get("val_accuracy", m.get("train_accuracy"))
        return (f"PathPoint(lam={self.lam:.4g}, features={m.get('n_features')}, "
                f"features_per_class={m.get('features_per_class')}, accuracy={acc})")


class RegularizationPath:
    """The points of an elastic-net path, from ``lam_max`` (all weights zero) down.

    Indexing gives :class:`PathPoint`; ``lambdas`` is a decreasing tensor. ``mean`` and
    ``std`` are the training columns' statistics used for standardization inside.
    """

    def __init__(self, points: list[PathPoint], *, family: str, alpha: float, group: bool,
                 mean: torch.Tensor, std: torch.Tensor, lam_max: float, info: dict | None = None,
                 refit: Callable | None = None):
        self.points = list(points)
        self.family = family
        self.alpha = float(alpha)
        self.group = bool(group)
        self.mean = mean.detach().cpu()
        self.std = std.detach().cpu()
        self.lam_max = float(lam_max)
        self.info = dict(info or {})
        self.selected: PathPoint | None = None
        self.selection: dict[str, Any] | None = None
        self._refit = refit  # solves on a fixed support; present while the training data is

    @property
    def refitter(self) -> Callable | None:
        """The support-restricted refit on this path's training data, `refit(lam, support, start) -> PathPoint`;
        None for a path loaded from disk (it does not hold the data)."""
        return self._refit

    def __len__(self) -> int:
        return len(self.points)

    def __getitem__(self, i: int) -> PathPoint:
        return self.points[i]

    def __iter__(self):
        return iter(self.points)

    def __repr__(self) -> str:
        return (f"RegularizationPath(family={self.family!r}, alpha={self.alpha}, group={self.group}, "
                f"points={len(self)}, lam_max={self.lam_max:.4g})")

    @property
    def lambdas(self) -> torch.Tensor:
        return torch.tensor([p.lam for p in self.points], dtype=torch.float64)

    def metric(self, name: str) -> list:
        """One metric along the path, e.g. ``path.metric("val_accuracy")``."""
        return [p.metrics.get(name) for p in self.points]

    # ----------------------------------------------------------------- selection
    def select(self, *, features_per_class: int | None = None, max_accuracy_drop: float | None = None,
               lam: float | None = None, relax: bool = False, X=None, y=None, score=None,
               score_name: str = "score") -> int:
        """Pick a point; sets ``self.selected`` and ``self.selection`` and returns its index.

        - ``features_per_class=k``: the sparsest point with at least ``k`` features in every
          class, truncated to each class's ``k`` largest weights (on standardized features) and
          refit on that support at its lambda (halved until no chosen weight is zeroed);
          ``self.selected`` is that refit point (exactly ``k`` per class).
        - ``max_accuracy_drop=d``: the sparsest point whose validation accuracy is within
          ``d`` of the best on the path.
        - ``lam=x``: the point whose lambda is nearest to ``x`` (in log scale).
        - ``relax=True``: refit the selected support with a light penalty (``lam / 100``)
          and keep the result if it is better; ``selection["relax_gain"]`` says by how much.
        - ``score=f``: ``f(point) -> float`` (higher is better, named ``score_name``) replaces the
          validation accuracy in ``max_accuracy_drop`` and ``relax``, e.g. worst-group accuracy.

        A refit needs the training data: it is kept by :func:`fit_path`; after
        :meth:`load`, pass ``X`` and ``y``.
        """
        from .select import select_point

        return select_point(self, features_per_class=features_per_class,
                            max_accuracy_drop=max_accuracy_drop, lam=lam, relax=relax, X=X, y=y,
                            score=score, score_name=score_name)

    # ----------------------------------------------------------------- persistence
    def save(self, directory: str | os.PathLike) -> None:
        """Write ``path.safetensors`` and ``path.json`` into ``directory``, each atomically."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        tensors = {"mean": self.mean.contiguous(), "std": self.std.contiguous()}
        points = list(self.points) + ([self.selected] if self.selected is not None else [])
        for i, p in enumerate(points):
            name = "selected" if (self.selected is not None and i == len(self.points)) else f"point_{i}"
            # clones: the selected point may be one of the path's own (safetensors refuses shared memory)
            tensors[f"{name}.indices"] = p.indices.clone()
            tensors[f"{name}.values"] = p.values.clone()
            tensors[f"{name}.bias"] = p.bias.clone()
        weights_path = directory / WEIGHTS_NAME
        _atomic_write(weights_path, lambda tmp: save_file(tensors, tmp, metadata={"format": "hf_sparse.path"}))
        meta = {
            "format_version": FORMAT_VERSION,
            "family": self.family, "alpha": self.alpha, "group": self.group, "lam_max": self.lam_max,
            "shape": list(self.points[0].shape) if self.points else None,
            "info": self.info,
            "points": [{"lam": p.lam, "metrics": p.metrics} for p in self.points],
            "selected": None if self.selected is None else {
                "lam": self.selected.lam, "metrics": self.selected.metrics, "selection": self.selection},
            "weights_sha256": _sha256(weights_path),
        }
        _atomic_write(directory / CONFIG_NAME,
                      lambda tmp: Path(tmp).write_text(json.dumps(meta, indent=2, default=_json_default)))

    @classmethod
    def load(cls, directory: str | os.PathLike) -> "RegularizationPath":
        directory = Path(directory)
        config_path, weights_path = directory / CONFIG_NAME, directory / WEIGHTS_NAME
        for needed in (config_path, weights_path):
            if not needed.is_file():
                raise FileNotFoundError(f"{needed} is missing: {directory} does not hold a saved path "
                                        "(RegularizationPath.save writes path.json and path.safetensors).")
        meta = json.loads(config_path.read_text())
        if meta.get("weights_sha256") != _sha256(weights_path):
            raise ValueError(f"{weights_path} does not match the checksum in {config_path}: the file was "
                             "changed or only partly written. Save the path again.")
        tensors = load_file(weights_path)
        shape = tuple(meta["shape"])

        def point(name, lam, metrics):
            return PathPoint(lam, tensors[f"{name}.indices"], tensors[f"{name}.values"],
                             tensors[f"{name}.bias"], shape, metrics)

        points = [point(f"point_{i}", p["lam"], p["metrics"]) for i, p in enumerate(meta["points"])]
        path = cls(points, family=meta["family"], alpha=meta["alpha"], group=meta["group"],
                   mean=tensors["mean"], std=tensors["std"], lam_max=meta["lam_max"], info=meta["info"])
        if meta["selected"] is not None:
            path.selected = point("selected", meta["selected"]["lam"], meta["selected"]["metrics"])
            path.selection = meta["selected"]["selection"]
        return path

    # ----------------------------------------------------------------- plotting
    def plot(self, ax=None):
        """Accuracy and features per class against lambda; returns the matplotlib figure."""
        from .plot import plot_path

        return plot_path(self, ax=ax)


def _atomic_write(target: Path, write: Callable[[str], Any]) -> None:
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _json_default(value):
    if isinstance(value, torch.Tensor):
        return value.tolist()
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"cannot store {type(value).__name__} in path.json")
