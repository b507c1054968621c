# Build fragment for lib/nn (the GPT-2 model, AdamW, schedules, kernels);
# see the top-level Makefile.am.  lib/nn/gpt2-file.c is listed by lib/io/io.mk.

lib_libgptd_la_SOURCES += \
	lib/nn/nn-internal.h \
	lib/nn/nn-threads.c \
	lib/nn/nn-kernels.c \
	lib/nn/gpt2-private.h \
	lib/nn/gpt2.c \
	lib/nn/gpt2-kv-private.h \
	lib/nn/gpt2-kv.c \
	lib/nn/gpt2-kv-batch.c \
	lib/nn/matvec-private.h \
	lib/nn/matvec.c \
	lib/nn/gpt2-lora.c \
	lib/nn/gpt2-kv-quant.c \
	lib/nn/quant-private.h \
	lib/nn/quant.c \
	lib/nn/quant-kernels-avx2.c \
	lib/nn/quant-kernels-avx512.c \
	lib/nn/quant-file.c \
	lib/nn/adamw.c

noinst_HEADERS += include/gptd/nn.h include/gptd/quant.h

# Generation and classification (sampling, the generator, the classifier): the
# generate plugin's stages and the daemon's serving workers run them.
lib_libgptd_la_SOURCES += \
	lib/nn/sampling.c \
	lib/nn/generate.c \
	lib/nn/stop-strings.c \
	lib/nn/classify.c
noinst_HEADERS += include/gptd/generate.h include/gptd/classify.h

check_PROGRAMS += tests/test-nn-golden
TESTS += tests/test-nn-golden
tests_test_nn_golden_SOURCES = tests/test-nn-golden.c tests/test-nn-util.h
tests_test_nn_golden_LDADD = $(TEST_LIBS)

check_PROGRAMS += tests/test-classify-golden
TESTS += tests/test-classify-golden
tests_test_classify_golden_SOURCES = tests/test-classify-golden.c tests/test-nn-util.h
tests_test_classify_golden_LDADD = $(TEST_LIBS)

check_PROGRAMS += tests/test-quant
TESTS += tests/test-quant
tests_test_quant_SOURCES = tests/test-quant.c tests/test-nn-util.h
tests_test_quant_LDADD = $(TEST_LIBS)

check_PROGRAMS += tests/test-decode-batch
TESTS += tests/test-decode-batch
tests_test_decode_batch_SOURCES = tests/test-decode-batch.c tests/test-nn-util.h
tests_test_decode_batch_LDADD = $(TEST_LIBS)

check_PROGRAMS += tests/test-nn-grad
TESTS += tests/test-nn-grad
tests_test_nn_grad_SOURCES = tests/test-nn-grad.c tests/test-nn-util.h
tests_test_nn_grad_LDADD = $(TEST_LIBS)

EXTRA_DIST += \
	tests/golden/classify/make_goldens.py \
	tests/golden/classify/tiny.bin \
	tests/golden/nn/make_goldens.py \
	tests/golden/nn/make_quant_goldens.py \
	tests/golden/nn/quant-tied.bin \
	tests/golden/nn/quant-untied.bin \
	tests/golden/nn/tiny-untied.bin \
	tests/golden/nn/tiny-tied.bin \
	tests/golden/nn/tiny-untied-qkvbias.bin \
	tests/golden/nn/tiny-tied-qkvbias.bin \
	tests/golden/nn/tiny-classifier.bin \
	tests/golden/nn/hf-tiny/config.json \
	tests/golden/nn/hf-tiny/model.safetensors \
	tests/golden/nn/hf-tiny-expected.json

noinst_PROGRAMS += bench/quant/bench-quant
bench_quant_bench_quant_SOURCES = bench/quant/bench-quant.c
bench_quant_bench_quant_LDADD = $(TEST_LIBS)

noinst_PROGRAMS += bench/train/bench-train
bench_train_bench_train_SOURCES = bench/train/bench-train.c
bench_train_bench_train_LDADD = $(TEST_LIBS)

check_PROGRAMS += tests/test-lora
TESTS += tests/test-lora
tests_test_lora_SOURCES = tests/test-lora.c tests/test-nn-util.h
tests_test_lora_LDADD = $(TEST_LIBS)
EXTRA_DIST += tests/golden/lora/make_goldens.py tests/golden/lora/tiny.bin
