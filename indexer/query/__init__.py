"""The query language: one parser to an AST; each backend compiles the AST."""
