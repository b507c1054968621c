# Build fragment for lib/nn; see the top-level Makefile.am.
