"""Importers: EML files and folders, mbox (mboxo, mboxrd, mboxcl), maildir (Maildir++) and zip."""

from archiver.importers.runner import ImportSummary, import_paths

__all__ = ["ImportSummary", "import_paths"]
