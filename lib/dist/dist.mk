# Build fragment for lib/dist (the process group of data-parallel training:
# Open MPI when configured --with-mpi, a group of one otherwise); see the
# top-level Makefile.am.

lib_libgptd_la_SOURCES += \
	lib/dist/dist-private.h \
	lib/dist/dist.c \
	lib/dist/dist-grads.c \
	lib/dist/dist-zero.c

noinst_HEADERS += include/gptd/dist.h

# Data-parallel training end to end: two ranks against one process, ZeRO-1 against
# plain, a killed rank and the resumes; ranks= without MPI (skips what needs
# mpirun or an MPI build).
check_PROGRAMS += tests/test-dist
TESTS += tests/test-dist
tests_test_dist_SOURCES = tests/test-dist.c
tests_test_dist_LDADD = $(TEST_LIBS)

# The data-parallel benchmark (bench/distributed/run.sh): MPI_Allreduce's speed
# on this machine, and the step-time model it checks.
if HAVE_MPI
noinst_PROGRAMS += bench/distributed/bench-allreduce
bench_distributed_bench_allreduce_SOURCES = bench/distributed/bench-allreduce.c
bench_distributed_bench_allreduce_LDADD = $(MPI_LIBS)
endif
EXTRA_DIST += bench/distributed/bench-allreduce.c bench/distributed/run.sh \
	bench/distributed/model.py bench/distributed/bench.pipeline
