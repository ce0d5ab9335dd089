"""Storage: the immutable blob store and the SQL catalogue."""
