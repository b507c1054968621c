# Build fragment for plugins/bpe; see the top-level Makefile.am.
