/* test-dist.c: data-parallel training over Open MPI, end to end through `gptd run`.
 *
 * A tiny GPT (2 layers, width 32, byte vocabulary) trains on this project's
 * docs/training.md for 20 steps. Two ranks with a batch of 4 (2 rows each) must
 * give the losses of one process with the batch of 4 within 1e-6 relative, and
 * its weights; ZeRO-1 must give plain data-parallel's losses, weights and AdamW
 * moments bit for bit; a rank killed with SIGKILL must stop the group within
 * seconds with mpirun naming the rank, and `gptd run --resume` with two ranks must
 * then finish exactly as an uninterrupted run, and with one rank correctly. A
 * classifier-trainer on classification-dataset shares its batches alike (losses
 * within 1e-5, the same accuracies). A pipeline asking for ranks= is refused by
 * a build without MPI.
 *
 * The runs need mpirun (openmpi-bin) and a build configured with MPI; they are
 * skipped otherwise. mpirun gets --oversubscribe and shared-memory transport
 * unless GPTD_MPIRUN_ARGS says otherwise.
 */
#include "config.h"

#include <math.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <glib/gstdio.h>
#include <gptd/dist.h>
#include <gptd/gpt2-file.h>
#include <gptd/pipeline.h>
#include <gptd/registry.h>

/* The pipeline: ${batch}, ${steps}, ${zero}, ${every} set with --set. */
static const char pipeline_text[] =
  "[pipeline]\nname=tiny-dp\nbatch=4\nsteps=20\nzero=0\nevery=10\neval=5\n"
  "[stage corpus]\ntype=text-source\npath=%s/docs/training.md\n"
  "[stage tokens]\ntype=bpe-tokenizer\ninput=corpus\nvocab=%s/pipelines/vocab/bytes\n"
  "[stage w]\ntype=token-windows\ninput=tokens\ncontext-length=16\nbatch-size=${batch}\n"
  "[stage train]\ntype=gpt-trainer\ninput=w\nmodel=custom\nn-layer=2\nn-head=2\n"
  "n-embd=32\ncontext-length=16\nvocab-size=257\ndropout=0\nqkv-bias=false\n"
  "max-steps=${steps}\neval-freq=${eval}\neval-iter=2\nsample-tokens=0\nthreads=1\n"
  "lr=0.001\nzero=${zero}\ncheckpoint-every=${every}\nkeep-checkpoints=2\n";

typedef struct {
  char *dir;
  char *pipeline;
  char *gptd;
} Fixture;

static gboolean
can_run_ranks (void)
{
  if (!gptd_dist_available ())
    {
      g_test_skip ("gptd was built without MPI (configure --with-mpi)");
      return FALSE;
    }
  g_autofree char *mpirun = g_find_program_in_path ("mpirun");
  if (mpirun == NULL)
    {
      g_test_skip ("mpirun is not installed (openmpi-bin)");
      return FALSE;
    }
  return TRUE;
}

static void
fixture_set_up (Fixture *f, gconstpointer data)
{
  const char *src = g_getenv ("GPTD_SRCDIR");
  const char *build = g_getenv ("GPTD_BUILDDIR");
  g_assert_nonnull (src);
  g_assert_nonnull (build);
  f->dir = g_dir_make_tmp ("gptd-dist-XXXXXX", NULL);
  g_assert_nonnull (f->dir);
  f->pipeline = g_build_filename (f->dir, "tiny.pipeline", NULL);
  g_autofree char *text = g_strdup_printf (pipeline_text, src, src);
  g_assert_true (g_file_set_contents (f->pipeline, text, -1, NULL));
  f->gptd = g_build_filename (build, "daemon", "gptd", NULL);
  if (g_getenv ("GPTD_MPIRUN_ARGS") == NULL)
    g_setenv ("GPTD_MPIRUN_ARGS", "--oversubscribe --mca btl self,vader", TRUE);
}

static void
fixture_tear_down (Fixture *f, gconstpointer data)
{
  g_autofree char *cmd = g_strdup_printf ("rm -rf '%s'", f->dir);
  g_assert_true (g_spawn_command_line_sync (cmd, NULL, NULL, NULL, NULL));
  g_free (f->dir);
  g_free (f->pipeline);
  g_free (f->gptd);
}

/* Runs gptd run with @ranks (0: no --ranks) in run directory @name and the
 * settings @sets (NULL-terminated); returns the exit status, *err the stderr. */
static int
run_gptd (Fixture *f, const char *name, int ranks, gboolean resume,
          const char *const *sets, char **err)
{
  g_autoptr (GPtrArray) argv = g_ptr_array_new_with_free_func (g_free);
  g_ptr_array_add (argv, g_strdup (f->gptd));
  g_ptr_array_add (argv, g_strdup ("run"));
  g_ptr_array_add (argv, g_strdup ("-q"));
  if (ranks > 0)
    g_ptr_array_add (argv, g_strdup_printf ("--ranks=%d", ranks));
  g_autofree char *dir = g_build_filename (f->dir, name, NULL);
  g_ptr_array_add (argv, g_strdup (resume ? "--resume" : "--run-dir"));
  g_ptr_array_add (argv, g_strdup (dir));
  for (guint i = 0; sets && sets[i]; i++)
    g_ptr_array_add (argv, g_strdup_printf ("--set=%s", sets[i]));
  if (!resume)
    g_ptr_array_add (argv, g_strdup (f->pipeline));
  g_ptr_array_add (argv, NULL);
  int status = -1;
  g_autoptr (GError) error = NULL;
  g_autofree char *out = NULL;
  g_assert_true (g_spawn_sync (NULL, (char **) argv->pdata, NULL, G_SPAWN_DEFAULT, NULL,
                               NULL, &out, err, &status, &error));
  g_assert_no_error (error);
  return WIFEXITED (status) ? WEXITSTATUS (status) : 128 + WTERMSIG (status);
}

static void
run_ok (Fixture *f, const char *name, int ranks, gboolean resume, const char *const *sets)
{
  g_autofree char *err = NULL;
  int status = run_gptd (f, name, ranks, resume, sets, &err);
  if (status != 0)
    g_printerr ("%s", err);
  g_assert_cmpint (status, ==, 0);
}

/* The rows of RUN/metrics.csv: steps[i] and train_losses[i] as written. */
static GPtrArray *
read_metrics (Fixture *f, const char *name)
{
  g_autofree char *path = g_build_filename (f->dir, name, "metrics.csv", NULL);
  g_autofree char *text = NULL;
  g_assert_true (g_file_get_contents (path, &text, NULL, NULL));
  g_auto (GStrv) lines = g_strsplit (text, "\n", -1);
  GPtrArray *rows = g_ptr_array_new_with_free_func ((GDestroyNotify) g_strfreev);
  for (guint i = 1; lines[i] && *lines[i]; i++)
    g_ptr_array_add (rows, g_strsplit (lines[i], ",", -1));
  return rows;
}

/* The final checkpoint of run @name: the model and its optimizer. */
static GptdGpt *
load_final (Fixture *f, const char *name, GptdAdamW **opt)
{
  g_autofree char *root = g_build_filename (f->dir, name, "checkpoint", NULL);
  GptdTrainingInfo info = { 0 };
  g_autoptr (GError) error = NULL;
  GptdGpt *m = gptd_checkpoint_load (root, opt, &info, &error);
  g_assert_no_error (error);
  gptd_training_info_clear (&info);
  return m;
}

/* Every step's train loss (column 3) of @a and @b agree within @rel relative (0:
 * the same text); returns the largest relative difference. */
static double
compare_losses (GPtrArray *a, GPtrArray *b, double rel)
{
  double worst = 0;
  g_assert_cmpuint (a->len, ==, b->len);
  for (guint i = 0; i < a->len; i++)
    {
      char **ra = a->pdata[i], **rb = b->pdata[i];
      g_assert_cmpstr (ra[0], ==, rb[0]);
      double la = g_ascii_strtod (ra[3], NULL), lb = g_ascii_strtod (rb[3], NULL);
      double d = fabs (la - lb) / fabs (la);
      worst = MAX (worst, d);
      if (rel == 0)
        g_assert_cmpstr (ra[3], ==, rb[3]);
      else if (d > rel)
        g_error ("step %s: train loss %s against %s, %.3g relative", ra[0], ra[3], rb[3], d);
    }
  return worst;
}

/* The weights of @a and @b: |a - b| <= tol * max(1, |a|) (tol 0: the same bits). */
static double
compare_weights (GptdGpt *a, GptdGpt *b, double tol)
{
  size_t n = gptd_gpt_n_params (a);
  g_assert_cmpuint (n, ==, gptd_gpt_n_params (b));
  const float *pa = gptd_gpt_get_params (a), *pb = gptd_gpt_get_params (b);
  if (tol == 0)
    {
      g_assert_true (memcmp (pa, pb, n * sizeof (float)) == 0);
      return 0;
    }
  double worst = 0;
  for (size_t i = 0; i < n; i++)
    {
      double d = fabs ((double) pa[i] - pb[i]) / MAX (1.0, fabs (pa[i]));
      worst = MAX (worst, d);
      if (d > tol)
        g_error ("parameter %zu: %.9g against %.9g", i, pa[i], pb[i]);
    }
  return worst;
}

/* Two ranks of 2 rows against one process of 4 rows: the same global batches. */
static void
test_two_ranks_equal_one (Fixture *f, gconstpointer data)
{
  if (!can_run_ranks ())
    return;
  run_ok (f, "one", 0, FALSE, NULL);
  run_ok (f, "two", 2, FALSE, NULL);
  g_autoptr (GPtrArray) one = read_metrics (f, "one");
  g_autoptr (GPtrArray) two = read_metrics (f, "two");
  g_assert_cmpuint (one->len, ==, 20);
  /* tokens_seen counts the whole group's batch: 4 rows of 16 tokens a step. */
  g_assert_cmpstr (((char **) two->pdata[19])[2], ==, "1280");
  double dl = compare_losses (one, two, 1e-6);
  g_autoptr (GptdAdamW) o1 = NULL;
  g_autoptr (GptdAdamW) o2 = NULL;
  g_autoptr (GptdGpt) m1 = load_final (f, "one", &o1);
  g_autoptr (GptdGpt) m2 = load_final (f, "two", &o2);
  double dw = compare_weights (m1, m2, 1e-6);
  g_test_message ("largest difference: losses %.3g relative, weights %.3g", dl, dw);
}

/* ZeRO-1 against plain data-parallel: the same bits, moments included. */
static void
test_zero_identical (Fixture *f, gconstpointer data)
{
  if (!can_run_ranks ())
    return;
  const char *const zero[] = { "zero=1", NULL };
  run_ok (f, "plain", 2, FALSE, NULL);
  run_ok (f, "zero", 2, FALSE, zero);
  g_autoptr (GPtrArray) plain = read_metrics (f, "plain");
  g_autoptr (GPtrArray) sharded = read_metrics (f, "zero");
  compare_losses (plain, sharded, 0);
  g_autoptr (GptdAdamW) o1 = NULL;
  g_autoptr (GptdAdamW) o2 = NULL;
  g_autoptr (GptdGpt) m1 = load_final (f, "plain", &o1);
  g_autoptr (GptdGpt) m2 = load_final (f, "zero", &o2);
  compare_weights (m1, m2, 0);
  /* The checkpoint's moments were gathered from the two shards. */
  size_t n1, n2;
  float *v1, *v2;
  float *mo1 = gptd_adamw_get_moments (o1, &v1, NULL, &n1);
  float *mo2 = gptd_adamw_get_moments (o2, &v2, NULL, &n2);
  g_assert_cmpuint (n1, ==, n2);
  g_assert_true (memcmp (mo1, mo2, n1 * sizeof (float)) == 0);
  g_assert_true (memcmp (v1, v2, n1 * sizeof (float)) == 0);
  g_assert_cmpint (gptd_adamw_get_step (o1), ==, gptd_adamw_get_step (o2));
}

/* classifier-trainer on classification-dataset: 40 labelled lines of bytes, a
 * batch of 4 over two ranks against one process. The last batches of the
 * evaluated splits are partial, so some shares are uneven. */
static const char classifier_text[] =
  "[pipeline]\nname=tiny-cls\n"
  "[stage rows]\ntype=table-source\npath=%s\nformat=tsv\nlabel-column=1\n"
  "text-column=2\nlabels=no,yes\n"
  "[stage tokens]\ntype=bpe-tokenizer\ninput=rows\nvocab=%s/pipelines/vocab/bytes\n"
  "[stage data]\ntype=classification-dataset\ninput=tokens\nlabels=no,yes\n"
  "split=0.7,0.15,0.15\npad-id=256\nbatch-size=4\nseed=1\n"
  "[stage train]\ntype=classifier-trainer\ninput=data\nmodel=custom\nn-layer=2\n"
  "n-head=2\nn-embd=32\ncontext-length=64\nvocab-size=257\ndropout=0\n"
  "trainable=all\npooling=last-token\nlr=0.001\nmax-steps=12\neval-freq=4\n"
  "eval-iter=2\nthreads=1\n";

static void
test_classifier_two_ranks (Fixture *f, gconstpointer data)
{
  if (!can_run_ranks ())
    return;
  g_autofree char *tsv = g_build_filename (f->dir, "rows.tsv", NULL);
  g_autoptr (GString) rows = g_string_new (NULL);
  for (int i = 0; i < 40; i++)
    g_string_append_printf (rows, "%s\t%s message number %d%s\n", i % 3 ? "no" : "yes",
                            i % 3 ? "plain" : "WIN CASH NOW", i, i % 5 ? "" : " again");
  g_assert_true (g_file_set_contents (tsv, rows->str, -1, NULL));
  g_autofree char *text = g_strdup_printf (classifier_text, tsv, g_getenv ("GPTD_SRCDIR"));
  g_assert_true (g_file_set_contents (f->pipeline, text, -1, NULL));
  run_ok (f, "one", 0, FALSE, NULL);
  run_ok (f, "two", 2, FALSE, NULL);
  g_autoptr (GPtrArray) one = read_metrics (f, "one");
  g_autoptr (GPtrArray) two = read_metrics (f, "two");
  g_assert_cmpuint (one->len, ==, 12);
  /* A loss over 4 pooled rows rounds more than one over 64 positions: 1e-5. */
  double dl = compare_losses (one, two, 1e-5);
  /* Each rank trained on its share: the group saw the tokens one process saw. */
  g_assert_cmpstr (((char **) two->pdata[11])[2], ==, ((char **) one->pdata[11])[2]);
  /* The accuracies over whole splits, partial batches included, are the group's. */
  g_autofree char *a1 = g_build_filename (f->dir, "one", "accuracy.json", NULL);
  g_autofree char *a2 = g_build_filename (f->dir, "two", "accuracy.json", NULL);
  g_autofree char *t1 = NULL, *t2 = NULL;
  g_assert_true (g_file_get_contents (a1, &t1, NULL, NULL));
  g_assert_true (g_file_get_contents (a2, &t2, NULL, NULL));
  g_auto (GStrv) l1 = g_strsplit (t1, "\n", -1);
  g_auto (GStrv) l2 = g_strsplit (t2, "\n", -1);
  for (guint i = 0; l1[i] && l2[i]; i++)
    if (strstr (l1[i], "accuracy") != NULL)
      g_assert_cmpstr (l1[i], ==, l2[i]);
  g_test_message ("largest difference of the losses: %.3g relative", dl);
}

/* The gptd processes mpirun @parent started, by rank. */
static GPid
find_rank (GPid parent, int rank)
{
  g_autoptr (GDir) proc = g_dir_open ("/proc", 0, NULL);
  g_autofree char *want = g_strdup_printf ("OMPI_COMM_WORLD_RANK=%d", rank);
  const char *name;
  while (proc && (name = g_dir_read_name (proc)) != NULL)
    {
      if (!g_ascii_isdigit (name[0]))
        continue;
      g_autofree char *stat_path = g_strdup_printf ("/proc/%s/stat", name);
      g_autofree char *stat = NULL;
      if (!g_file_get_contents (stat_path, &stat, NULL, NULL))
        continue;
      const char *close = strrchr (stat, ')');
      int ppid = 0;
      if (close == NULL || sscanf (close + 2, "%*c %d", &ppid) != 1 || ppid != parent)
        continue;
      g_autofree char *env_path = g_strdup_printf ("/proc/%s/environ", name);
      g_autofree char *env = NULL;
      gsize len = 0;
      if (!g_file_get_contents (env_path, &env, &len, NULL))
        continue;
      for (gsize i = 0; i < len; i += strlen (env + i) + 1)
        if (strcmp (env + i, want) == 0)
          return (GPid) atoi (name);
    }
  return 0;
}

/* SIGKILL to rank 1 stops the group, naming the rank, within seconds; the run
 * resumes from its last checkpoint exactly with two ranks, and with one. */
static void
test_killed_rank (Fixture *f, gconstpointer data)
{
  if (!can_run_ranks ())
    return;
  const char *const sets[] = { "steps=300", "every=30", "eval=100", NULL };
  g_autofree char *dir = g_build_filename (f->dir, "killed", NULL);
  g_autofree char *ckpt = g_build_filename (dir, "checkpoint", "checkpoint.json", NULL);
  const char *argv[] = { f->gptd, "run", "-q", "--ranks=2", "--run-dir", dir, "--set",
                         sets[0], "--set", sets[1], "--set", sets[2], f->pipeline, NULL };
  GPid pid;
  int err_fd;
  g_autoptr (GError) error = NULL;
  g_assert_true (g_spawn_async_with_pipes (NULL, (char **) argv, NULL,
                                           G_SPAWN_DO_NOT_REAP_CHILD, NULL, NULL, &pid,
                                           NULL, NULL, &err_fd, &error));
  g_assert_no_error (error);
  /* gptd execs mpirun in the same process; rank 1 is its child. */
  GPid victim = 0;
  for (int i = 0; i < 2000 && (victim == 0 || !g_file_test (ckpt, G_FILE_TEST_EXISTS)); i++)
    {
      g_usleep (10000);
      if (victim == 0)
        victim = find_rank (pid, 1);
    }
  g_assert_cmpint (victim, >, 0);
  g_assert_true (g_file_test (ckpt, G_FILE_TEST_EXISTS));
  gint64 t0 = g_get_monotonic_time ();
  g_assert_cmpint (kill (victim, SIGKILL), ==, 0);
  int status;
  g_assert_cmpint (waitpid (pid, &status, 0), ==, pid);
  double took = (g_get_monotonic_time () - t0) / 1e6;
  g_autoptr (GIOChannel) ch = g_io_channel_unix_new (err_fd);
  g_io_channel_set_close_on_unref (ch, TRUE);
  g_autofree char *err = NULL;
  g_io_channel_read_to_end (ch, &err, NULL, NULL);
  g_test_message ("the group stopped %.1f s after the kill: %s", took, err);
  g_assert_false (WIFEXITED (status) && WEXITSTATUS (status) == 0);
  g_assert_cmpfloat (took, <, 10);
  g_assert_nonnull (strstr (err, "rank 1"));

  /* The two-rank resume finishes as an uninterrupted run, to the bit. */
  g_autofree char *copy = g_strdup_printf ("cp -a '%s' '%s/killed-1'", dir, f->dir);
  g_assert_true (g_spawn_command_line_sync (copy, NULL, NULL, NULL, NULL));
  run_ok (f, "killed", 2, TRUE, NULL);
  run_ok (f, "whole", 2, FALSE, sets);
  g_autoptr (GPtrArray) resumed = read_metrics (f, "killed");
  g_autoptr (GPtrArray) whole = read_metrics (f, "whole");
  g_assert_cmpuint (whole->len, ==, 300);
  compare_losses (resumed, whole, 0);
  g_autoptr (GptdAdamW) o1 = NULL;
  g_autoptr (GptdAdamW) o2 = NULL;
  g_autoptr (GptdGpt) m1 = load_final (f, "killed", &o1);
  g_autoptr (GptdGpt) m2 = load_final (f, "whole", &o2);
  compare_weights (m1, m2, 0);

  /* With one process the resumed run goes on from the same checkpoint, on the
   * same global batches: the losses agree to float rounding. */
  run_ok (f, "killed-1", 1, TRUE, NULL);
  g_autoptr (GPtrArray) one = read_metrics (f, "killed-1");
  double d = compare_losses (one, whole, 1e-4);
  g_test_message ("one-process resume: losses within %.3g relative", d);
}

/* ranks= needs MPI: a build without it refuses the pipeline, naming the key. */
static void
test_ranks_without_mpi (Fixture *f, gconstpointer data)
{
  g_autoptr (GptdRegistry) registry = gptd_registry_new ();
  gptd_registry_scan (registry, NULL);
  g_autofree char *text = NULL;
  g_assert_true (g_file_get_contents (f->pipeline, &text, NULL, NULL));
  /* ranks= is a [pipeline] key: put it there. */
  g_autofree char *with = g_strdup_printf ("[pipeline]\nranks=2\n%s",
                                           text + strlen ("[pipeline]\n"));
  g_autoptr (GPtrArray) problems = NULL;
  g_autoptr (GError) error = NULL;
  g_autoptr (GptdPipeline) p =
    gptd_pipeline_load_data (registry, with, -1, "tiny.pipeline", NULL, &problems, &error);
  if (gptd_dist_available ())
    {
      g_assert_no_error (error);
      g_assert_cmpuint (gptd_pipeline_get_ranks (p), ==, 2);
    }
  else
    {
      g_assert_null (p);
      g_assert_nonnull (error);
      g_assert_nonnull (strstr (error->message, "ranks"));
      g_assert_nonnull (strstr (error->message, "MPI"));
      /* gptd run --ranks says so too, with a usage status. */
      g_autofree char *err = NULL;
      g_assert_cmpint (run_gptd (f, "no-mpi", 2, FALSE, NULL, &err), ==, 2);
      g_assert_nonnull (strstr (err, "MPI"));
    }
  /* Not a number of processes: an error in every build. */
  g_autofree char *zero = g_strdup_printf ("[pipeline]\nranks=0\n%s",
                                           text + strlen ("[pipeline]\n"));
  g_clear_error (&error);
  g_autoptr (GptdPipeline) q =
    gptd_pipeline_load_data (registry, zero, -1, "tiny.pipeline", NULL, NULL, &error);
  g_assert_null (q);
  g_assert_nonnull (strstr (error->message, "ranks"));
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add ("/dist/ranks-without-mpi", Fixture, NULL, fixture_set_up,
              test_ranks_without_mpi, fixture_tear_down);
  g_test_add ("/dist/two-ranks-equal-one", Fixture, NULL, fixture_set_up,
              test_two_ranks_equal_one, fixture_tear_down);
  g_test_add ("/dist/zero-identical", Fixture, NULL, fixture_set_up, test_zero_identical,
              fixture_tear_down);
  g_test_add ("/dist/classifier-two-ranks", Fixture, NULL, fixture_set_up,
              test_classifier_two_ranks, fixture_tear_down);
  g_test_add ("/dist/killed-rank", Fixture, NULL, fixture_set_up, test_killed_rank,
              fixture_tear_down);
  return g_test_run ();
}
