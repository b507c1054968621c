/* test-train.c: token-windows and gpt-trainer end to end, through the runner, on a
 * tiny model and generated token streams:
 *
 *  - the batches token-windows serves (windows, shifted targets, splits, the last
 *    partial batch, seeded shuffles, start/limit) equal a reference computed here;
 *  - training makes the loss fall and writes metrics.csv, eval.csv, loss.svg, samples
 *    and a loadable checkpoint;
 *  - a run killed with SIGKILL and resumed, and a run cancelled (which writes a
 *    checkpoint) and resumed, also while an evaluation is running, reproduce the
 *    uninterrupted run's losses, evaluations and final weights bit for bit;
 *  - bad parameters are load-time errors naming the stage and the key, and a
 *    damaged training state stops a resume naming the checkpoint and the field.
 *
 * The test defines stages of its own (a token source, a batch recorder, and
 * token-windows with a hook that cancels the run when an evaluation asks for its
 * batches) and loads the train plugin from the build tree.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1 /* memmem */
#endif
#include <math.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>
#include <glib.h>
#include <glib/gstdio.h>
#include <gio/gio.h>

#include <gptd/bpe.h>
#include <gptd/gpt2-file.h>
#include <gptd/nn.h>
#include <gptd/pipeline.h>
#include <gptd/plugin.h>
#include <gptd/registry.h>
#include <gptd/runner.h>

#include <gptd/windows.h>

/* ---- Test stages ------------------------------------------------------------------ */

/* The generated stream: with a period, a repeating sequence of distinct ids (each id
 * predicts the next: learnable); without, seeded noise. */
static guint32
stream_token (guint64 i, guint64 period, guint32 vocab, guint64 seed)
{
  if (period > 0)
    return (guint32) (((i % period) * 37 + seed) % vocab);
  return (guint32) (gptd__windows_random (seed, i) % vocab);
}

static const GptdParamSpec source_params[] = {
  { "n-tokens", GPTD_PARAM_INT, "1000", 1, 1e9, NULL, "tokens", 0 },
  { "vocab-size", GPTD_PARAM_INT, "64", 1, 1e6, NULL, "ids below this", 0 },
  { "period", GPTD_PARAM_INT, "0", 0, 1e9, NULL, "repeat period; 0 for noise", 0 },
  { "chunk", GPTD_PARAM_INT, "97", 1, 1e9, NULL, "ids per message", 0 },
  { "seed", GPTD_PARAM_INT, "1", 0, 1e9, NULL, "seed", 0 },
  { NULL }
};
static const GptdPadSpec tokens_out[] = { { "default", "gptd.Tokens", 0 }, { NULL } };

typedef struct {
  guint64 n, period, chunk, seed;
  guint32 vocab;
} Source;

static gpointer
source_create (GptdStageContext *ctx, const GptdParams *p, GError **error)
{
  Source *s = g_new0 (Source, 1);
  s->n = gptd_params_get_int (p, "n-tokens");
  s->vocab = gptd_params_get_int (p, "vocab-size");
  s->period = gptd_params_get_int (p, "period");
  s->chunk = gptd_params_get_int (p, "chunk");
  s->seed = gptd_params_get_int (p, "seed");
  return s;
}

static gboolean
source_run (gpointer data, GptdStageContext *ctx, GError **error)
{
  Source *s = data;
  g_autofree guint32 *ids = g_new (guint32, s->chunk);
  for (guint64 i = 0; i < s->n; i += s->chunk)
    {
      Gptd__Tokens t = GPTD__TOKENS__INIT;
      guint64 k = MIN (s->chunk, s->n - i);
      for (guint64 j = 0; j < k; j++)
        ids[j] = stream_token (i + j, s->period, s->vocab, s->seed);
      t.source = (char *) "generated";
      t.ids = ids;
      t.n_ids = k;
      t.last = i + k == s->n;
      t.vocab_size = s->vocab;
      if (!gptd_stage_push (ctx, 0, &t.base, error))
        return FALSE;
    }
  return TRUE;
}

static const GptdStageType source_type = {
  .name = "test-token-source",
  .description = "generated tokens",
  .params = source_params,
  .outputs = tokens_out,
  .create = source_create,
  .run = source_run,
  .destroy = g_free,
};

/* Records the batches of a list of epoch requests, one line per batch:
 * "B split epoch index batches rows | inputs | targets", and "E split epoch batches
 * total" per end of epoch. requests= is "split:epoch:seed:shuffle:start:limit;...". */
static const GptdParamSpec sink_params[] = {
  { "requests", GPTD_PARAM_STRING, NULL, 0, 0, NULL, "requests", GPTD_PARAM_REQUIRED },
  { "output", GPTD_PARAM_STRING, NULL, 0, 0, NULL, "file", GPTD_PARAM_REQUIRED },
  { NULL }
};
static const GptdPadSpec batch_in[] = { { "default", "gptd.Batch", GPTD_PAD_EPOCHS }, { NULL } };

typedef struct {
  char *requests;
  char *output;
} Sink;

static gpointer
sink_create (GptdStageContext *ctx, const GptdParams *p, GError **error)
{
  Sink *s = g_new0 (Sink, 1);
  s->requests = g_strdup (gptd_params_get_string (p, "requests"));
  s->output = g_strdup (gptd_params_get_string (p, "output"));
  return s;
}

static void
sink_destroy (gpointer data)
{
  Sink *s = data;
  g_free (s->requests);
  g_free (s->output);
  g_free (s);
}

static gboolean
sink_run (gpointer data, GptdStageContext *ctx, GError **error)
{
  Sink *s = data;
  g_autoptr (GString) out = g_string_new (NULL);
  g_auto (GStrv) reqs = g_strsplit (s->requests, ";", -1);

  for (guint r = 0; reqs[r]; r++)
    {
      g_auto (GStrv) f = g_strsplit (reqs[r], ":", -1);
      g_assert_cmpuint (g_strv_length (f), ==, 6);
      Gptd__EpochRequest req = GPTD__EPOCH_REQUEST__INIT;
      req.split = f[0];
      req.epoch = atoi (f[1]);
      req.seed = atoi (f[2]);
      req.shuffle = atoi (f[3]);
      req.start = atoi (f[4]);
      req.limit = atoi (f[5]);
      if (!gptd_stage_request_epoch (ctx, 0, &req, error))
        return FALSE;
      for (;;)
        {
          ProtobufCMessage *msg = NULL;
          GptdPullResult res = gptd_stage_pull (ctx, 0, &msg, error);
          if (res == GPTD_PULL_ERROR)
            return FALSE;
          g_assert_cmpint (res, !=, GPTD_PULL_END_OF_STREAM);
          if (res == GPTD_PULL_END_OF_EPOCH)
            {
              const Gptd__EndOfEpoch *e = (const Gptd__EndOfEpoch *) msg;
              g_string_append_printf (out, "E %s %u %" G_GUINT64_FORMAT " %" G_GUINT64_FORMAT
                                      "\n", e->split, e->epoch, e->batches, e->total);
              protobuf_c_message_free_unpacked (msg, NULL);
              break;
            }
          const Gptd__Batch *b = (const Gptd__Batch *) msg;
          g_string_append_printf (out, "B %s %u %" G_GUINT64_FORMAT " %" G_GUINT64_FORMAT
                                  " %u %u |", b->split, b->epoch, b->index, b->batches,
                                  b->batch_size, b->seq_len);
          for (gsize i = 0; i < b->n_inputs; i++)
            g_string_append_printf (out, " %d", b->inputs[i]);
          g_string_append (out, " |");
          for (gsize i = 0; i < b->n_targets; i++)
            g_string_append_printf (out, " %d", b->targets[i]);
          g_string_append_c (out, '\n');
          protobuf_c_message_free_unpacked (msg, NULL);
        }
    }
  return g_file_set_contents (s->output, out->str, out->len, error);
}

static const GptdStageType sink_type = {
  .name = "test-batch-sink",
  .description = "records batches",
  .params = sink_params,
  .inputs = batch_in,
  .create = sink_create,
  .run = sink_run,
  .destroy = sink_destroy,
};

/* Counts the Model messages it receives and keeps the last one. */
static const GptdPadSpec model_in[] = { { "default", "gptd.Model", 0 }, { NULL } };
static guint n_models;
static Gptd__Model *last_model;

static gpointer
model_sink_create (GptdStageContext *ctx, const GptdParams *p, GError **error)
{
  return g_new0 (char, 1);
}

static gboolean
model_sink_process (gpointer data, GptdStageContext *ctx, guint input,
                    const ProtobufCMessage *msg, GError **error)
{
  n_models++;
  if (last_model)
    protobuf_c_message_free_unpacked (&last_model->base, NULL);
  guint8 buf[4096];
  gsize len = protobuf_c_message_pack (msg, buf);
  last_model = gptd__model__unpack (NULL, len, buf);
  return TRUE;
}

static const GptdStageType model_sink_type = {
  .name = "test-model-sink",
  .description = "counts models",
  .inputs = model_in,
  .create = model_sink_create,
  .process = model_sink_process,
  .destroy = g_free,
};

static const GptdPluginDescriptor test_plugin = {
  GPTD_PLUGIN_ABI_MAJOR, GPTD_PLUGIN_ABI_MINOR, "test-train", "test stages", "1", "MIT",
  (const GptdStageType *const[]){ &source_type, &sink_type, &model_sink_type, NULL },
  { NULL }
};

/* ---- Running pipelines ------------------------------------------------------------- */

typedef struct {
  GptdRunner *runner;
  gint64 cancel_at;   /* cancel once progress reaches this step (0: never) */
  gint64 kill_at;     /* SIGKILL this process once progress reaches this step */
  guint cancel_at_validation; /* cancel at this validation request (1: the first) */
  guint n_validation;
  guint n_samples;
  GPtrArray *samples;  /* char * */
  GPtrArray *logs;
} Events;

/* The events of the pipeline running now. */
static Events *running_events;

/* token-windows, but a request for the validation split (made by the trainer's
 * evaluation, after its train-split batches) can cancel the run first: the
 * trainer is then waiting for the batches of an evaluation. */
static GptdStageType cancelling_windows_type;
static gboolean (*windows_epoch) (gpointer self, GptdStageContext *ctx, guint output,
                                  const Gptd__EpochRequest *request, GError **error);

static gboolean
cancelling_windows_epoch (gpointer self, GptdStageContext *ctx, guint output,
                          const Gptd__EpochRequest *request, GError **error)
{
  Events *e = running_events;
  if (e != NULL && g_strcmp0 (request->split, "validation") == 0
      && ++e->n_validation == e->cancel_at_validation)
    {
      gptd_runner_cancel (e->runner);
      g_set_error_literal (error, G_IO_ERROR, G_IO_ERROR_CANCELLED,
                           "cancelled during an evaluation");
      return FALSE;
    }
  return windows_epoch (self, ctx, output, request, error);
}

static const GptdPluginDescriptor wrap_plugin = {
  GPTD_PLUGIN_ABI_MAJOR, GPTD_PLUGIN_ABI_MINOR, "test-train-windows", "test stages", "1",
  "MIT", (const GptdStageType *const[]){ &cancelling_windows_type, NULL }, { NULL }
};

static GptdRegistry *registry;

static GptdRegistry *
get_registry (void)
{
  if (registry == NULL)
    {
      g_autoptr (GError) error = NULL;
      const char *builddir = g_getenv ("GPTD_BUILDDIR");
      registry = gptd_registry_new ();
      g_assert_nonnull (builddir);
      g_autofree char *so = g_build_filename (builddir, "plugins", "train", ".libs",
                                              "train.so", NULL);
      g_assert_true (gptd_registry_load_file (registry, so, &error));
      g_assert_no_error (error);
      g_assert_true (gptd_registry_add_descriptor (registry, &test_plugin, "(test)", &error));
      g_assert_no_error (error);
      const GptdStageType *tw = gptd_registry_lookup (registry, "token-windows");
      g_assert_nonnull (tw);
      cancelling_windows_type = *tw;
      cancelling_windows_type.name = "test-cancelling-windows";
      windows_epoch = tw->epoch;
      cancelling_windows_type.epoch = cancelling_windows_epoch;
      g_assert_true (gptd_registry_add_descriptor (registry, &wrap_plugin, "(test)", &error));
      g_assert_no_error (error);
    }
  return registry;
}

static void
on_event (const Gptd__Event *ev, gpointer data)
{
  Events *e = data;
  switch (ev->body_case)
    {
    case GPTD__EVENT__BODY_PROGRESS:
      if (e->kill_at > 0 && (gint64) ev->progress->step >= e->kill_at)
        kill (getpid (), SIGKILL);
      if (e->cancel_at > 0 && (gint64) ev->progress->step >= e->cancel_at)
        gptd_runner_cancel (e->runner);
      break;
    case GPTD__EVENT__BODY_SAMPLE:
      e->n_samples++;
      g_ptr_array_add (e->samples, g_strdup (ev->sample->text));
      break;
    case GPTD__EVENT__BODY_LOG:
      g_ptr_array_add (e->logs, g_strdup (ev->log->message));
      if (g_test_verbose ())
        g_printerr ("# %s: %s\n", ev->log->stage, ev->log->message);
      break;
    default:
      break;
    }
}

/* Runs @text in @run_dir; returns what the runner returned. */
static gboolean
run_pipeline (const char *text, const char *run_dir, gboolean resume, Events *events,
              GError **error)
{
  g_autoptr (GptdPipeline) pipeline = gptd_pipeline_load_data (get_registry (), text, -1,
                                                               "test.pipeline", NULL, NULL,
                                                               error);
  if (pipeline == NULL)
    return FALSE;
  g_autoptr (GptdRunner) runner = gptd_runner_new (pipeline, run_dir, on_event, events);
  events->runner = runner;
  running_events = events;
  gptd_runner_set_resume (runner, resume);
  gboolean ok = gptd_runner_run (runner, error);
  running_events = NULL;
  events->runner = NULL;
  return ok;
}

static void
events_init (Events *e)
{
  memset (e, 0, sizeof *e);
  e->samples = g_ptr_array_new_with_free_func (g_free);
  e->logs = g_ptr_array_new_with_free_func (g_free);
}

static void
events_clear (Events *e)
{
  g_ptr_array_unref (e->samples);
  g_ptr_array_unref (e->logs);
}

static char *
make_run_dir (void)
{
  g_autoptr (GError) error = NULL;
  char *dir = g_dir_make_tmp ("gptd-train-XXXXXX", &error);
  g_assert_no_error (error);
  return dir;
}

static void
remove_tree (const char *path)
{
  g_autoptr (GFile) f = g_file_new_for_path (path);
  g_autoptr (GFileEnumerator) en = g_file_enumerate_children (f, G_FILE_ATTRIBUTE_STANDARD_NAME,
                                                              G_FILE_QUERY_INFO_NOFOLLOW_SYMLINKS,
                                                              NULL, NULL);
  if (en != NULL)
    {
      GFileInfo *info;
      while ((info = g_file_enumerator_next_file (en, NULL, NULL)) != NULL)
        {
          g_autofree char *child = g_build_filename (path, g_file_info_get_name (info), NULL);
          if (g_file_info_get_file_type (info) == G_FILE_TYPE_DIRECTORY)
            remove_tree (child);
          else
            g_unlink (child);
          g_object_unref (info);
        }
    }
  g_rmdir (path);
}

static char *
read_text (const char *dir, const char *name)
{
  g_autofree char *path = g_build_filename (dir, name, NULL);
  char *text = NULL;
  g_autoptr (GError) error = NULL;
  g_file_get_contents (path, &text, NULL, &error);
  g_assert_no_error (error);
  return text;
}

/* metrics.csv without the timing columns (tokens_per_s, elapsed_s). */
static char *
losses_of (const char *dir)
{
  g_autofree char *text = read_text (dir, "metrics.csv");
  g_auto (GStrv) lines = g_strsplit (text, "\n", -1);
  GString *out = g_string_new (NULL);
  for (guint i = 0; lines[i] && lines[i][0]; i++)
    {
      g_auto (GStrv) f = g_strsplit (lines[i], ",", -1);
      g_assert_cmpuint (g_strv_length (f), ==, 8);
      g_string_append_printf (out, "%s,%s,%s,%s,%s,%s\n", f[0], f[1], f[2], f[3], f[4], f[5]);
    }
  return g_string_free (out, FALSE);
}

/* ---- token-windows ------------------------------------------------------------------- */

typedef struct {
  char split[16];
  guint epoch;
  guint64 index, batches;
  guint rows, seq;
  GArray *inputs, *targets;
} RecBatch;

static GArray *
parse_batches (const char *text, GPtrArray *ends)
{
  GArray *out = g_array_new (FALSE, TRUE, sizeof (RecBatch));
  g_auto (GStrv) lines = g_strsplit (text, "\n", -1);
  for (guint i = 0; lines[i] && lines[i][0]; i++)
    {
      if (lines[i][0] == 'E')
        {
          g_ptr_array_add (ends, g_strdup (lines[i]));
          continue;
        }
      g_auto (GStrv) parts = g_strsplit (lines[i], "|", 3);
      RecBatch b = { 0 };
      g_assert_cmpint (sscanf (parts[0], "B %15s %u %" G_GUINT64_FORMAT " %" G_GUINT64_FORMAT
                               " %u %u", b.split, &b.epoch, &b.index, &b.batches, &b.rows,
                               &b.seq), ==, 6);
      b.inputs = g_array_new (FALSE, FALSE, sizeof (gint32));
      b.targets = g_array_new (FALSE, FALSE, sizeof (gint32));
      for (int k = 1; k <= 2; k++)
        {
          g_auto (GStrv) nums = g_strsplit (g_strstrip (parts[k]), " ", -1);
          for (guint j = 0; nums[j] && nums[j][0]; j++)
            {
              gint32 v = atoi (nums[j]);
              g_array_append_val (k == 1 ? b.inputs : b.targets, v);
            }
        }
      g_array_append_val (out, b);
    }
  return out;
}

static void
free_batches (GArray *batches)
{
  for (guint i = 0; i < batches->len; i++)
    {
      RecBatch *b = &g_array_index (batches, RecBatch, i);
      g_array_unref (b->inputs);
      g_array_unref (b->targets);
    }
  g_array_unref (batches);
}

/* Checks recorded batches @first.. of one request against the book's windows over the
 * generated stream: split [begin, end), windows every stride, in @order. */
static void
check_request (GArray *got, guint first, guint count, guint64 begin, guint64 end,
               guint64 ctx, guint64 stride, guint64 bs, const guint64 *order,
               guint64 start_batch, guint32 vocab, guint64 seed)
{
  guint64 n_windows = 0;
  for (gint64 i = 0; i < (gint64) (end - begin) - (gint64) ctx; i += stride)
    n_windows++;
  for (guint k = 0; k < count; k++)
    {
      RecBatch *b = &g_array_index (got, RecBatch, first + k);
      guint64 bi = start_batch + k;
      g_assert_cmpuint (b->index, ==, bi);
      g_assert_cmpuint (b->seq, ==, ctx);
      guint64 rows = MIN (bs, n_windows - bi * bs);
      g_assert_cmpuint (b->rows, ==, rows);
      g_assert_cmpuint (b->inputs->len, ==, rows * ctx);
      for (guint64 r = 0; r < rows; r++)
        {
          guint64 w = order ? order[bi * bs + r] : bi * bs + r;
          guint64 s = begin + w * stride;
          for (guint64 t = 0; t < ctx; t++)
            {
              g_assert_cmpint (g_array_index (b->inputs, gint32, r * ctx + t), ==,
                               (gint32) stream_token (s + t, 0, vocab, seed));
              g_assert_cmpint (g_array_index (b->targets, gint32, r * ctx + t), ==,
                               (gint32) stream_token (s + t + 1, 0, vocab, seed));
            }
        }
    }
}

static void
test_windows_stage (void)
{
  g_autofree char *dir = make_run_dir ();
  g_autofree char *out = g_build_filename (dir, "batches.txt", NULL);
  g_autoptr (GError) error = NULL;
  Events ev;
  /* 1000 tokens, 80/20: train tokens 0..800 (ctx 8, stride 5: 159 windows, 53 full
   * batches of 3); validation 800..1000 (39 windows: 13 batches). */
  g_autofree char *text = g_strdup_printf (
    "[pipeline]\nname=windows\n"
    "[stage src]\ntype=test-token-source\nn-tokens=1000\nvocab-size=1000\nchunk=37\nseed=5\n"
    "[stage w]\ntype=token-windows\ninput=src\ncontext-length=8\nstride=5\nbatch-size=3\n"
    "split=0.8,0.2\nseed=7\nmmap-threshold=300\n"
    "[stage sink]\ntype=test-batch-sink\ninput=w\noutput=%s\n"
    "requests=train:0:11:1:0:0;train:0:11:1:4:3;train:1:11:1:0:0;validation:0:0:0:0:0;"
    "train:0:11:0:50:0;test:0:0:0:0:0;validation:0:0:1:12:5\n", out);

  events_init (&ev);
  g_assert_true (run_pipeline (text, dir, FALSE, &ev, &error));
  g_assert_no_error (error);
  events_clear (&ev);

  /* The stream passed the threshold: kept in a mapped 16-bit file. */
  g_autofree char *tokfile = g_build_filename (dir, "tokens-w.u16", NULL);
  g_assert_true (g_file_test (tokfile, G_FILE_TEST_EXISTS));

  g_autofree char *rec = read_text (dir, "batches.txt");
  g_autoptr (GPtrArray) ends = g_ptr_array_new_with_free_func (g_free);
  GArray *got = parse_batches (rec, ends);
  /* 53 + 3 + 53 + 13 + 3 + 0 + 1 batches. */
  g_assert_cmpuint (got->len, ==, 126);
  g_assert_cmpuint (ends->len, ==, 7);
  g_assert_cmpstr (ends->pdata[0], ==, "E train 0 53 53");
  g_assert_cmpstr (ends->pdata[1], ==, "E train 0 3 53");
  g_assert_cmpstr (ends->pdata[3], ==, "E validation 0 13 13");
  g_assert_cmpstr (ends->pdata[5], ==, "E test 0 0 0");
  g_assert_cmpstr (ends->pdata[6], ==, "E validation 0 1 13");

  guint64 n_train = gptd__windows_count (800, 8, 5);
  g_assert_cmpuint (n_train, ==, 159);
  g_autofree guint64 *order0 = g_new (guint64, n_train);
  g_autofree guint64 *order1 = g_new (guint64, n_train);
  gptd__windows_permutation (order0, n_train, TRUE, gptd__windows_shuffle_key (7, 11, 0, 0));
  gptd__windows_permutation (order1, n_train, TRUE, gptd__windows_shuffle_key (7, 11, 1, 0));

  /* Epoch 0 shuffled; its batches 4..6 from start=4 limit=3; epoch 1 another order. */
  check_request (got, 0, 53, 0, 800, 8, 5, 3, order0, 0, 1000, 5);
  check_request (got, 53, 3, 0, 800, 8, 5, 3, order0, 4, 1000, 5);
  check_request (got, 56, 53, 0, 800, 8, 5, 3, order1, 0, 1000, 5);
  /* Validation in order, last batch partial (39 = 12 * 3 + 3: full; see rows). */
  check_request (got, 109, 13, 800, 1000, 8, 5, 3, NULL, 0, 1000, 5);
  /* Unshuffled train from batch 50. */
  check_request (got, 122, 3, 0, 800, 8, 5, 3, NULL, 50, 1000, 5);
  /* shuffle=1 on validation with the same key is honoured too (the request decides). */
  guint64 n_val = gptd__windows_count (200, 8, 5);
  g_autofree guint64 *vorder = g_new (guint64, n_val);
  gptd__windows_permutation (vorder, n_val, TRUE, gptd__windows_shuffle_key (7, 0, 0, 1));
  check_request (got, 125, 1, 800, 1000, 8, 5, 3, vorder, 12, 1000, 5);

  /* The orders differ between epochs. */
  RecBatch *a = &g_array_index (got, RecBatch, 0);
  RecBatch *b = &g_array_index (got, RecBatch, 56);
  g_assert_true (memcmp (a->inputs->data, b->inputs->data, a->inputs->len * 4) != 0);
  g_assert_cmpstr (a->split, ==, "train");
  g_assert_cmpuint (a->batches, ==, 53);
  free_batches (got);
  remove_tree (dir);
}

static void
test_windows_partial_batch (void)
{
  g_autofree char *dir = make_run_dir ();
  g_autofree char *out = g_build_filename (dir, "batches.txt", NULL);
  g_autoptr (GError) error = NULL;
  Events ev;
  /* Train 0..450: 88 windows of ctx 10 stride 5 -> 17 full batches of 5 (drop-last);
   * with drop-last=false 18, the last of 3 rows. Validation 450..500: 8 windows. */
  g_autofree char *text = g_strdup_printf (
    "[pipeline]\nname=windows\n"
    "[stage src]\ntype=test-token-source\nn-tokens=500\nvocab-size=300\nseed=9\n"
    "[stage w]\ntype=token-windows\ninput=src\ncontext-length=10\nstride=5\nbatch-size=5\n"
    "split=0.9,0.1\ndrop-last=false\nshuffle=false\n"
    "[stage sink]\ntype=test-batch-sink\ninput=w\noutput=%s\n"
    "requests=train:3:1:1:0:0;validation:0:0:0:0:0\n", out);

  events_init (&ev);
  g_assert_true (run_pipeline (text, dir, FALSE, &ev, &error));
  g_assert_no_error (error);
  events_clear (&ev);
  g_autofree char *rec = read_text (dir, "batches.txt");
  g_autoptr (GPtrArray) ends = g_ptr_array_new_with_free_func (g_free);
  GArray *got = parse_batches (rec, ends);
  g_assert_cmpuint (gptd__windows_count (450, 10, 5), ==, 88);
  g_assert_cmpuint (got->len, ==, 18 + 2);
  /* shuffle=false: in order even though the request asked for a shuffle. */
  check_request (got, 0, 18, 0, 450, 10, 5, 5, NULL, 0, 300, 9);
  g_assert_cmpuint (g_array_index (got, RecBatch, 17).rows, ==, 3);
  check_request (got, 18, 2, 450, 500, 10, 5, 5, NULL, 0, 300, 9);
  g_assert_cmpuint (g_array_index (got, RecBatch, 19).rows, ==, 3);
  /* In memory: below the default threshold no token file is written. */
  g_autofree char *tokfile = g_build_filename (dir, "tokens-w.u16", NULL);
  g_assert_false (g_file_test (tokfile, G_FILE_TEST_EXISTS));
  free_batches (got);
  remove_tree (dir);
}

/* ---- Training ------------------------------------------------------------------------- */

/* A tiny model on a learnable stream: 1200 tokens, context 16, batch 4: 16 train
 * batches per epoch, 2 epochs. Dropout on, so the RNG state matters for resume. */
static char *
train_pipeline (const char *extra_train, const char *vocab_dir)
{
  return g_strdup_printf (
    "[pipeline]\nname=tiny\n"
    "[stage src]\ntype=test-token-source\nn-tokens=1200\nvocab-size=64\nperiod=24\nseed=3\n"
    "[stage w]\ntype=token-windows\ninput=src\ncontext-length=16\nbatch-size=4\n"
    "split=0.9,0.1\n"
    "[stage train]\ntype=gpt-trainer\ninput=w\nmodel=custom\nn-layer=2\nn-head=2\n"
    "n-embd=32\ncontext-length=16\nvocab-size=%d\ndropout=0.1\nqkv-bias=false\n"
    "tie-embeddings=false\nlr=0.004\nweight-decay=0.1\nepochs=2\neval-freq=4\neval-iter=2\n"
    "threads=2\nseed=123\n%s%s%s\n"
    "[stage out]\ntype=test-model-sink\ninput=train\n",
    vocab_dir ? 257 : 64, extra_train, vocab_dir ? "vocab=" : "sample-tokens=0",
    vocab_dir ? vocab_dir : "");
}

#define TOTAL_STEPS 32

/* The uninterrupted run every resumed run is compared with (made once). */
static char *reference_dir;

static const char *
reference_run (void)
{
  if (reference_dir == NULL)
    {
      g_autoptr (GError) error = NULL;
      Events ev;
      g_autofree char *text = train_pipeline ("checkpoint-every=8\n", NULL);
      reference_dir = make_run_dir ();
      events_init (&ev);
      n_models = 0;
      g_assert_true (run_pipeline (text, reference_dir, FALSE, &ev, &error));
      g_assert_no_error (error);
      g_assert_cmpuint (n_models, ==, 1);
      events_clear (&ev);
    }
  return reference_dir;
}

static void
assert_same_weights (const char *dir_a, const char *dir_b)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *ra = g_build_filename (dir_a, "checkpoint", NULL);
  g_autofree char *rb = g_build_filename (dir_b, "checkpoint", NULL);
  GptdTrainingInfo ia = { 0 }, ib = { 0 };
  GptdAdamW *oa = NULL, *ob = NULL;
  GptdGpt *a = gptd_checkpoint_load (ra, &oa, &ia, &error);
  g_assert_no_error (error);
  GptdGpt *b = gptd_checkpoint_load (rb, &ob, &ib, &error);
  g_assert_no_error (error);
  g_assert_cmpint (ia.step, ==, TOTAL_STEPS);
  g_assert_cmpint (ib.step, ==, TOTAL_STEPS);
  g_assert_cmpuint (gptd_gpt_n_params (a), ==, gptd_gpt_n_params (b));
  g_assert_cmpmem (gptd_gpt_get_params (a), gptd_gpt_n_params (a) * sizeof (float),
                   gptd_gpt_get_params (b), gptd_gpt_n_params (b) * sizeof (float));
  for (guint i = 0; i < gptd_adamw_n_tensors (oa); i++)
    {
      const GptdNnTensor *ta = gptd_adamw_get_tensor (oa, i);
      const GptdNnTensor *tb = gptd_adamw_get_tensor (ob, i);
      g_assert_cmpmem (ta->data, ta->numel * 4, tb->data, tb->numel * 4);
    }
  g_assert_cmpuint (ia.rng.counter, ==, ib.rng.counter);
  gptd_training_info_clear (&ia);
  gptd_training_info_clear (&ib);
  gptd_adamw_free (oa);
  gptd_adamw_free (ob);
  gptd_gpt_free (a);
  gptd_gpt_free (b);
}

static char *
make_vocab (void)
{
  g_autoptr (GError) error = NULL;
  const char *special[] = { "<|endoftext|>", NULL };
  g_autoptr (GptdBpeTrainer) trainer = gptd_bpe_trainer_new (special, &error);
  g_assert_no_error (error);
  const char *text = "every effort moves you";
  g_assert_true (gptd_bpe_trainer_add_text (trainer, text, strlen (text), &error));
  g_autoptr (GptdBpe) bpe = gptd_bpe_trainer_train (trainer, 257, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (gptd_bpe_get_n_vocab (bpe), ==, 257);
  char *dir = make_run_dir ();
  g_assert_true (gptd_bpe_save (bpe, dir, &error));
  g_assert_no_error (error);
  return dir;
}

static void
test_loss_falls (void)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *dir = make_run_dir ();
  g_autofree char *vocab = make_vocab ();
  g_autofree char *text = train_pipeline ("sample-tokens=8\nstart-context=every\n", vocab);
  Events ev;

  events_init (&ev);
  n_models = 0;
  g_assert_true (run_pipeline (text, dir, FALSE, &ev, &error));
  g_assert_no_error (error);

  /* A sample after each epoch, and the Model at the end, naming the checkpoint. */
  g_assert_cmpuint (ev.n_samples, ==, 2);
  for (guint i = 0; i < ev.samples->len; i++)
    g_test_message ("sample: %s", (char *) ev.samples->pdata[i]);
  g_assert_cmpuint (n_models, ==, 1);
  g_assert_cmpuint (last_model->step, ==, TOTAL_STEPS);
  g_assert_cmpuint (last_model->tokens_seen, ==, TOTAL_STEPS * 64);
  g_assert_true (g_str_has_prefix (last_model->path, dir));
  events_clear (&ev);

  /* One metrics row per step; evaluations at steps 0, 4, ..., 28. */
  g_autofree char *metrics = read_text (dir, "metrics.csv");
  g_auto (GStrv) lines = g_strsplit (metrics, "\n", -1);
  g_assert_cmpstr (lines[0], ==,
                   "step,epoch,tokens_seen,train_loss,val_loss,lr,tokens_per_s,elapsed_s");
  g_assert_cmpuint (g_strv_length (lines), ==, TOTAL_STEPS + 2);
  g_auto (GStrv) first = g_strsplit (lines[1], ",", -1);
  g_assert_cmpstr (first[0], ==, "0");
  g_assert_cmpstr (first[2], ==, "64");
  g_assert_cmpstr (first[5], ==, "0.00400000019");
  /* The untrained model's loss is about ln(257). */
  g_assert_cmpfloat (fabs (g_ascii_strtod (first[3], NULL) - log (257)), <, 0.5);
  g_assert_cmpstr (first[4], !=, "");
  g_auto (GStrv) second = g_strsplit (lines[2], ",", -1);
  g_assert_cmpstr (second[4], ==, "");
  g_auto (GStrv) last = g_strsplit (lines[TOTAL_STEPS], ",", -1);
  g_assert_cmpstr (last[0], ==, "31");
  g_assert_cmpstr (last[1], ==, "2");   /* the second epoch, counted from 1 */
  g_assert_cmpstr (last[2], ==, "2048");

  g_autofree char *evals = read_text (dir, "eval.csv");
  g_auto (GStrv) elines = g_strsplit (evals, "\n", -1);
  g_assert_cmpuint (g_strv_length (elines), ==, 1 + 8 + 1);
  g_auto (GStrv) e0 = g_strsplit (elines[1], ",", -1);
  g_auto (GStrv) e7 = g_strsplit (elines[8], ",", -1);
  g_assert_cmpstr (e7[0], ==, "28");
  double val0 = g_ascii_strtod (e0[4], NULL), val7 = g_ascii_strtod (e7[4], NULL);
  double tr0 = g_ascii_strtod (e0[3], NULL), tr7 = g_ascii_strtod (e7[3], NULL);
  g_test_message ("train loss %.3f -> %.3f, validation loss %.3f -> %.3f", tr0, tr7, val0, val7);
  g_assert_cmpfloat (tr7, <, tr0 - 2.0);
  g_assert_cmpfloat (val7, <, val0 - 2.0);

  g_autofree char *svg = read_text (dir, "loss.svg");
  g_assert_nonnull (strstr (svg, "<svg"));
  g_assert_nonnull (strstr (svg, "Validation loss"));

  /* The checkpoint is a model directory with the vocabulary. */
  g_autofree char *root = g_build_filename (dir, "checkpoint", NULL);
  g_autofree char *latest = gptd_checkpoint_get_latest (root, &error);
  g_assert_no_error (error);
  g_assert_cmpstr (latest, ==, last_model->path);
  g_autofree char *vj = g_build_filename (latest, "vocab.json", NULL);
  g_assert_true (g_file_test (vj, G_FILE_TEST_EXISTS));
  GptdGpt *m = gptd_gpt_dir_load (latest, &error);
  g_assert_no_error (error);
  g_assert_cmpint (gptd_gpt_get_config (m)->n_layer, ==, 2);
  g_assert_false (gptd_gpt_get_config (m)->tie_embeddings);
  gptd_gpt_free (m);
  remove_tree (dir);
  remove_tree (vocab);
}

/* Subprocess: trains with checkpoints every 8 steps and kills itself (SIGKILL) once
 * step 17 is reported, i.e. in the second epoch, after the checkpoint taken at the
 * end of the first one and the metrics row of global step 16. */
static void
killed_child (const char *dir)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *text = train_pipeline ("checkpoint-every=8\n", NULL);
  Events ev;
  events_init (&ev);
  ev.kill_at = 17;
  run_pipeline (text, dir, FALSE, &ev, &error);
  /* Not reached. */
  g_assert_not_reached ();
}

/* The run directory of the killed child, named after the parent test process. */
static char *
kill_dir (GPid parent)
{
  g_autofree char *name = g_strdup_printf ("gptd-train-kill-%d", (int) parent);
  return g_build_filename (g_get_tmp_dir (), name, NULL);
}

static void
test_resume_after_sigkill (void)
{
  g_autoptr (GError) error = NULL;

  if (g_test_subprocess ())
    {
      g_autofree char *child_dir = kill_dir (getppid ());
      killed_child (child_dir);
      return;
    }

  g_autofree char *dir = kill_dir (getpid ());
  const char *ref = reference_run ();
  remove_tree (dir);
  g_assert_cmpint (g_mkdir (dir, 0700), ==, 0);
  g_test_trap_subprocess (NULL, 120 * G_USEC_PER_SEC, G_TEST_SUBPROCESS_INHERIT_STDERR);
  g_test_trap_assert_failed ();

  /* Killed: the rows written after the last checkpoint are there, and the checkpoint
   * is at step 16. */
  g_autofree char *partial = losses_of (dir);
  g_assert_nonnull (strstr (partial, "\n16,2,"));
  g_autofree char *root = g_build_filename (dir, "checkpoint", NULL);
  GptdTrainingInfo info = { 0 };
  GptdGpt *m = gptd_checkpoint_load (root, NULL, &info, &error);
  g_assert_no_error (error);
  g_assert_cmpint (info.step, ==, 16);
  g_assert_cmpint (info.epoch, ==, 0);
  g_assert_cmpint (info.batch_index, ==, 16);
  gptd_training_info_clear (&info);
  gptd_gpt_free (m);

  Events ev;
  g_autofree char *text = train_pipeline ("checkpoint-every=8\n", NULL);
  events_init (&ev);
  g_assert_true (run_pipeline (text, dir, TRUE, &ev, &error));
  g_assert_no_error (error);
  events_clear (&ev);

  g_autofree char *want = losses_of (ref);
  g_autofree char *got = losses_of (dir);
  g_assert_cmpstr (got, ==, want);
  g_autofree char *want_e = read_text (ref, "eval.csv");
  g_autofree char *got_e = read_text (dir, "eval.csv");
  g_assert_cmpstr (got_e, ==, want_e);
  assert_same_weights (ref, dir);
  remove_tree (dir);
}

/* Overwrites the value of metadata @key in @path (a safetensors file) with @to,
 * which must be as long as the value there. */
static void
patch_metadata (const char *path, const char *key, const char *to)
{
  g_autofree char *content = NULL;
  gsize len;
  g_assert_true (g_file_get_contents (path, &content, &len, NULL));
  g_autofree char *needle = g_strdup_printf ("\"%s\":\"", key);
  char *p = memmem (content, len, needle, strlen (needle));
  g_assert_nonnull (p);
  p += strlen (needle);
  g_assert_cmpuint ((gsize) (strchr (p, '"') - p), ==, strlen (to));
  memcpy (p, to, strlen (to));
  g_assert_true (g_file_set_contents (path, content, (gssize) len, NULL));
}

/* A resume range-checks what it reads back from the training state's hparams: a
 * negative token count, a batch index beyond the epoch, a loss that is not a
 * number, each stops the run with an error naming the checkpoint and field (the
 * state's own fields are checked by gptd_training_state_load()). */
static void
test_resume_bad_state (void)
{
  static const struct {
    const char *key, *to, *want;
  } cases[] = {
    { "hparams.tokens_seen", "-048", "hparams.tokens_seen “-048”, not an integer in [0, " },
    { "hparams.batches_per_epoch", "01", "batch_index 16, beyond the 1 batches of an epoch" },
    { "epoch", "-", "metadata “epoch”: " },
  };
  const char *ref = reference_run ();
  for (guint c = 0; c < G_N_ELEMENTS (cases); c++)
    {
      g_autoptr (GError) error = NULL;
      g_autofree char *dir = make_run_dir ();
      g_autofree char *cmd = g_strdup_printf ("cp -a %s/. %s/", ref, dir);
      int status = -1;
      g_assert_true (g_spawn_command_line_sync (cmd, NULL, NULL, &status, NULL));
      g_assert_cmpint (status, ==, 0);
      g_autofree char *root = g_build_filename (dir, "checkpoint", NULL);
      g_autofree char *latest = gptd_checkpoint_get_latest (root, &error);
      g_assert_no_error (error);
      g_autofree char *state = g_build_filename (latest, GPTD_GPT_DIR_TRAINING_STATE, NULL);
      patch_metadata (state, cases[c].key, cases[c].to);

      Events ev;
      g_autofree char *text = train_pipeline ("checkpoint-every=8\n", NULL);
      events_init (&ev);
      g_assert_false (run_pipeline (text, dir, TRUE, &ev, &error));
      g_assert_nonnull (error);
      if (!strstr (error->message, cases[c].want) || !strstr (error->message, latest))
        g_error ("%s: error \"%s\" should name %s and say \"%s\"", cases[c].key,
                 error->message, latest, cases[c].want);
      events_clear (&ev);
      remove_tree (dir);
    }
}

static void
test_cancel_checkpoint (void)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *dir = make_run_dir ();
  const char *ref = reference_run ();
  g_autofree char *text = train_pipeline ("checkpoint-every=8\n", NULL);
  Events ev;

  /* Cancelled after step 5 (an evaluation step, so progress is reported there). */
  events_init (&ev);
  ev.cancel_at = 5;
  n_models = 0;
  g_assert_false (run_pipeline (text, dir, FALSE, &ev, &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
  g_clear_error (&error);
  g_assert_cmpuint (n_models, ==, 0);
  events_clear (&ev);

  /* The cancel wrote a checkpoint where training stopped, before any periodic one. */
  g_autofree char *root = g_build_filename (dir, "checkpoint", NULL);
  GptdTrainingInfo info = { 0 };
  GptdGpt *m = gptd_checkpoint_load (root, NULL, &info, &error);
  g_assert_no_error (error);
  g_assert_cmpint (info.step, >=, 5);
  g_assert_cmpint (info.step, <, 8);
  g_assert_cmpint (info.batch_index, ==, info.step);
  gptd_training_info_clear (&info);
  gptd_gpt_free (m);

  events_init (&ev);
  g_assert_true (run_pipeline (text, dir, TRUE, &ev, &error));
  g_assert_no_error (error);
  events_clear (&ev);
  g_autofree char *want = losses_of (ref);
  g_autofree char *got = losses_of (dir);
  g_assert_cmpstr (got, ==, want);
  assert_same_weights (ref, dir);
  remove_tree (dir);
}

/* A cancel while the trainer evaluates (after the step of an evaluation, here
 * when the evaluation asks for its validation batches) leaves that step's
 * evaluation and metrics row to the resumed run, which then reproduces every
 * loss, evaluation and weight of the uninterrupted run, even when it is
 * cancelled again in that same evaluation. */
static void
test_cancel_during_evaluation (void)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *dir = make_run_dir ();
  const char *ref = reference_run ();
  g_autofree char *plain = train_pipeline ("checkpoint-every=8\n", NULL);
  g_auto (GStrv) parts = g_strsplit (plain, "type=token-windows", -1);
  g_assert_cmpuint (g_strv_length (parts), ==, 2);
  g_autofree char *text = g_strjoinv ("type=test-cancelling-windows", parts);
  g_autofree char *root = g_build_filename (dir, "checkpoint", NULL);
  Events ev;

  /* Evaluations at steps 0, 4, 8: cancelled in the one of step 8, right after the
   * periodic checkpoint of step 8 and the 9th optimizer step. */
  events_init (&ev);
  ev.cancel_at_validation = 3;
  n_models = 0;
  g_assert_false (run_pipeline (text, dir, FALSE, &ev, &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
  g_clear_error (&error);
  g_assert_cmpuint (ev.n_validation, ==, 3);
  g_assert_cmpuint (n_models, ==, 0);
  events_clear (&ev);
  GptdTrainingInfo info = { 0 };
  GptdGpt *m = gptd_checkpoint_load (root, NULL, &info, &error);
  g_assert_no_error (error);
  g_assert_cmpint (info.step, ==, 9);
  gptd_training_info_clear (&info);
  gptd_gpt_free (m);

  /* Resumed and cancelled again in its first evaluation. */
  events_init (&ev);
  ev.cancel_at_validation = 1;
  g_assert_false (run_pipeline (text, dir, TRUE, &ev, &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
  g_clear_error (&error);
  events_clear (&ev);

  /* Resumed to the end. */
  events_init (&ev);
  g_assert_true (run_pipeline (text, dir, TRUE, &ev, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (n_models, ==, 1);
  events_clear (&ev);

  g_autofree char *want = losses_of (ref);
  g_autofree char *got = losses_of (dir);
  g_assert_cmpstr (got, ==, want);
  g_autofree char *want_e = read_text (ref, "eval.csv");
  g_autofree char *got_e = read_text (dir, "eval.csv");
  g_assert_cmpstr (got_e, ==, want_e);
  assert_same_weights (ref, dir);
  remove_tree (dir);
}

/* ---- Load-time errors ------------------------------------------------------------------ */

static const struct {
  const char *stage;   /* the stage group, without "[stage ...]" */
  const char *key;     /* the key the error must name */
} bad_params[] = {
  /* n-head must divide n-embd. */
  { "train]\ntype=gpt-trainer\ninput=w\nmodel=custom\nn-embd=32\nn-head=3\n", "n-head" },
  /* The split fractions sum to more than 1. */
  { "train]\ntype=gpt-trainer\ninput=w\n[stage w2]\ntype=token-windows\ninput=src\n"
    "split=0.9,0.3\n", "split" },
  /* init= takes the shape from the model directory. */
  { "train]\ntype=gpt-trainer\ninput=w\ninit=/\nn-layer=2\n", "n-layer" },
  /* init= names a directory that is not there. */
  { "train]\ntype=gpt-trainer\ninput=w\ninit=/nonexistent\n", "/nonexistent: no such file" },
  /* The cosine floor is above the peak. */
  { "train]\ntype=gpt-trainer\ninput=w\nlr=0.001\nmin-lr=0.01\n", "min-lr" },
  /* Dropout must be below 1. */
  { "train]\ntype=gpt-trainer\ninput=w\ndropout=1\n", "dropout" },
  /* Zero epochs. */
  { "train]\ntype=gpt-trainer\ninput=w\nepochs=0\n", "epochs" },
  /* A key gpt-trainer does not have. */
  { "train]\ntype=gpt-trainer\ninput=w\nlearning-rate=0.1\n", "learning-rate" },
};

static void
test_bad_params (void)
{
  for (guint i = 0; i < G_N_ELEMENTS (bad_params); i++)
    {
      g_autoptr (GError) error = NULL;
      g_autofree char *text = g_strdup_printf (
        "[pipeline]\nname=bad\n"
        "[stage src]\ntype=test-token-source\n"
        "[stage w]\ntype=token-windows\ninput=src\n"
        "[stage %s", bad_params[i].stage);
      g_autoptr (GptdPipeline) p = gptd_pipeline_load_data (get_registry (), text, -1,
                                                            "bad.pipeline", NULL, NULL, &error);
      g_assert_null (p);
      g_assert_nonnull (error);
      g_test_message ("%s", error->message);
      g_assert_nonnull (strstr (error->message, bad_params[i].key));
      g_assert_nonnull (strstr (error->message, "bad.pipeline"));
    }
}

/* Windows longer than the model's context: the run fails at the first batch, naming
 * both lengths (the two stages' parameters cannot be compared at load time). */
static void
test_context_too_long (void)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *dir = make_run_dir ();
  g_autofree char *text = train_pipeline ("", NULL);
  char *p = strstr (text, "context-length=16\nbatch-size");
  g_assert_nonnull (p);
  memcpy (p, "context-length=20", 17);
  Events ev;
  events_init (&ev);
  g_assert_false (run_pipeline (text, dir, FALSE, &ev, &error));
  g_assert_nonnull (error);
  g_test_message ("%s", error->message);
  g_assert_nonnull (strstr (error->message, "20 tokens"));
  g_assert_nonnull (strstr (error->message, "context is 16"));
  events_clear (&ev);
  remove_tree (dir);
}

/* A run whose training loss stops being a finite number stops at that step with
 * an error naming it, before the weights are updated with it: here the initial
 * model's weights are finite, but its logits overflow to infinity (a huge head
 * over activations all shifted one way by ln_f's bias), so the very first loss is
 * NaN. */
static void
test_loss_not_finite (void)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *dir = make_run_dir ();
  g_autofree char *init = g_build_filename (dir, "init", NULL);
  GptdGptConfig config = { .n_layer = 2, .n_head = 2, .n_embd = 32, .context_length = 16,
                           .vocab_size = 64, .n_out = 0, .qkv_bias = FALSE,
                           .tie_embeddings = FALSE, .dropout = 0.0f,
                           .layer_norm_epsilon = 1e-5f };
  g_autoptr (GptdGpt) m = gptd_gpt_new (&config, &error);
  g_assert_no_error (error);
  gptd_gpt_init_weights (m, 7);
  const GptdNnTensor *head = gptd_gpt_lookup_tensor (m, "lm_head.weight");
  const GptdNnTensor *bias = gptd_gpt_lookup_tensor (m, "ln_f.bias");
  for (size_t i = 0; i < head->numel; i++)
    head->data[i] = 3e38f;
  for (size_t i = 0; i < bias->numel; i++)
    bias->data[i] = 1000.0f;
  g_assert_true (gptd_gpt_dir_save (m, init, NULL, NULL, &error));
  g_assert_no_error (error);

  g_autofree char *text = g_strdup_printf (
    "[pipeline]\nname=diverge\n"
    "[stage src]\ntype=test-token-source\nn-tokens=1200\nvocab-size=64\nperiod=24\nseed=3\n"
    "[stage w]\ntype=token-windows\ninput=src\ncontext-length=16\nbatch-size=4\n"
    "split=0.9,0.1\n"
    "[stage train]\ntype=gpt-trainer\ninput=w\ninit=%s\nlr=0.004\nepochs=1\n"
    "eval-freq=4\neval-iter=1\nthreads=1\nsample-tokens=0\n"
    "[stage out]\ntype=test-model-sink\ninput=train\n", init);
  Events ev;
  events_init (&ev);
  n_models = 0;
  g_assert_false (run_pipeline (text, dir, FALSE, &ev, &error));
  g_assert_error (error, GPTD_STAGE_ERROR, GPTD_STAGE_ERROR_FAILED);
  g_test_message ("%s", error->message);
  if (!strstr (error->message, "step 0 (epoch 1, batch 0)")
      || !strstr (error->message, "the training loss is NaN, not a finite number"))
    g_error ("error \"%s\" should name step 0 and the NaN loss", error->message);
  g_assert_cmpuint (n_models, ==, 0);
  events_clear (&ev);
  remove_tree (dir);
}

/* weight-init=book: PyTorch's defaults, as the book's GPTModel (embeddings N(0, 1),
 * linear layers U(+-1/sqrt(fan_in))), the same for the same seed. Checked on the
 * checkpoint after one step at a negligible learning rate. */
static GptdGpt *
book_init_model (const char *seed)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *dir = make_run_dir ();
  g_autofree char *text = train_pipeline ("weight-init=book\nmax-steps=1\n", NULL);
  /* A negligible learning rate, no decay, no evaluation, the given seed. */
  const char *edits[][2] = { { "lr=0.004\n", "lr=1e-12\n" },
                             { "weight-decay=0.1\n", "weight-decay=0\n" },
                             { "eval-freq=4\n", "eval-freq=0\n" },
                             { "seed=123\n", NULL } };
  for (guint i = 0; i < G_N_ELEMENTS (edits); i++)
    {
      g_autofree char *to = edits[i][1] ? g_strdup (edits[i][1])
                                        : g_strdup_printf ("seed=%s\n", seed);
      g_auto (GStrv) parts = g_strsplit (text, edits[i][0], -1);
      g_assert_cmpuint (g_strv_length (parts), ==, 2);
      g_free (text);
      text = g_strjoinv (to, parts);
    }
  Events ev;
  events_init (&ev);
  g_assert_true (run_pipeline (text, dir, FALSE, &ev, &error));
  g_assert_no_error (error);
  events_clear (&ev);
  g_autofree char *root = g_build_filename (dir, "checkpoint", NULL);
  GptdGpt *m = gptd_checkpoint_load (root, NULL, NULL, &error);
  g_assert_no_error (error);
  remove_tree (dir);
  return m;
}

static void
test_book_init (void)
{
  GptdGpt *a = book_init_model ("7");
  GptdGpt *b = book_init_model ("7");
  GptdGpt *c = book_init_model ("8");
  size_t n = gptd_gpt_n_params (a);
  g_assert_cmpmem (gptd_gpt_get_params (a), n * 4, gptd_gpt_get_params (b), n * 4);
  g_assert_true (memcmp (gptd_gpt_get_params (a), gptd_gpt_get_params (c), n * 4) != 0);

  const GptdNnTensor *wte = gptd_gpt_lookup_tensor (a, "wte.weight");
  double sum = 0, sq = 0;
  for (size_t i = 0; i < wte->numel; i++)
    {
      sum += wte->data[i];
      sq += (double) wte->data[i] * wte->data[i];
    }
  double mean = sum / wte->numel, sd = sqrt (sq / wte->numel - mean * mean);
  /* Within four standard errors of N(0, 1)'s mean and deviation. */
  g_assert_cmpfloat (fabs (mean), <, 4.0 / sqrt (wte->numel));
  g_assert_cmpfloat (fabs (sd - 1.0), <, 4.0 / sqrt (2.0 * wte->numel));

  /* c_attn is (32, 96): fan-in 32; lm_head is (64, 32): fan-in 32; c_proj of the MLP
   * is (128, 32): fan-in 128. */
  const struct { const char *name; double fan_in; } lin[] = {
    { "h.0.attn.c_attn.weight", 32 }, { "lm_head.weight", 32 },
    { "h.1.mlp.c_proj.weight", 128 }, { "h.1.mlp.c_fc.bias", 32 },
  };
  for (guint k = 0; k < G_N_ELEMENTS (lin); k++)
    {
      const GptdNnTensor *t = gptd_gpt_lookup_tensor (a, lin[k].name);
      g_assert_nonnull (t);
      double bound = 1.0 / sqrt (lin[k].fan_in), max = 0;
      for (size_t i = 0; i < t->numel; i++)
        max = MAX (max, fabs (t->data[i]));
      g_assert_cmpfloat (max, <=, bound * (1 + 1e-5));
      g_assert_cmpfloat (max, >, bound * 0.9);
    }
  const GptdNnTensor *ln = gptd_gpt_lookup_tensor (a, "h.0.ln_1.weight");
  g_assert_cmpfloat (ln->data[0], ==, 1.0);
  gptd_gpt_free (a);
  gptd_gpt_free (b);
  gptd_gpt_free (c);
}

/* The shipped pipelines load (with every plugin of the build tree), and the quick
 * start runs a few steps on gptd's own documents with its byte-level vocabulary. */
static GptdRegistry *
full_registry (void)
{
  g_autoptr (GError) error = NULL;
  GptdRegistry *reg = gptd_registry_new ();
  g_assert_true (gptd_registry_scan (reg, &error));
  g_assert_no_error (error);
  return reg;
}

static void
test_bytes_vocab (void)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *dir = g_build_filename (g_getenv ("GPTD_SRCDIR"), "pipelines", "vocab",
                                           "bytes", NULL);
  g_autoptr (GptdBpe) bpe = gptd_bpe_load (dir, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (gptd_bpe_get_n_vocab (bpe), ==, 257);
  g_assert_cmpint (gptd_bpe_get_special_id (bpe, "<|endoftext|>"), ==, 256);
  /* One token per byte: "hé!" is 4 bytes. */
  g_autoptr (GArray) ids = g_array_new (FALSE, FALSE, sizeof (guint32));
  g_assert_true (gptd_bpe_encode (bpe, "h\xc3\xa9!", 4, NULL, ids, &error));
  g_assert_cmpuint (ids->len, ==, 4);
  g_autoptr (GString) back = g_string_new (NULL);
  g_assert_true (gptd_bpe_decode (bpe, (guint32 *) ids->data, ids->len, back, &error));
  g_assert_cmpstr (back->str, ==, "h\xc3\xa9!");
  /* The same files as gptd's own trainer makes for 257 tokens. */
  const char *special[] = { "<|endoftext|>", NULL };
  g_autoptr (GptdBpeTrainer) trainer = gptd_bpe_trainer_new (special, &error);
  g_assert_true (gptd_bpe_trainer_add_text (trainer, "abc", 3, &error));
  g_autoptr (GptdBpe) made = gptd_bpe_trainer_train (trainer, 257, &error);
  g_assert_no_error (error);
  g_autofree char *tmp = make_run_dir ();
  g_assert_true (gptd_bpe_save (made, tmp, &error));
  const char *files[] = { "encoder.json", "vocab.bpe" };
  for (int i = 0; i < 2; i++)
    {
      g_autofree char *a = read_text (dir, files[i]);
      g_autofree char *b = read_text (tmp, files[i]);
      g_assert_cmpstr (a, ==, b);
    }
  remove_tree (tmp);
}

static void
test_shipped_pipelines (void)
{
  g_autoptr (GptdRegistry) reg = full_registry ();
  if (gptd_registry_lookup (reg, "bpe-tokenizer") == NULL
      || gptd_registry_lookup (reg, "text-source") == NULL)
    {
      g_test_skip ("the bpe-tokenizer or text-source stage is not built");
      return;
    }
  const char *names[] = { "verdict-pretrain.pipeline", "quickstart.pipeline" };
  for (int i = 0; i < 2; i++)
    {
      g_autoptr (GError) error = NULL;
      g_autofree char *path = g_build_filename (g_getenv ("GPTD_SRCDIR"), "pipelines",
                                                names[i], NULL);
      /* verdict-pretrain reads ${data} (its text and GPT-2's vocabulary must be
       * there); quickstart has no such variable, and a setting nothing uses is a
       * problem. */
      const char *data = g_getenv ("GPTD_DATA_DIR");
      if (i == 0 && data == NULL)
        continue;
      g_autofree char *set = g_strdup_printf ("data=%s", data);
      const char *settings[] = { i == 0 ? set : NULL, NULL };
      g_autoptr (GptdPipeline) p = gptd_pipeline_load_file (reg, path, settings, NULL,
                                                            &error);
      g_assert_no_error (error);
    }

  /* A short quick start. */
  g_autoptr (GError) error = NULL;
  g_autofree char *path = g_build_filename (g_getenv ("GPTD_SRCDIR"), "pipelines",
                                            "quickstart.pipeline", NULL);
  const char *settings[] = { "train.max-steps=4", "train.eval-freq=2", "train.eval-iter=1",
                             "train.threads=2", NULL };
  g_autoptr (GptdPipeline) p = gptd_pipeline_load_file (reg, path, settings, NULL, &error);
  g_assert_no_error (error);
  g_autofree char *dir = make_run_dir ();
  Events ev;
  events_init (&ev);
  g_autoptr (GptdRunner) runner = gptd_runner_new (p, dir, on_event, &ev);
  g_assert_true (gptd_runner_run (runner, &error));
  g_assert_no_error (error);
  events_clear (&ev);
  g_autofree char *losses = losses_of (dir);
  g_auto (GStrv) lines = g_strsplit (losses, "\n", -1);
  g_assert_cmpuint (g_strv_length (lines), ==, 1 + 4 + 1);
  remove_tree (dir);
}

/* The pipeline of a LoRA run on the reference run's model. */
static char *
lora_pipeline (const char *init, const char *extra)
{
  return g_strdup_printf (
    "[pipeline]\nname=tiny-lora\n"
    "[stage src]\ntype=test-token-source\nn-tokens=1200\nvocab-size=64\nperiod=24\nseed=4\n"
    "[stage w]\ntype=token-windows\ninput=src\ncontext-length=16\nbatch-size=4\n"
    "split=0.9,0.1\n"
    "[stage train]\ntype=gpt-trainer\ninput=w\ninit=%s\nlr=0.01\nepochs=1\n"
    "eval-freq=4\neval-iter=2\nthreads=2\nseed=9\nsample-tokens=0\ncheckpoint-every=4\n"
    "lora-rank=4\nlora-alpha=8\n%s\n"
    "[stage out]\ntype=test-model-sink\ninput=train\n",
    init, extra);
}

/* LoRA in the trainer: only the adapters train (the checkpoint's base weights
 * are the init model's, bit for bit, and AdamW keeps moments for the adapters
 * only); the run delivers a merged model directory, or with lora-save=adapter
 * an adapter directory that loads to the same model; a cancelled and resumed
 * adapter run ends with the uninterrupted run's adapters; bad key
 * combinations are refused by name. */
static void
test_lora (void)
{
  g_autoptr (GError) error = NULL;
  const char *ref = reference_run ();
  g_autofree char *init = g_build_filename (ref, "checkpoint", NULL);
  g_autoptr (GptdGpt) base = gptd_gpt_dir_load (init, &error);
  g_assert_no_error (error);

  /* Merged. */
  g_autofree char *dir = make_run_dir ();
  g_autofree char *text = lora_pipeline (init, "");
  Events ev;
  events_init (&ev);
  n_models = 0;
  g_assert_true (run_pipeline (text, dir, FALSE, &ev, &error));
  g_assert_no_error (error);
  events_clear (&ev);
  g_assert_cmpuint (n_models, ==, 1);
  g_autofree char *merged_dir = g_build_filename (dir, "merged", NULL);
  g_assert_cmpstr (last_model->path, ==, merged_dir);
  g_autoptr (GptdGpt) merged = gptd_gpt_dir_load (merged_dir, &error);
  g_assert_no_error (error);
  g_assert_cmpint (gptd_gpt_get_lora_rank (merged), ==, 0);
  g_assert_cmpuint (gptd_gpt_n_params (merged), ==, gptd_gpt_n_params (base));
  g_assert_true (memcmp (gptd_gpt_get_params (merged), gptd_gpt_get_params (base),
                         gptd_gpt_n_params (base) * sizeof (float)) != 0);

  g_autofree char *root = g_build_filename (dir, "checkpoint", NULL);
  GptdTrainingInfo info = { 0 };
  GptdAdamW *opt = NULL;
  GptdGpt *ck = gptd_checkpoint_load (root, &opt, &info, &error);
  g_assert_no_error (error);
  g_assert_cmpint (gptd_gpt_get_lora_rank (ck), ==, 4);
  g_assert_cmpfloat (gptd_gpt_get_lora_alpha (ck), ==, 8.0f);
  g_assert_cmpmem (gptd_gpt_get_params (ck), gptd_gpt_n_params (base) * sizeof (float),
                   gptd_gpt_get_params (base), gptd_gpt_n_params (base) * sizeof (float));
  g_assert_cmpuint (gptd_adamw_n_tensors (opt), ==, 2 * 8 * 2);
  g_autofree float *adapters_a =
      g_memdup2 (gptd_gpt_get_params (ck) + gptd_gpt_n_params (base),
                 (gptd_gpt_n_params (ck) - gptd_gpt_n_params (base)) * sizeof (float));
  size_t n_adapter = gptd_gpt_n_params (ck) - gptd_gpt_n_params (base);
  gptd_training_info_clear (&info);
  gptd_adamw_free (opt);
  gptd_gpt_free (ck);

  /* Adapter, cancelled after step 5 and resumed. */
  g_autofree char *dir2 = make_run_dir ();
  g_autofree char *text2 = lora_pipeline (init, "lora-save=adapter\n");
  events_init (&ev);
  ev.cancel_at = 5;
  g_assert_false (run_pipeline (text2, dir2, FALSE, &ev, &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
  g_clear_error (&error);
  events_clear (&ev);
  events_init (&ev);
  n_models = 0;
  g_assert_true (run_pipeline (text2, dir2, TRUE, &ev, &error));
  g_assert_no_error (error);
  events_clear (&ev);
  g_assert_cmpuint (n_models, ==, 1);
  g_autofree char *adapter_dir = g_build_filename (dir2, "adapter", NULL);
  g_assert_cmpstr (last_model->path, ==, adapter_dir);
  g_autofree char *want = losses_of (dir);
  g_autofree char *got = losses_of (dir2);
  g_assert_cmpstr (got, ==, want);
  g_autofree char *root2 = g_build_filename (dir2, "checkpoint", NULL);
  ck = gptd_checkpoint_load (root2, NULL, NULL, &error);
  g_assert_no_error (error);
  g_assert_cmpmem (gptd_gpt_get_params (ck) + gptd_gpt_n_params (base),
                   n_adapter * sizeof (float), adapters_a, n_adapter * sizeof (float));
  gptd_gpt_free (ck);
  g_autoptr (GptdGpt) from_adapter = gptd_gpt_dir_load (adapter_dir, &error);
  g_assert_no_error (error);
  g_assert_cmpmem (gptd_gpt_get_params (from_adapter),
                   gptd_gpt_n_params (merged) * sizeof (float),
                   gptd_gpt_get_params (merged), gptd_gpt_n_params (merged) * sizeof (float));
  remove_tree (dir);
  remove_tree (dir2);

  static const struct {
    const char *extra, *want;
  } bad[] = {
    { "lora-rank=0\n", "lora-alpha: needs lora-rank" },
    { "lora-rank=40\n", "lora-rank: lora-rank must be in [1, n_embd 32]" },
  };
  for (guint i = 0; i < G_N_ELEMENTS (bad); i++)
    {
      g_autofree char *bdir = make_run_dir ();
      /* The later lora-rank= wins over the pipeline's. */
      g_autofree char *btext = lora_pipeline (init, bad[i].extra);
      char *dup = strstr (btext, "lora-rank=4\n");
      memset (dup, '#', strlen ("lora-rank=4"));
      events_init (&ev);
      g_assert_false (run_pipeline (btext, bdir, FALSE, &ev, &error));
      g_assert_nonnull (error);
      if (strstr (error->message, bad[i].want) == NULL)
        g_error ("expected “%s” in: %s", bad[i].want, error->message);
      g_clear_error (&error);
      events_clear (&ev);
      remove_tree (bdir);
    }
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/train/e2e/windows", test_windows_stage);
  g_test_add_func ("/train/e2e/windows-partial-batch", test_windows_partial_batch);
  g_test_add_func ("/train/e2e/loss-falls", test_loss_falls);
  g_test_add_func ("/train/e2e/resume-after-sigkill", test_resume_after_sigkill);
  g_test_add_func ("/train/e2e/cancel-checkpoint", test_cancel_checkpoint);
  g_test_add_func ("/train/e2e/resume-bad-state", test_resume_bad_state);
  g_test_add_func ("/train/e2e/cancel-during-evaluation", test_cancel_during_evaluation);
  g_test_add_func ("/train/e2e/bad-params", test_bad_params);
  g_test_add_func ("/train/e2e/context-too-long", test_context_too_long);
  g_test_add_func ("/train/e2e/loss-not-finite", test_loss_not_finite);
  g_test_add_func ("/train/e2e/book-init", test_book_init);
  g_test_add_func ("/train/e2e/lora", test_lora);
  g_test_add_func ("/train/e2e/bytes-vocab", test_bytes_vocab);
  g_test_add_func ("/train/e2e/shipped-pipelines", test_shipped_pipelines);
  int rc = g_test_run ();
  if (reference_dir)
    remove_tree (reference_dir);
  return rc;
}
