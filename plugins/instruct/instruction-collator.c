/* instruction-collator.c: the instruction-collator stage (gptd.Tokens -> gptd.Batch),
 * the book's InstructionDataset with its DataLoaders and custom_collate_fn.
 *
 * It keeps the token ids of every record (a record may arrive in several Tokens
 * messages of one source; its prompt length comes with the first), cuts the record
 * list in order into the splits of split= (by default the book's 85% train, 10%
 * test and the rest validation, in that order) and, once its input has ended,
 * answers epoch requests: the records of the asked split, in order or shuffled by a
 * pure function of (seed, request seed, epoch), in batches of batch-size, each
 * padded to its longest record and collated as custom_collate_fn does (see
 * collate.h): inputs, targets shifted by one, pads after the first ignored,
 * optionally the prompt's targets ignored too, cut at allowed-max-length.
 */
#include "instruct-plugin.h"
#include "collate.h"

#include <gptd/windows.h>

#include <gptd/dist.h>

#include <string.h>

static const GptdParamSpec collator_params[] = {
  { "split", GPTD_PARAM_DOUBLE_LIST, "0.85,0.1,0.05", 0, 1, NULL,
    "Fractions of the records, in record order, for the splits of split-order "
    "(the book's int(n * 0.85) train, int(n * 0.1) test, the rest validation); "
    "the last split takes the rest when they sum to 1", 0 },
  { "split-order", GPTD_PARAM_STRING, "train,test,validation", 0, 0, NULL,
    "Which split each fraction of split= is, in record order (the book's order is "
    "train, test, validation)", 0 },
  { "batch-size", GPTD_PARAM_INT, "8", 1, 1 << 16, NULL, "Records per batch", 0 },
  { "pad-id", GPTD_PARAM_INT, "50256", 0, (double) G_MAXINT32, NULL,
    "Padding token, also the end-of-text token appended to every record "
    "(GPT-2's <|endoftext|>)", 0 },
  { "ignore-index", GPTD_PARAM_INT, "-100", G_MININT32, G_MAXINT32, NULL,
    "Target value that the loss ignores", 0 },
  { "allowed-max-length", GPTD_PARAM_INT, "1024", 0, 1 << 20, NULL,
    "Cut every sequence to this many tokens (the model's context); 0 for no cut", 0 },
  { "mask-prompt", GPTD_PARAM_BOOL, "false", 0, 0, NULL,
    "Also ignore the targets of the prompt's tokens, so that only the response is "
    "learnt (the book's exercise 7.2)", 0 },
  { "shuffle", GPTD_PARAM_BOOL, "true", 0, 0, NULL,
    "Allow shuffled epochs (when a request asks for one); false always serves the "
    "records in order", 0 },
  { "shuffle-records", GPTD_PARAM_BOOL, "false", 0, 0, NULL,
    "Shuffle the records (by seed) before splitting them; the book splits them in "
    "file order", 0 },
  { "drop-last", GPTD_PARAM_BOOL, "true", 0, 0, NULL,
    "Drop the last incomplete batch of the train split (the other splits keep it, "
    "as the book's loaders do)", 0 },
  { "seed", GPTD_PARAM_INT, "0", 0, (double) G_MAXINT64, NULL,
    "Shuffle seed, combined with the seed and epoch of each request", 0 },
  { NULL }
};

static const GptdPadSpec collator_inputs[] = {
  { "default", "gptd.Tokens", 0 },
  { NULL }
};

static const GptdPadSpec collator_outputs[] = {
  { "default", "gptd.Batch", 0 },
  { NULL }
};

typedef struct {
  double fractions[GPTD__INSTRUCT_MAX_SPLITS];
  guint n_fractions;
  int split_of[GPTD__INSTRUCT_MAX_SPLITS];  /* canonical split (0 train, 1 validation,
                                               2 test) of each fraction */
  guint64 batch_size;
  GptdCollateOptions opts;
  gboolean shuffle;
  gboolean shuffle_records;
  gboolean drop_last;
  guint64 seed;

  GptdInstructSet *set;
  GArray *pending;        /* guint32 ids of the record being received */
  char *pending_source;
  guint64 pending_index;
  guint32 pending_prompt;
  gboolean open;
  guint32 vocab_size;

  gint32 *inputs;         /* (batch_size, longest record) */
  gint32 *targets;
  guint32 *lengths;
  guint64 *order;
} Collator;

static gboolean
collator_check (const GptdParams *params, GError **error)
{
  int split_of[GPTD__INSTRUCT_MAX_SPLITS];
  gsize n_fractions = 0;
  const double *fractions = gptd_params_get_double_list (params, "split", &n_fractions);
  guint n;
  return gptd__instruct_split_parse (gptd_params_get_string (params, "split-order"),
                                     fractions, n_fractions, split_of, &n, error);
}

static void
collator_destroy (gpointer data)
{
  Collator *self = data;
  if (self == NULL)
    return;
  gptd__instruct_set_free (self->set);
  g_array_unref (self->pending);
  g_free (self->pending_source);
  g_free (self->inputs);
  g_free (self->targets);
  g_free (self->lengths);
  g_free (self->order);
  g_free (self);
}

static gpointer
collator_create (GptdStageContext *ctx, const GptdParams *params, GError **error)
{
  Collator *self = g_new0 (Collator, 1);
  gsize n = 0;
  const double *fractions = gptd_params_get_double_list (params, "split", &n);

  if (!gptd__instruct_split_parse (gptd_params_get_string (params, "split-order"),
                                   fractions, n, self->split_of, &self->n_fractions,
                                   error))
    {
      g_free (self);
      return NULL;
    }
  memcpy (self->fractions, fractions, n * sizeof (double));
  self->batch_size = gptd_params_get_int (params, "batch-size");
  self->opts.pad_id = (guint32) gptd_params_get_int (params, "pad-id");
  self->opts.ignore_index = (gint32) gptd_params_get_int (params, "ignore-index");
  self->opts.allowed_max_length = gptd_params_get_int (params, "allowed-max-length");
  self->opts.mask_prompt = gptd_params_get_bool (params, "mask-prompt");
  self->shuffle = gptd_params_get_bool (params, "shuffle");
  self->shuffle_records = gptd_params_get_bool (params, "shuffle-records");
  self->drop_last = gptd_params_get_bool (params, "drop-last");
  self->seed = gptd_params_get_int (params, "seed");
  self->set = gptd__instruct_set_new ();
  self->pending = g_array_new (FALSE, FALSE, sizeof (guint32));
  return self;
}

/* Files the record received so far. */
static gboolean
end_record (Collator *self, GError **error)
{
  if (!self->open)
    return TRUE;
  self->open = FALSE;
  if (self->pending->len == 0)
    {
      g_set_error (error, GPTD_STAGE_ERROR, GPTD_STAGE_ERROR_INPUT,
                   "%s (record %" G_GUINT64_FORMAT "): the record has no tokens",
                   self->pending_source, self->pending_index);
      return FALSE;
    }
  gptd__instruct_set_add (self->set, (const guint32 *) (void *) self->pending->data,
                          self->pending->len, self->pending_prompt);
  g_array_set_size (self->pending, 0);
  return TRUE;
}

static gboolean
collator_process (gpointer data, GptdStageContext *ctx, guint input,
                  const ProtobufCMessage *msg, GError **error)
{
  Collator *self = data;
  const Gptd__Tokens *tokens = (const Gptd__Tokens *) msg;
  const char *source = tokens->source ? tokens->source : "";

  if (self->open && (self->pending_index != tokens->index
                     || g_strcmp0 (self->pending_source, source) != 0))
    {
      if (!end_record (self, error))
        return FALSE;
    }
  if (!self->open)
    {
      g_free (self->pending_source);
      self->pending_source = g_strdup (source);
      self->pending_index = tokens->index;
      self->pending_prompt = tokens->prompt_tokens;
      self->open = TRUE;
    }
  if (tokens->vocab_size > 0)
    {
      for (gsize i = 0; i < tokens->n_ids; i++)
        if (tokens->ids[i] >= tokens->vocab_size)
          {
            g_set_error (error, GPTD_STAGE_ERROR, GPTD_STAGE_ERROR_INPUT,
                         "%s (record %" G_GUINT64_FORMAT "): token id %u is not below the "
                         "vocabulary size %u", source, tokens->index, tokens->ids[i],
                         tokens->vocab_size);
            return FALSE;
          }
      self->vocab_size = MAX (self->vocab_size, tokens->vocab_size);
    }
  g_array_append_vals (self->pending, tokens->ids, (guint) tokens->n_ids);
  if (tokens->last)
    return end_record (self, error);
  return TRUE;
}

/* The position in split= of canonical split @k, or -1. */
static int
position_of (const Collator *self, int k)
{
  for (guint i = 0; i < self->n_fractions; i++)
    if (self->split_of[i] == k)
      return (int) i;
  return -1;
}

static gboolean
collator_finish (gpointer data, GptdStageContext *ctx, GError **error)
{
  Collator *self = data;
  guint64 n_records, max_len;

  if (!end_record (self, error))
    return FALSE;
  n_records = gptd__instruct_set_n_records (self->set);
  if (self->vocab_size > 0 && self->opts.pad_id >= self->vocab_size)
    {
      g_set_error (error, GPTD_STAGE_ERROR, GPTD_STAGE_ERROR_INPUT,
                   "pad-id: %u is not below the vocabulary size %u of the tokens",
                   self->opts.pad_id, self->vocab_size);
      return FALSE;
    }
  gptd__instruct_set_layout (self->set, self->fractions, self->n_fractions,
                             self->batch_size, self->drop_last ? position_of (self, 0) : -1,
                             self->shuffle_records,
                             gptd__windows_shuffle_key (self->seed, 0, 0, 99));
  for (guint i = 0; i < self->n_fractions; i++)
    {
      const char *name = gptd__windows_split_name (self->split_of[i]);
      guint64 m = gptd__instruct_set_split_records (self->set, i);
      gptd_stage_log (ctx, G_LOG_LEVEL_INFO,
                      "%s: %" G_GUINT64_FORMAT " records, %" G_GUINT64_FORMAT " batches",
                      name, m, gptd__instruct_set_split_batches (self->set, i));
      if (m == 0 && self->fractions[i] > 0)
        {
          g_set_error (error, GPTD_STAGE_ERROR, GPTD_STAGE_ERROR_INPUT,
                       "split: the %s split (fraction %g) gets none of the %"
                       G_GUINT64_FORMAT " records; give more records, or 0 as its "
                       "fraction to leave it empty", name, self->fractions[i], n_records);
          return FALSE;
        }
    }
  if (gptd__instruct_set_split_batches (self->set, position_of (self, 0)) == 0)
    gptd_stage_log (ctx, G_LOG_LEVEL_WARNING,
                    "the train split has no batch: fewer records than batch-size=%"
                    G_GUINT64_FORMAT " and drop-last=true", self->batch_size);
  max_len = MAX (gptd__instruct_set_max_len (self->set), 1);
  self->inputs = g_new (gint32, self->batch_size * max_len);
  self->targets = g_new (gint32, self->batch_size * max_len);
  self->lengths = g_new (guint32, self->batch_size);
  self->order = g_new (guint64, MAX (n_records, 1));
  return TRUE;
}

/* Pushes the batches of split position @i that @request asks for. */
static gboolean
serve_split (Collator *self, GptdStageContext *ctx, guint output, guint i,
             const Gptd__EpochRequest *request, guint64 *sent, guint64 *total,
             GError **error)
{
  int k = self->split_of[i];
  guint64 n_batches = gptd__instruct_set_split_batches (self->set, i);
  gboolean shuffle = request->shuffle && self->shuffle;
  guint64 key = gptd__windows_shuffle_key (self->seed, request->seed, request->epoch, k);
  guint64 start = MIN (request->start, n_batches);
  guint64 end = n_batches;
  Gptd__Batch batch = GPTD__BATCH__INIT;

  if (request->limit > 0 && request->limit < end - start)
    end = start + request->limit;
  gptd__instruct_set_order (self->set, i, shuffle, key, self->order);
  batch.split = (char *) gptd__windows_split_name (k);
  batch.epoch = request->epoch;
  batch.batches = n_batches;
  for (guint64 b = start; b < end; b++)
    {
      guint rows;
      guint64 T;
      gptd__instruct_set_collate (self->set, i, self->order, b, &self->opts, self->inputs,
                                  self->targets, self->lengths, &rows, &T);
      /* Under mpirun each rank trains on its share of the rows, in order, padded
       * to the whole batch's length as one process pads them. */
      guint64 first, count;
      gptd_dist_share (rows, &first, &count);
      batch.index = b;
      batch.batch_size = (guint) count;
      batch.seq_len = (guint32) T;
      batch.inputs = self->inputs + first * T;
      batch.targets = self->targets + first * T;
      batch.lengths = self->lengths + first;
      batch.n_inputs = batch.n_targets = (gsize) count * T;
      batch.n_lengths = count;
      if (!gptd_stage_push (ctx, output, &batch.base, error))
        return FALSE;
    }
  *sent += end - start;
  *total += n_batches;
  return TRUE;
}

static gboolean
collator_epoch (gpointer data, GptdStageContext *ctx, guint output,
                const Gptd__EpochRequest *request, GError **error)
{
  Collator *self = data;
  const char *split = request->split ? request->split : "";
  Gptd__EndOfEpoch eoe = GPTD__END_OF_EPOCH__INIT;
  guint64 sent = 0, total = 0;

  if (split[0] == '\0')
    {
      for (guint i = 0; i < self->n_fractions; i++)
        if (!serve_split (self, ctx, output, i, request, &sent, &total, error))
          return FALSE;
    }
  else
    {
      int k = gptd__windows_split_lookup (split);
      int i;
      if (k < 0)
        {
          g_set_error (error, GPTD_STAGE_ERROR, GPTD_STAGE_ERROR_INPUT,
                       "An epoch request asks for split \"%s\"; the splits are train, "
                       "validation and test", split);
          return FALSE;
        }
      /* A split that split= leaves out is empty. */
      i = position_of (self, k);
      if (i >= 0 && !serve_split (self, ctx, output, (guint) i, request, &sent, &total, error))
        return FALSE;
    }
  eoe.split = (char *) split;
  eoe.epoch = request->epoch;
  eoe.batches = sent;
  eoe.total = total;
  return gptd_stage_push (ctx, output, &eoe.base, error);
}

const GptdStageType gptd__instruction_collator_type = {
  .name = "instruction-collator",
  .description = "Instruction records as padded next-token batches (the book's "
                 "custom_collate_fn), split in record order, served in seeded epochs",
  .params = collator_params,
  .inputs = collator_inputs,
  .outputs = collator_outputs,
  .check = collator_check,
  .create = collator_create,
  .process = collator_process,
  .finish = collator_finish,
  .epoch = collator_epoch,
  .destroy = collator_destroy,
};
