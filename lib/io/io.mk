# Build fragment for lib/io; see the top-level Makefile.am.
