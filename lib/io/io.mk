# Build fragment for lib/io (atomic durable writes, bounded JSON parsing, safetensors) and the model
# directory code built on it (lib/nn/gpt2-file.c); see the top-level Makefile.am.

lib_libgptd_la_SOURCES += \
	lib/io/atomic-file.c \
	lib/io/install-paths.c \
	lib/io/install-paths.h \
	lib/io/json-load.c \
	lib/io/safetensors.c

# Length-prefixed protobuf frames: the daemon's control socket, workers' pipes.
lib_libgptd_la_SOURCES += lib/io/frame.c
noinst_HEADERS += include/gptd/frame.h

noinst_HEADERS += \
	include/gptd/atomic-file.h \
	include/gptd/json-load.h \
	include/gptd/safetensors.h

check_PROGRAMS += tests/test-safetensors
TESTS += tests/test-safetensors
tests_test_safetensors_SOURCES = tests/test-safetensors.c
tests_test_safetensors_LDADD = $(TEST_LIBS)

check_PROGRAMS += tests/test-json-load
TESTS += tests/test-json-load
tests_test_json_load_SOURCES = tests/test-json-load.c
tests_test_json_load_LDADD = $(TEST_LIBS)

check_PROGRAMS += tests/test-atomic-file
TESTS += tests/test-atomic-file
tests_test_atomic_file_SOURCES = tests/test-atomic-file.c
tests_test_atomic_file_LDADD = $(TEST_LIBS)

# Model directories, training state and checkpoints (built on lib/nn).
lib_libgptd_la_SOURCES += lib/nn/gpt2-file.c lib/nn/gpt2-lora-file.c lib/nn/gpt2-lora-file.h
noinst_HEADERS += include/gptd/gpt2-file.h

check_PROGRAMS += tests/test-gpt2-file
TESTS += tests/test-gpt2-file
tests_test_gpt2_file_SOURCES = tests/test-gpt2-file.c
tests_test_gpt2_file_LDADD = $(TEST_LIBS)
