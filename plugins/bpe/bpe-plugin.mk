# Build fragment for plugins/bpe: the bpe plugin (bpe-tokenizer, bpe-trainer,
# token-writer, token-reader); see the top-level Makefile.am.
plugin_LTLIBRARIES += plugins/bpe/bpe.la
plugins_bpe_bpe_la_SOURCES = plugins/bpe/bpe-plugin.c plugins/bpe/bpe-plugin.h \
	plugins/bpe/bpe-carry.c plugins/bpe/bpe-tokenizer.c plugins/bpe/bpe-trainer.c \
	plugins/bpe/token-writer.c plugins/bpe/token-reader.c
plugins_bpe_bpe_la_LDFLAGS = $(PLUGIN_LINKFLAGS)
plugins_bpe_bpe_la_LIBADD = $(PLUGIN_LIBS)
dist_pipelines_DATA += pipelines/tokenize.pipeline

check_PROGRAMS += tests/test-bpe-stages
TESTS += tests/test-bpe-stages
tests_test_bpe_stages_SOURCES = tests/test-bpe-stages.c tests/test-pipeline-util.h
tests_test_bpe_stages_LDADD = $(TEST_LIBS)
