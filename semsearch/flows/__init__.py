"""Flows compose the parts (store, index, encoder, documents, core math): ingest, search, explain,
maintenance, evaluate. They run no SQL themselves; the Session calls them."""
