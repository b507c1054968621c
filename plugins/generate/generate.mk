# Build fragment for plugins/generate; see the top-level Makefile.am.
# The generation and classification libraries (sampling, the generator, the
# classifier) go into libgptd, where the daemon uses them too; the plugin
# provides the `generator`, `responder` and `classifier` stages.

lib_libgptd_la_SOURCES += \
	lib/nn/sampling.c \
	lib/nn/generate.c \
	lib/nn/stop-strings.c \
	lib/nn/classify.c
gptdinclude_HEADERS += include/gptd/generate.h include/gptd/classify.h

plugin_LTLIBRARIES += plugins/generate/generate.la
plugins_generate_generate_la_SOURCES = \
	plugins/generate/plugin.c \
	plugins/generate/generate-plugin.h \
	plugins/generate/generator.c \
	plugins/generate/record-json.c \
	plugins/generate/record-json.h \
	plugins/generate/response-text.c \
	plugins/generate/response-text.h \
	plugins/generate/responder.c \
	plugins/generate/classifier.c
plugins_generate_generate_la_LDFLAGS = $(PLUGIN_LINKFLAGS)
plugins_generate_generate_la_LIBADD = $(PLUGIN_LIBS)

check_PROGRAMS += tests/test-generate
TESTS += tests/test-generate
tests_test_generate_SOURCES = tests/test-generate.c
tests_test_generate_LDADD = $(TEST_LIBS)

check_PROGRAMS += tests/test-generate-stage
TESTS += tests/test-generate-stage
tests_test_generate_stage_SOURCES = tests/test-generate-stage.c
tests_test_generate_stage_LDADD = $(TEST_LIBS)

check_PROGRAMS += tests/test-responder
TESTS += tests/test-responder
tests_test_responder_SOURCES = tests/test-responder.c \
	plugins/generate/record-json.c plugins/generate/response-text.c
tests_test_responder_CPPFLAGS = $(AM_CPPFLAGS) -I$(top_srcdir)/plugins/generate
tests_test_responder_LDADD = $(TEST_LIBS)
check_PROGRAMS += tests/test-classify-stage
TESTS += tests/test-classify-stage
tests_test_classify_stage_SOURCES = tests/test-classify-stage.c
tests_test_classify_stage_LDADD = $(TEST_LIBS)

dist_pipelines_DATA += pipelines/generate.pipeline

EXTRA_DIST += \
	tests/golden/generate/make_golden.py \
	tests/golden/generate/greedy.json \
	tests/golden/generate/model/config.json \
	tests/golden/generate/model/model.safetensors \
	tests/golden/generate/model/vocab.json \
	tests/golden/generate/model/merges.txt

noinst_PROGRAMS += bench/generate/bench-generate
bench_generate_bench_generate_SOURCES = bench/generate/bench-generate.c
bench_generate_bench_generate_LDADD = $(TEST_LIBS)
