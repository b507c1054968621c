# Build fragment for lib/data: data-set code that more than one plugin uses — the
# sliding-window store, position splits and seeded shuffles (token-windows,
# classification-dataset, instruction-collator) and prompt templates
# (prompt-format, judge). Host-only: not part of the installed SDK.

lib_libgptd_la_SOURCES += lib/data/windows.c lib/data/prompt-template.c
noinst_HEADERS += include/gptd/windows.h include/gptd/prompt-template.h
