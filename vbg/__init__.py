"""vbg: a live webcam virtual background (torchvision person segmentation)."""

from vbg.errors import (
    BackgroundError,
    ConfigError,
    ModelError,
    ProcessingError,
    SinkError,
    SourceError,
    VbgError,
)

__version__ = "0.1.0"

__all__ = [
    "BackgroundError",
    "ConfigError",
    "ModelError",
    "ProcessingError",
    "SinkError",
    "SourceError",
    "VbgError",
    "__version__",
]
