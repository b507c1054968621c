# Build fragment for lib/plugin: the plugin loader and stage-type registry.
lib_libgptd_la_SOURCES += lib/plugin/registry.c lib/plugin/registry-format.c
gptdinclude_HEADERS += include/gptd/registry.h
