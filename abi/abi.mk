# Build fragment for abi/: the plugin SDK's ABI. abi/libgptd.abi is the ABI of the
# last release (an abidw dump of libgptd, its public part marked by the installed
# headers); tests/test-abi.sh fails when the built library differs from it, and
# tests/test-sdk-symbols.sh when the exported symbols and the installed headers
# disagree. `make abi-update` rewrites the baseline at a release (abi/README.md).

EXTRA_DIST += abi/libgptd.abi abi/private.suppr abi/README.md
TESTS += tests/test-abi.sh tests/test-sdk-symbols.sh
dist_check_SCRIPTS += tests/test-abi.sh tests/test-sdk-symbols.sh
AM_TESTS_ENVIRONMENT += \
	export GPTD_SDK_HEADERS='$(gptdinclude_HEADERS)'; \
	export GPTD_SDK_NODIST_HEADERS='$(nodist_gptdinclude_HEADERS)';

abi-update: lib/libgptd.la
	$(AM_V_GEN)rm -rf abi-headers && $(MKDIR_P) abi-headers/gptd && \
	for h in $(gptdinclude_HEADERS); do cp $(srcdir)/$$h abi-headers/gptd/ || exit 1; done && \
	for h in $(nodist_gptdinclude_HEADERS); do cp $$h abi-headers/gptd/ || exit 1; done && \
	abidw --headers-dir abi-headers --no-show-locs --no-corpus-path --no-comp-dir-path \
	  lib/.libs/libgptd.so > $(srcdir)/abi/libgptd.abi && rm -rf abi-headers
.PHONY: abi-update
