# Build fragment for plugins/core; see the top-level Makefile.am.
