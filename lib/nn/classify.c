/* classify.c: a trained sequence classifier answering texts with class
 * probabilities, the book's classify_review(); see gptd/classify.h.
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include <gptd/json-load.h>
#include <gptd/classify.h>
#include <gptd/gpt2-file.h>
#include <gptd/quant.h>

#include <math.h>
#include <string.h>

#include <json-glib/json-glib.h>

G_DEFINE_QUARK (gptd-classify-error-quark, gptd_classify_error)

struct _GptdClassifier {
  GptdGpt *model;
  GptdBpe *bpe;           /* NULL: ids only */
  char **labels;          /* n_classes names */
  char *pooling;
  gboolean last_token;
  int n_classes;
  int context_length;
  int vocab_size;
  int sequence_length;    /* 0: unknown */
  int max_length;
  gint32 *row;            /* (max_length) the padded input */
  GptdGptKvCache *cache;  /* bf16 or q8 weights: the KV-cache path's, made on
                           * first use */
};

static int
default_max_length (const GptdClassifier *c)
{
  if (!c->last_token && c->sequence_length > 0)
    return MIN (c->sequence_length, c->context_length);
  return c->context_length;
}

GptdClassifier *
gptd_classifier_new (GptdGpt *model, GptdBpe *bpe, const char *const *labels,
                     const char *pooling, int sequence_length, GError **error)
{
  g_return_val_if_fail (model != NULL, NULL);

  g_autoptr (GptdGpt) owned = model;
  const GptdGptConfig *cfg = gptd_gpt_get_config (model);
  if (cfg->n_out == 0 || cfg->tie_embeddings || cfg->n_out == cfg->vocab_size)
    {
      g_set_error (error, GPTD_CLASSIFY_ERROR, GPTD_CLASSIFY_ERROR_MODEL,
                   "the model has a language-model head of %d outputs, not a "
                   "classifier head", cfg->n_out ? cfg->n_out : cfg->vocab_size);
      return NULL;
    }
  if (labels != NULL && g_strv_length ((char **) labels) != (guint) cfg->n_out)
    {
      g_set_error (error, GPTD_CLASSIFY_ERROR, GPTD_CLASSIFY_ERROR_MODEL,
                   "%u class names for a head of %d classes",
                   g_strv_length ((char **) labels), cfg->n_out);
      return NULL;
    }
  if (pooling == NULL)
    pooling = "last";
  if (strcmp (pooling, "last") != 0 && strcmp (pooling, "last-token") != 0)
    {
      g_set_error (error, GPTD_CLASSIFY_ERROR, GPTD_CLASSIFY_ERROR_MODEL,
                   "unknown pooling \"%s\" (last or last-token)", pooling);
      return NULL;
    }

  GptdClassifier *c = g_new0 (GptdClassifier, 1);
  c->model = g_steal_pointer (&owned);
  c->bpe = bpe != NULL ? gptd_bpe_ref (bpe) : NULL;
  c->n_classes = cfg->n_out;
  c->context_length = cfg->context_length;
  c->vocab_size = cfg->vocab_size;
  c->sequence_length = MAX (sequence_length, 0);
  c->pooling = g_strdup (pooling);
  c->last_token = strcmp (pooling, "last-token") == 0;
  c->labels = g_new0 (char *, c->n_classes + 1);
  for (int i = 0; i < c->n_classes; i++)
    c->labels[i] = labels != NULL ? g_strdup (labels[i])
                                  : g_strdup_printf ("LABEL_%d", i);
  c->max_length = default_max_length (c);
  c->row = g_new (gint32, c->context_length);
  return c;
}

/* config.json's "sequence_length", or 0. */
static gboolean
read_sequence_length (const char *dir, int *length, GError **error)
{
  g_autofree char *path = g_build_filename (dir, GPTD_GPT_DIR_CONFIG, NULL);
  *length = 0;
  g_autoptr (JsonParser) parser = gptd_json_load_file_bounded (path, 0, error);
  if (parser == NULL)
    return FALSE;
  JsonNode *root = json_parser_get_root (parser);
  if (root == NULL || !JSON_NODE_HOLDS_OBJECT (root))
    return TRUE;
  JsonNode *node = json_object_get_member (json_node_get_object (root),
                                           "sequence_length");
  if (node == NULL || JSON_NODE_HOLDS_NULL (node))
    return TRUE;
  if (!JSON_NODE_HOLDS_VALUE (node) ||
      json_node_get_value_type (node) != G_TYPE_INT64 ||
      json_node_get_int (node) < 1 || json_node_get_int (node) > G_MAXINT32)
    {
      g_set_error (error, GPTD_GPT_FILE_ERROR, GPTD_GPT_FILE_ERROR_CONFIG,
                   "%s: sequence_length is not a positive integer", path);
      return FALSE;
    }
  *length = (int) json_node_get_int (node);
  return TRUE;
}

GptdClassifier *
gptd_classifier_load (const char *model_dir, const char *vocab, GError **error)
{
  g_return_val_if_fail (model_dir != NULL, NULL);

  /* A checkpoint root stands for its latest checkpoint. */
  g_autofree char *dir = NULL;
  g_autofree char *config = g_build_filename (model_dir, GPTD_GPT_DIR_CONFIG, NULL);
  g_autofree char *index = g_build_filename (model_dir, GPTD_CHECKPOINT_INDEX, NULL);
  if (!g_file_test (config, G_FILE_TEST_EXISTS) &&
      g_file_test (index, G_FILE_TEST_EXISTS))
    {
      dir = gptd_checkpoint_get_latest (model_dir, error);
      if (dir == NULL)
        return NULL;
    }
  else
    dir = g_strdup (model_dir);

  g_auto (GStrv) labels = NULL;
  g_autofree char *pooling = NULL;
  int sequence_length = 0;
  if (!gptd_gpt_dir_read_labels (dir, &labels, &pooling, error) ||
      !read_sequence_length (dir, &sequence_length, error))
    return NULL;
  GptdGpt *model = gptd_gpt_dir_load (dir, error);
  if (model == NULL)
    return NULL;
  /* A LoRA checkpoint classifies with its adapters merged. */
  if (!gptd_gpt_merge_lora (model, error))
    {
      gptd_gpt_free (model);
      return NULL;
    }
  g_autoptr (GptdBpe) bpe = gptd_bpe_load (vocab != NULL ? vocab : dir, error);
  if (bpe == NULL)
    {
      gptd_gpt_free (model);
      return NULL;
    }
  g_autoptr (GError) local = NULL;
  GptdClassifier *c = gptd_classifier_new (model, bpe, (const char *const *) labels,
                                           pooling, sequence_length, &local);
  if (c == NULL)
    {
      g_set_error (error, GPTD_CLASSIFY_ERROR, local->code, "%s: %s", dir,
                   local->message);
      return NULL;
    }
  if (gptd_bpe_get_n_vocab (bpe) > (guint) c->vocab_size)
    {
      g_set_error (error, GPTD_CLASSIFY_ERROR, GPTD_CLASSIFY_ERROR_TOKENIZER,
                   "the tokenizer %s has %u tokens, more than the vocabulary of %d "
                   "of the model in %s", gptd_bpe_get_source (bpe),
                   gptd_bpe_get_n_vocab (bpe), c->vocab_size, dir);
      gptd_classifier_free (c);
      return NULL;
    }
  return c;
}

void
gptd_classifier_free (GptdClassifier *classifier)
{
  if (classifier == NULL)
    return;
  gptd_gpt_kv_cache_free (classifier->cache);
  gptd_gpt_free (classifier->model);
  gptd_bpe_unref (classifier->bpe);
  g_strfreev (classifier->labels);
  g_free (classifier->pooling);
  g_free (classifier->row);
  g_free (classifier);
}

gboolean
gptd_classifier_set_weight_format (GptdClassifier *classifier,
                                   GptdWeightFormat format, GError **error)
{
  g_return_val_if_fail (classifier != NULL, FALSE);
  if (gptd_gpt_get_weight_format (classifier->model) == format)
    return TRUE;
  g_clear_pointer (&classifier->cache, gptd_gpt_kv_cache_free);
  return gptd_gpt_set_weight_format (classifier->model, format, error);
}

GptdGpt *
gptd_classifier_get_model (GptdClassifier *classifier)
{
  g_return_val_if_fail (classifier != NULL, NULL);
  return classifier->model;
}

int
gptd_classifier_get_n_classes (const GptdClassifier *classifier)
{
  g_return_val_if_fail (classifier != NULL, 0);
  return classifier->n_classes;
}

const char *
gptd_classifier_get_label (const GptdClassifier *classifier, int id)
{
  g_return_val_if_fail (classifier != NULL, NULL);
  g_return_val_if_fail (id >= 0 && id < classifier->n_classes, NULL);
  return classifier->labels[id];
}

const char *
gptd_classifier_get_pooling (const GptdClassifier *classifier)
{
  g_return_val_if_fail (classifier != NULL, NULL);
  return classifier->pooling;
}

int
gptd_classifier_get_sequence_length (const GptdClassifier *classifier)
{
  g_return_val_if_fail (classifier != NULL, 0);
  return classifier->sequence_length;
}

int
gptd_classifier_get_max_length (const GptdClassifier *classifier)
{
  g_return_val_if_fail (classifier != NULL, 0);
  return classifier->max_length;
}

gboolean
gptd_classifier_set_max_length (GptdClassifier *classifier, int max_length,
                                GError **error)
{
  g_return_val_if_fail (classifier != NULL, FALSE);
  if (max_length == 0)
    {
      classifier->max_length = default_max_length (classifier);
      return TRUE;
    }
  if (max_length < 0 || max_length > classifier->context_length)
    {
      g_set_error (error, GPTD_CLASSIFY_ERROR, GPTD_CLASSIFY_ERROR_LENGTH,
                   "max-length %d is outside 1..%d (the model's context)",
                   max_length, classifier->context_length);
      return FALSE;
    }
  classifier->max_length = max_length;
  return TRUE;
}

gint32 *
gptd_classifier_encode (GptdClassifier *classifier, const char *text,
                        gssize len, int *n_ids, GError **error)
{
  g_return_val_if_fail (classifier != NULL && text != NULL, NULL);
  g_return_val_if_fail (n_ids != NULL, NULL);
  if (classifier->bpe == NULL)
    {
      g_set_error (error, GPTD_CLASSIFY_ERROR, GPTD_CLASSIFY_ERROR_TOKENIZER,
                   "the classifier has no tokenizer to encode the text with");
      return NULL;
    }
  GptdBpeEncodeOptions opts = { 0 };
  opts.special = GPTD_BPE_SPECIAL_TEXT;
  opts.invalid = GPTD_BPE_INVALID_REPLACE;
  g_autoptr (GArray) ids = g_array_new (FALSE, FALSE, sizeof (guint32));
  if (!gptd_bpe_encode (classifier->bpe, text, len < 0 ? strlen (text) : (gsize) len,
                        &opts, ids, error))
    return NULL;
  gint32 *out = g_new (gint32, ids->len + 1);
  for (guint i = 0; i < ids->len; i++)
    out[i] = (gint32) g_array_index (ids, guint32, i);
  *n_ids = (int) ids->len;
  return out;
}

int
gptd_classifier_classify_ids (GptdClassifier *c, const gint32 *ids, int n_ids,
                              float *probs, GError **error)
{
  g_return_val_if_fail (c != NULL, -1);
  g_return_val_if_fail (ids != NULL || n_ids == 0, -1);

  if (n_ids < 1)
    {
      g_set_error (error, GPTD_CLASSIFY_ERROR, GPTD_CLASSIFY_ERROR_INPUT,
                   "the text has no token to classify");
      return -1;
    }
  /* classify_review(): the first max_length tokens, padded to max_length for
   * pooling "last"; the last real token needs no padding (causal attention). */
  int n = MIN (n_ids, c->max_length);
  for (int i = 0; i < n; i++)
    {
      if (ids[i] < 0 || ids[i] >= c->vocab_size)
        {
          g_set_error (error, GPTD_CLASSIFY_ERROR, GPTD_CLASSIFY_ERROR_INPUT,
                       "token %d of the text has id %d, outside the vocabulary "
                       "of %d", i, ids[i], c->vocab_size);
          return -1;
        }
      c->row[i] = ids[i];
    }
  int T = n;
  if (!c->last_token)
    {
      if (c->vocab_size <= GPTD_CLASSIFY_PAD_ID)
        {
          g_set_error (error, GPTD_CLASSIFY_ERROR, GPTD_CLASSIFY_ERROR_INPUT,
                       "the padding id %d is outside the vocabulary of %d",
                       GPTD_CLASSIFY_PAD_ID, c->vocab_size);
          return -1;
        }
      for (; T < c->max_length; T++)
        c->row[T] = GPTD_CLASSIFY_PAD_ID;
    }
  const float *logits;
  if (gptd_gpt_get_weight_format (c->model) != GPTD_WEIGHT_FORMAT_FP32)
    {
      /* Converted weights are used by the KV-cache path only: the text is
       * fed through an empty cache, which gives the last position's
       * logits. */
      if (c->cache == NULL)
        {
          c->cache = gptd_gpt_kv_cache_new (c->model, c->max_length, error);
          if (c->cache == NULL)
            return -1;
        }
      gptd_gpt_kv_cache_reset (c->cache);
      logits = gptd_gpt_forward_cached (c->model, c->cache, c->row, T, error);
      if (logits == NULL)
        return -1;
    }
  else
    {
      if (!gptd_gpt_forward (c->model, c->row, NULL, 1, T,
                             GPTD_GPT_FORWARD_LAST_ONLY, NULL, error))
        return -1;
      logits = gptd_gpt_get_logits (c->model, NULL, NULL, NULL);
    }
  int best = 0;
  for (int k = 1; k < c->n_classes; k++)
    if (logits[k] > logits[best])
      best = k;
  if (probs != NULL)
    {
      double sum = 0;
      for (int k = 0; k < c->n_classes; k++)
        sum += exp ((double) logits[k] - logits[best]);
      for (int k = 0; k < c->n_classes; k++)
        probs[k] = (float) (exp ((double) logits[k] - logits[best]) / sum);
    }
  return best;
}

int
gptd_classifier_classify (GptdClassifier *classifier, const char *text, gssize len,
                          float *probs, GError **error)
{
  int n = 0;
  g_autofree gint32 *ids = gptd_classifier_encode (classifier, text, len, &n, error);
  if (ids == NULL)
    return -1;
  return gptd_classifier_classify_ids (classifier, ids, n, probs, error);
}
