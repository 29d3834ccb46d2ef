"""Experiments: the TOML schema and profiles (``schema``), their collection as pytest items
(``collect``) and the run of one condition shared with code-defined tests (``interfere``)."""
