"""Proxy tasks: small networks whose every norm-activation slot holds a candidate, their data and training."""

from .architectures import ARCHITECTURES, build_model
from .config import ArchitectureConfig, DataConfig, TrainingConfig
from .data import DataError, LoadedData, ProxyData, load_data
from .models import count_slots
from .streaming import StreamedData
from .training import Metrics, ProxyTrainer, TrainingCancelled, train_proxy

__all__ = [
    "ARCHITECTURES",
    "ArchitectureConfig",
    "DataConfig",
    "DataError",
    "LoadedData",
    "Metrics",
    "ProxyData",
    "ProxyTrainer",
    "StreamedData",
    "TrainingCancelled",
    "TrainingConfig",
    "build_model",
    "count_slots",
    "load_data",
    "train_proxy",
]
