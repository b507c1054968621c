# Build fragment for plugins/train; see the top-level Makefile.am.
