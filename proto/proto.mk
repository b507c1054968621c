# The message contract: proto/gptd.proto compiled by protoc-c at build time into
# libgptd, so each message type has exactly one descriptor.
PROTO_GEN = proto/gptd.pb-c.c proto/gptd.pb-c.h
nodist_lib_libgptd_la_SOURCES += proto/gptd.pb-c.c proto/gptd.pb-c.h
# Plugins include it as <gptd/gptd.pb-c.h>: a copy goes where that name finds it, in
# the build tree as where it is installed.
nodist_gptdinclude_HEADERS += include/gptd/gptd.pb-c.h
BUILT_SOURCES += include/gptd/gptd.pb-c.h
CLEANFILES += include/gptd/gptd.pb-c.h
include/gptd/gptd.pb-c.h: proto/gptd.pb-c.h
	$(AM_V_GEN)$(MKDIR_P) include/gptd && cp proto/gptd.pb-c.h $@
BUILT_SOURCES += $(PROTO_GEN)
CLEANFILES += $(PROTO_GEN)
EXTRA_DIST += proto/gptd.proto

proto/gptd.pb-c.c proto/gptd.pb-c.h: proto/gptd.proto
	$(AM_V_GEN)$(MKDIR_P) proto && \
	$(PROTOC_C) --proto_path=$(top_srcdir)/proto --c_out=proto $(top_srcdir)/proto/gptd.proto
