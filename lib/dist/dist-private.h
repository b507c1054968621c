/* dist-private.h: what dist.c shares with dist-grads.c and dist-zero.c. */
#pragma once

#include <glib.h>
#ifdef HAVE_MPI
#include <mpi.h>
#endif

/* Whether MPI was initialised (mpirun started this process). */
gboolean gptd__dist_active (void);

#ifdef HAVE_MPI
typedef enum { GPTD__DIST_BCAST, GPTD__DIST_SUM } GptdDistOp;

/* Broadcasts from @root or sums in place @n elements of @elem bytes, in pieces
 * whose counts fit MPI's int. */
void gptd__dist_chunks (void *data, size_t n, MPI_Datatype type, size_t elem, int root,
                        GptdDistOp op);
#endif
