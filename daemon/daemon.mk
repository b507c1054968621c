# Build fragment for daemon: the gptd daemon (and its worker and one-shot modes,
# and the HTTP gateway, gptd --http, the one part that links libsoup 3), and the
# gptctl client; see the top-level Makefile.am. The frame codec they speak is in
# libgptd (lib/io/io.mk).

bin_PROGRAMS += daemon/gptd daemon/gptctl

daemon_gptd_SOURCES = \
	daemon/gptd.c \
	daemon/cli.c daemon/cli.h daemon/cli-generate.c daemon/cli-quantize.c \
	daemon/daemon-config.c daemon/daemon-config.h \
	daemon/server.c daemon/server.h daemon/server-private.h \
	daemon/server-conn.c daemon/server-logs.c daemon/server-output.c \
	daemon/server-requests.c daemon/server-runs.c \
	daemon/server-serving.c daemon/server-probe.c \
	daemon/serve.c daemon/serve.h daemon/server-http.c \
	daemon/check.c daemon/check.h \
	daemon/worker.c daemon/worker.h \
	daemon/runs.c daemon/runs.h daemon/remove-tree.c daemon/remove-tree.h \
	daemon/ranks.c daemon/ranks.h \
	daemon/paths.c daemon/paths.h \
	daemon/control-client.c daemon/control-client.h \
	daemon/http.h daemon/http-server.c daemon/http-models.c daemon/http-openai.c \
	daemon/http-stream.c daemon/http-metrics.c
daemon_gptd_CPPFLAGS = $(AM_CPPFLAGS) $(SOUP_CFLAGS) -DG_LOG_DOMAIN=\"gptd\" \
	-DGPTD_SYSCONFDIR=\"$(sysconfdir)\"
daemon_gptd_LDADD = lib/libgptd.la $(DEP_LIBS) $(SOUP_LIBS) $(OPENMP_CFLAGS)

daemon_gptctl_SOURCES = \
	daemon/control-client.c daemon/control-client.h \
	daemon/gptctl.c \
	daemon/paths.c daemon/paths.h
daemon_gptctl_CPPFLAGS = $(AM_CPPFLAGS) -DG_LOG_DOMAIN=\"gptctl\"
daemon_gptctl_LDADD = lib/libgptd.la $(DEP_LIBS) $(OPENMP_CFLAGS)

check_PROGRAMS += tests/test-frame
TESTS += tests/test-frame
tests_test_frame_SOURCES = tests/test-frame.c
tests_test_frame_LDADD = $(TEST_LIBS)


check_PROGRAMS += tests/test-daemon-runs
TESTS += tests/test-daemon-runs
tests_test_daemon_runs_SOURCES = tests/test-daemon-runs.c daemon/runs.c daemon/runs.h \
	daemon/remove-tree.c daemon/remove-tree.h
tests_test_daemon_runs_CPPFLAGS = $(AM_CPPFLAGS) -I$(top_srcdir)/daemon -DG_LOG_DOMAIN=\"gptd\"
tests_test_daemon_runs_LDADD = $(TEST_LIBS)

# The HTTP gateway's parsing, models directory and metrics, without a server.
check_PROGRAMS += tests/test-http
TESTS += tests/test-http
tests_test_http_SOURCES = tests/test-http.c daemon/http.h daemon/http-openai.c \
	daemon/http-models.c daemon/http-metrics.c
tests_test_http_CPPFLAGS = $(AM_CPPFLAGS) $(SOUP_CFLAGS) -I$(top_srcdir)/daemon \
	-DG_LOG_DOMAIN=\"gptd\"
tests_test_http_LDADD = $(TEST_LIBS) $(SOUP_LIBS)
