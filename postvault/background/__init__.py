"""Background indexing: the Celery app of the scale-out profile and the hook that wakes the indexer."""
