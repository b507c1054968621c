# Build fragment for lib/pipeline; see the top-level Makefile.am.
