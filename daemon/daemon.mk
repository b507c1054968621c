# Build fragment for daemon: the gptd daemon (and its worker and one-shot modes),
# the gptctl client and the frame codec they speak; see the top-level Makefile.am.

lib_libgptd_la_SOURCES += lib/io/frame.c
gptdinclude_HEADERS += include/gptd/frame.h

check_PROGRAMS += tests/test-frame
TESTS += tests/test-frame
tests_test_frame_SOURCES = tests/test-frame.c
tests_test_frame_LDADD = $(TEST_LIBS)
