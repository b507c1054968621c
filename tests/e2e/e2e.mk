# Build fragment for tests/e2e; see the top-level Makefile.am.
