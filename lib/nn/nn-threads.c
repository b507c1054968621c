/* nn-threads.c: thread control, the team-split sgemm and aligned buffers of
 * lib/nn.
 *
 * OpenBLAS is switched to one thread and every product is cut into one
 * single-threaded sgemm per OpenMP thread.  OpenBLAS's own thread pool
 * therefore never runs, and its threads cannot spin against the OpenMP team
 * (on two cores that would halve the speed of both).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* mremap */
#endif
#include "nn/nn-internal.h"

#include <cblas.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#ifdef _OPENMP
#include <omp.h>
#endif

G_DEFINE_QUARK (gptd-nn-error-quark, gptd_nn_error)

static int nn_threads = 0; /* 0: not yet initialised */

#if defined(OPENBLAS_VERSION) || defined(OPENBLAS_CONST)
#define HAVE_OPENBLAS_THREADS 1
#endif

static int
default_threads (void)
{
  const char *env = g_getenv ("GPTD_NN_THREADS");
  if (env != NULL && atoi (env) > 0)
    return atoi (env);
  long n = sysconf (_SC_NPROCESSORS_ONLN);
  return n > 0 ? (int) n : 1;
}

void
gptd_nn_set_num_threads (int n_threads)
{
  if (n_threads <= 0)
    n_threads = default_threads ();
#ifdef HAVE_OPENBLAS_THREADS
  openblas_set_num_threads (1);
#endif
#ifdef _OPENMP
  omp_set_dynamic (0);
#endif
  g_atomic_int_set (&nn_threads, n_threads);
}

int
gptd_nn_get_num_threads (void)
{
  gptd__nn_threads_init ();
  return g_atomic_int_get (&nn_threads);
}

void
gptd__nn_threads_init (void)
{
  if (g_atomic_int_get (&nn_threads) == 0)
    gptd_nn_set_num_threads (0);
}

void
gptd__nn_split (size_t n, int parts, int i, size_t align, size_t *begin,
                size_t *end)
{
  if (align == 0)
    align = 1;
  size_t units = (n + align - 1) / align;
  size_t b = units * (size_t) i / (size_t) parts * align;
  size_t e = units * (size_t) (i + 1) / (size_t) parts * align;
  *begin = b < n ? b : n;
  *end = e < n ? e : n;
}

void
gptd__nn_sgemm1 (gboolean trans_a, gboolean trans_b, int M, int N, int K,
                 float alpha, const float *A, int lda, const float *B, int ldb,
                 float beta, float *C, int ldc)
{
  if (M <= 0 || N <= 0)
    return;
  if (K <= 0)
    {
      /* Nothing to add: only the scaling of C remains. */
      for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++)
          C[(size_t) i * ldc + j] =
              beta == 0.0f ? 0.0f : beta * C[(size_t) i * ldc + j];
      return;
    }
  cblas_sgemm (CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
               trans_b ? CblasTrans : CblasNoTrans, M, N, K, alpha, A, lda, B,
               ldb, beta, C, ldc);
}

void
gptd__nn_sgemm (gboolean trans_a, gboolean trans_b, int M, int N, int K,
                float alpha, const float *A, int lda, const float *B, int ldb,
                float beta, float *C, int ldc)
{
  int nt = gptd_nn_get_num_threads ();
  if (M == 1 && K > 0)
    {
      /* A vector times a matrix (one token at a time): the matrix-vector
       * kernel reads the matrix once instead of packing a copy of it. */
      GPTD_NN_PRAGMA (omp parallel num_threads (nt))
      {
        int t = 0, n = 1;
#ifdef _OPENMP
        t = omp_get_thread_num ();
        n = omp_get_num_threads ();
#endif
        size_t b, e;
        gptd__nn_split ((size_t) N, n, t, 16, &b, &e);
        int incx = trans_a ? lda : 1;
        if (beta == 0.0f && e > b)
          memset (C + b, 0, (e - b) * sizeof (float));
        if (e > b && trans_b)
          // c[b:e] = B[b:e, :] a: B is (N, K)
          cblas_sgemv (CblasRowMajor, CblasNoTrans, (int) (e - b), K, alpha,
                       B + b * (size_t) ldb, ldb, A, incx, beta, C + b, 1);
        else if (e > b)
          // c[b:e] = B[:, b:e]^T a: B is (K, N)
          cblas_sgemv (CblasRowMajor, CblasTrans, K, (int) (e - b), alpha,
                       B + b, ldb, A, incx, beta, C + b, 1);
      }
      return;
    }
  /* Small products are not worth a split. */
  if (nt == 1 || (double) M * N * K < 2e5)
    {
      gptd__nn_sgemm1 (trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta,
                       C, ldc);
      return;
    }
  /* Split the larger output dimension, keeping slices multiples of the
   * micro-kernel tiles: every thread packs the whole operand that is not
   * split, so the smaller one should be the shared one. */
  gboolean split_rows = M >= N;
  GPTD_NN_PRAGMA (omp parallel num_threads (nt))
  {
    int t = 0, n = 1;
#ifdef _OPENMP
    t = omp_get_thread_num ();
    n = omp_get_num_threads ();
#endif
    size_t b, e;
    if (split_rows)
      {
        gptd__nn_split ((size_t) M, n, t, 16, &b, &e);
        const float *a = trans_a ? A + b : A + b * (size_t) lda;
        gptd__nn_sgemm1 (trans_a, trans_b, (int) (e - b), N, K, alpha, a, lda,
                         B, ldb, beta, C + b * (size_t) ldc, ldc);
      }
    else
      {
        gptd__nn_split ((size_t) N, n, t, 16, &b, &e);
        const float *bb = trans_b ? B + b * (size_t) ldb : B + b;
        gptd__nn_sgemm1 (trans_a, trans_b, M, (int) (e - b), K, alpha, A, lda,
                         bb, ldb, beta, C + b, ldc);
      }
  }
}

void *
gptd__nn_alloc (size_t bytes)
{
  if (bytes == 0)
    bytes = 64;
  if (bytes >= (size_t) 4 << 20)
    {
      /* Large buffers come straight from mmap, 2 MiB aligned, with huge
       * pages advised: touching fresh 4 KiB pages is slow here. */
      void *p = mmap (NULL, bytes, PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
      if (p == MAP_FAILED)
        return NULL;
#ifdef MADV_HUGEPAGE
      madvise (p, bytes, MADV_HUGEPAGE);
#endif
      return p;
    }
  void *p = NULL;
  if (posix_memalign (&p, 64, bytes) != 0)
    return NULL;
  memset (p, 0, bytes);
  return p;
}

void
gptd__nn_free (void *ptr, size_t bytes)
{
  if (ptr == NULL)
    return;
  if (bytes == 0)
    bytes = 64;
  if (bytes >= (size_t) 4 << 20)
    munmap (ptr, bytes);
  else
    free (ptr);
}

void *
gptd__nn_realloc (void *ptr, size_t old_bytes, size_t new_bytes)
{
  if (ptr == NULL)
    return gptd__nn_alloc (new_bytes);
  if (old_bytes >= (size_t) 4 << 20 && new_bytes >= (size_t) 4 << 20)
    {
      /* The kernel moves the pages: nothing is copied, and the old and new
       * buffers are never both resident.  New pages read as zero. */
      void *p = mremap (ptr, old_bytes, new_bytes, MREMAP_MAYMOVE);
      if (p == MAP_FAILED)
        return NULL;
#ifdef MADV_HUGEPAGE
      madvise (p, new_bytes, MADV_HUGEPAGE);
#endif
      return p;
    }
  void *p = gptd__nn_alloc (new_bytes);
  if (p == NULL)
    return NULL;
  memcpy (p, ptr, MIN (old_bytes, new_bytes));
  gptd__nn_free (ptr, old_bytes);
  return p;
}

GptdNnDropout
gptd__nn_dropout_stream (guint64 seed, guint64 counter, guint site, float p)
{
  GptdNnDropout d = { 0, 0, 1.0f };
  if (!(p > 0.0f))
    return d;
  /* splitmix64 over (seed, counter, site) gives the stream key. */
  guint64 z = seed ^ (counter * 0x9E3779B97F4A7C15ull) ^
              ((guint64) site * 0xD1B54A32D192ED03ull);
  z += 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  z ^= z >> 31;
  d.key = (uint32_t) (z ^ (z >> 32));
  double th = (double) p * 4294967296.0;
  d.threshold = th >= 4294967295.0 ? 4294967295u : (uint32_t) th;
  if (d.threshold == 0)
    d.threshold = 1;
  d.scale = 1.0f / (1.0f - p);
  return d;
}
