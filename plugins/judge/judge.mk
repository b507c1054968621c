# Build fragment for plugins/judge; see the top-level Makefile.am.
# The judge plugin provides the `judge` stage; it is the one plugin that links
# libsoup 3 (the HTTP client that talks to the Ollama server). The book's
# format_input comes from libgptd's prompt templates
# (lib/pipeline/prompt-template.c).

plugin_LTLIBRARIES += plugins/judge/judge.la
plugins_judge_judge_la_SOURCES = \
	plugins/judge/plugin.c \
	plugins/judge/judge-plugin.h \
	plugins/judge/judge.c \
	plugins/judge/judge-prompt.c \
	plugins/judge/judge-prompt.h \
	plugins/judge/ollama-chat.c \
	plugins/judge/ollama-chat.h
plugins_judge_judge_la_CPPFLAGS = $(AM_CPPFLAGS) $(SOUP_CFLAGS)
plugins_judge_judge_la_LDFLAGS = $(PLUGIN_LINKFLAGS)
plugins_judge_judge_la_LIBADD = $(PLUGIN_LIBS) \
	$(SOUP_LIBS)

check_PROGRAMS += tests/test-judge
TESTS += tests/test-judge
tests_test_judge_SOURCES = tests/test-judge.c plugins/judge/judge-prompt.c \
	tests/test-ollama-server.c tests/test-ollama-server.h
tests_test_judge_CPPFLAGS = $(AM_CPPFLAGS) $(SOUP_CFLAGS) -I$(top_srcdir)/plugins/judge
tests_test_judge_LDADD = $(TEST_LIBS) $(SOUP_LIBS)
