# Build fragment for tests/e2e: end-to-end tests of the gptd daemon and gptctl.
# Each test is a shell script printing TAP; it starts its own gptd on a temporary
# socket and state directory and cleans up after itself.

E2E_TESTS = \
	tests/e2e/basic.sh \
	tests/e2e/restart.sh \
	tests/e2e/clients.sh \
	tests/e2e/limits.sh \
	tests/e2e/load.sh \
	tests/e2e/logs.sh \
	tests/e2e/generate.sh \
	tests/e2e/stop-weights.sh \
	tests/e2e/serve-batch.sh \
	tests/e2e/quantize.sh \
	tests/e2e/resume.sh \
	tests/e2e/ranks.sh \
	tests/e2e/pause.sh \
	tests/e2e/runs.sh \
	tests/e2e/serve.sh \
	tests/e2e/classify.sh \
	tests/e2e/probe.sh \
	tests/e2e/owners.sh \
	tests/e2e/environment.sh \
	tests/e2e/plugin-crash.sh \
	tests/e2e/install.sh \
	tests/e2e/systemd.sh \
	tests/e2e/config.sh \
	tests/e2e/completion.sh \
	tests/e2e/gptctl.sh \
	tests/e2e/http.sh

TESTS += $(E2E_TESTS)
EXTRA_DIST += $(E2E_TESTS) tests/e2e/lib.sh

# One install of the build tree (make install DESTDIR=tests/e2e/staged), made
# before any test runs (check_DATA), which the tests that need an installed gptd
# copy (install_into in lib.sh): make install relinks the plugins in place under
# .libs, and a test loading them at that moment would find them missing. Made
# again at every make check (it takes seconds).
check_DATA = tests/e2e/staged.stamp
.PHONY: tests/e2e/staged.stamp
tests/e2e/staged.stamp:
	$(AM_V_GEN)rm -rf tests/e2e/staged && \
	  $(MAKE) $(AM_MAKEFLAGS) install DESTDIR='$(abs_builddir)/tests/e2e/staged' \
	    > tests/e2e/staged.log 2>&1 || { cat tests/e2e/staged.log; exit 1; }; \
	  touch $@
CLEANFILES += tests/e2e/staged.stamp tests/e2e/staged.log
clean-local: clean-staged
clean-staged:
	rm -rf tests/e2e/staged
.PHONY: clean-staged

# A raw socket client (garbage, oversized and malformed frames, a stuck watcher).
check_PROGRAMS += tests/e2e/e2e-raw
tests_e2e_e2e_raw_SOURCES = tests/e2e/e2e-raw.c
tests_e2e_e2e_raw_LDADD = $(TEST_LIBS)

# The generation library run directly, for generate.sh to compare with.
check_PROGRAMS += tests/e2e/e2e-generate
tests_e2e_e2e_generate_SOURCES = tests/e2e/e2e-generate.c
tests_e2e_e2e_generate_LDADD = $(TEST_LIBS)

# The e2e-ticker stage: runs as long as a test needs, fails or dies on request.
check_LTLIBRARIES += tests/e2e/libgptd-e2e.la
tests_e2e_libgptd_e2e_la_SOURCES = tests/e2e/e2e-plugin.c
tests_e2e_libgptd_e2e_la_LDFLAGS = $(PLUGIN_LINKFLAGS) -rpath $(abs_builddir)/tests/e2e
tests_e2e_libgptd_e2e_la_LIBADD = $(PLUGIN_LIBS)

# The listening end of sd_notify, for systemd.sh.
check_PROGRAMS += tests/e2e/e2e-notify
tests_e2e_e2e_notify_SOURCES = tests/e2e/e2e-notify.c

# The fault injection shim (LD_PRELOAD) and the test that drives it. The shim
# lives in its own directory, outside the plugin path the tests scan.
check_LTLIBRARIES += tests/fault/libfault-inject.la
tests_fault_libfault_inject_la_SOURCES = tests/fault/fault-inject.c
tests_fault_libfault_inject_la_CFLAGS = -std=gnu11 $(WARN_CFLAGS)
tests_fault_libfault_inject_la_LDFLAGS = -module -avoid-version -shared -rpath $(abs_builddir)/tests/fault
tests_fault_libfault_inject_la_LIBADD = -ldl
TESTS += tests/fault/fault-inject.sh
EXTRA_DIST += tests/fault/fault-inject.sh

# The plugin SDK from an installed prefix, with the example plugin.
TESTS += tests/e2e/sdk.sh
EXTRA_DIST += tests/e2e/sdk.sh
# A JSON reader for http.sh: a value at a path, or a server-sent event stream's.
check_PROGRAMS += tests/e2e/e2e-json
tests_e2e_e2e_json_SOURCES = tests/e2e/e2e-json.c
tests_e2e_e2e_json_LDADD = $(TEST_LIBS)
