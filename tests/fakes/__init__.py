"""In-memory stand-ins shared by the unit tests: one fake per interface, each run
through that interface's contract tests (tests/unit/bus/test_memory_log.py)."""
