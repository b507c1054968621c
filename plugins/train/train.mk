# Build fragment for plugins/train: the train plugin (token-windows,
# classification-dataset, gpt-trainer); see the top-level Makefile.am. The
# sliding-window data set and seeded shuffles are in libgptd (lib/data, shared with
# the instruct plugin); the rest of the data-set and metrics code sits in a
# convenience library that both the plugin and its unit tests link.

noinst_LTLIBRARIES += plugins/train/libtrain-core.la
plugins_train_libtrain_core_la_SOURCES = \
	plugins/train/classes.c \
	plugins/train/classes.h \
	plugins/train/metrics.c \
	plugins/train/metrics.h \
	plugins/train/loss-plot.c \
	plugins/train/loss-plot.h

plugin_LTLIBRARIES += plugins/train/train.la
plugins_train_train_la_SOURCES = \
	plugins/train/plugin.c \
	plugins/train/train-plugin.h \
	plugins/train/token-windows.c \
	plugins/train/classification-dataset.c \
	plugins/train/trainer.c \
	plugins/train/trainer.h \
	plugins/train/gpt-trainer.c \
	plugins/train/classifier-trainer.c
plugins_train_train_la_LDFLAGS = $(PLUGIN_LINKFLAGS)
plugins_train_train_la_LIBADD = plugins/train/libtrain-core.la $(PLUGIN_LIBS)

check_PROGRAMS += tests/test-train-windows
TESTS += tests/test-train-windows
tests_test_train_windows_SOURCES = tests/test-train-windows.c
tests_test_train_windows_LDADD = $(TEST_LIBS)

check_PROGRAMS += tests/test-train-metrics
TESTS += tests/test-train-metrics
tests_test_train_metrics_SOURCES = tests/test-train-metrics.c
tests_test_train_metrics_LDADD = plugins/train/libtrain-core.la $(TEST_LIBS)

check_PROGRAMS += tests/test-train
TESTS += tests/test-train
tests_test_train_SOURCES = tests/test-train.c
tests_test_train_LDADD = plugins/train/libtrain-core.la $(TEST_LIBS)

# The pretraining pipelines, and the byte-level vocabulary of the quick start.
dist_pipelines_DATA += pipelines/verdict-pretrain.pipeline pipelines/quickstart.pipeline
bytesvocabdir = $(pipelinesdir)/vocab/bytes
dist_bytesvocab_DATA = pipelines/vocab/bytes/encoder.json pipelines/vocab/bytes/vocab.bpe
EXTRA_DIST += pipelines/vocab/bytes/make-bytes-vocab.py

check_PROGRAMS += tests/test-classification-dataset
TESTS += tests/test-classification-dataset
tests_test_classification_dataset_SOURCES = tests/test-classification-dataset.c \
	tests/test-pipeline-util.h
tests_test_classification_dataset_LDADD = plugins/train/libtrain-core.la $(TEST_LIBS)

# The data side of classification fine-tuning, and the split sizes of the book's
# random_split with the script that computed them.
dist_pipelines_DATA += pipelines/sms-spam-data.pipeline
EXTRA_DIST += tests/golden/classes/make_goldens.py tests/golden/classes/split-sizes.txt

# Classification fine-tuning end to end through `gptd run`: bad input, and
# sms-spam-small shortened (with GPTD_DATA_DIR). The book's run, the small run that
# needs no download, and the book's two example messages.
TESTS += tests/test-classify-pipeline.sh
dist_check_SCRIPTS += tests/test-classify-pipeline.sh
dist_pipelines_DATA += pipelines/sms-spam.pipeline pipelines/sms-spam-small.pipeline \
	pipelines/sms-spam-examples.tsv

# The classification fine-tuning benchmark (bench/classify/run.sh runs it beside
# its PyTorch peer).
noinst_PROGRAMS += bench/classify/bench-classify
bench_classify_bench_classify_SOURCES = bench/classify/bench-classify.c
bench_classify_bench_classify_LDADD = $(TEST_LIBS)
EXTRA_DIST += bench/classify/run.sh bench/classify/bench_classify_torch.py

# LoRA against full fine-tuning (bench/lora/run.sh).
noinst_PROGRAMS += bench/lora/bench-lora
bench_lora_bench_lora_SOURCES = bench/lora/bench-lora.c
bench_lora_bench_lora_LDADD = $(TEST_LIBS)
EXTRA_DIST += bench/lora/run.sh
