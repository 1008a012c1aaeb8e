"""Errors semsearch raises; each message says what to do next.

    SemsearchError                 base: the CLI prints "Error: <message>" and exits 1
    ├── ConfigError                a bad setting in config.yaml, the environment or a flag
    ├── InputError                 a corpus file or record that cannot be read (names file:line)
    ├── ModelError                 a model that cannot be loaded or does not fit the store
    ├── StoreError                 a store that is missing, foreign, corrupt or locked
    │   └── NotFoundError          an unknown passage, document or cached query
    └── QueryError                 an empty or otherwise unusable query
"""

from __future__ import annotations


class SemsearchError(Exception):
    """Base class: a problem the user can fix, described in the message."""


class ConfigError(SemsearchError):
    """Raised for an unknown key or an invalid value in the settings."""


class InputError(SemsearchError):
    """Raised when a corpus file or one of its records cannot be read."""


class ModelError(SemsearchError):
    """Raised when a model cannot be loaded or differs from the store's model."""


class StoreError(SemsearchError):
    """Raised when a store is missing, from another tool or version, or damaged."""


class NotFoundError(StoreError):
    """Raised for an id or key that the store does not hold."""


class QueryError(SemsearchError):
    """Raised for an empty or unusable query."""
