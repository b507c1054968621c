# Build fragment for plugins/instruct: the instruct plugin (json-source,
# prompt-format, instruction-collator); see the top-level Makefile.am. The prompt
# templates and the collator's data set sit in a convenience library that both the
# plugin and its unit tests link.

noinst_LTLIBRARIES += plugins/instruct/libinstruct-core.la
plugins_instruct_libinstruct_core_la_SOURCES = \
	plugins/instruct/collate.c \
	plugins/instruct/collate.h \
	plugins/instruct/template.c \
	plugins/instruct/template.h
plugins_instruct_libinstruct_core_la_LIBADD = plugins/train/libtrain-core.la

plugin_LTLIBRARIES += plugins/instruct/instruct.la
plugins_instruct_instruct_la_SOURCES = \
	plugins/instruct/plugin.c \
	plugins/instruct/instruct-plugin.h \
	plugins/instruct/json-source.c \
	plugins/instruct/prompt-format.c \
	plugins/instruct/instruction-collator.c
plugins_instruct_instruct_la_LDFLAGS = $(PLUGIN_LINKFLAGS)
plugins_instruct_instruct_la_LIBADD = plugins/instruct/libinstruct-core.la $(PLUGIN_LIBS)

check_PROGRAMS += tests/test-instruct-collate
TESTS += tests/test-instruct-collate
tests_test_instruct_collate_SOURCES = tests/test-instruct-collate.c tests/test-nn-util.h
tests_test_instruct_collate_LDADD = plugins/instruct/libinstruct-core.la $(TEST_LIBS)

check_PROGRAMS += tests/test-instruct
TESTS += tests/test-instruct
tests_test_instruct_SOURCES = tests/test-instruct.c
tests_test_instruct_LDADD = $(TEST_LIBS)

# The reference script and its goldens, and the stages' documentation.
EXTRA_DIST += docs/instruct.md \
	tests/golden/instruct/make_goldens.py tests/golden/instruct/collate.bin \
	tests/golden/instruct/alpaca.json

# The instruction fine-tuning pipelines.
dist_pipelines_DATA += pipelines/alpaca-small.pipeline pipelines/alpaca-finetune.pipeline
