"""A trained method packaged for inference: the model every seed run logs to MLflow.

A :class:`Segmenter` holds the method's networks, the dataset's classes and geometry and
the run's sliding-window settings, so a volume can be segmented from the logged model
alone::

    from dhcbench.evaluation.segmenter import load_segmenter
    model = load_segmenter("runs:/<seed run id>/model")
    labels = model.segment(image)   # (D, H, W) volume in the training geometry

``mlflow.pytorch.load_model("runs:/<id>/model")`` returns the same object.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from dhcbench.evaluation.inference import default_stride, predict_case_probs

#: The environment variable MLflow reads its tracking URI from.
URI_ENV = "MLFLOW_TRACKING_URI"

if TYPE_CHECKING:
    from dhcbench.datasets.base import DatasetSpec
    from dhcbench.methods.base import Method


@dataclass(frozen=True)
class WindowSettings:
    """Sliding-window settings (an :class:`~dhcbench.evaluation.inference.InferenceSettings`)."""

    stride: tuple[int, int, int]
    window_batch: int


class Segmenter(nn.Module):
    """A method's networks with what inference needs: classes, patch, stride, window batch.

    ``forward`` maps ``(B, C, D, H, W)`` patches to the method's logits ``(B, K, D, H, W)``;
    :meth:`segment` and :meth:`probabilities` run the sliding window over a whole volume as
    the run's testing did.
    """

    def __init__(self, method: Method, dataset: DatasetSpec,
                 stride: tuple[int, int, int] | None = None, window_batch: int = 4) -> None:
        super().__init__()
        self.networks = method.networks  # a registered submodule: .to(), .eval(), state
        self.method = method
        self.dataset = dataset
        self.settings = WindowSettings(tuple(stride or default_stride(dataset.patch_size)),
                                       int(window_batch))

    @property
    def class_names(self) -> tuple[str, ...]:
        """The classes of the output channels, background first."""
        return self.dataset.class_names

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """The method's logits for a batch of patches (eval mode)."""
        return self.method.predict(image)

    def _device(self) -> torch.device:
        return next(self.networks.parameters()).device

    def probabilities(self, image: np.ndarray) -> np.ndarray:
        """``(K, D, H, W)`` float32 class probabilities of a whole volume.

        ``image`` is ``(C, D, H, W)`` or ``(D, H, W)``, normalised as in training.
        """
        self.eval()
        probs = predict_case_probs(self.method.predict, image, self.dataset, self.settings,
                                   self._device())
        return probs.numpy()

    def segment(self, image: np.ndarray) -> np.ndarray:
        """The ``(D, H, W)`` uint8 label map of a whole volume (argmax of the probabilities)."""
        return self.probabilities(image).argmax(axis=0).astype(np.uint8)


@contextmanager
def tracking_uri(uri: str) -> Iterator[None]:
    """MLflow's global tracking URI set to ``uri`` for the block, then put back as it was.

    ``$MLFLOW_TRACKING_URI`` is restored too (MLflow's own helper deletes it on the way out).
    """
    import mlflow
    from mlflow.tracking._tracking_service import utils

    old_uri, old_env = utils._tracking_uri, os.environ.get(URI_ENV)
    mlflow.set_tracking_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(old_uri)  # type: ignore[arg-type]  # None: unset
        if old_env is None:
            os.environ.pop(URI_ENV, None)
        else:
            os.environ[URI_ENV] = old_env


def log_segmenter(client_uri: str, run_id: str, model: Segmenter, requirements: list[str],
                  model_id: str) -> Any:
    """Save ``model`` into the logged model ``model_id`` of the run (``runs:/<run_id>/model``).

    Returns MLflow's ``ModelInfo``. ``requirements`` are written as the model's pip
    requirements (no inference of them, which would import and scan the environment).
    """
    import mlflow.pytorch

    # MLflow warns that pickled models run code when loaded: true of every checkpoint; the
    # pt2 format it suggests would lose segment() and the run's settings.
    quiet = logging.getLogger("mlflow.pytorch")
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        with tracking_uri(client_uri):
            return mlflow.pytorch.log_model(model, name="model", run_id=run_id,
                                            model_id=model_id,
                                            pip_requirements=requirements,
                                            serialization_format="pickle")
    finally:
        quiet.setLevel(level)


def load_segmenter(model_uri: str, uri: str | None = None,
                   device: str | torch.device = "cpu") -> Segmenter:
    """A logged :class:`Segmenter` (``runs:/<seed run id>/model``), on ``device``, in eval mode.

    ``uri`` (the tracking URI) None uses MLflow's (``$MLFLOW_TRACKING_URI``, else ``./mlflow.db``).
    """
    import mlflow.pytorch

    with tracking_uri(uri or mlflow.get_tracking_uri()):
        model = mlflow.pytorch.load_model(model_uri, map_location=torch.device(device))
    model.eval()
    return model
