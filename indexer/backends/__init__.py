"""Search engine adapters: each implements ``indexer.search_backend.SearchBackend``."""
