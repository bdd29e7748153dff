"""Small problems with exact answers, used by experiments and tests (e.g. the SGLD mixture posterior)."""
