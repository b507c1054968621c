# Build fragment for lib/pipeline: pipeline files, stage parameters, the runner.
gptdinclude_HEADERS += include/gptd/pipeline.h include/gptd/runner.h \
	include/gptd/message-json.h
lib_libgptd_la_SOURCES += lib/pipeline/params.c lib/pipeline/params-private.h \
	lib/pipeline/pipeline.c lib/pipeline/pipeline-private.h
