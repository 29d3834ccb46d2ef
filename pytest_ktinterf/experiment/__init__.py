"""Experiments: the TOML schema (``schema``: hard claims and the report's cells), their collection
as pytest items (``collect``) and the run of one condition shared with code-defined tests
(``interfere``)."""
