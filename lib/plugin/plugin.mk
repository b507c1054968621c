# Build fragment for lib/plugin; see the top-level Makefile.am.
