# Build fragment for daemon; see the top-level Makefile.am.
