"""Archiver: the SMTP edge, journaling, importers (filtering and delivery come later)."""
