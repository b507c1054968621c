# Build fragment for lib/pipeline: pipeline files, stage parameters, the runner,
# messages as JSON, prompt templates (the instruct and judge plugins and the HTTP
# gateway format prompts with them).
lib_libgptd_la_SOURCES += lib/pipeline/params.c lib/pipeline/params-private.h \
	lib/pipeline/pipeline.c lib/pipeline/pipeline-private.h \
	lib/pipeline/runner.c lib/pipeline/runner-format.c \
	lib/pipeline/message-json.c lib/pipeline/validate-result.c
noinst_HEADERS += include/gptd/pipeline.h include/gptd/runner.h
gptdinclude_HEADERS += include/gptd/message-json.h

check_PROGRAMS += tests/test-pipeline
TESTS += tests/test-pipeline
tests_test_pipeline_SOURCES = tests/test-pipeline.c tests/test-pipeline-util.h
tests_test_pipeline_LDADD = $(TEST_LIBS)

check_PROGRAMS += tests/test-runner
TESTS += tests/test-runner
tests_test_runner_SOURCES = tests/test-runner.c tests/test-pipeline-util.h
tests_test_runner_LDADD = $(TEST_LIBS)

# gptd validate / plugins / run, as a user runs them.
TESTS += tests/test-pipeline-cli.sh
dist_check_SCRIPTS += tests/test-pipeline-cli.sh

# The pipelines shown in the documentation are valid as written.
TESTS += tests/test-doc-examples.sh
dist_check_SCRIPTS += tests/test-doc-examples.sh
