/* bench-allreduce.c: the time of MPI_Allreduce (sum of floats, in place) over the
 * ranks mpirun started, for a range of message sizes, as the data-parallel
 * trainer sums gradients; prints one line per size with the median time and the
 * ring algorithm's bus bandwidth, 2 (N-1)/N bytes / time, that docs/distributed.md
 * feeds into its step-time model.
 *
 *   mpirun -np 2 bench/distributed/bench-allreduce [--max-mib 128] [--repeats 9]
 */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int
compare (const void *a, const void *b)
{
  double x = *(const double *) a, y = *(const double *) b;
  return x < y ? -1 : x > y;
}

int
main (int argc, char **argv)
{
  double max_mib = 128;
  int repeats = 9;
  MPI_Init (&argc, &argv);
  for (int i = 1; i + 1 < argc; i += 2)
    {
      if (strcmp (argv[i], "--max-mib") == 0)
        max_mib = atof (argv[i + 1]);
      else if (strcmp (argv[i], "--repeats") == 0)
        repeats = atoi (argv[i + 1]);
    }
  int rank, size;
  MPI_Comm_rank (MPI_COMM_WORLD, &rank);
  MPI_Comm_size (MPI_COMM_WORLD, &size);
  size_t max = (size_t) (max_mib * 1048576 / sizeof (float));
  float *buf = malloc (max * sizeof (float));
  double *t = malloc (repeats * sizeof (double));
  for (size_t i = 0; i < max; i++)
    buf[i] = 1e-3f * (float) (i % 1000);
  /* Sizes 4 KiB, 16 KiB, ... and the largest asked for. */
  for (size_t n = 1024; n <= max; n = n * 4 > max && n < max ? max : n * 4)
    {
      MPI_Allreduce (MPI_IN_PLACE, buf, (int) n, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
      for (int r = 0; r < repeats; r++)
        {
          MPI_Barrier (MPI_COMM_WORLD);
          double t0 = MPI_Wtime ();
          MPI_Allreduce (MPI_IN_PLACE, buf, (int) n, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
          t[r] = MPI_Wtime () - t0;
          /* Keep the values small. */
          for (size_t i = 0; i < n; i += 4096)
            buf[i] *= 1.0f / (float) size;
        }
      qsort (t, repeats, sizeof *t, compare);
      double med = t[repeats / 2];
      double bytes = (double) n * sizeof (float);
      if (rank == 0)
        printf ("ranks=%d bytes=%.0f median_s=%.6f bus_gbit_s=%.2f\n", size, bytes, med,
                2.0 * (size - 1) / size * bytes * 8 / med / 1e9);
    }
  free (buf);
  free (t);
  MPI_Finalize ();
  return 0;
}
