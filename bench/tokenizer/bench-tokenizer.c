/* bench/tokenizer/bench-tokenizer.c: throughput of gptd's BPE tokenizer.
 *
 *   bench-tokenizer [--vocab gpt2] [--runs N] [--chunk-kb K] [--ids-out FILE]
 *                   [--train-mb M] [--train-vocab V] CORPUS
 *
 * Reports, as "key value" lines:
 * - the time to load the vocabulary (median of 11 loads);
 * - single-thread encode throughput: one gptd_bpe_encode() call over the whole
 *   corpus, on a fresh thread each run so that the per-thread piece cache starts
 *   cold, per second of wall-clock time and per second of the thread's CPU time
 *   (steadier on a busy machine);
 * - two-thread throughput: the corpus is cut into chunks at split points and two
 *   worker threads (fresh each run) encode chunks in parallel; the ids,
 *   concatenated in chunk order, must equal the single-thread ids;
 * - training time of gptd's trainer and of the straightforward trainer on the
 *   first M MB of the corpus, and whether their vocabularies are identical.
 *
 * Both encode measurements are made alike, so that their ratio means something:
 * - each starts with two untimed runs, so that no timed run pays for the first
 *   writes to freshly allocated output memory (about 12,000 page faults on the
 *   25.9 MB corpus, which on a virtual machine can cost as much CPU time as the
 *   encoding itself), nor for the first writes to output memory that realloc()
 *   moved with mremap() while the single-thread array grew (no page faults, but
 *   on a virtual machine about 5 us per 4 KiB page once);
 * - they run on the same two CPUs: the two workers are pinned one to each, and
 *   the single thread is run N times on each and reported as the mean of the
 *   two CPUs' medians (the two CPUs of a shared virtual machine were seen to
 *   differ by a quarter to a third in work per CPU-second, and which one is
 *   faster changes with the host's load; the per-CPU figures are reported too);
 * - their runs are interleaved, so that both see the same load on the machine.
 * With one CPU (or off Linux) nothing is pinned and each measurement has N runs.
 * With --ids-out, the single-thread ids are written as little-endian uint32.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1   /* CPU_SET, pthread_setaffinity_np */
#endif
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/resource.h>
#ifdef __linux__
#include <pthread.h>
#include <sched.h>
#endif

#include <glib.h>
#include <gptd/bpe.h>

#include "bpe-naive-train.h"

static const char *opt_vocab = "gpt2";
static int opt_runs = 5;
static int opt_chunk_kb = 256;
static const char *opt_ids_out;
static double opt_train_mb = 1.0;
static int opt_train_vocab = 1000;

typedef struct {
  const GptdBpe *bpe;
  const char    *text;
  gsize          len;
  GArray        *ids;
  double         seconds;
  double         cpu_seconds;  /* CPU time of the encoding thread */
  long           faults;       /* page faults of the encoding thread */
  int            cpu;          /* pin the thread here; -1: anywhere */
} EncodeJob;

static double
thread_cpu_seconds (void)
{
  struct timespec ts;
  clock_gettime (CLOCK_THREAD_CPUTIME_ID, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Page faults of the calling thread so far (0 where not available). */
static long
thread_faults (void)
{
#ifdef RUSAGE_THREAD
  struct rusage ru;
  if (getrusage (RUSAGE_THREAD, &ru) == 0)
    return ru.ru_minflt + ru.ru_majflt;
#endif
  return 0;
}

/* The first two CPUs this process may run on, or n_cpus = 0 when it has only one
 * or pinning is not available. */
static int bench_cpu[2];
static int n_cpus;

static void
find_cpus (void)
{
#ifdef __linux__
  cpu_set_t set;
  if (sched_getaffinity (0, sizeof set, &set) == 0)
    for (int c = 0; c < CPU_SETSIZE && n_cpus < 2; c++)
      if (CPU_ISSET (c, &set))
        bench_cpu[n_cpus++] = c;
#endif
  if (n_cpus < 2)
    n_cpus = 0;
}

/* Pins the calling thread to one CPU (cpu >= 0). */
static void
pin_to (int cpu)
{
#ifdef __linux__
  if (cpu < 0)
    return;
  cpu_set_t set;
  CPU_ZERO (&set);
  CPU_SET (cpu, &set);
  int err = pthread_setaffinity_np (pthread_self (), sizeof set, &set);
  if (err != 0)
    g_error ("pinning a thread to CPU %d: %s", cpu, g_strerror (err));
#else
  (void) cpu;
#endif
}

static gpointer
encode_thread (gpointer data)
{
  EncodeJob *job = data;
  pin_to (job->cpu);
  GptdBpeEncodeOptions opts = { .special = GPTD_BPE_SPECIAL_TEXT };
  g_array_set_size (job->ids, 0);
  long f0 = thread_faults ();
  double c0 = thread_cpu_seconds ();
  gint64 t0 = g_get_monotonic_time ();
  g_autoptr (GError) error = NULL;
  if (!gptd_bpe_encode (job->bpe, job->text, job->len, &opts, job->ids, &error))
    g_error ("encode: %s", error->message);
  job->seconds = (g_get_monotonic_time () - t0) / 1e6;
  job->cpu_seconds = thread_cpu_seconds () - c0;
  job->faults = thread_faults () - f0;
  return NULL;
}

typedef struct {
  const GptdBpe *bpe;
  const char    *text;
  GArray        *cuts;   /* gsize: chunk boundaries, first 0, last len */
  GArray       **out;    /* per chunk */
  gint           next;   /* next chunk to take */
} ParallelJob;

typedef struct {
  ParallelJob *job;
  int          cpu;          /* pin the worker here; -1: anywhere */
  gsize        bytes;        /* encoded by this worker */
  double       cpu_seconds;  /* of this worker */
  long         faults;       /* page faults of this worker */
} Worker;

static gpointer
parallel_worker (gpointer data)
{
  Worker *w = data;
  ParallelJob *job = w->job;
  GptdBpeEncodeOptions opts = { .special = GPTD_BPE_SPECIAL_TEXT };
  pin_to (w->cpu);
  w->bytes = 0;
  long f0 = thread_faults ();
  double c0 = thread_cpu_seconds ();
  for (;;)
    {
      gint c = g_atomic_int_add (&job->next, 1);
      if (c >= (gint) job->cuts->len - 1)
        break;
      gsize a = g_array_index (job->cuts, gsize, c), b = g_array_index (job->cuts, gsize, c + 1);
      opts.base_offset = a;
      g_autoptr (GError) error = NULL;
      if (!gptd_bpe_encode (job->bpe, job->text + a, b - a, &opts, job->out[c], &error))
        g_error ("encode: %s", error->message);
      w->bytes += b - a;
    }
  w->cpu_seconds = thread_cpu_seconds () - c0;
  w->faults = thread_faults () - f0;
  return NULL;
}

/* One two-thread run; returns its wall-clock seconds and fills w[2]. */
static double
parallel_run (ParallelJob *pj, Worker w[2])
{
  for (guint c = 0; c + 1 < pj->cuts->len; c++)
    g_array_set_size (pj->out[c], 0);
  pj->next = 0;
  for (int i = 0; i < 2; i++)
    {
      w[i].job = pj;
      w[i].cpu = n_cpus ? bench_cpu[i] : -1;
    }
  gint64 t0 = g_get_monotonic_time ();
  GThread *a = g_thread_new ("enc-a", parallel_worker, &w[0]);
  GThread *b = g_thread_new ("enc-b", parallel_worker, &w[1]);
  g_thread_join (a);
  g_thread_join (b);
  return (g_get_monotonic_time () - t0) / 1e6;
}

static int
cmp_double (const void *a, const void *b)
{
  double x = *(const double *) a, y = *(const double *) b;
  return x < y ? -1 : x > y;
}

static double
median (double *v, int n)
{
  qsort (v, (gsize) n, sizeof (double), cmp_double);
  return v[n / 2];
}

int
main (int argc, char **argv)
{
  GOptionEntry entries[] = {
    { "vocab", 0, 0, G_OPTION_ARG_STRING, &opt_vocab, "Vocabulary (name or path)", "VOCAB" },
    { "runs", 0, 0, G_OPTION_ARG_INT, &opt_runs, "Runs per measurement", "N" },
    { "chunk-kb", 0, 0, G_OPTION_ARG_INT, &opt_chunk_kb, "Chunk size for two threads", "K" },
    { "ids-out", 0, 0, G_OPTION_ARG_FILENAME, &opt_ids_out, "Write the ids here", "FILE" },
    { "train-mb", 0, 0, G_OPTION_ARG_DOUBLE, &opt_train_mb, "Training text size (0: skip)", "M" },
    { "train-vocab", 0, 0, G_OPTION_ARG_INT, &opt_train_vocab, "Trained vocabulary size", "V" },
    { NULL }
  };
  g_autoptr (GOptionContext) ctx = g_option_context_new ("CORPUS - BPE tokenizer benchmark");
  g_option_context_add_main_entries (ctx, entries, NULL);
  g_autoptr (GError) error = NULL;
  if (!g_option_context_parse (ctx, &argc, &argv, &error) || argc != 2)
    {
      fprintf (stderr, "%s\n", error ? error->message : "usage: bench-tokenizer [OPTIONS] CORPUS");
      return 2;
    }
  g_autofree char *text = NULL;
  gsize len;
  if (!g_file_get_contents (argv[1], &text, &len, &error))
    {
      fprintf (stderr, "%s\n", error->message);
      return 1;
    }
  printf ("corpus_bytes %" G_GSIZE_FORMAT "\n", len);

  /* Loading. */
  double load_ms[11], load_cpu_ms[11];
  GptdBpe *bpe = NULL;
  for (int i = 0; i < 11; i++)
    {
      gptd_bpe_unref (bpe);
      double c0 = thread_cpu_seconds ();
      gint64 t0 = g_get_monotonic_time ();
      bpe = gptd_bpe_load (opt_vocab, &error);
      load_ms[i] = (g_get_monotonic_time () - t0) / 1e3;
      load_cpu_ms[i] = (thread_cpu_seconds () - c0) * 1e3;
      if (!bpe)
        {
          fprintf (stderr, "%s\n", error->message);
          return 1;
        }
    }
  printf ("load_ms %.1f\n", median (load_ms, 11));
  printf ("load_cpu_ms %.1f\n", median (load_cpu_ms, 11));

  /* Chunks for two threads, cut at split points. */
  g_autoptr (GArray) cuts = g_array_new (FALSE, FALSE, sizeof (gsize));
  gsize pos = 0;
  g_array_append_val (cuts, pos);
  gsize chunk = (gsize) opt_chunk_kb * 1024;
  while (len - pos > chunk)
    {
      gsize cut = pos + gptd_bpe_split_point (bpe, text + pos, chunk, GPTD_BPE_SPECIAL_TEXT);
      if (cut == pos)
        cut = pos + chunk; /* never happens on this corpus */
      pos = cut;
      g_array_append_val (cuts, pos);
    }
  g_array_append_val (cuts, len);
  guint n_chunks = cuts->len - 1;
  GArray **out = g_new (GArray *, n_chunks);
  for (guint c = 0; c < n_chunks; c++)
    out[c] = g_array_new (FALSE, FALSE, sizeof (guint32));
  ParallelJob pj = { bpe, text, cuts, out, 0 };
  Worker w[2] = { { 0 } };

  /* Two untimed runs of each, then interleaved timed runs: per round, the single
   * thread once on each CPU, then the two workers. */
  find_cpus ();
  int places = n_cpus ? n_cpus : 1;
  EncodeJob job = { bpe, text, len, g_array_new (FALSE, FALSE, sizeof (guint32)), 0, 0, -1 };
  for (int i = 0; i < 2; i++)
    {
      g_thread_join (g_thread_new ("encode", encode_thread, &job));
      parallel_run (&pj, w);
    }
  double *rate1[2], *cpu1[2];
  for (int p = 0; p < places; p++)
    {
      rate1[p] = g_new (double, opt_runs);
      cpu1[p] = g_new (double, opt_runs);
    }
  double *faults1 = g_new (double, opt_runs * places), *faults2 = g_new (double, opt_runs);
  double *rate2 = g_new (double, opt_runs), *cpu2 = g_new (double, opt_runs);
  double *wcpu2[2] = { g_new (double, opt_runs), g_new (double, opt_runs) };
  for (int r = 0; r < opt_runs; r++)
    {
      for (int p = 0; p < places; p++)
        {
          job.cpu = n_cpus ? bench_cpu[p] : -1;
          g_thread_join (g_thread_new ("encode", encode_thread, &job));
          rate1[p][r] = len / 1e6 / job.seconds;
          cpu1[p][r] = len / 1e6 / job.cpu_seconds;
          faults1[r * places + p] = job.faults;
        }
      double s = parallel_run (&pj, w);
      rate2[r] = len / 1e6 / s;
      cpu2[r] = len / 1e6 / (w[0].cpu_seconds + w[1].cpu_seconds);
      faults2[r] = w[0].faults + w[1].faults;
      for (int i = 0; i < 2; i++)
        wcpu2[i][r] = w[i].cpu_seconds > 0 ? w[i].bytes / 1e6 / w[i].cpu_seconds : 0;
    }

  double r1 = 0, c1 = 0;
  for (int p = 0; p < places; p++)
    {
      double rm = median (rate1[p], opt_runs), cm = median (cpu1[p], opt_runs);
      r1 += rm / places;
      c1 += cm / places;
      if (n_cpus)
        printf ("encode_1t_cpu%d_mb_per_cpu_s %.2f\n", bench_cpu[p], cm);
      g_free (rate1[p]);
      g_free (cpu1[p]);
    }
  printf ("encode_1t_mb_per_s %.2f\n", r1);
  printf ("encode_1t_mb_per_cpu_s %.2f\n", c1);
  printf ("encode_1t_page_faults %.0f\n", median (faults1, opt_runs * places));
  printf ("tokens %u\n", job.ids->len);
  if (opt_ids_out
      && !g_file_set_contents (opt_ids_out, job.ids->data, (gssize) job.ids->len * 4, &error))
    {
      fprintf (stderr, "%s\n", error->message);
      return 1;
    }

  gboolean same = TRUE;
  gsize k = 0;
  for (guint c = 0; c < n_chunks && same; c++)
    {
      if (k + out[c]->len > job.ids->len
          || memcmp (out[c]->data, &g_array_index (job.ids, guint32, k), out[c]->len * 4) != 0)
        same = FALSE;
      k += out[c]->len;
    }
  same = same && k == job.ids->len;
  if (n_cpus)
    for (int i = 0; i < 2; i++)
      printf ("encode_2t_cpu%d_mb_per_cpu_s %.2f\n", bench_cpu[i], median (wcpu2[i], opt_runs));
  printf ("encode_2t_mb_per_s %.2f\n", median (rate2, opt_runs));
  printf ("encode_2t_mb_per_cpu_s %.2f\n", median (cpu2, opt_runs));
  printf ("encode_2t_page_faults %.0f\n", median (faults2, opt_runs));
  printf ("encode_2t_chunks %u\n", n_chunks);
  printf ("encode_2t_ids_identical %s\n", same ? "yes" : "NO");
  printf ("encode_cpus %s\n", n_cpus ? "pinned" : "unpinned");
  g_free (faults1);
  g_free (faults2);
  g_free (rate2);
  g_free (cpu2);
  g_free (wcpu2[0]);
  g_free (wcpu2[1]);

  /* Training. */
  if (opt_train_mb > 0)
    {
      gsize tlen = MIN (len, (gsize) (opt_train_mb * 1e6));
      tlen = gptd_bpe_split_point (bpe, text, tlen, GPTD_BPE_SPECIAL_TEXT);
      static const char *const special[] = { "<|endoftext|>", NULL };
      gint64 t0 = g_get_monotonic_time ();
      g_autoptr (GptdBpeTrainer) trainer = gptd_bpe_trainer_new (special, &error);
      if (!gptd_bpe_trainer_add_text (trainer, text, tlen, &error))
        g_error ("%s", error->message);
      g_autoptr (GptdBpe) trained = gptd_bpe_trainer_train (trainer, (guint) opt_train_vocab, &error);
      if (!trained)
        g_error ("%s", error->message);
      double fast = (g_get_monotonic_time () - t0) / 1e6;
      t0 = g_get_monotonic_time ();
      g_autoptr (GPtrArray) ref = gptd_naive_bpe_train ((const char *const[]) { text }, &tlen, 1,
                                                         special, (guint) opt_train_vocab);
      double naive = (g_get_monotonic_time () - t0) / 1e6;
      gboolean ident = ref->len == gptd_bpe_get_n_vocab (trained);
      for (guint i = 0; ident && i < ref->len; i++)
        {
          gsize n, rn;
          const guint8 *p = gptd_bpe_get_token (trained, i, &n);
          const guint8 *rp = g_bytes_get_data (ref->pdata[i], &rn);
          ident = n == rn && memcmp (p, rp, n) == 0;
        }
      printf ("train_bytes %" G_GSIZE_FORMAT "\n", tlen);
      printf ("train_vocab %d\n", opt_train_vocab);
      printf ("train_gptd_s %.3f\n", fast);
      printf ("train_naive_s %.3f\n", naive);
      printf ("train_identical %s\n", ident ? "yes" : "NO");
    }

  for (guint c = 0; c < n_chunks; c++)
    g_array_free (out[c], TRUE);
  g_free (out);
  g_array_free (job.ids, TRUE);
  gptd_bpe_unref (bpe);
  return same ? 0 : 1;
}
