/* dist.c: the process group of data-parallel training (see gptd/dist.h): rank,
 * size, and the collectives the trainer needs, over Open MPI when this build has
 * it and mpirun started the process; a group of one otherwise.
 *
 * Every collective is blocking except the gradient buckets (dist-grads.c), and
 * all use MPI_COMM_WORLD with MPI's default error handler: a failure, or a rank
 * that dies, ends the group, which mpirun reports naming the rank.
 */
#include "config.h"

#include <gptd/dist.h>

#include <stdlib.h>
#include <string.h>

#ifdef HAVE_MPI
#include <mpi.h>
#endif

#include "dist/dist-private.h"

G_DEFINE_QUARK (gptd-dist-error-quark, gptd_dist_error)

static int dist_rank = 0;
static int dist_size = 1;
static gboolean dist_active = FALSE;

gboolean
gptd_dist_available (void)
{
#ifdef HAVE_MPI
  return TRUE;
#else
  return FALSE;
#endif
}

gboolean
gptd_dist_launched (void)
{
  return g_getenv ("OMPI_COMM_WORLD_SIZE") != NULL;
}

gboolean
gptd__dist_active (void)
{
  return dist_active;
}

gboolean
gptd_dist_init (GError **error)
{
  if (dist_active || !gptd_dist_launched ())
    return TRUE;
#ifdef HAVE_MPI
  int provided = 0;
  /* The trainer's thread makes the calls, not main's; one at a time. */
  MPI_Init_thread (NULL, NULL, MPI_THREAD_SERIALIZED, &provided);
  if (provided < MPI_THREAD_SERIALIZED)
    {
      g_set_error (error, GPTD_DIST_ERROR, GPTD_DIST_ERROR_FAILED,
                   "this Open MPI gives thread level %d; gptd needs "
                   "MPI_THREAD_SERIALIZED (%d)", provided, MPI_THREAD_SERIALIZED);
      MPI_Finalize ();
      return FALSE;
    }
  MPI_Comm_rank (MPI_COMM_WORLD, &dist_rank);
  MPI_Comm_size (MPI_COMM_WORLD, &dist_size);
  dist_active = TRUE;
  return TRUE;
#else
  const char *size = g_getenv ("OMPI_COMM_WORLD_SIZE");
  if (g_strcmp0 (size, "1") == 0)
    return TRUE;
  g_set_error (error, GPTD_DIST_ERROR, GPTD_DIST_ERROR_UNSUPPORTED,
               "mpirun started this gptd as one of %s ranks, but it was built without "
               "MPI: configure --with-mpi (needs libopenmpi-dev)", size);
  return FALSE;
#endif
}

void
gptd_dist_finalize (void)
{
#ifdef HAVE_MPI
  if (dist_active)
    MPI_Finalize ();
#endif
  dist_active = FALSE;
  dist_rank = 0;
  dist_size = 1;
}

void
gptd_dist_abort (int status)
{
#ifdef HAVE_MPI
  if (dist_active && dist_size > 1)
    MPI_Abort (MPI_COMM_WORLD, status);
#endif
  exit (status);
}

int
gptd_dist_rank (void)
{
  return dist_rank;
}

int
gptd_dist_size (void)
{
  return dist_size;
}

void
gptd_dist_share (guint64 rows, guint64 *first, guint64 *count)
{
  guint64 r = (guint64) dist_rank, n = (guint64) dist_size;
  guint64 b = rows * r / n, e = rows * (r + 1) / n;
  *first = b;
  *count = e - b;
}

void
gptd_dist_sum (double *values, size_t n)
{
#ifdef HAVE_MPI
  if (dist_size > 1 && n > 0)
    MPI_Allreduce (MPI_IN_PLACE, values, (int) n, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
#else
  (void) values;
  (void) n;
#endif
}

void
gptd_dist_broadcast (void *data, size_t bytes, int root)
{
#ifdef HAVE_MPI
  if (dist_size > 1 && bytes > 0)
    gptd__dist_chunks (data, bytes, MPI_BYTE, 1, root, GPTD__DIST_BCAST);
#else
  (void) data;
  (void) bytes;
  (void) root;
#endif
}

char *
gptd_dist_broadcast_string (const char *s, int root)
{
  if (dist_size == 1)
    return g_strdup (s);
  gint64 len = dist_rank == root ? (s ? (gint64) strlen (s) : -1) : 0;
  gptd_dist_broadcast (&len, sizeof len, root);
  if (len < 0)
    return NULL;
  char *out = g_malloc (len + 1);
  if (dist_rank == root)
    memcpy (out, s, len);
  gptd_dist_broadcast (out, len, root);
  out[len] = '\0';
  return out;
}

#ifdef HAVE_MPI
/* MPI counts are ints: larger buffers go in pieces of at most 1 GiB. */
void
gptd__dist_chunks (void *data, size_t n, MPI_Datatype type, size_t elem, int root,
                   GptdDistOp op)
{
  const size_t max = ((size_t) 1 << 30) / elem;
  char *p = data;
  for (size_t done = 0; done < n;)
    {
      int k = (int) MIN (max, n - done);
      if (op == GPTD__DIST_BCAST)
        MPI_Bcast (p + done * elem, k, type, root, MPI_COMM_WORLD);
      else
        MPI_Allreduce (MPI_IN_PLACE, p + done * elem, k, type, MPI_SUM, MPI_COMM_WORLD);
      done += (size_t) k;
    }
}

/* The counts and displacements of a v-collective, checked to fit an int. */
static void
displacements (const size_t *counts, int *c, int *d)
{
  size_t off = 0;
  for (int r = 0; r < dist_size; r++)
    {
      if (counts[r] > G_MAXINT || off > G_MAXINT)
        {
          g_printerr ("gptd: rank %d: a gathered buffer of more than 2^31 floats is "
                      "not supported\n", dist_rank);
          gptd_dist_abort (1);
        }
      c[r] = (int) counts[r];
      d[r] = (int) off;
      off += counts[r];
    }
}
#endif

void
gptd_dist_allgather_floats (float *data, const size_t *counts)
{
#ifdef HAVE_MPI
  if (dist_size == 1)
    return;
  g_autofree int *c = g_new (int, dist_size);
  g_autofree int *d = g_new (int, dist_size);
  displacements (counts, c, d);
  MPI_Allgatherv (MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, data, c, d, MPI_FLOAT,
                  MPI_COMM_WORLD);
#else
  (void) data;
  (void) counts;
#endif
}

void
gptd_dist_gather_floats (const float *part, size_t n, float *out, const size_t *counts,
                         int root)
{
#ifdef HAVE_MPI
  if (dist_size > 1)
    {
      g_autofree int *c = g_new (int, dist_size);
      g_autofree int *d = g_new (int, dist_size);
      displacements (counts, c, d);
      MPI_Gatherv (part, (int) n, MPI_FLOAT, out, c, d, MPI_FLOAT, root, MPI_COMM_WORLD);
      return;
    }
#else
  (void) counts;
  (void) root;
#endif
  if (out != part)
    memcpy (out, part, n * sizeof (float));
}
