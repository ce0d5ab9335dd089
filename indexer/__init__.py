"""Indexer: parse MIME for search, extract text, the query language, search backends."""
