"""semsearch: semantic search that shows why a passage matched, from stored token vectors.

    import semsearch

    with semsearch.open("my-store", create=True) as s:
        s.ingest(["notes.jsonl"])
        hits = s.search("how do vaccines work", k=5).hits
        why = s.explain(hits[0].passage_id)  # from stored token vectors: no model run
"""

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
from .results import (
    CheckReport,
    DeleteReport,
    EvalReport,
    Explanation,
    Hit,
    IndexReport,
    IngestReport,
    LexicalExplanation,
    RecodeReport,
    SearchResult,
    Snippet,
    StoreInfo,
    TermShare,
)
from .session import Session
from .session import open_session as open

__version__ = "0.1.0"

__all__ = [
    "CheckReport",
    "ConfigError",
    "DeleteReport",
    "EvalReport",
    "Explanation",
    "Hit",
    "IndexReport",
    "IngestReport",
    "InputError",
    "LexicalExplanation",
    "ModelError",
    "NotFoundError",
    "QueryError",
    "RecodeReport",
    "SearchResult",
    "SemsearchError",
    "Session",
    "Settings",
    "Snippet",
    "StoreError",
    "StoreInfo",
    "TermShare",
    "__version__",
    "load_settings",
    "open",
]
