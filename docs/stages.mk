# Build fragment for docs/stages.md, the stage reference generated from
# `gptd plugins --json` by tools/stages-doc.py: `make stages-doc` rewrites it (in
# the source tree), tests/test-stages-doc.sh checks it is current.

dist_docsdoc_DATA += docs/stages.md
EXTRA_DIST += tools/stages-doc.py
TESTS += tests/test-stages-doc.sh
dist_check_SCRIPTS += tests/test-stages-doc.sh

stages-doc: daemon/gptd $(plugin_LTLIBRARIES)
	$(AM_V_GEN)env -u GPTD_PLUGIN_PATH -u GPTD_PLUGIN_EXCLUDE daemon/gptd plugins --json \
	  > stages.json && python3 $(srcdir)/tools/stages-doc.py stages.json \
	  > $(srcdir)/docs/stages.md && rm -f stages.json
.PHONY: stages-doc
