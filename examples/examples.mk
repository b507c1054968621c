# Build fragment for examples/: shipped in the distribution, built by
# tests/e2e/sdk.sh against an installed gptd (never by this build: they show a
# plugin author's own build).
EXTRA_DIST += examples/plugin/Makefile examples/plugin/README.md \
	examples/plugin/example.h examples/plugin/plugin.c examples/plugin/upper.c \
	examples/plugin/word-count.c examples/plugin/test-example.c \
	examples/plugin/example.pipeline
