# Build fragment for lib/dist (the process group of data-parallel training:
# Open MPI when configured --with-mpi, a group of one otherwise); see the
# top-level Makefile.am.

lib_libgptd_la_SOURCES += \
	lib/dist/dist-private.h \
	lib/dist/dist.c \
	lib/dist/dist-grads.c \
	lib/dist/dist-zero.c

gptdinclude_HEADERS += include/gptd/dist.h
