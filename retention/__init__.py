"""Retention: policies, legal holds, purge, exports and the audit trail."""
