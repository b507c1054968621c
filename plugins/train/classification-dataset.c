/* classification-dataset.c: the classification-dataset stage (gptd.Tokens with
 * labels -> gptd.Batch with labels and lengths), the book's chapter 6 data set
 * (the balanced, split SMS Spam Collection, SpamDataset and its DataLoaders).
 *
 * It keeps every labelled example (a source's Tokens, up to the one marked last),
 * with the class id given by its label's position in labels=. Once its input has
 * ended it balances (undersample: every class down to the smallest, seeded),
 * shuffles (seeded) and splits the examples by position, fixes the length (the
 * longest training example unless max-length= is given; longer examples are
 * truncated), and answers epoch requests as token-windows does: the batches of the
 * asked split, in order or shuffled by a pure function of (seed, request seed,
 * epoch), from any start batch and up to a limit. Each row is an example padded with
 * pad-id; the batch carries the class ids, the unpadded lengths and the class names.
 */
#include "train-plugin.h"
#include "classes.h"

#include <gptd/dist.h>

#include <string.h>

typedef struct {
  GptdClassesSet *set;
  GptdClassesConfig config;
  gint64 pad_id;
  gboolean shuffle;
  guint32 vocab_size;       /* the largest announced, 0 when unknown */
  gint32 *inputs;           /* (batch_size, max_length), reused for every batch */
  gint32 *labels;           /* (batch_size) */
  guint32 *lengths;         /* (batch_size) */
} ClassificationDataset;

static const char *const balance_choices[] = { "none", "undersample", NULL };

static const GptdParamSpec classification_dataset_params[] = {
  { "labels", GPTD_PARAM_STRING, NULL, 0, 0, NULL,
    "The class names, comma-separated, in class id order (e.g. ham,spam: ham is 0, "
    "spam 1); every example's label must be one of them", GPTD_PARAM_REQUIRED },
  { "balance", GPTD_PARAM_ENUM, "none", 0, 0, balance_choices,
    "none keeps every example; undersample keeps a seeded sample of each class as "
    "large as the smallest class (the book: 747 ham, 747 spam)", 0 },
  { "split", GPTD_PARAM_DOUBLE_LIST, "0.7,0.1,0.2", 0, 1, NULL,
    "Fractions of the shuffled examples, by position, for the train, validation and "
    "test splits (one to three values summing to at most 1; the last non-zero split "
    "takes the rest when they sum to 1; 0 leaves a split empty)", 0 },
  { "max-length", GPTD_PARAM_INT, NULL, 1, 1 << 20, NULL,
    "Tokens per row: longer examples are truncated, shorter ones padded (default: the "
    "longest training example; validation and test use the same length)", 0 },
  { "pad-id", GPTD_PARAM_INT, "50256", 0, (double) G_MAXINT32, NULL,
    "Token id that pads the rows (50256: GPT-2's <|endoftext|>)", 0 },
  { "batch-size", GPTD_PARAM_INT, "8", 1, 1 << 16, NULL, "Examples per batch", 0 },
  { "shuffle", GPTD_PARAM_BOOL, "true", 0, 0, NULL,
    "Allow shuffled epochs (when a request asks for one); false always serves the "
    "examples in the split's order", 0 },
  { "drop-last", GPTD_PARAM_BOOL, "true", 0, 0, NULL,
    "Drop the last incomplete batch of the train split (the validation and test "
    "splits always keep it, as the book's loaders do)", 0 },
  { "seed", GPTD_PARAM_INT, "123", 0, (double) G_MAXINT64, NULL,
    "Seed of the balancing sample and of the shuffle before the split, combined with "
    "the seed and epoch of each request for epoch shuffles", 0 },
  { NULL }
};

static const GptdPadSpec classification_dataset_inputs[] = {
  { "default", "gptd.Tokens", 0 },
  { NULL }
};

static const GptdPadSpec classification_dataset_outputs[] = {
  { "default", "gptd.Batch", 0 },
  { NULL }
};

/* The class names of labels= (trimmed); NULL with @error for an empty or repeated
 * name. */
static GStrv
parse_labels (const char *spec, GError **error)
{
  g_auto (GStrv) items = g_strsplit (spec, ",", -1);
  for (guint i = 0; items[i]; i++)
    {
      g_strstrip (items[i]);
      if (items[i][0] == '\0')
        {
          g_set_error (error, GPTD_STAGE_ERROR, GPTD_STAGE_ERROR_FAILED,
                       "labels: name %u of \"%s\" is empty", i + 1, spec);
          return NULL;
        }
      for (guint k = 0; k < i; k++)
        if (g_str_equal (items[k], items[i]))
          {
            g_set_error (error, GPTD_STAGE_ERROR, GPTD_STAGE_ERROR_FAILED,
                         "labels: \"%s\" is given twice", items[i]);
            return NULL;
          }
    }
  return g_steal_pointer (&items);
}

static gboolean
classification_dataset_check (const GptdParams *params, GError **error)
{
  gsize n = 0;
  const double *fractions = gptd_params_get_double_list (params, "split", &n);
  double sum = 0;

  g_auto (GStrv) names = parse_labels (gptd_params_get_string (params, "labels"), error);
  if (names == NULL)
    return FALSE;
  if (g_strv_length (names) < 2)
    {
      g_set_error (error, GPTD_STAGE_ERROR, GPTD_STAGE_ERROR_FAILED,
                   "labels: give at least two class names, not \"%s\"",
                   gptd_params_get_string (params, "labels"));
      return FALSE;
    }
  if (n < 1 || n > GPTD__CLASSES_MAX_SPLITS)
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
  if (fractions[0] <= 0 && !gptd_params_has (params, "max-length"))
    {
      g_set_error (error, GPTD_STAGE_ERROR, GPTD_STAGE_ERROR_FAILED,
                   "split: with an empty train split, give max-length (it defaults to "
                   "the longest training example)");
      return FALSE;
    }
  return TRUE;
}

static void
classification_dataset_destroy (gpointer data)
{
  ClassificationDataset *self = data;
  if (self == NULL)
    return;
  gptd__classes_free (self->set);
  g_free (self->inputs);
  g_free (self->labels);
  g_free (self->lengths);
  g_free (self);
}

static gpointer
classification_dataset_create (GptdStageContext *ctx, const GptdParams *params,
                               GError **error)
{
  gsize n = 0;
  const double *fractions;

  if (!classification_dataset_check (params, error))
    return NULL;
  ClassificationDataset *self = g_new0 (ClassificationDataset, 1);
  g_auto (GStrv) names = parse_labels (gptd_params_get_string (params, "labels"), NULL);
  self->set = gptd__classes_new ((const char *const *) names, g_strv_length (names));
  self->config.balance = gptd_params_get_int (params, "balance") == 1
                           ? GPTD__CLASSES_BALANCE_UNDERSAMPLE : GPTD__CLASSES_BALANCE_NONE;
  fractions = gptd_params_get_double_list (params, "split", &n);
  self->config.n_fractions = n;
  memcpy (self->config.fractions, fractions, n * sizeof (double));
  self->config.seed = gptd_params_get_int (params, "seed");
  self->config.max_length = gptd_params_has (params, "max-length")
                              ? (guint64) gptd_params_get_int (params, "max-length") : 0;
  self->config.batch_size = gptd_params_get_int (params, "batch-size");
  self->config.drop_last_train = gptd_params_get_bool (params, "drop-last");
  self->pad_id = gptd_params_get_int (params, "pad-id");
  self->shuffle = gptd_params_get_bool (params, "shuffle");
  return self;
}

static gboolean
classification_dataset_process (gpointer data, GptdStageContext *ctx, guint input,
                                const ProtobufCMessage *msg, GError **error)
{
  ClassificationDataset *self = data;
  const Gptd__Tokens *tokens = (const Gptd__Tokens *) msg;
  g_autofree char *what = g_strdup_printf ("source %s (index %" G_GUINT64_FORMAT ")",
                                           tokens->source, tokens->index);

  self->vocab_size = MAX (self->vocab_size, tokens->vocab_size);
  return gptd__classes_append (self->set, tokens->label, tokens->ids, tokens->n_ids,
                               tokens->last, what, error);
}

static gboolean
classification_dataset_finish (gpointer data, GptdStageContext *ctx, GError **error)
{
  ClassificationDataset *self = data;
  GptdClassesSet *set = self->set;
  guint n_classes = gptd__classes_n_classes (set);
  char **names = gptd__classes_names (set);

  if (self->vocab_size > 0 && self->pad_id >= self->vocab_size)
    {
      g_set_error (error, GPTD_STAGE_ERROR, GPTD_STAGE_ERROR_INPUT,
                   "pad-id: %" G_GINT64_FORMAT " is not an id of the vocabulary of the "
                   "tokens (%u ids)", self->pad_id, self->vocab_size);
      return FALSE;
    }
  if (!gptd__classes_build (set, &self->config, error))
    return FALSE;

  guint64 max_length = gptd__classes_max_length (set);
  self->inputs = g_new (gint32, self->config.batch_size * max_length);
  self->labels = g_new (gint32, self->config.batch_size);
  self->lengths = g_new (guint32, self->config.batch_size);

  g_autoptr (GString) read = g_string_new (NULL);
  for (guint c = 0; c < n_classes; c++)
    g_string_append_printf (read, "%s%s %" G_GUINT64_FORMAT, c ? ", " : "", names[c],
                            gptd__classes_class_count (set, c));
  if (self->config.balance == GPTD__CLASSES_BALANCE_UNDERSAMPLE)
    gptd_stage_log (ctx, G_LOG_LEVEL_INFO, "%" G_GUINT64_FORMAT " examples (%s), "
                    "undersampled to %" G_GUINT64_FORMAT, gptd__classes_n_examples (set),
                    read->str, gptd__classes_n_kept (set));
  else
    gptd_stage_log (ctx, G_LOG_LEVEL_INFO, "%" G_GUINT64_FORMAT " examples (%s)",
                    gptd__classes_n_examples (set), read->str);
  for (guint k = 0; k < GPTD__CLASSES_MAX_SPLITS; k++)
    gptd_stage_log (ctx, G_LOG_LEVEL_INFO,
                    "%s: %" G_GUINT64_FORMAT " examples, %" G_GUINT64_FORMAT " batches, %"
                    G_GUINT64_FORMAT " truncated", gptd__windows_split_name (k),
                    gptd__classes_split_size (set, k), gptd__classes_n_batches (set, k),
                    gptd__classes_n_truncated (set, k));
  gptd_stage_log (ctx, G_LOG_LEVEL_INFO, "max-length %" G_GUINT64_FORMAT "%s", max_length,
                  self->config.max_length ? "" : " (the longest training example)");
  if (gptd__classes_n_batches (set, 0) == 0 && gptd__classes_split_size (set, 0) > 0)
    gptd_stage_log (ctx, G_LOG_LEVEL_WARNING,
                    "the train split has no batch: %" G_GUINT64_FORMAT " examples, fewer "
                    "than batch-size (%" G_GUINT64_FORMAT ") with drop-last",
                    gptd__classes_split_size (set, 0), self->config.batch_size);
  return TRUE;
}

/* Pushes the batches of split @k that @request asks for; adds their number to
 * *sent and the split's batches per epoch to *total. */
static gboolean
serve_split (ClassificationDataset *self, GptdStageContext *ctx, guint output, guint k,
             const Gptd__EpochRequest *request, guint64 *sent, guint64 *total,
             GError **error)
{
  GptdClassesSet *set = self->set;
  guint64 n_batches = gptd__classes_n_batches (set, k);
  guint64 max_length = gptd__classes_max_length (set);
  gboolean shuffle = request->shuffle && self->shuffle;
  guint64 key = gptd__windows_shuffle_key (self->config.seed, request->seed, request->epoch,
                                           k);
  const guint64 *order = gptd__classes_order (set, k, shuffle, key);
  guint64 start = MIN (request->start, n_batches);
  guint64 end = n_batches;
  Gptd__Batch batch = GPTD__BATCH__INIT;

  if (request->limit > 0 && request->limit < end - start)
    end = start + request->limit;

  batch.split = (char *) gptd__windows_split_name (k);
  batch.epoch = request->epoch;
  batch.batches = n_batches;
  batch.seq_len = max_length;
  batch.label_names = gptd__classes_names (set);
  batch.n_label_names = gptd__classes_n_classes (set);
  for (guint64 b = start; b < end; b++)
    {
      guint rows = gptd__classes_fill (set, k, order, b, (gint32) self->pad_id,
                                       self->inputs, self->labels, self->lengths);
      /* Under mpirun each rank trains on its share of the rows, in order. */
      guint64 first, count;
      gptd_dist_share (rows, &first, &count);
      batch.index = b;
      batch.batch_size = (guint) count;
      batch.inputs = self->inputs + first * max_length;
      batch.labels = self->labels + first;
      batch.lengths = self->lengths + first;
      batch.n_inputs = (gsize) count * max_length;
      batch.n_labels = batch.n_lengths = count;
      if (!gptd_stage_push (ctx, output, &batch.base, error))
        return FALSE;
    }
  *sent += end - start;
  *total += n_batches;
  return TRUE;
}

static gboolean
classification_dataset_epoch (gpointer data, GptdStageContext *ctx, guint output,
                              const Gptd__EpochRequest *request, GError **error)
{
  ClassificationDataset *self = data;
  const char *split = request->split ? request->split : "";
  Gptd__EndOfEpoch eoe = GPTD__END_OF_EPOCH__INIT;
  guint64 sent = 0, total = 0;

  if (split[0] == '\0')
    {
      for (guint k = 0; k < GPTD__CLASSES_MAX_SPLITS; k++)
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
      if (!serve_split (self, ctx, output, (guint) k, request, &sent, &total, error))
        return FALSE;
    }

  /* Our own end of epoch, to tell the consumer the epoch's size. */
  eoe.split = (char *) split;
  eoe.epoch = request->epoch;
  eoe.batches = sent;
  eoe.total = total;
  return gptd_stage_push (ctx, output, &eoe.base, error);
}

const GptdStageType gptd__classification_dataset_type = {
  .name = "classification-dataset",
  .description = "Labelled examples as padded classification batches, balanced and split "
                 "as the book's chapter 6, served in seeded epochs",
  .params = classification_dataset_params,
  .inputs = classification_dataset_inputs,
  .outputs = classification_dataset_outputs,
  .check = classification_dataset_check,
  .create = classification_dataset_create,
  .process = classification_dataset_process,
  .finish = classification_dataset_finish,
  .epoch = classification_dataset_epoch,
  .destroy = classification_dataset_destroy,
};
