"""Where and how a method trains: device, threads, determinism, memory format, compilation."""
from __future__ import annotations

import torch

from dhcbench.allocator import tune_cpu_allocator
from dhcbench.benchmark.spec import TrainSpec
from dhcbench.evaluation.inference import resolve_device
from dhcbench.methods.base import Method


def place_method(spec: TrainSpec, method: Method) -> torch.device:
    """Place ``method`` as the training spec says; returns the device it is on.

    The spec's CPU thread count; its device (``train.device``: ``auto``, ``cpu``, ``cuda``,
    ``cuda:1`` …); on a CPU deterministic algorithms and the tuned allocator
    (:mod:`dhcbench.allocator`); channels-last 3D memory format and ``torch.compile`` for
    every network when the spec asks.
    """
    device = resolve_device(spec.device)
    if spec.threads:
        torch.set_num_threads(spec.threads)
    if device.type == "cpu":
        torch.use_deterministic_algorithms(True, warn_only=True)
        tune_cpu_allocator()
    method.to(device)
    for net in method.networks.values():
        if spec.channels_last:
            net.to(memory_format=torch.channels_last_3d)
        if spec.compile:
            net.compile()
    return device
