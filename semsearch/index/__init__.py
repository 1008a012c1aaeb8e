"""The FAISS sentence-vector index (knows nothing of the store: it is fed ids and vectors)."""

from .factory import AUTO_FLAT_LIMIT, IndexOptions, build, resolve_factory
from .vectors import INDEX_FILE, INDEX_META, IndexInfo, VectorIndex, read_info

__all__ = ["AUTO_FLAT_LIMIT", "INDEX_FILE", "INDEX_META", "IndexInfo", "IndexOptions", "VectorIndex", "build", "read_info", "resolve_factory"]
