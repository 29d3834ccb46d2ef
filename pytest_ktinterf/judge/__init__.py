"""Judging comparisons: paired statistics (``stats``), the expectation vocabulary
(``expectations``) and the verdicts drawn from an interval against an expectation (``verdict``)."""
