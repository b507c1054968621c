# Build fragment for plugins/generate; see the top-level Makefile.am.
