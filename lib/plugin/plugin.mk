# Build fragment for lib/plugin: the plugin loader and stage-type registry.
lib_libgptd_la_SOURCES += lib/plugin/registry.c lib/plugin/registry-format.c
noinst_HEADERS += include/gptd/registry.h

# Test-only plugins, built as real shared objects (-rpath makes libtool build a .so
# although they are never installed) into tests/.libs, which is on the tests'
# GPTD_PLUGIN_PATH: a good one with the stage types the tests use, one built for
# another ABI, one without a descriptor, one re-registering a taken name and one
# that crashes while loading when GPTD_TEST_CRASH_ON_LOAD=1 is set.
TEST_PLUGIN_LDFLAGS = $(PLUGIN_LINKFLAGS) -rpath /nowhere
check_LTLIBRARIES += tests/testplugin-good.la tests/testplugin-wrong-abi.la \
	tests/testplugin-no-descriptor.la tests/testplugin-twin.la tests/testplugin-crash.la
tests_testplugin_good_la_SOURCES = tests/plugins/testplugin-good.c
tests_testplugin_good_la_LDFLAGS = $(TEST_PLUGIN_LDFLAGS)
tests_testplugin_good_la_LIBADD = $(PLUGIN_LIBS)
tests_testplugin_wrong_abi_la_SOURCES = tests/plugins/testplugin-wrong-abi.c
tests_testplugin_wrong_abi_la_LDFLAGS = $(TEST_PLUGIN_LDFLAGS)
tests_testplugin_wrong_abi_la_LIBADD = $(PLUGIN_LIBS)
tests_testplugin_no_descriptor_la_SOURCES = tests/plugins/testplugin-no-descriptor.c
tests_testplugin_no_descriptor_la_LDFLAGS = $(TEST_PLUGIN_LDFLAGS)
tests_testplugin_no_descriptor_la_LIBADD = $(PLUGIN_LIBS)
tests_testplugin_twin_la_SOURCES = tests/plugins/testplugin-twin.c
tests_testplugin_twin_la_LDFLAGS = $(TEST_PLUGIN_LDFLAGS)
tests_testplugin_twin_la_LIBADD = $(PLUGIN_LIBS)
tests_testplugin_crash_la_SOURCES = tests/plugins/testplugin-crash.c
tests_testplugin_crash_la_LDFLAGS = $(TEST_PLUGIN_LDFLAGS)
tests_testplugin_crash_la_LIBADD = $(PLUGIN_LIBS)
EXTRA_DIST += tests/test-pipeline-util.h

check_PROGRAMS += tests/test-plugin
TESTS += tests/test-plugin
tests_test_plugin_SOURCES = tests/test-plugin.c
tests_test_plugin_LDADD = $(TEST_LIBS)

# The test harness for one stage (installed: plugin authors test with it).
lib_libgptd_la_SOURCES += lib/plugin/harness.c
gptdinclude_HEADERS += include/gptd/harness.h

# The exported symbols: lib/libgptd.sym, with the functions protoc-c generates.
lib_libgptd_la_LDFLAGS += -Wl,--version-script=lib/libgptd.ver
EXTRA_lib_libgptd_la_DEPENDENCIES = lib/libgptd.ver
EXTRA_DIST += lib/libgptd.sym
CLEANFILES += lib/libgptd.ver
lib/libgptd.ver: $(top_srcdir)/lib/libgptd.sym proto/gptd.pb-c.h
	$(AM_V_GEN)$(MKDIR_P) lib && \
	syms=`$(GREP) -o 'gptd__[a-z0-9_]*__[a-z_]*' proto/gptd.pb-c.h | LC_ALL=C sort -u | \
	  sed 's/$$/;/' | tr '\n' ' '` && \
	sed "s/@PROTOBUF_SYMBOLS@/$$syms/" $(top_srcdir)/lib/libgptd.sym > $@.tmp && mv $@.tmp $@

check_PROGRAMS += tests/test-harness
TESTS += tests/test-harness
tests_test_harness_SOURCES = tests/test-harness.c
tests_test_harness_LDADD = $(TEST_LIBS)
