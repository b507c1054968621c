/* testplugin-good.c: a well-formed plugin of stage types for the loader, pipeline and
 * runner tests. The stages report what they do as log lines ("pushed 3", "got 3",
 * "epoch 1: 4 batches"), which the tests read from the run's events.
 *
 *   test-counter   source: `count` Documents, text and index = 0, 1, 2, ...
 *   test-endless   source: Documents until cancelled or nobody reads them
 *   test-sink      sink (run style): pulls with a delay, may stop after `limit`
 *   test-fail      passes Documents through; fails at message `fail-at`, or in create()
 *   test-split     two outputs: even indexes on "even", odd on "odd"
 *   test-batcher   keeps Documents, answers epoch requests with Batches
 *   test-trainer   asks its epochs input for `epochs` epochs (run style)
 *   test-params    every parameter type, a check() hook, named inputs
 *   test-pass      passes any message on unchanged (input and output "*")
 *   test-join      two named inputs (left, and optional right) passed on in turn
 */
#include "config.h"

#include <stdio.h>
#include <string.h>

#include <gio/gio.h>
#include <gptd/plugin.h>

/* ---- Shared helpers -------------------------------------------------------- */

static gboolean
push_doc (GptdStageContext *ctx, guint output, guint64 i, GError **error)
{
  char text[32];
  g_snprintf (text, sizeof text, "%" G_GUINT64_FORMAT, i);
  Gptd__Document doc = GPTD__DOCUMENT__INIT;
  doc.source = (char *) "test";
  doc.text.data = (guint8 *) text;
  doc.text.len = strlen (text);
  doc.index = i;
  return gptd_stage_push (ctx, output, &doc.base, error);
}

typedef struct {
  const GptdParams *params;
  gint64 count;
  gint64 delay_ms;
  gint64 limit;
  gint64 fail_at;
  gboolean log;
  GArray *items;        /* test-batcher: the indexes kept */
} Test;

static Test *
test_new (const GptdParams *params)
{
  Test *t = g_new0 (Test, 1);
  t->params = params;
  return t;
}

static void
test_destroy (gpointer data)
{
  Test *t = data;
  if (t == NULL)
    return;
  if (t->items)
    g_array_unref (t->items);
  g_free (t);
}

static const GptdPadSpec doc_output[] = { { "default", "gptd.Document", 0 }, { NULL } };
static const GptdPadSpec doc_input[] = { { "default", "gptd.Document", 0 }, { NULL } };
static const GptdPadSpec any_input[] = { { "default", "*", 0 }, { NULL } };

/* ---- test-counter ---------------------------------------------------------- */

static const GptdParamSpec counter_params[] = {
  { "count", GPTD_PARAM_INT, "10", 0, 1e9, NULL, "Documents to send", 0 },
  { "delay-ms", GPTD_PARAM_INT, "0", 0, 10000, NULL, "Pause before each push", 0 },
  { "log", GPTD_PARAM_BOOL, "true", 0, 0, NULL, "Log each push", 0 },
  { NULL }
};

static gpointer
counter_create (GptdStageContext *ctx, const GptdParams *params, GError **error)
{
  Test *t = test_new (params);
  t->count = gptd_params_get_int (params, "count");
  t->delay_ms = gptd_params_get_int (params, "delay-ms");
  t->log = gptd_params_get_bool (params, "log");
  return t;
}

static gboolean
counter_run (gpointer data, GptdStageContext *ctx, GError **error)
{
  Test *t = data;
  for (gint64 i = 0; i < t->count; i++)
    {
      if (t->delay_ms)
        g_usleep (t->delay_ms * 1000);
      if (!push_doc (ctx, 0, (guint64) i, error))
        return FALSE;
      if (t->log)
        gptd_stage_log (ctx, G_LOG_LEVEL_DEBUG, "pushed %" G_GINT64_FORMAT, i);
    }
  return TRUE;
}

static const GptdStageType counter_type = {
  .name = "test-counter",
  .description = "Sends count Documents numbered from 0",
  .params = counter_params,
  .outputs = doc_output,
  .create = counter_create,
  .run = counter_run,
  .destroy = test_destroy,
};

/* ---- test-endless ---------------------------------------------------------- */

static gpointer
endless_create (GptdStageContext *ctx, const GptdParams *params, GError **error)
{
  return test_new (params);
}

static gboolean
endless_run (gpointer data, GptdStageContext *ctx, GError **error)
{
  for (guint64 i = 0;; i++)
    {
      if (!push_doc (ctx, 0, i, error))
        return FALSE;
      if (i == 100)
        gptd_stage_log (ctx, G_LOG_LEVEL_INFO, "pushed 100");
    }
}

static const GptdStageType endless_type = {
  .name = "test-endless",
  .description = "Sends Documents until cancelled or nobody reads them",
  .outputs = doc_output,
  .create = endless_create,
  .run = endless_run,
  .destroy = test_destroy,
};

/* ---- test-sink ------------------------------------------------------------- */

static const GptdParamSpec sink_params[] = {
  { "delay-ms", GPTD_PARAM_INT, "0", 0, 10000, NULL, "Pause after each message", 0 },
  { "limit", GPTD_PARAM_INT, "0", 0, 1e9, NULL, "Stop after this many messages (0: never)", 0 },
  { NULL }
};

static gpointer
sink_create (GptdStageContext *ctx, const GptdParams *params, GError **error)
{
  Test *t = test_new (params);
  t->delay_ms = gptd_params_get_int (params, "delay-ms");
  t->limit = gptd_params_get_int (params, "limit");
  return t;
}

static gboolean
sink_run (gpointer data, GptdStageContext *ctx, GError **error)
{
  Test *t = data;
  gint64 n = 0;
  for (;;)
    {
      ProtobufCMessage *msg = NULL;
      GptdPullResult r = gptd_stage_pull (ctx, 0, &msg, error);
      if (r == GPTD_PULL_ERROR)
        return FALSE;
      if (r == GPTD_PULL_END_OF_STREAM)
        {
          gptd_stage_log (ctx, G_LOG_LEVEL_INFO, "end of stream after %" G_GINT64_FORMAT, n);
          return TRUE;
        }
      if (r == GPTD_PULL_MESSAGE && msg->descriptor == &gptd__document__descriptor)
        gptd_stage_log (ctx, G_LOG_LEVEL_DEBUG, "got %" G_GUINT64_FORMAT,
                        ((Gptd__Document *) msg)->index);
      else
        gptd_stage_log (ctx, G_LOG_LEVEL_DEBUG, "got a %s", msg->descriptor->name);
      protobuf_c_message_free_unpacked (msg, NULL);
      n++;
      if (t->delay_ms)
        g_usleep (t->delay_ms * 1000);
      if (t->limit && n >= t->limit)
        {
          gptd_stage_log (ctx, G_LOG_LEVEL_INFO, "stopping after %" G_GINT64_FORMAT, n);
          return TRUE;
        }
    }
}

static const GptdStageType sink_type = {
  .name = "test-sink",
  .description = "Pulls every message (slowly, when asked) and logs it",
  .params = sink_params,
  .inputs = any_input,
  .create = sink_create,
  .run = sink_run,
  .destroy = test_destroy,
};

/* ---- test-fail ------------------------------------------------------------- */

static const char *const fail_in_choices[] = { "process", "create", "finish", NULL };

static const GptdParamSpec fail_params[] = {
  { "fail-at", GPTD_PARAM_INT, "0", 0, 1e9, NULL, "Fail on the message with this index", 0 },
  { "fail-in", GPTD_PARAM_ENUM, "process", 0, 0, fail_in_choices, "Where to fail", 0 },
  { NULL }
};

static gpointer
fail_create (GptdStageContext *ctx, const GptdParams *params, GError **error)
{
  if (gptd_params_get_int (params, "fail-in") == 1)
    {
      g_set_error (error, GPTD_STAGE_ERROR, GPTD_STAGE_ERROR_IO, "cannot open the test file");
      return NULL;
    }
  Test *t = test_new (params);
  t->fail_at = gptd_params_get_int (params, "fail-at");
  return t;
}

static gboolean
fail_process (gpointer data, GptdStageContext *ctx, guint input, const ProtobufCMessage *msg,
              GError **error)
{
  Test *t = data;
  const Gptd__Document *doc = (const Gptd__Document *) msg;
  if (gptd_params_get_int (t->params, "fail-in") == 0 && (gint64) doc->index == t->fail_at)
    {
      g_set_error (error, GPTD_STAGE_ERROR, GPTD_STAGE_ERROR_INPUT,
                   "bad document %" G_GUINT64_FORMAT, doc->index);
      return FALSE;
    }
  return gptd_stage_push (ctx, 0, msg, error);
}

static gboolean
fail_finish (gpointer data, GptdStageContext *ctx, GError **error)
{
  Test *t = data;
  if (gptd_params_get_int (t->params, "fail-in") == 2)
    {
      g_set_error (error, GPTD_STAGE_ERROR, GPTD_STAGE_ERROR_FAILED, "finish failed");
      return FALSE;
    }
  return TRUE;
}

static const GptdStageType fail_type = {
  .name = "test-fail",
  .description = "Passes Documents on, and fails where asked",
  .params = fail_params,
  .inputs = doc_input,
  .outputs = doc_output,
  .create = fail_create,
  .process = fail_process,
  .finish = fail_finish,
  .destroy = test_destroy,
};

/* ---- test-split: two outputs ------------------------------------------------ */

static const GptdPadSpec split_outputs[] = {
  { "even", "gptd.Document", 0 },
  { "odd", "gptd.Document", 0 },
  { NULL }
};

static gboolean
split_process (gpointer data, GptdStageContext *ctx, guint input, const ProtobufCMessage *msg,
               GError **error)
{
  const Gptd__Document *doc = (const Gptd__Document *) msg;
  return gptd_stage_push (ctx, doc->index % 2, msg, error);
}

static const GptdStageType split_type = {
  .name = "test-split",
  .description = "Sends even Documents on output even and odd ones on output odd",
  .inputs = doc_input,
  .outputs = split_outputs,
  .create = endless_create,
  .process = split_process,
  .destroy = test_destroy,
};

/* ---- test-batcher: answers epoch requests ------------------------------------ */

static const GptdParamSpec batcher_params[] = {
  { "batch-size", GPTD_PARAM_INT, "2", 1, 1000, NULL, "Documents per batch", 0 },
  { NULL }
};

static const GptdPadSpec batch_output[] = { { "default", "gptd.Batch", 0 }, { NULL } };

static gpointer
batcher_create (GptdStageContext *ctx, const GptdParams *params, GError **error)
{
  Test *t = test_new (params);
  t->count = gptd_params_get_int (params, "batch-size");
  t->items = g_array_new (FALSE, FALSE, sizeof (gint32));
  return t;
}

static gboolean
batcher_process (gpointer data, GptdStageContext *ctx, guint input,
                 const ProtobufCMessage *msg, GError **error)
{
  Test *t = data;
  gint32 v = (gint32) ((const Gptd__Document *) msg)->index;
  g_array_append_val (t->items, v);
  return TRUE;
}

static gboolean
batcher_epoch (gpointer data, GptdStageContext *ctx, guint output,
               const Gptd__EpochRequest *req, GError **error)
{
  Test *t = data;
  guint n = t->items->len;
  g_autofree gint32 *order = g_new (gint32, MAX (n, 1));
  memcpy (order, t->items->data, n * sizeof (gint32));
  if (req->shuffle)
    {
      /* A pure function of (seed, epoch). */
      GRand *rand = g_rand_new_with_seed ((guint32) (req->seed * 1000003u + req->epoch));
      for (guint i = n; i > 1; i--)
        {
          guint j = g_rand_int_range (rand, 0, (gint32) i);
          gint32 tmp = order[i - 1];
          order[i - 1] = order[j];
          order[j] = tmp;
        }
      g_rand_free (rand);
    }
  guint64 batches = (n + t->count - 1) / t->count;
  guint64 sent = 0;
  for (guint64 b = req->start; b < batches; b++)
    {
      if (req->limit && sent >= req->limit)
        break;
      Gptd__Batch batch = GPTD__BATCH__INIT;
      batch.split = req->split;
      batch.epoch = req->epoch;
      batch.index = b;
      batch.batches = batches;
      batch.batch_size = (guint32) t->count;
      guint64 first = b * t->count;
      batch.n_inputs = MIN ((guint64) t->count, n - first);
      batch.inputs = order + first;
      if (!gptd_stage_push (ctx, output, &batch.base, error))
        return FALSE;
      sent++;
    }
  if (g_strcmp0 (req->split, "total") == 0)
    {
      /* Ask for split "total" to get an EndOfEpoch with the total filled in. */
      Gptd__EndOfEpoch eoe = GPTD__END_OF_EPOCH__INIT;
      eoe.split = req->split;
      eoe.epoch = req->epoch;
      eoe.batches = sent;
      eoe.total = batches;
      return gptd_stage_push (ctx, output, &eoe.base, error);
    }
  return TRUE;
}

static const GptdStageType batcher_type = {
  .name = "test-batcher",
  .description = "Keeps Document indexes and answers epoch requests with Batches",
  .params = batcher_params,
  .inputs = doc_input,
  .outputs = batch_output,
  .create = batcher_create,
  .process = batcher_process,
  .epoch = batcher_epoch,
  .destroy = test_destroy,
};

/* ---- test-trainer: asks for epochs ------------------------------------------ */

static const GptdParamSpec trainer_params[] = {
  { "epochs", GPTD_PARAM_INT, "2", 1, 100, NULL, "Epochs to request", 0 },
  { "shuffle", GPTD_PARAM_BOOL, "false", 0, 0, NULL, "Ask for shuffled epochs", 0 },
  { "split", GPTD_PARAM_STRING, "train", 0, 0, NULL, "The split to ask for", 0 },
  { "start", GPTD_PARAM_INT, "0", 0, 1e9, NULL, "First batch to ask for", 0 },
  { "limit", GPTD_PARAM_INT, "0", 0, 1e9, NULL, "Batches per request (0: all)", 0 },
  { "pull-first", GPTD_PARAM_BOOL, "false", 0, 0, NULL,
    "Pull before requesting (an error)", 0 },
  { NULL }
};

static const GptdPadSpec epochs_input[] = {
  { "default", "gptd.Batch", GPTD_PAD_EPOCHS },
  { NULL }
};

static gpointer
trainer_create (GptdStageContext *ctx, const GptdParams *params, GError **error)
{
  return test_new (params);
}

static gboolean
trainer_run (gpointer data, GptdStageContext *ctx, GError **error)
{
  Test *t = data;
  const GptdParams *p = t->params;
  if (gptd_params_get_bool (p, "pull-first"))
    {
      ProtobufCMessage *msg = NULL;
      if (gptd_stage_pull (ctx, 0, &msg, error) == GPTD_PULL_ERROR)
        return FALSE;
      protobuf_c_message_free_unpacked (msg, NULL);
    }
  gint64 epochs = gptd_params_get_int (p, "epochs");
  for (gint64 e = 0; e < epochs; e++)
    {
      Gptd__EpochRequest req = GPTD__EPOCH_REQUEST__INIT;
      req.split = (char *) gptd_params_get_string (p, "split");
      req.epoch = (guint32) e;
      req.seed = 7;
      req.shuffle = gptd_params_get_bool (p, "shuffle");
      req.start = (guint64) gptd_params_get_int (p, "start");
      req.limit = (guint64) gptd_params_get_int (p, "limit");
      if (!gptd_stage_request_epoch (ctx, 0, &req, error))
        return FALSE;
      GString *seen = g_string_new (NULL);
      guint batches = 0;
      for (;;)
        {
          ProtobufCMessage *msg = NULL;
          GptdPullResult r = gptd_stage_pull (ctx, 0, &msg, error);
          if (r == GPTD_PULL_ERROR || r == GPTD_PULL_END_OF_STREAM)
            {
              g_string_free (seen, TRUE);
              if (r == GPTD_PULL_END_OF_STREAM)
                g_set_error (error, GPTD_STAGE_ERROR, GPTD_STAGE_ERROR_FAILED,
                             "end of stream inside an epoch");
              return FALSE;
            }
          if (r == GPTD_PULL_END_OF_EPOCH)
            {
              Gptd__EndOfEpoch *eoe = (Gptd__EndOfEpoch *) msg;
              gptd_stage_log (ctx, G_LOG_LEVEL_INFO,
                              "epoch %u: %u batches, end says %" G_GUINT64_FORMAT
                              " of %" G_GUINT64_FORMAT ":%s", eoe->epoch, batches,
                              eoe->batches, eoe->total, seen->str);
              protobuf_c_message_free_unpacked (msg, NULL);
              break;
            }
          Gptd__Batch *b = (Gptd__Batch *) msg;
          for (size_t i = 0; i < b->n_inputs; i++)
            g_string_append_printf (seen, " %d", b->inputs[i]);
          batches++;
          protobuf_c_message_free_unpacked (msg, NULL);
        }
      g_string_free (seen, TRUE);
    }
  return TRUE;
}

static const GptdStageType trainer_type = {
  .name = "test-trainer",
  .description = "Asks its input for epochs of Batches and logs what it got",
  .params = trainer_params,
  .inputs = epochs_input,
  .create = trainer_create,
  .run = trainer_run,
  .destroy = test_destroy,
};

/* ---- test-pass: any message through ------------------------------------------ */

static const GptdPadSpec any_output[] = { { "default", "*", 0 }, { NULL } };

static gboolean
pass_process (gpointer data, GptdStageContext *ctx, guint input, const ProtobufCMessage *msg,
              GError **error)
{
  return gptd_stage_push (ctx, 0, msg, error);
}

static const GptdStageType pass_type = {
  .name = "test-pass",
  .description = "Passes any message on unchanged",
  .inputs = any_input,
  .outputs = any_output,
  .create = endless_create,
  .process = pass_process,
  .destroy = test_destroy,
};

/* ---- test-join: named inputs -------------------------------------------------- */

static const GptdPadSpec join_inputs[] = {
  { "left", "gptd.Document", 0 },
  { "right", "gptd.Document", GPTD_PAD_OPTIONAL },
  { NULL }
};

static gboolean
join_process (gpointer data, GptdStageContext *ctx, guint input, const ProtobufCMessage *msg,
              GError **error)
{
  gptd_stage_log (ctx, G_LOG_LEVEL_DEBUG, "input %u: %" G_GUINT64_FORMAT, input,
                  ((const Gptd__Document *) msg)->index);
  return gptd_stage_push (ctx, 0, msg, error);
}

static const GptdStageType join_type = {
  .name = "test-join",
  .description = "Passes on all of input left, then all of input right",
  .inputs = join_inputs,
  .outputs = doc_output,
  .create = endless_create,
  .process = join_process,
  .destroy = test_destroy,
};

/* ---- test-params: every parameter type and a check() hook -------------------- */

static const char *const mode_choices[] = { "fast", "slow", NULL };

static const GptdParamSpec params_params[] = {
  { "size", GPTD_PARAM_INT, NULL, 1, 100, NULL, "A required integer in [1, 100]",
    GPTD_PARAM_REQUIRED },
  { "rate", GPTD_PARAM_DOUBLE, "0.5", 0, 1, NULL, "A double in (0, 1]",
    GPTD_PARAM_MIN_EXCLUSIVE },
  { "flag", GPTD_PARAM_BOOL, "false", 0, 0, NULL, "A boolean", 0 },
  { "mode", GPTD_PARAM_ENUM, "fast", 0, 0, mode_choices, "An enum", 0 },
  { "split", GPTD_PARAM_DOUBLE_LIST, "0.9,0.1", 0, 1, NULL, "Fractions", 0 },
  { "file", GPTD_PARAM_PATH, NULL, 0, 0, NULL, "A path", 0 },
  { "name", GPTD_PARAM_STRING, "x", 0, 0, NULL, "A string", 0 },
  { "low", GPTD_PARAM_INT, "0", 0, 0, NULL, "Must not exceed high", 0 },
  { "high", GPTD_PARAM_INT, "10", 0, 0, NULL, "Must not be below low", 0 },
  { NULL }
};

static const GptdPadSpec params_inputs[] = {
  { "tokens", "gptd.Tokens", GPTD_PAD_OPTIONAL },
  { "model", "gptd.Model", GPTD_PAD_OPTIONAL },
  { NULL }
};

static gboolean
params_check (const GptdParams *params, GError **error)
{
  if (gptd_params_get_int (params, "low") > gptd_params_get_int (params, "high"))
    {
      g_set_error (error, GPTD_STAGE_ERROR, GPTD_STAGE_ERROR_FAILED,
                   "low (%" G_GINT64_FORMAT ") is above high (%" G_GINT64_FORMAT ")",
                   gptd_params_get_int (params, "low"), gptd_params_get_int (params, "high"));
      return FALSE;
    }
  return TRUE;
}

static gboolean
params_process (gpointer data, GptdStageContext *ctx, guint input, const ProtobufCMessage *msg,
                GError **error)
{
  return TRUE;
}

static const GptdStageType params_type = {
  .name = "test-params",
  .description = "Declares every parameter type, named inputs and a check",
  .params = params_params,
  .inputs = params_inputs,
  .check = params_check,
  .create = trainer_create,
  .process = params_process,
  .destroy = test_destroy,
};

GPTD_PLUGIN_DEFINE ("test", "Stage types for gptd's own tests", "1.0", "MIT",
                    &counter_type, &endless_type, &sink_type, &fail_type, &split_type,
                    &batcher_type, &trainer_type, &params_type, &pass_type,
                    &join_type);
