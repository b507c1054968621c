/* token-windows.c: the token-windows stage (gptd.Tokens -> gptd.Batch), the book's
 * sliding-window data set (GPTDatasetV1 with its DataLoaders).
 *
 * It collects the token stream of every input message (sources concatenated in
 * order, optionally with a separator id between them), cuts it by position into
 * train/validation/test splits and, once its input has ended, answers epoch
 * requests: the windows of the asked split, in order or shuffled by a pure
 * function of (seed, request seed, epoch), grouped into batches, from any start
 * batch and up to a limit. Inputs are windows of context-length ids and targets
 * the same windows shifted by one token. Long streams are written to a token file
 * in the run directory and memory-mapped instead of being kept in memory.
 */
#include "train-plugin.h"
#include <gptd/windows.h>

#include <gptd/dist.h>

#include <string.h>

typedef struct {
  char *name;
  guint64 context_length;
  guint64 stride;
  guint64 batch_size;
  double fractions[GPTD__WINDOWS_MAX_SPLITS];
  guint n_fractions;
  gboolean shuffle;
  gboolean drop_last;
  guint64 seed;
  gint64 separator;
  GptdWindowsStore *store;
  GptdWindowsSet set;
  gboolean need_separator;
  gint32 *inputs;   /* (batch_size, context_length), reused for every batch */
  gint32 *targets;  /* (batch_size, context_length) */
} TokenWindows;

static const GptdParamSpec token_windows_params[] = {
  { "context-length", GPTD_PARAM_INT, "256", 1, 1 << 20, NULL,
    "Tokens per window (the model's context length or less)", 0 },
  { "stride", GPTD_PARAM_INT, NULL, 1, 1 << 20, NULL,
    "Tokens between the starts of consecutive windows (default: context-length)", 0 },
  { "batch-size", GPTD_PARAM_INT, "4", 1, 1 << 16, NULL, "Windows per batch", 0 },
  { "split", GPTD_PARAM_DOUBLE_LIST, "0.9,0.1", 0, 1, NULL,
    "Fractions of the token stream, by position, for the train, validation and "
    "test splits (one to three values summing to at most 1)", 0 },
  { "shuffle", GPTD_PARAM_BOOL, "true", 0, 0, NULL,
    "Allow shuffled epochs (when a request asks for one); false always serves the "
    "windows in order", 0 },
  { "drop-last", GPTD_PARAM_BOOL, "true", 0, 0, NULL,
    "Drop the last incomplete batch of the train split (the validation and test "
    "splits always keep it, as the book's loaders do)", 0 },
  { "seed", GPTD_PARAM_INT, "0", 0, (double) G_MAXINT64, NULL,
    "Shuffle seed, combined with the seed and epoch of each request", 0 },
  { "separator", GPTD_PARAM_INT, "-1", -1, (double) G_MAXUINT32, NULL,
    "Token id inserted between consecutive sources (e.g. 50256, GPT-2's "
    "<|endoftext|>); -1 for none", 0 },
  { "mmap-threshold", GPTD_PARAM_INT, "16777216", 0, (double) G_MAXINT64, NULL,
    "Past this many tokens the stream is written to a token file in the run "
    "directory and memory-mapped; 0 keeps it in memory", 0 },
  { NULL }
};

static const GptdPadSpec token_windows_inputs[] = {
  { "default", "gptd.Tokens", 0 },
  { NULL }
};

static const GptdPadSpec token_windows_outputs[] = {
  { "default", "gptd.Batch", 0 },
  { NULL }
};

static gboolean
token_windows_check (const GptdParams *params, GError **error)
{
  gsize n = 0;
  const double *fractions = gptd_params_get_double_list (params, "split", &n);
  double sum = 0;

  if (n < 1 || n > GPTD__WINDOWS_MAX_SPLITS)
    {
      g_set_error (error, GPTD_STAGE_ERROR, GPTD_STAGE_ERROR_FAILED,
                   "split: give one to three fractions (train, validation, test), "
                   "not %" G_GSIZE_FORMAT, n);
      return FALSE;
    }
  for (gsize i = 0; i < n; i++)
    sum += fractions[i];
  if (sum > 1.0 + 1e-9)
    {
      g_set_error (error, GPTD_STAGE_ERROR, GPTD_STAGE_ERROR_FAILED,
                   "split: the fractions sum to %g, more than 1", sum);
      return FALSE;
    }
  if (fractions[0] <= 0)
    {
      g_set_error (error, GPTD_STAGE_ERROR, GPTD_STAGE_ERROR_FAILED,
                   "split: the train fraction must be above 0");
      return FALSE;
    }
  return TRUE;
}

static void
token_windows_destroy (gpointer data)
{
  TokenWindows *self = data;
  if (self == NULL)
    return;
  gptd__windows_store_free (self->store);
  gptd__windows_set_clear (&self->set);
  g_free (self->inputs);
  g_free (self->targets);
  g_free (self->name);
  g_free (self);
}

static gpointer
token_windows_create (GptdStageContext *ctx, const GptdParams *params, GError **error)
{
  TokenWindows *self = g_new0 (TokenWindows, 1);
  gsize n = 0;
  const double *fractions;

  if (!token_windows_check (params, error))
    {
      g_free (self);
      return NULL;
    }
  self->name = g_strdup (gptd_stage_context_get_name (ctx));
  self->context_length = gptd_params_get_int (params, "context-length");
  self->stride = gptd_params_has (params, "stride")
                   ? (guint64) gptd_params_get_int (params, "stride")
                   : self->context_length;
  self->batch_size = gptd_params_get_int (params, "batch-size");
  fractions = gptd_params_get_double_list (params, "split", &n);
  self->n_fractions = n;
  memcpy (self->fractions, fractions, n * sizeof (double));
  self->shuffle = gptd_params_get_bool (params, "shuffle");
  self->drop_last = gptd_params_get_bool (params, "drop-last");
  self->seed = gptd_params_get_int (params, "seed");
  self->separator = gptd_params_get_int (params, "separator");

  guint64 threshold = gptd_params_get_int (params, "mmap-threshold");
  g_autofree char *base = g_strdup_printf ("tokens-%s", self->name);
  g_autofree char *prefix = g_build_filename (gptd_stage_context_get_run_dir (ctx),
                                              base, NULL);
  self->store = gptd__windows_store_new (threshold, prefix);
  return self;
}

static gboolean
token_windows_process (gpointer data, GptdStageContext *ctx, guint input,
                       const ProtobufCMessage *msg, GError **error)
{
  TokenWindows *self = data;
  const Gptd__Tokens *tokens = (const Gptd__Tokens *) msg;
  g_autofree char *what = g_strdup_printf ("source %s (index %" G_GUINT64_FORMAT ")",
                                           tokens->source, tokens->index);

  if (self->need_separator && tokens->n_ids > 0)
    {
      guint32 sep = (guint32) self->separator;
      if (!gptd__windows_store_append (self->store, &sep, 1, tokens->vocab_size,
                                       "the separator", error))
        return FALSE;
      self->need_separator = FALSE;
    }
  if (!gptd__windows_store_append (self->store, tokens->ids, tokens->n_ids,
                                   tokens->vocab_size, what, error))
    return FALSE;
  if (tokens->last && self->separator >= 0)
    self->need_separator = TRUE;
  return TRUE;
}

static gboolean
token_windows_finish (gpointer data, GptdStageContext *ctx, GError **error)
{
  TokenWindows *self = data;
  guint64 n_tokens;

  if (!gptd__windows_store_finish (self->store, error))
    return FALSE;
  n_tokens = gptd__windows_store_length (self->store);
  gptd__windows_set_init (&self->set, n_tokens, self->context_length, self->stride,
                          self->batch_size, self->fractions, self->n_fractions,
                          self->drop_last);
  self->inputs = g_new (gint32, self->batch_size * self->context_length);
  self->targets = g_new (gint32, self->batch_size * self->context_length);

  if (gptd__windows_store_is_mapped (self->store))
    gptd_stage_log (ctx, G_LOG_LEVEL_INFO, "%" G_GUINT64_FORMAT " tokens mapped from %s",
                    n_tokens, gptd__windows_store_path (self->store));
  for (guint k = 0; k < self->set.n_splits; k++)
    {
      const GptdWindowsSplit *s = &self->set.splits[k];
      gptd_stage_log (ctx, G_LOG_LEVEL_INFO,
                      "%s: tokens %" G_GUINT64_FORMAT "..%" G_GUINT64_FORMAT ", %"
                      G_GUINT64_FORMAT " windows, %" G_GUINT64_FORMAT " batches",
                      gptd__windows_split_name (k), s->begin, s->end, s->n_windows,
                      s->n_batches);
    }
  if (self->set.splits[0].n_batches == 0)
    gptd_stage_log (ctx, G_LOG_LEVEL_WARNING,
                    "the train split has no batch: %" G_GUINT64_FORMAT " tokens in all; "
                    "give more text or lower context-length (%" G_GUINT64_FORMAT
                    ") or batch-size (%" G_GUINT64_FORMAT ")",
                    n_tokens, self->context_length, self->batch_size);
  return TRUE;
}

/* Pushes the batches of split @k that @request asks for; adds their number to
 * *sent and the split's batches per epoch to *total. */
static gboolean
serve_split (TokenWindows *self, GptdStageContext *ctx, guint output, guint k,
             const Gptd__EpochRequest *request, guint64 *sent, guint64 *total,
             GError **error)
{
  const GptdWindowsSplit *s = &self->set.splits[k];
  gboolean shuffle = request->shuffle && self->shuffle;
  guint64 key = gptd__windows_shuffle_key (self->seed, request->seed, request->epoch, k);
  const guint64 *order = gptd__windows_set_order (&self->set, k, shuffle, key);
  guint64 start = MIN (request->start, s->n_batches);
  guint64 end = s->n_batches;
  Gptd__Batch batch = GPTD__BATCH__INIT;

  if (request->limit > 0 && request->limit < end - start)
    end = start + request->limit;

  batch.split = (char *) gptd__windows_split_name (k);
  batch.epoch = request->epoch;
  batch.batches = s->n_batches;
  batch.seq_len = self->context_length;
  for (guint64 b = start; b < end; b++)
    {
      guint rows = gptd__windows_set_fill (&self->set, self->store, k, order, b,
                                           self->inputs, self->targets);
      /* Under mpirun each rank trains on its share of the rows, in order. */
      guint64 first, count;
      gptd_dist_share (rows, &first, &count);
      batch.index = b;
      batch.batch_size = (guint) count;
      batch.inputs = self->inputs + first * self->context_length;
      batch.targets = self->targets + first * self->context_length;
      batch.n_inputs = batch.n_targets = (gsize) count * self->context_length;
      if (!gptd_stage_push (ctx, output, &batch.base, error))
        return FALSE;
    }
  *sent += end - start;
  *total += s->n_batches;
  return TRUE;
}

static gboolean
token_windows_epoch (gpointer data, GptdStageContext *ctx, guint output,
                     const Gptd__EpochRequest *request, GError **error)
{
  TokenWindows *self = data;
  const char *split = request->split ? request->split : "";
  Gptd__EndOfEpoch eoe = GPTD__END_OF_EPOCH__INIT;
  guint64 sent = 0, total = 0;

  if (split[0] == '\0')
    {
      for (guint k = 0; k < self->set.n_splits; k++)
        if (!serve_split (self, ctx, output, k, request, &sent, &total, error))
          return FALSE;
    }
  else
    {
      int k = gptd__windows_split_lookup (split);
      if (k < 0)
        {
          g_set_error (error, GPTD_STAGE_ERROR, GPTD_STAGE_ERROR_INPUT,
                       "An epoch request asks for split \"%s\"; the splits are train, "
                       "validation and test", split);
          return FALSE;
        }
      /* A split that split= leaves out is empty (e.g. no validation with split=1). */
      if ((guint) k < self->set.n_splits
          && !serve_split (self, ctx, output, (guint) k, request, &sent, &total, error))
        return FALSE;
    }

  /* Our own end of epoch, to tell the consumer the epoch's size. */
  eoe.split = (char *) split;
  eoe.epoch = request->epoch;
  eoe.batches = sent;
  eoe.total = total;
  return gptd_stage_push (ctx, output, &eoe.base, error);
}

const GptdStageType gptd__token_windows_type = {
  .name = "token-windows",
  .description = "Sliding windows of a token stream as next-token training batches, "
                 "split by position, served in seeded epochs",
  .params = token_windows_params,
  .inputs = token_windows_inputs,
  .outputs = token_windows_outputs,
  .check = token_windows_check,
  .create = token_windows_create,
  .process = token_windows_process,
  .finish = token_windows_finish,
  .epoch = token_windows_epoch,
  .destroy = token_windows_destroy,
};
