# Build fragment for lib/bpe (byte-level BPE: GPT-2 vocabulary, encode/decode,
# training); see the top-level Makefile.am.

lib_libgptd_la_SOURCES += \
	lib/bpe/bpe-internal.h \
	lib/bpe/bpe-pretok.h \
	lib/bpe/bpe-pretok.c \
	lib/bpe/bpe-utf8.c \
	lib/bpe/bpe-vocab.c \
	lib/bpe/bpe-encode.c \
	lib/bpe/bpe-decode.c \
	lib/bpe/bpe-train.c

gptdinclude_HEADERS += include/gptd/bpe.h

check_PROGRAMS += tests/test-bpe tests/test-bpe-train
TESTS += tests/test-bpe tests/test-bpe-train
tests_test_bpe_SOURCES = tests/test-bpe.c tests/test-bpe-util.h
tests_test_bpe_LDADD = $(TEST_LIBS)
tests_test_bpe_train_SOURCES = tests/test-bpe-train.c tests/test-bpe-util.h \
	bench/tokenizer/bpe-naive-train.c bench/tokenizer/bpe-naive-train.h
tests_test_bpe_train_LDADD = $(TEST_LIBS)

EXTRA_DIST += \
	tests/golden/bpe/ids.json \
	tests/golden/bpe/data-ids.json \
	tests/golden/bpe/make-goldens.mjs \
	tests/golden/bpe/make-data-hashes.mjs \
	tests/golden/bpe/check-tiktoken.sh \
	bench/tokenizer/RESULTS.md

# The tokenizer benchmark (built, not run by make check; see bench/tokenizer/).
noinst_PROGRAMS += bench/tokenizer/bench-tokenizer
bench_tokenizer_bench_tokenizer_SOURCES = bench/tokenizer/bench-tokenizer.c \
	bench/tokenizer/bpe-naive-train.c bench/tokenizer/bpe-naive-train.h
bench_tokenizer_bench_tokenizer_LDADD = $(TEST_LIBS)
