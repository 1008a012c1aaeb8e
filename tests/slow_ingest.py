"""Run `semsearch` with the fake hash encoder slowed down, so a test can kill it mid-ingest.

    python -m tests.slow_ingest SECONDS_PER_BATCH semsearch-args...
"""

from __future__ import annotations

import sys
import time

from semsearch import encoder
from semsearch.cli import main
from tests.conftest import HashEncoder


class SlowEncoder(HashEncoder):
    def __init__(self, pause: float) -> None:
        super().__init__()
        self.pause = pause

    def encode(self, texts: list[str]) -> list:  # type: ignore[override]
        time.sleep(self.pause)
        return super().encode(texts)


if __name__ == "__main__":
    pause = float(sys.argv[1])
    encoder.load_encoder = lambda *a, **k: SlowEncoder(pause)  # type: ignore[assignment]
    sys.argv = ["semsearch", *sys.argv[2:]]
    main()
