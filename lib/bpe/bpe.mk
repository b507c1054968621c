# Build fragment for lib/bpe (byte-level BPE: GPT-2 vocabulary, encode/decode,
# training); see the top-level Makefile.am.

lib_libgptd_la_SOURCES += \
	lib/bpe/bpe-internal.h \
	lib/bpe/bpe-pretok.c \
	lib/bpe/bpe-utf8.c \
	lib/bpe/bpe-vocab.c \
	lib/bpe/bpe-encode.c \
	lib/bpe/bpe-decode.c \
	lib/bpe/bpe-train.c

gptdinclude_HEADERS += include/gptd/bpe.h
