# Build fragment for lib/bpe; see the top-level Makefile.am.
