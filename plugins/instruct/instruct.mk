# Build fragment for plugins/instruct: the instruct plugin (json-source,
# prompt-format, instruction-collator); see the top-level Makefile.am. The prompt
# templates and the seeded splits it shares with other plugins are in libgptd
# (lib/data), shared with the judge plugin and the HTTP gateway; the collator's
# data set sits in a convenience library, which the plugin and its unit tests link.

noinst_LTLIBRARIES += plugins/instruct/libinstruct-core.la
plugins_instruct_libinstruct_core_la_SOURCES = \
	plugins/instruct/collate.c \
	plugins/instruct/collate.h

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

# The alpaca-small pipeline end to end, its judge against the test's
# Ollama-compatible server.
check_PROGRAMS += tests/test-alpaca
TESTS += tests/test-alpaca
tests_test_alpaca_SOURCES = tests/test-alpaca.c tests/test-ollama-server.c \
	tests/test-ollama-server.h
tests_test_alpaca_CPPFLAGS = $(AM_CPPFLAGS) $(SOUP_CFLAGS)
tests_test_alpaca_LDADD = $(TEST_LIBS) $(SOUP_LIBS)

# Instruction fine-tuning steps against PyTorch (bench/instruct/run.sh).
noinst_PROGRAMS += bench/instruct/bench-instruct
bench_instruct_bench_instruct_SOURCES = bench/instruct/bench-instruct.c
bench_instruct_bench_instruct_LDADD = plugins/instruct/libinstruct-core.la $(TEST_LIBS)
EXTRA_DIST += bench/instruct/run.sh bench/instruct/bench_instruct_torch.py

# The reference script and its goldens, and the stages' documentation.
EXTRA_DIST += docs/instruct.md \
	tests/golden/instruct/make_goldens.py tests/golden/instruct/collate.bin \
	tests/golden/instruct/alpaca.json

# The instruction fine-tuning pipelines.
dist_pipelines_DATA += pipelines/alpaca-small.pipeline pipelines/alpaca-finetune.pipeline
