# fuzz/: libFuzzer targets, one per parser that reads what gptd is given
# (pipelines and settings, frames and requests, safetensors, model and checkpoint
# JSON, vocabularies, the BPE encoder, tables). Built with ./configure
# --enable-fuzzing CC=clang. Each has a seed corpus in fuzz/corpus/TARGET and
# a dictionary fuzz/TARGET.dict. `make fuzz-smoke` runs each for a few seconds
# (and says it skips when fuzzing is not configured); bench/fuzz.sh runs each
# for minutes and records what it did in bench/RESULTS.md.

FUZZ_TARGETS = fuzz/fuzz-pipeline fuzz/fuzz-frame fuzz/fuzz-safetensors fuzz/fuzz-json \
	fuzz/fuzz-vocab fuzz/fuzz-bpe fuzz/fuzz-table

if FUZZING
noinst_PROGRAMS += $(FUZZ_TARGETS)
endif

FUZZ_COMMON = fuzz/fuzz-util.h
FUZZ_LINK = $(AM_LDFLAGS) $(FUZZ_LDFLAGS)
fuzz_fuzz_pipeline_SOURCES = fuzz/fuzz-pipeline.c $(FUZZ_COMMON)
fuzz_fuzz_pipeline_LDFLAGS = $(FUZZ_LINK)
fuzz_fuzz_pipeline_LDADD = $(TEST_LIBS)
fuzz_fuzz_frame_SOURCES = fuzz/fuzz-frame.c $(FUZZ_COMMON)
fuzz_fuzz_frame_LDFLAGS = $(FUZZ_LINK)
fuzz_fuzz_frame_LDADD = $(TEST_LIBS)
fuzz_fuzz_safetensors_SOURCES = fuzz/fuzz-safetensors.c $(FUZZ_COMMON)
fuzz_fuzz_safetensors_LDFLAGS = $(FUZZ_LINK)
fuzz_fuzz_safetensors_LDADD = $(TEST_LIBS)
fuzz_fuzz_json_SOURCES = fuzz/fuzz-json.c $(FUZZ_COMMON)
fuzz_fuzz_json_LDFLAGS = $(FUZZ_LINK)
fuzz_fuzz_json_LDADD = $(TEST_LIBS)
fuzz_fuzz_vocab_SOURCES = fuzz/fuzz-vocab.c $(FUZZ_COMMON)
fuzz_fuzz_vocab_LDFLAGS = $(FUZZ_LINK)
fuzz_fuzz_vocab_LDADD = $(TEST_LIBS)
fuzz_fuzz_bpe_SOURCES = fuzz/fuzz-bpe.c $(FUZZ_COMMON)
fuzz_fuzz_bpe_LDFLAGS = $(FUZZ_LINK)
fuzz_fuzz_bpe_LDADD = $(TEST_LIBS)
fuzz_fuzz_table_SOURCES = fuzz/fuzz-table.c $(FUZZ_COMMON)
fuzz_fuzz_table_LDFLAGS = $(FUZZ_LINK)
fuzz_fuzz_table_LDADD = $(TEST_LIBS)

EXTRA_DIST += fuzz/run-fuzz.sh fuzz/make-seeds.py bench/fuzz.sh \
	$(patsubst fuzz/%,fuzz/%.dict,$(FUZZ_TARGETS))

# The seed corpora are many small files: copied whole.
dist-hook: dist-fuzz-corpus
dist-fuzz-corpus:
	cp -pR $(srcdir)/fuzz/corpus $(distdir)/fuzz/
	chmod -R u+w $(distdir)/fuzz/corpus

FUZZ_SMOKE_SECONDS = 5

fuzz-smoke:
	@if test "$(enable_fuzzing)" != yes; then \
	  echo "fuzz-smoke: skipped: fuzzing is not configured (./configure --enable-fuzzing CC=clang)"; \
	else \
	  $(MAKE) $(AM_MAKEFLAGS) $(FUZZ_TARGETS) && \
	  $(SHELL) $(srcdir)/fuzz/run-fuzz.sh --seconds $(FUZZ_SMOKE_SECONDS) \
	    --builddir $(abs_top_builddir) --srcdir $(abs_top_srcdir) $(FUZZ_TARGETS); \
	fi

.PHONY: fuzz-smoke dist-fuzz-corpus
