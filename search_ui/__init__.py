"""Search UI: principals, the scope each role gets, search and view (web pages come later)."""
