# Build fragment for plugins/core: the core plugin (text-source, table-source, dump).
plugin_LTLIBRARIES += plugins/core/core.la
plugins_core_core_la_SOURCES = plugins/core/core.c plugins/core/core.h \
	plugins/core/text-source.c plugins/core/table-source.c plugins/core/utf8.c \
	plugins/core/dump.c
plugins_core_core_la_LDFLAGS = $(PLUGIN_LINKFLAGS)
plugins_core_core_la_LIBADD = $(PLUGIN_LIBS)
dist_pipelines_DATA += pipelines/hello.pipeline

check_PROGRAMS += tests/test-runner-stages
TESTS += tests/test-runner-stages
tests_test_runner_stages_SOURCES = tests/test-runner-stages.c tests/test-pipeline-util.h
tests_test_runner_stages_LDADD = $(TEST_LIBS)

check_PROGRAMS += tests/test-table-source
TESTS += tests/test-table-source
tests_test_table_source_SOURCES = tests/test-table-source.c tests/test-pipeline-util.h \
	tests/test-bpe-util.h
tests_test_table_source_LDADD = $(TEST_LIBS)
