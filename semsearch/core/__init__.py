"""Pure parts: shared records, the score decomposition and the bytes ↔ arrays codecs (numpy only)."""
