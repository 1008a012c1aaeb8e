"""semsearch: semantic search that shows why a passage matched, from stored token vectors."""

from .config import Settings, load_settings
from .errors import (
    ConfigError,
    InputError,
    ModelError,
    NotFoundError,
    QueryError,
    SemsearchError,
    StoreError,
)

__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "InputError",
    "ModelError",
    "NotFoundError",
    "QueryError",
    "SemsearchError",
    "Settings",
    "StoreError",
    "__version__",
    "load_settings",
]
