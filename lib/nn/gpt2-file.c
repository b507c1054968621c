/* lib/nn/gpt2-file.c: GPT-2 model directories (Hugging Face config.json and
 * model.safetensors, tokenizer files), training state files and crash-safe
 * checkpoints, as described in gptd/gpt2-file.h.
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#include "nn/gpt2-lora-file.h"
#endif

#include <gptd/atomic-file.h>
#include <gptd/gpt2-file.h>
#include <gptd/json-load.h>
#include <gptd/safetensors.h>

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <glib/gstdio.h>
#include <json-glib/json-glib.h>

G_DEFINE_QUARK (gptd-gpt-file-error-quark, gptd_gpt_file_error)

#define TRAINING_STATE_FORMAT "gptd-training-state"
#define TRAINING_STATE_VERSION "1"
#define CHECKPOINT_FORMAT "gptd-checkpoint"
#define CHECKPOINT_VERSION 1

/* How many names an error message lists before "and N more". */
#define MAX_LISTED 8

/* The largest config.json or checkpoint.json read: both are a few hundred bytes. */
#define CONFIG_MAX_SIZE ((gsize) 1 << 20)

/* ------------------------------------------------------------------------ */
/* Helpers */

/* Formats "“a”, “b” and 3 more" from a list of names. */
static char *
format_names (GPtrArray *names)
{
  GString *s = g_string_new (NULL);
  for (guint i = 0; i < names->len && i < MAX_LISTED; i++)
    g_string_append_printf (s, "%s“%s”", i ? ", " : "", (const char *) names->pdata[i]);
  if (names->len > MAX_LISTED)
    g_string_append_printf (s, " and %u more", names->len - MAX_LISTED);
  return g_string_free (s, FALSE);
}

/* "[i, j]", the position of flat index @k in a tensor of shape @shape. */
static char *
format_index (guint n_dims, const size_t *shape, size_t k)
{
  size_t idx[8] = { 0 };
  for (guint d = n_dims; d-- > 0;)
    if (d < G_N_ELEMENTS (idx) && shape[d] > 0)
      {
        idx[d] = k % shape[d];
        k /= shape[d];
      }
  GString *s = g_string_new ("[");
  for (guint d = 0; d < n_dims && d < G_N_ELEMENTS (idx); d++)
    g_string_append_printf (s, "%s%zu", d ? ", " : "", idx[d]);
  g_string_append_c (s, ']');
  return g_string_free (s, FALSE);
}

static char *
format_shape (guint n_dims, const size_t *shape)
{
  GString *s = g_string_new ("[");
  for (guint i = 0; i < n_dims; i++)
    g_string_append_printf (s, "%s%zu", i ? ", " : "", shape[i]);
  g_string_append_c (s, ']');
  return g_string_free (s, FALSE);
}

static int
compare_str_ptrs (gconstpointer a, gconstpointer b)
{
  return strcmp (*(const char * const *) a, *(const char * const *) b);
}

/* Formats a float in the fewest digits that read back as the same float: 0.1f is
 * written 0.1, not 0.100000001. */
static char *
format_float (double v)
{
  char buf[G_ASCII_DTOSTR_BUF_SIZE];
  const float f = (float) v;
  for (int digits = 1; digits <= 9; digits++)
    {
      char fmt[8];
      g_snprintf (fmt, sizeof fmt, "%%.%dg", digits);
      g_ascii_formatd (buf, sizeof buf, fmt, v);
      if ((float) g_ascii_strtod (buf, NULL) == f)
        break;
    }
  return g_strdup (buf);
}

/* Reads a whole small file, with an error naming it. */
static gboolean
read_text_file (const char *path, char **contents, gsize *length, GError **error)
{
  g_autoptr (GError) local = NULL;
  if (!g_file_get_contents (path, contents, length, &local))
    {
      g_set_error (error, GPTD_GPT_FILE_ERROR, GPTD_GPT_FILE_ERROR_IO,
                   "%s", local->message);
      return FALSE;
    }
  return TRUE;
}

/* ------------------------------------------------------------------------ */
/* config.json */

static void config_error (GError **error, const char *filename, const char *key,
                          const char *format, ...) G_GNUC_PRINTF (4, 5);

static void
config_error (GError    **error,
              const char *filename,
              const char *key,
              const char *format,
              ...)
{
  va_list args;
  va_start (args, format);
  g_autofree char *msg = g_strdup_vprintf (format, args);
  va_end (args);
  g_set_error (error, GPTD_GPT_FILE_ERROR, GPTD_GPT_FILE_ERROR_CONFIG,
               "%s: key “%s”: %s", filename ? filename : "config.json", key, msg);
}

static gboolean
node_is_null (JsonNode *node)
{
  return node == NULL || JSON_NODE_HOLDS_NULL (node);
}

/* Reads an integer key; *found tells whether it was there. */
static gboolean
get_int (JsonObject *obj, const char *key, const char *filename, int *out,
         gboolean *found, GError **error)
{
  JsonNode *node = json_object_get_member (obj, key);
  *found = FALSE;
  if (node_is_null (node))
    return TRUE;
  if (!JSON_NODE_HOLDS_VALUE (node) || json_node_get_value_type (node) != G_TYPE_INT64)
    {
      config_error (error, filename, key, "not an integer");
      return FALSE;
    }
  gint64 v = json_node_get_int (node);
  if (v < G_MININT || v > G_MAXINT)
    {
      config_error (error, filename, key, "%" G_GINT64_FORMAT " is out of range", v);
      return FALSE;
    }
  *out = (int) v;
  *found = TRUE;
  return TRUE;
}

static gboolean
get_number (JsonObject *obj, const char *key, const char *filename, double *out,
            gboolean *found, GError **error)
{
  JsonNode *node = json_object_get_member (obj, key);
  *found = FALSE;
  if (node_is_null (node))
    return TRUE;
  if (!JSON_NODE_HOLDS_VALUE (node)
      || (json_node_get_value_type (node) != G_TYPE_INT64
          && json_node_get_value_type (node) != G_TYPE_DOUBLE))
    {
      config_error (error, filename, key, "not a number");
      return FALSE;
    }
  *out = json_node_get_double (node);
  *found = TRUE;
  return TRUE;
}

static gboolean
get_bool (JsonObject *obj, const char *key, const char *filename, gboolean *out,
          gboolean *found, GError **error)
{
  JsonNode *node = json_object_get_member (obj, key);
  *found = FALSE;
  if (node_is_null (node))
    return TRUE;
  if (!JSON_NODE_HOLDS_VALUE (node) || json_node_get_value_type (node) != G_TYPE_BOOLEAN)
    {
      config_error (error, filename, key, "not true or false");
      return FALSE;
    }
  *out = json_node_get_boolean (node);
  *found = TRUE;
  return TRUE;
}

static gboolean
get_string (JsonObject *obj, const char *key, const char *filename,
            const char **out, GError **error)
{
  JsonNode *node = json_object_get_member (obj, key);
  *out = NULL;
  if (node_is_null (node))
    return TRUE;
  if (!JSON_NODE_HOLDS_VALUE (node) || json_node_get_value_type (node) != G_TYPE_STRING)
    {
      config_error (error, filename, key, "not a string");
      return FALSE;
    }
  *out = json_node_get_string (node);
  return TRUE;
}

gboolean
gptd_gpt_config_is_classifier (JsonObject *obj)
{
  JsonNode *node = json_object_get_member (obj, "architectures");
  if (node != NULL && JSON_NODE_HOLDS_ARRAY (node))
    {
      JsonArray *a = json_node_get_array (node);
      for (guint i = 0; i < json_array_get_length (a); i++)
        {
          JsonNode *e = json_array_get_element (a, i);
          if (JSON_NODE_HOLDS_VALUE (e)
              && json_node_get_value_type (e) == G_TYPE_STRING
              && strcmp (json_node_get_string (e), "GPT2ForSequenceClassification") == 0)
            return TRUE;
        }
    }
  node = json_object_get_member (obj, "num_labels");
  return node != NULL && !node_is_null (node);
}

gboolean
gptd_gpt_config_from_json (const char    *json,
                           gssize         length,
                           const char    *filename,
                           GptdGptConfig *config,
                           guint         *explicit_flags,
                           GError       **error)
{
  g_return_val_if_fail (json != NULL, FALSE);
  g_return_val_if_fail (config != NULL, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  const char *fname = filename ? filename : "config.json";
  g_autoptr (GError) json_error = NULL;
  g_autoptr (JsonParser) parser = gptd_json_load_bounded (json, length, fname,
                                                          CONFIG_MAX_SIZE, &json_error);
  if (parser == NULL)
    {
      g_set_error_literal (error, GPTD_GPT_FILE_ERROR, GPTD_GPT_FILE_ERROR_CONFIG,
                           json_error->message);
      return FALSE;
    }
  JsonNode *root = json_parser_get_root (parser);
  if (root == NULL || !JSON_NODE_HOLDS_OBJECT (root))
    {
      g_set_error (error, GPTD_GPT_FILE_ERROR, GPTD_GPT_FILE_ERROR_CONFIG,
                   "%s: not a JSON object", fname);
      return FALSE;
    }
  JsonObject *obj = json_node_get_object (root);

  GptdGptConfig c = { 0 };
  gboolean found;
  guint flags = 0;

  /* Required sizes. */
  static const struct { const char *key; size_t offset; } sizes[] = {
    { "n_layer", G_STRUCT_OFFSET (GptdGptConfig, n_layer) },
    { "n_head", G_STRUCT_OFFSET (GptdGptConfig, n_head) },
    { "n_embd", G_STRUCT_OFFSET (GptdGptConfig, n_embd) },
    { "vocab_size", G_STRUCT_OFFSET (GptdGptConfig, vocab_size) },
  };
  for (size_t i = 0; i < G_N_ELEMENTS (sizes); i++)
    {
      int *field = G_STRUCT_MEMBER_P (&c, sizes[i].offset);
      if (!get_int (obj, sizes[i].key, fname, field, &found, error))
        return FALSE;
      if (!found)
        {
          config_error (error, fname, sizes[i].key, "missing");
          return FALSE;
        }
    }
  if (!get_int (obj, "n_positions", fname, &c.context_length, &found, error))
    return FALSE;
  if (!found)
    {
      if (!get_int (obj, "n_ctx", fname, &c.context_length, &found, error))
        return FALSE;
      if (!found)
        {
          config_error (error, fname, "n_positions", "missing (and no “n_ctx” either)");
          return FALSE;
        }
    }

  /* What gptd's model can run. */
  const char *s;
  if (!get_string (obj, "model_type", fname, &s, error))
    return FALSE;
  if (s != NULL && strcmp (s, "gpt2") != 0)
    {
      config_error (error, fname, "model_type", "“%s” is not a GPT-2 model", s);
      return FALSE;
    }
  if (!get_string (obj, "activation_function", fname, &s, error))
    return FALSE;
  if (s != NULL && strcmp (s, "gelu_new") != 0 && strcmp (s, "gelu_pytorch_tanh") != 0
      && strcmp (s, "gelu_fast") != 0)
    {
      config_error (error, fname, "activation_function",
                    "“%s” is not supported; gptd uses the tanh approximation of GELU "
                    "(“gelu_new”)", s);
      return FALSE;
    }
  int n_inner;
  if (!get_int (obj, "n_inner", fname, &n_inner, &found, error))
    return FALSE;
  if (found && (gint64) n_inner != 4 * (gint64) c.n_embd)
    {
      config_error (error, fname, "n_inner", "%d is not 4 * n_embd (%" G_GINT64_FORMAT "); "
                    "gptd's MLP is 4x wide", n_inner, 4 * (gint64) c.n_embd);
      return FALSE;
    }
  gboolean b;
  if (!get_bool (obj, "scale_attn_weights", fname, &b, &found, error))
    return FALSE;
  if (found && !b)
    {
      config_error (error, fname, "scale_attn_weights", "false is not supported");
      return FALSE;
    }
  if (!get_bool (obj, "scale_attn_by_inverse_layer_idx", fname, &b, &found, error))
    return FALSE;
  if (found && b)
    {
      config_error (error, fname, "scale_attn_by_inverse_layer_idx", "true is not supported");
      return FALSE;
    }

  /* Options. */
  double d;
  c.layer_norm_epsilon = 1e-5f;
  if (!get_number (obj, "layer_norm_epsilon", fname, &d, &found, error))
    return FALSE;
  if (found)
    c.layer_norm_epsilon = (float) d;

  c.qkv_bias = TRUE;
  if (!get_bool (obj, "qkv_bias", fname, &c.qkv_bias, &found, error))
    return FALSE;
  if (found)
    flags |= GPTD_GPT_CONFIG_EXPLICIT_QKV_BIAS;
  c.tie_embeddings = TRUE;
  if (!get_bool (obj, "tie_word_embeddings", fname, &c.tie_embeddings, &found, error))
    return FALSE;
  if (found)
    flags |= GPTD_GPT_CONFIG_EXPLICIT_TIE;
  c.head_bias = FALSE;
  if (!get_bool (obj, "head_bias", fname, &c.head_bias, &found, error))
    return FALSE;
  if (found)
    flags |= GPTD_GPT_CONFIG_EXPLICIT_HEAD_BIAS;
  c.n_out = 0;
  if (!get_int (obj, "n_out", fname, &c.n_out, &found, error))
    return FALSE;
  if (found && c.n_out == c.vocab_size)
    c.n_out = 0;

  /* Hugging Face's GPT2ForSequenceClassification: a head of num_labels rows
   * (score.weight), never tied; its size is num_labels, else id2label's. */
  if (gptd_gpt_config_is_classifier (obj))
    {
      int num_labels = 0;
      if (!get_int (obj, "num_labels", fname, &num_labels, &found, error))
        return FALSE;
      if (!found)
        {
          JsonNode *node = json_object_get_member (obj, "id2label");
          if (node != NULL && JSON_NODE_HOLDS_OBJECT (node))
            num_labels = (int) json_object_get_size (json_node_get_object (node));
        }
      if (num_labels < 1)
        {
          config_error (error, fname, "num_labels",
                        "a sequence classifier needs num_labels (or id2label) of "
                        "at least one class");
          return FALSE;
        }
      c.n_out = num_labels;
      c.tie_embeddings = FALSE;
      flags |= GPTD_GPT_CONFIG_EXPLICIT_TIE;
    }

  c.dropout = 0.1f;
  if (!get_number (obj, "resid_pdrop", fname, &d, &found, error))
    return FALSE;
  if (found)
    c.dropout = (float) d;
  if (!get_number (obj, "dropout", fname, &d, &found, error))
    return FALSE;
  if (found)
    c.dropout = (float) d;

  g_autoptr (GError) invalid = NULL;
  if (!gptd_gpt_config_validate (&c, &invalid))
    {
      g_set_error (error, invalid->domain, invalid->code, "%s: %s", fname, invalid->message);
      return FALSE;
    }
  *config = c;
  if (explicit_flags != NULL)
    *explicit_flags = flags;
  return TRUE;
}

/* Appends @str as a JSON string. */
static void
append_json_string (GString *s, const char *str)
{
  g_autoptr (JsonNode) node = json_node_new (JSON_NODE_VALUE);
  json_node_set_string (node, str);
  g_autofree char *text = json_to_string (node, FALSE);
  g_string_append (s, text);
}

/* The keys of a sequence classifier: num_labels, id2label and label2id (the
 * names given, else LABEL_i as Hugging Face names them), the pooling. */
static void
append_classifier_keys (GString *s, int n_out, const char *const *labels,
                        const char *pooling, int sequence_length)
{
  g_string_append_printf (s, "  \"num_labels\": %d,\n", n_out);
  for (int pass = 0; pass < 2; pass++)
    {
      g_string_append (s, pass == 0 ? "  \"id2label\": {" : "  \"label2id\": {");
      for (int i = 0; i < n_out; i++)
        {
          g_autofree char *fallback = g_strdup_printf ("LABEL_%d", i);
          gboolean named = labels != NULL && g_strv_length ((char **) labels) == (guint) n_out;
          const char *name = named ? labels[i] : fallback;
          g_autofree char *id = g_strdup_printf ("%d", i);
          g_string_append (s, i > 0 ? ", " : "");
          append_json_string (s, pass == 0 ? id : name);
          g_string_append (s, ": ");
          if (pass == 0)
            append_json_string (s, name);
          else
            g_string_append (s, id);
        }
      g_string_append (s, "},\n");
    }
  if (pooling != NULL)
    {
      g_string_append (s, "  \"pooling\": ");
      append_json_string (s, pooling);
      g_string_append (s, ",\n");
      /* Hugging Face pools at the last token that is not padding. */
      if (strcmp (pooling, "last-token") == 0)
        g_string_append (s, "  \"pad_token_id\": 50256,\n");
    }
  if (sequence_length > 0)
    g_string_append_printf (s, "  \"sequence_length\": %d,\n", sequence_length);
}

char *
gptd_gpt_config_to_json (const GptdGptConfig *config)
{
  return gptd_gpt_config_to_json_classifier (config, NULL, NULL, 0);
}

char *
gptd_gpt_config_to_json_classifier (const GptdGptConfig *config,
                                    const char *const   *labels,
                                    const char          *pooling,
                                    int                  sequence_length)
{
  g_return_val_if_fail (config != NULL, NULL);

  const GptdGptConfig *c = config;
  int n_out = c->n_out ? c->n_out : c->vocab_size;
  gboolean classifier = c->n_out != 0 && !c->tie_embeddings;
  g_autofree char *eps = format_float (c->layer_norm_epsilon);
  g_autofree char *drop = format_float (c->dropout);
  GString *s = g_string_new ("{\n");
  g_string_append (s, "  \"model_type\": \"gpt2\",\n");
  if (classifier)
    {
      g_string_append (s, "  \"architectures\": [\"GPT2ForSequenceClassification\"],\n");
      append_classifier_keys (s, n_out, labels, pooling, sequence_length);
    }
  else
    g_string_append (s, "  \"architectures\": [\"GPT2LMHeadModel\"],\n");
  g_string_append_printf (s, "  \"n_layer\": %d,\n", c->n_layer);
  g_string_append_printf (s, "  \"n_head\": %d,\n", c->n_head);
  g_string_append_printf (s, "  \"n_embd\": %d,\n", c->n_embd);
  g_string_append_printf (s, "  \"n_positions\": %d,\n", c->context_length);
  g_string_append_printf (s, "  \"n_ctx\": %d,\n", c->context_length);
  g_string_append_printf (s, "  \"vocab_size\": %d,\n", c->vocab_size);
  g_string_append (s, "  \"n_inner\": null,\n");
  g_string_append (s, "  \"activation_function\": \"gelu_new\",\n");
  g_string_append_printf (s, "  \"layer_norm_epsilon\": %s,\n", eps);
  g_string_append_printf (s, "  \"resid_pdrop\": %s,\n", drop);
  g_string_append_printf (s, "  \"embd_pdrop\": %s,\n", drop);
  g_string_append_printf (s, "  \"attn_pdrop\": %s,\n", drop);
  g_string_append_printf (s, "  \"tie_word_embeddings\": %s,\n", c->tie_embeddings ? "true" : "false");
  g_string_append_printf (s, "  \"qkv_bias\": %s,\n", c->qkv_bias ? "true" : "false");
  g_string_append_printf (s, "  \"head_bias\": %s,\n", c->head_bias ? "true" : "false");
  g_string_append_printf (s, "  \"n_out\": %d,\n", n_out);
  g_string_append_printf (s, "  \"dropout\": %s\n", drop);
  g_string_append (s, "}\n");
  return g_string_free (s, FALSE);
}

/* ------------------------------------------------------------------------ */
/* Loading weights */

/* Whether @name is one of the attention mask buffers Hugging Face stores
 * (h.N.attn.bias, h.N.attn.masked_bias): not parameters. */
static gboolean
is_attention_buffer (const char *name)
{
  if (!g_str_has_prefix (name, "h."))
    return FALSE;
  const char *p = name + 2;
  if (!g_ascii_isdigit (*p))
    return FALSE;
  while (g_ascii_isdigit (*p))
    p++;
  return strcmp (p, ".attn.bias") == 0 || strcmp (p, ".attn.masked_bias") == 0;
}

static gboolean
is_float_dtype (GptdSafetensorsDtype dtype)
{
  return dtype == GPTD_SAFETENSORS_DTYPE_F32 || dtype == GPTD_SAFETENSORS_DTYPE_F16
         || dtype == GPTD_SAFETENSORS_DTYPE_BF16 || dtype == GPTD_SAFETENSORS_DTYPE_F64;
}

/* Maps the stored parameter names, without a "transformer." prefix and
 * without attention buffers, to the file's tensors. */
static GHashTable *
index_stored_tensors (GptdSafetensors *st, GError **error)
{
  g_autoptr (GHashTable) map = g_hash_table_new (g_str_hash, g_str_equal);
  guint n = gptd_safetensors_get_n_tensors (st);
  for (guint i = 0; i < n; i++)
    {
      const GptdSafetensorsTensor *t = gptd_safetensors_get_tensor (st, i);
      const char *name = t->name;
      if (g_str_has_prefix (name, "transformer."))
        name += strlen ("transformer.");
      if (is_attention_buffer (name))
        continue;
      /* A sequence classifier's head (Hugging Face's score) is the model's. */
      if (strcmp (name, "score.weight") == 0)
        name = "lm_head.weight";
      else if (strcmp (name, "score.bias") == 0)
        name = "lm_head.bias";
      const GptdSafetensorsTensor *other = g_hash_table_lookup (map, name);
      if (other != NULL)
        {
          g_set_error (error, GPTD_GPT_FILE_ERROR, GPTD_GPT_FILE_ERROR_UNEXPECTED,
                       "%s: tensor “%s” is stored twice (as “%s” and “%s”)",
                       gptd_safetensors_get_path (st), name, other->name, t->name);
          return NULL;
        }
      g_hash_table_insert (map, (gpointer) name, (gpointer) t);
    }
  return g_steal_pointer (&map);
}

/* One tensor a configuration needs: its name and shape (as gptd_gpt_new() lays
 * the parameters out). */
typedef struct {
  char *name;
  guint n_dims;
  size_t shape[2];
} NeededTensor;

static void
needed_add (GArray *needed, char *name, guint n_dims, size_t d0, size_t d1)
{
  NeededTensor t = { name, n_dims, { d0, d1 } };
  g_array_append_val (needed, t);
}

static void
needed_tensor_clear (gpointer data)
{
  g_free (((NeededTensor *) data)->name);
}

/* The tensors a (validated) configuration needs, without creating the model. */
static GArray *
needed_tensors (const GptdGptConfig *c)
{
  GArray *needed = g_array_new (FALSE, FALSE, sizeof (NeededTensor));
  g_array_set_clear_func (needed, needed_tensor_clear);
  size_t C = (size_t) c->n_embd;
  size_t n_out = c->n_out ? (size_t) c->n_out : (size_t) c->vocab_size;
  needed_add (needed, g_strdup ("wte.weight"), 2, (size_t) c->vocab_size, C);
  needed_add (needed, g_strdup ("wpe.weight"), 2, (size_t) c->context_length, C);
  for (int l = 0; l < c->n_layer; l++)
    {
#define N(suffix, nd, a, b) needed_add (needed, g_strdup_printf ("h.%d.%s", l, suffix), nd, a, b)
      N ("ln_1.weight", 1, C, 0);
      N ("ln_1.bias", 1, C, 0);
      N ("attn.c_attn.weight", 2, C, 3 * C);
      if (c->qkv_bias)
        N ("attn.c_attn.bias", 1, 3 * C, 0);
      N ("attn.c_proj.weight", 2, C, C);
      N ("attn.c_proj.bias", 1, C, 0);
      N ("ln_2.weight", 1, C, 0);
      N ("ln_2.bias", 1, C, 0);
      N ("mlp.c_fc.weight", 2, C, 4 * C);
      N ("mlp.c_fc.bias", 1, 4 * C, 0);
      N ("mlp.c_proj.weight", 2, 4 * C, C);
      N ("mlp.c_proj.bias", 1, C, 0);
#undef N
    }
  needed_add (needed, g_strdup ("ln_f.weight"), 1, C, 0);
  needed_add (needed, g_strdup ("ln_f.bias"), 1, C, 0);
  if (!c->tie_embeddings)
    needed_add (needed, g_strdup ("lm_head.weight"), 2, n_out, C);
  if (c->head_bias)
    needed_add (needed, g_strdup ("lm_head.bias"), 1, n_out, 0);
  return needed;
}

/* Checks a configuration against the tensors stored before the model is
 * created: every tensor it needs must be stored with its shape, so a small
 * config.json cannot make gptd allocate more than the weights file holds. */
static gboolean
check_config_against_stored (const GptdGptConfig *config, const char *config_path,
                             GptdSafetensors *st, GHashTable *stored, GError **error)
{
  const char *path = gptd_safetensors_get_path (st);
  g_autoptr (GError) local = NULL;
  if (!gptd_gpt_config_validate (config, &local))
    {
      g_set_error (error, local->domain, local->code, "%s: %s", config_path, local->message);
      return FALSE;
    }

  /* Layers first: the likeliest mismatch, said plainly. */
  int stored_layers = 0;
  for (;; stored_layers++)
    {
      g_autofree char *name = g_strdup_printf ("h.%d.ln_1.weight", stored_layers);
      if (!g_hash_table_contains (stored, name))
        break;
    }
  if (config->n_layer > stored_layers)
    {
      g_set_error (error, GPTD_GPT_FILE_ERROR, GPTD_GPT_FILE_ERROR_MISSING,
                   "%s: n_layer is %d, but %s holds %d layer%s (no tensor “h.%d.ln_1.weight”)",
                   config_path, config->n_layer, path, stored_layers,
                   stored_layers == 1 ? "" : "s", stored_layers);
      return FALSE;
    }

  g_autoptr (GArray) needed = needed_tensors (config);
  g_autoptr (GPtrArray) missing = g_ptr_array_new ();
  for (guint i = 0; i < needed->len; i++)
    {
      const NeededTensor *t = &g_array_index (needed, NeededTensor, i);
      if (!g_hash_table_contains (stored, t->name))
        g_ptr_array_add (missing, t->name);
    }
  if (missing->len > 0)
    {
      g_autofree char *names = format_names (missing);
      g_set_error (error, GPTD_GPT_FILE_ERROR, GPTD_GPT_FILE_ERROR_MISSING,
                   "%s: %u tensor%s the configuration needs %s missing: %s",
                   path, missing->len, missing->len == 1 ? "" : "s",
                   missing->len == 1 ? "is" : "are", names);
      return FALSE;
    }
  for (guint i = 0; i < needed->len; i++)
    {
      const NeededTensor *t = &g_array_index (needed, NeededTensor, i);
      const GptdSafetensorsTensor *s = g_hash_table_lookup (stored, t->name);
      gboolean same = s->n_dims == t->n_dims;
      for (guint d = 0; same && d < t->n_dims; d++)
        same = s->shape[d] == t->shape[d];
      if (!same)
        {
          g_autofree char *have = format_shape (s->n_dims, s->shape);
          g_autofree char *want = format_shape (t->n_dims, t->shape);
          g_set_error (error, GPTD_GPT_FILE_ERROR, GPTD_GPT_FILE_ERROR_SHAPE,
                       "%s: tensor “%s” has shape %s, but the configuration gives it %s",
                       path, s->name, have, want);
          return FALSE;
        }
    }
  return TRUE;
}

/* Checks the stored tensors against the model, then copies them in. */
static gboolean
load_weights (GptdGpt *model, GptdSafetensors *st, GHashTable *stored, GError **error)
{
  const char *path = gptd_safetensors_get_path (st);
  const GptdGptConfig *config = gptd_gpt_get_config (model);
  guint n = gptd_gpt_n_tensors (model);

  /* A tied model may find a redundant copy of wte stored as the head. */
  const GptdSafetensorsTensor *head = g_hash_table_lookup (stored, "lm_head.weight");
  gboolean skip_head = FALSE;
  if (config->tie_embeddings && head != NULL
      && gptd_gpt_lookup_tensor (model, "lm_head.weight") == NULL)
    {
      const GptdSafetensorsTensor *wte = g_hash_table_lookup (stored, "wte.weight");
      if (wte == NULL || wte->dtype != head->dtype || wte->n_bytes != head->n_bytes
          || wte->n_dims != head->n_dims
          || memcmp (wte->shape, head->shape, head->n_dims * sizeof (size_t)) != 0
          || memcmp (wte->data, head->data, head->n_bytes) != 0)
        {
          g_set_error (error, GPTD_GPT_FILE_ERROR, GPTD_GPT_FILE_ERROR_UNEXPECTED,
                       "%s: tensor “lm_head.weight” is stored, but the configuration "
                       "ties the head to “wte.weight” and the two differ "
                       "(set tie_word_embeddings to false to load a separate head)",
                       path);
          return FALSE;
        }
      skip_head = TRUE;
    }

  /* Missing tensors. */
  g_autoptr (GPtrArray) missing = g_ptr_array_new ();
  for (guint i = 0; i < n; i++)
    {
      const GptdNnTensor *t = gptd_gpt_get_tensor (model, i);
      if (!g_hash_table_contains (stored, t->name))
        g_ptr_array_add (missing, (gpointer) t->name);
    }
  if (missing->len > 0)
    {
      g_autofree char *names = format_names (missing);
      g_set_error (error, GPTD_GPT_FILE_ERROR, GPTD_GPT_FILE_ERROR_MISSING,
                   "%s: %u tensor%s the configuration needs %s missing: %s",
                   path, missing->len, missing->len == 1 ? "" : "s",
                   missing->len == 1 ? "is" : "are", names);
      return FALSE;
    }

  /* Unexpected tensors. */
  g_autoptr (GPtrArray) unexpected = g_ptr_array_new ();
  GHashTableIter iter;
  gpointer key, value;
  g_hash_table_iter_init (&iter, stored);
  while (g_hash_table_iter_next (&iter, &key, &value))
    {
      if (skip_head && strcmp (key, "lm_head.weight") == 0)
        continue;
      if (gptd_gpt_lookup_tensor (model, key) == NULL)
        g_ptr_array_add (unexpected, (gpointer) ((const GptdSafetensorsTensor *) value)->name);
    }
  if (unexpected->len > 0)
    {
      g_ptr_array_sort (unexpected, compare_str_ptrs);
      g_autofree char *names = format_names (unexpected);
      g_set_error (error, GPTD_GPT_FILE_ERROR, GPTD_GPT_FILE_ERROR_UNEXPECTED,
                   "%s: %u stored tensor%s not part of the model: %s",
                   path, unexpected->len, unexpected->len == 1 ? " is" : "s are", names);
      return FALSE;
    }

  /* Shapes and dtypes. */
  for (guint i = 0; i < n; i++)
    {
      const GptdNnTensor *t = gptd_gpt_get_tensor (model, i);
      const GptdSafetensorsTensor *s = g_hash_table_lookup (stored, t->name);
      gboolean same = s->n_dims == (guint) t->ndim;
      for (int d = 0; same && d < t->ndim; d++)
        same = s->shape[d] == t->shape[d];
      if (!same)
        {
          g_autofree char *have = format_shape (s->n_dims, s->shape);
          g_autofree char *want = format_shape ((guint) t->ndim, t->shape);
          g_set_error (error, GPTD_GPT_FILE_ERROR, GPTD_GPT_FILE_ERROR_SHAPE,
                       "%s: tensor “%s” has shape %s, but the configuration gives it %s",
                       path, s->name, have, want);
          return FALSE;
        }
      if (!is_float_dtype (s->dtype))
        {
          g_set_error (error, GPTD_SAFETENSORS_ERROR, GPTD_SAFETENSORS_ERROR_DTYPE,
                       "%s: tensor “%s” has dtype %s; parameters must be F32, F16, BF16 or F64",
                       path, s->name, gptd_safetensors_dtype_to_string (s->dtype));
          return FALSE;
        }
    }

  /* Everything fits: copy (converting where needed). */
  for (guint i = 0; i < n; i++)
    {
      const GptdNnTensor *t = gptd_gpt_get_tensor (model, i);
      const GptdSafetensorsTensor *s = g_hash_table_lookup (stored, t->name);
      if (!gptd_safetensors_tensor_to_f32 (st, s, t->data, error))
        return FALSE; /* not reached: the dtype was checked */
      /* A NaN or infinite weight makes every output NaN, and training on it
       * only spreads it: refused, by name. */
      for (size_t k = 0; k < t->numel; k++)
        if (!isfinite (t->data[k]))
          {
            g_autofree char *at = format_index ((guint) t->ndim, t->shape, k);
            g_set_error (error, GPTD_GPT_FILE_ERROR, GPTD_GPT_FILE_ERROR_NOT_FINITE,
                         "%s: tensor “%s” holds %g at %s: weights must be finite numbers",
                         path, s->name, (double) t->data[k], at);
            return FALSE;
          }
    }
  return TRUE;
}

gboolean
gptd_gpt_dir_load_weights (GptdGpt *model, const char *path, GError **error)
{
  g_return_val_if_fail (model != NULL, FALSE);
  g_return_val_if_fail (path != NULL, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  g_autoptr (GptdSafetensors) st = gptd_safetensors_open (path, error);
  if (st == NULL)
    return FALSE;
  g_autoptr (GHashTable) stored = index_stored_tensors (st, error);
  if (stored == NULL)
    return FALSE;
  return load_weights (model, st, stored, error);
}

GptdGpt *
gptd_gpt_dir_load (const char *dir, GError **error)
{
  g_return_val_if_fail (dir != NULL, NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  g_autofree char *config_path = g_build_filename (dir, GPTD_GPT_DIR_CONFIG, NULL);
  g_autofree char *index_path = g_build_filename (dir, GPTD_CHECKPOINT_INDEX, NULL);
  if (!g_file_test (config_path, G_FILE_TEST_EXISTS)
      && g_file_test (index_path, G_FILE_TEST_EXISTS))
    {
      g_autofree char *latest = gptd_checkpoint_get_latest (dir, error);
      if (latest == NULL)
        return NULL;
      return gptd_gpt_dir_load (latest, error);
    }

  if (gptd__gpt_dir_is_adapter (dir))
    return gptd__gpt_dir_load_adapter (dir, error);

  g_autofree char *json = NULL;
  gsize json_len;
  if (!read_text_file (config_path, &json, &json_len, error))
    return NULL;
  GptdGptConfig config;
  guint explicit_flags;
  if (!gptd_gpt_config_from_json (json, (gssize) json_len, config_path, &config,
                                  &explicit_flags, error))
    return NULL;
  int lora_rank;
  float lora_alpha;
  if (!gptd__lora_json_read_keys (json, json_len, config_path, &lora_rank, &lora_alpha,
                                  error))
    return NULL;

  g_autofree char *weights_path = g_build_filename (dir, GPTD_GPT_DIR_WEIGHTS, NULL);
  g_autoptr (GptdSafetensors) st = gptd_safetensors_open (weights_path, error);
  if (st == NULL)
    return NULL;
  g_autoptr (GHashTable) stored = index_stored_tensors (st, error);
  if (stored == NULL)
    return NULL;

  /* Options config.json leaves open follow what is stored. */
  if (!(explicit_flags & GPTD_GPT_CONFIG_EXPLICIT_QKV_BIAS))
    config.qkv_bias = g_hash_table_contains (stored, "h.0.attn.c_attn.bias");
  if (!(explicit_flags & GPTD_GPT_CONFIG_EXPLICIT_TIE))
    config.tie_embeddings = !g_hash_table_contains (stored, "lm_head.weight");
  if (!(explicit_flags & GPTD_GPT_CONFIG_EXPLICIT_HEAD_BIAS))
    config.head_bias = g_hash_table_contains (stored, "lm_head.bias");

  if (!check_config_against_stored (&config, config_path, st, stored, error))
    return NULL;
  g_autoptr (GError) local = NULL;
  g_autoptr (GptdGpt) model = gptd_gpt_new (&config, &local);
  if (model == NULL)
    {
      g_set_error (error, local->domain, local->code, "%s: %s", config_path, local->message);
      return NULL;
    }
  /* A model with LoRA adapters (a checkpoint of a LoRA run) stores them too. */
  if (lora_rank > 0 && !gptd_gpt_add_lora (model, lora_rank, lora_alpha, 0, &local))
    {
      g_set_error (error, local->domain, local->code, "%s: %s", config_path, local->message);
      return NULL;
    }
  if (!load_weights (model, st, stored, error))
    return NULL;
  return g_steal_pointer (&model);
}

gboolean
gptd_gpt_dir_read_labels (const char *dir, char ***labels, char **pooling, GError **error)
{
  g_return_val_if_fail (dir != NULL, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  if (labels != NULL)
    *labels = NULL;
  if (pooling != NULL)
    *pooling = NULL;
  g_autofree char *path = g_build_filename (dir, GPTD_GPT_DIR_CONFIG, NULL);
  g_autofree char *json = NULL;
  gsize len;
  if (!read_text_file (path, &json, &len, error))
    return FALSE;
  g_autoptr (GError) local = NULL;
  g_autoptr (JsonParser) parser = gptd_json_load_bounded (json, (gssize) len, path, 0, &local);
  if (parser == NULL)
    {
      /* The message begins with the file's name. */
      g_set_error_literal (error, GPTD_GPT_FILE_ERROR, GPTD_GPT_FILE_ERROR_CONFIG,
                           local->message);
      return FALSE;
    }
  JsonNode *root = json_parser_get_root (parser);
  if (root == NULL || !JSON_NODE_HOLDS_OBJECT (root))
    {
      g_set_error (error, GPTD_GPT_FILE_ERROR, GPTD_GPT_FILE_ERROR_CONFIG,
                   "%s: not a JSON object", path);
      return FALSE;
    }
  JsonObject *obj = json_node_get_object (root);
  const char *p = NULL;
  if (!get_string (obj, "pooling", path, &p, error))
    return FALSE;
  JsonNode *node = json_object_get_member (obj, "id2label");
  g_auto (GStrv) names = NULL;
  if (node != NULL && JSON_NODE_HOLDS_OBJECT (node))
    {
      JsonObject *map = json_node_get_object (node);
      guint n = json_object_get_size (map);
      names = g_new0 (char *, n + 1);
      for (guint i = 0; i < n; i++)
        {
          char key[16];
          g_snprintf (key, sizeof key, "%u", i);
          JsonNode *v = json_object_get_member (map, key);
          if (v == NULL || !JSON_NODE_HOLDS_VALUE (v)
              || json_node_get_value_type (v) != G_TYPE_STRING)
            {
              config_error (error, path, "id2label",
                            "needs a string for every id from 0 to %u (none for %s)",
                            n - 1, key);
              return FALSE;
            }
          names[i] = g_strdup (json_node_get_string (v));
        }
    }
  if (labels != NULL)
    *labels = g_steal_pointer (&names);
  if (pooling != NULL)
    *pooling = g_strdup (p);
  return TRUE;
}

/* ------------------------------------------------------------------------ */
/* Saving a model directory */

static gboolean
make_dir (const char *dir, GError **error)
{
  if (g_mkdir_with_parents (dir, 0755) < 0)
    {
      int errsv = errno;
      g_set_error (error, GPTD_GPT_FILE_ERROR, GPTD_GPT_FILE_ERROR_IO,
                   "Cannot create directory “%s”: %s", dir, g_strerror (errsv));
      return FALSE;
    }
  return TRUE;
}

gboolean
gptd_gpt_dir_save (GptdGpt    *model,
                   const char *dir,
                   const char *vocab_json,
                   const char *merges_txt,
                   GError    **error)
{
  return gptd_gpt_dir_save_classifier (model, dir, vocab_json, merges_txt, NULL, NULL, 0,
                                       error);
}

gboolean
gptd_gpt_dir_save_classifier (GptdGpt           *model,
                              const char        *dir,
                              const char        *vocab_json,
                              const char        *merges_txt,
                              const char *const *labels,
                              const char        *pooling,
                              int                sequence_length,
                              GError           **error)
{
  g_return_val_if_fail (model != NULL, FALSE);
  g_return_val_if_fail (dir != NULL, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  if (!make_dir (dir, error))
    return FALSE;

  /* The weights first, then the configuration, then the tokenizer. */
  const GptdGptConfig *config = gptd_gpt_get_config (model);
  gboolean classifier = config->n_out != 0 && !config->tie_embeddings;
  g_autoptr (GptdSafetensorsWriter) w = gptd_safetensors_writer_new ();
  guint n = gptd_gpt_n_tensors (model);
  for (guint i = 0; i < n; i++)
    {
      const GptdNnTensor *t = gptd_gpt_get_tensor (model, i);
      const char *name = t->name;
      if (classifier && strcmp (name, "lm_head.weight") == 0)
        name = "score.weight";
      else if (classifier && strcmp (name, "lm_head.bias") == 0)
        name = "score.bias";
      gptd_safetensors_writer_add_f32 (w, name, (guint) t->ndim, t->shape, t->data);
    }
  gptd_safetensors_writer_set_metadata (w, "format", "pt");
  g_autofree char *weights_path = g_build_filename (dir, GPTD_GPT_DIR_WEIGHTS, NULL);
  if (!gptd_safetensors_writer_write (w, weights_path, error))
    return FALSE;

  g_autofree char *json = gptd__lora_json_add_keys (
    gptd_gpt_config_to_json_classifier (config, labels, pooling, sequence_length), model);
  g_autofree char *config_path = g_build_filename (dir, GPTD_GPT_DIR_CONFIG, NULL);
  if (!gptd_atomic_file_set_contents (config_path, json, strlen (json), error))
    return FALSE;

  if (vocab_json != NULL)
    {
      g_autofree char *dest = g_build_filename (dir, GPTD_GPT_DIR_VOCAB, NULL);
      if (!gptd_atomic_file_copy (vocab_json, dest, error))
        return FALSE;
    }
  if (merges_txt != NULL)
    {
      g_autofree char *dest = g_build_filename (dir, GPTD_GPT_DIR_MERGES, NULL);
      if (!gptd_atomic_file_copy (merges_txt, dest, error))
        return FALSE;
    }
  return TRUE;
}

/* ------------------------------------------------------------------------ */
/* Training state */

void
gptd_training_info_clear (GptdTrainingInfo *info)
{
  if (info == NULL)
    return;
  g_clear_pointer (&info->hparams, g_hash_table_unref);
  memset (info, 0, sizeof *info);
}

gboolean
gptd_training_state_save (const char             *path,
                          GptdGpt                *model,
                          GptdAdamW              *opt,
                          const GptdTrainingInfo *info,
                          GError                **error)
{
  g_return_val_if_fail (path != NULL, FALSE);
  g_return_val_if_fail (model != NULL, FALSE);
  g_return_val_if_fail (opt != NULL, FALSE);
  g_return_val_if_fail (info != NULL, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  g_autoptr (GptdSafetensorsWriter) w = gptd_safetensors_writer_new ();
  guint n = gptd_adamw_n_tensors (opt);
  for (guint i = 0; i < n; i++)
    {
      const GptdNnTensor *t = gptd_adamw_get_tensor (opt, i);
      gptd_safetensors_writer_add_f32 (w, t->name, (guint) t->ndim, t->shape, t->data);
    }

  /* Caller entries first, so that the fixed keys cannot be overridden. */
  if (info->hparams != NULL)
    {
      GHashTableIter iter;
      gpointer key, value;
      g_hash_table_iter_init (&iter, info->hparams);
      while (g_hash_table_iter_next (&iter, &key, &value))
        {
          g_autofree char *k = g_strconcat ("hparams.", (const char *) key, NULL);
          gptd_safetensors_writer_set_metadata (w, k, value);
        }
    }

  const GptdAdamWParams *p = gptd_adamw_get_params (opt);
  struct { const char *key; char *value; } entries[] = {
    { "format", g_strdup (TRAINING_STATE_FORMAT) },
    { "version", g_strdup (TRAINING_STATE_VERSION) },
    { "step", g_strdup_printf ("%" G_GINT64_FORMAT, info->step) },
    { "epoch", g_strdup_printf ("%" G_GINT64_FORMAT, info->epoch) },
    { "batch_index", g_strdup_printf ("%" G_GINT64_FORMAT, info->batch_index) },
    { "rng_seed", g_strdup_printf ("%" G_GUINT64_FORMAT, info->rng.seed) },
    { "rng_counter", g_strdup_printf ("%" G_GUINT64_FORMAT, info->rng.counter) },
    { "adamw.step", g_strdup_printf ("%" G_GINT64_FORMAT, gptd_adamw_get_step (opt)) },
    { "adamw.beta1", format_float (p->beta1) },
    { "adamw.beta2", format_float (p->beta2) },
    { "adamw.eps", format_float (p->eps) },
    { "adamw.weight_decay", format_float (p->weight_decay) },
    { "adamw.decay_1d", g_strdup (p->decay_1d ? "true" : "false") },
  };
  for (size_t i = 0; i < G_N_ELEMENTS (entries); i++)
    {
      gptd_safetensors_writer_set_metadata (w, entries[i].key, entries[i].value);
      g_free (entries[i].value);
    }
  return gptd_safetensors_writer_write (w, path, error);
}

static void state_error (GError **error, const char *path, const char *format, ...)
  G_GNUC_PRINTF (3, 4);

static void
state_error (GError **error, const char *path, const char *format, ...)
{
  va_list args;
  va_start (args, format);
  g_autofree char *msg = g_strdup_vprintf (format, args);
  va_end (args);
  g_set_error (error, GPTD_GPT_FILE_ERROR, GPTD_GPT_FILE_ERROR_STATE, "%s: %s", path, msg);
}

static gboolean
meta_get (GptdSafetensors *st, const char *key, const char **out, GError **error)
{
  *out = gptd_safetensors_get_metadata (st, key);
  if (*out == NULL)
    {
      state_error (error, gptd_safetensors_get_path (st), "metadata “%s” is missing", key);
      return FALSE;
    }
  return TRUE;
}

static gboolean
meta_get_int (GptdSafetensors *st, const char *key, gint64 *out, GError **error)
{
  const char *s;
  if (!meta_get (st, key, &s, error))
    return FALSE;
  g_autoptr (GError) local = NULL;
  if (!g_ascii_string_to_signed (s, 10, G_MININT64, G_MAXINT64, out, &local))
    {
      state_error (error, gptd_safetensors_get_path (st), "metadata “%s”: %s", key,
                   local->message);
      return FALSE;
    }
  return TRUE;
}

/* meta_get_int() for a field that must lie in [@min, @max]. */
static gboolean
meta_get_int_range (GptdSafetensors *st, const char *key, gint64 min, gint64 max, gint64 *out,
                    GError **error)
{
  if (!meta_get_int (st, key, out, error))
    return FALSE;
  if (*out < min || *out > max)
    {
      state_error (error, gptd_safetensors_get_path (st),
                   "metadata “%s” is %" G_GINT64_FORMAT ", out of range [%" G_GINT64_FORMAT
                   ", %" G_GINT64_FORMAT "]", key, *out, min, max);
      return FALSE;
    }
  return TRUE;
}

static gboolean
meta_get_uint (GptdSafetensors *st, const char *key, guint64 *out, GError **error)
{
  const char *s;
  if (!meta_get (st, key, &s, error))
    return FALSE;
  g_autoptr (GError) local = NULL;
  if (!g_ascii_string_to_unsigned (s, 10, 0, G_MAXUINT64, out, &local))
    {
      state_error (error, gptd_safetensors_get_path (st), "metadata “%s”: %s", key,
                   local->message);
      return FALSE;
    }
  return TRUE;
}

static gboolean
meta_get_float (GptdSafetensors *st, const char *key, float *out, GError **error)
{
  const char *s;
  if (!meta_get (st, key, &s, error))
    return FALSE;
  char *end = NULL;
  double v = g_ascii_strtod (s, &end);
  if (*s == '\0' || end == NULL || *end != '\0' || !isfinite (v))
    {
      state_error (error, gptd_safetensors_get_path (st),
                   "metadata “%s”: “%s” is not a number", key, s);
      return FALSE;
    }
  *out = (float) v;
  return TRUE;
}

/* The parameter name of an optimizer moment's name ("adamw.m.NAME"), or NULL. */
static const char *
moment_param_name (const char *name)
{
  if (g_str_has_prefix (name, "adamw.m.") || g_str_has_prefix (name, "adamw.v."))
    return name + strlen ("adamw.m.");
  return NULL;
}

gboolean
gptd_training_state_load (const char       *path,
                          GptdGpt          *model,
                          GptdAdamW        *opt,
                          GptdTrainingInfo *info,
                          GError          **error)
{
  g_return_val_if_fail (path != NULL, FALSE);
  g_return_val_if_fail (model != NULL, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  g_autoptr (GptdSafetensors) st = gptd_safetensors_open (path, error);
  if (st == NULL)
    return FALSE;

  /* Metadata. */
  const char *s;
  if (!meta_get (st, "format", &s, error))
    return FALSE;
  if (strcmp (s, TRAINING_STATE_FORMAT) != 0)
    {
      state_error (error, path, "metadata “format” is “%s”, not “%s”", s, TRAINING_STATE_FORMAT);
      return FALSE;
    }
  if (!meta_get (st, "version", &s, error))
    return FALSE;
  if (strcmp (s, TRAINING_STATE_VERSION) != 0)
    {
      state_error (error, path, "version %s is not supported (this gptd reads version %s)",
                   s, TRAINING_STATE_VERSION);
      return FALSE;
    }
  GptdTrainingInfo got = { 0 };
  gint64 adamw_step;
  GptdAdamWParams params;
  const char *decay_1d;
  /* Every field is range-checked: a damaged or forged state must not resume at a
   * negative step or epoch, nor with an optimizer that cannot work. Epochs are
   * counted in 32 bits by the trainers. */
  if (!meta_get_int_range (st, "step", 0, G_MAXINT64, &got.step, error)
      || !meta_get_int_range (st, "epoch", 0, G_MAXINT32, &got.epoch, error)
      || !meta_get_int_range (st, "batch_index", 0, G_MAXINT64, &got.batch_index, error)
      || !meta_get_uint (st, "rng_seed", &got.rng.seed, error)
      || !meta_get_uint (st, "rng_counter", &got.rng.counter, error)
      || !meta_get_int_range (st, "adamw.step", 0, G_MAXINT64, &adamw_step, error)
      || !meta_get_float (st, "adamw.beta1", &params.beta1, error)
      || !meta_get_float (st, "adamw.beta2", &params.beta2, error)
      || !meta_get_float (st, "adamw.eps", &params.eps, error)
      || !meta_get_float (st, "adamw.weight_decay", &params.weight_decay, error)
      || !meta_get (st, "adamw.decay_1d", &decay_1d, error))
    return FALSE;
  const struct {
    const char *key;
    float value;
    gboolean ok;
    const char *range;
  } floats[] = {
    { "adamw.beta1", params.beta1, params.beta1 >= 0 && params.beta1 < 1, "[0, 1)" },
    { "adamw.beta2", params.beta2, params.beta2 >= 0 && params.beta2 < 1, "[0, 1)" },
    { "adamw.eps", params.eps, params.eps > 0, "(0, inf)" },
    { "adamw.weight_decay", params.weight_decay, params.weight_decay >= 0, "[0, inf)" },
  };
  for (guint i = 0; i < G_N_ELEMENTS (floats); i++)
    if (!floats[i].ok)
      {
        state_error (error, path, "metadata “%s” is %g, out of range %s", floats[i].key,
                     (double) floats[i].value, floats[i].range);
        return FALSE;
      }
  if (strcmp (decay_1d, "true") != 0 && strcmp (decay_1d, "false") != 0)
    {
      state_error (error, path, "metadata “adamw.decay_1d”: “%s” is not true or false", decay_1d);
      return FALSE;
    }
  params.decay_1d = strcmp (decay_1d, "true") == 0;

  /* Tensors: exactly the optimizer's, with the parameters' shapes. */
  if (opt != NULL)
    {
      guint n = gptd_adamw_n_tensors (opt);
      g_autoptr (GPtrArray) missing = g_ptr_array_new ();
      for (guint i = 0; i < n; i++)
        {
          const GptdNnTensor *t = gptd_adamw_get_tensor (opt, i);
          const GptdSafetensorsTensor *stored = gptd_safetensors_lookup (st, t->name);
          if (stored == NULL)
            {
              g_ptr_array_add (missing, (gpointer) t->name);
              continue;
            }
          gboolean same = stored->n_dims == (guint) t->ndim;
          for (int d = 0; same && d < t->ndim; d++)
            same = stored->shape[d] == t->shape[d];
          if (!same)
            {
              g_autofree char *have = format_shape (stored->n_dims, stored->shape);
              g_autofree char *want = format_shape ((guint) t->ndim, t->shape);
              g_set_error (error, GPTD_GPT_FILE_ERROR, GPTD_GPT_FILE_ERROR_SHAPE,
                           "%s: tensor “%s” has shape %s, but the model gives it %s",
                           path, t->name, have, want);
              return FALSE;
            }
          if (!is_float_dtype (stored->dtype))
            {
              g_set_error (error, GPTD_SAFETENSORS_ERROR, GPTD_SAFETENSORS_ERROR_DTYPE,
                           "%s: tensor “%s” has dtype %s; optimizer state must be F32, "
                           "F16, BF16 or F64", path, t->name,
                           gptd_safetensors_dtype_to_string (stored->dtype));
              return FALSE;
            }
        }
      if (missing->len > 0)
        {
          g_autofree char *names = format_names (missing);
          g_set_error (error, GPTD_GPT_FILE_ERROR, GPTD_GPT_FILE_ERROR_MISSING,
                       "%s: %u optimizer tensor%s missing: %s", path, missing->len,
                       missing->len == 1 ? " is" : "s are", names);
          return FALSE;
        }
      g_autoptr (GPtrArray) unexpected = g_ptr_array_new ();
      for (guint i = 0; i < gptd_safetensors_get_n_tensors (st); i++)
        {
          const GptdSafetensorsTensor *t = gptd_safetensors_get_tensor (st, i);
          if (gptd_adamw_lookup_tensor (opt, t->name) != NULL)
            continue;
          /* Moments of a parameter the optimizer keeps none for (frozen when it
           * was made; states written before moments were kept for unfrozen
           * parameters only hold them all) are left out. */
          const char *param = moment_param_name (t->name);
          if (param != NULL && gptd_gpt_lookup_tensor (model, param) != NULL)
            continue;
          g_ptr_array_add (unexpected, (gpointer) t->name);
        }
      if (unexpected->len > 0)
        {
          g_autofree char *names = format_names (unexpected);
          g_set_error (error, GPTD_GPT_FILE_ERROR, GPTD_GPT_FILE_ERROR_UNEXPECTED,
                       "%s: %u stored tensor%s not part of the optimizer state: %s",
                       path, unexpected->len, unexpected->len == 1 ? " is" : "s are", names);
          return FALSE;
        }

      /* Checked: restore. The moments must be finite, the second ones not
       * negative (their square root is taken); a bad value fails the load, and
       * the optimizer is then not to be used. */
      for (guint i = 0; i < n; i++)
        {
          const GptdNnTensor *t = gptd_adamw_get_tensor (opt, i);
          if (!gptd_safetensors_tensor_to_f32 (st, gptd_safetensors_lookup (st, t->name),
                                               t->data, error))
            return FALSE; /* not reached: the dtype was checked */
          gboolean second = g_str_has_prefix (t->name, "adamw.v.");
          for (size_t k = 0; k < t->numel; k++)
            if (!isfinite (t->data[k]) || (second && t->data[k] < 0))
              {
                state_error (error, path, "tensor “%s” holds %g at index %zu: %s", t->name,
                             (double) t->data[k], k,
                             second ? "a second moment must be finite and not negative"
                                    : "a moment must be finite");
                return FALSE;
              }
        }
      gptd_adamw_set_step (opt, adamw_step);
      *gptd_adamw_get_params (opt) = params;
    }

  gptd_gpt_set_rng (model, &got.rng);
  if (info != NULL)
    {
      got.hparams = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);
      GHashTableIter iter;
      gpointer key, value;
      g_hash_table_iter_init (&iter, gptd_safetensors_get_metadata_table (st));
      while (g_hash_table_iter_next (&iter, &key, &value))
        if (g_str_has_prefix (key, "hparams."))
          g_hash_table_replace (got.hparams, g_strdup ((const char *) key + strlen ("hparams.")),
                                g_strdup (value));
      *info = got;
    }
  return TRUE;
}

/* ------------------------------------------------------------------------ */
/* Checkpoints */

/* Whether @name is a checkpoint directory name, "step-N" or "step-N.K";
 * returns N and K. */
static gboolean
parse_checkpoint_name (const char *name, guint64 *step, guint64 *k)
{
  if (!g_str_has_prefix (name, "step-"))
    return FALSE;
  const char *p = name + 5;
  char *end;
  if (!g_ascii_isdigit (*p))
    return FALSE;
  *step = g_ascii_strtoull (p, &end, 10);
  *k = 0;
  if (*end == '.')
    {
      p = end + 1;
      if (!g_ascii_isdigit (*p))
        return FALSE;
      *k = g_ascii_strtoull (p, &end, 10);
    }
  return *end == '\0';
}

/* Reads checkpoint.json; returns the name of the latest directory, or NULL
 * with *exists FALSE and no error when there is no checkpoint.json. */
static char *
read_index (const char *root, gboolean *exists, GError **error)
{
  g_autofree char *path = g_build_filename (root, GPTD_CHECKPOINT_INDEX, NULL);
  g_autofree char *json = NULL;
  gsize len;
  g_autoptr (GError) local = NULL;

  *exists = TRUE;
  if (!g_file_get_contents (path, &json, &len, &local))
    {
      if (g_error_matches (local, G_FILE_ERROR, G_FILE_ERROR_NOENT))
        {
          *exists = FALSE;
          g_set_error (error, GPTD_GPT_FILE_ERROR, GPTD_GPT_FILE_ERROR_CHECKPOINT,
                       "%s: no checkpoint has been saved here (%s)", root, local->message);
          return NULL;
        }
      g_set_error (error, GPTD_GPT_FILE_ERROR, GPTD_GPT_FILE_ERROR_CHECKPOINT,
                   "%s", local->message);
      return NULL;
    }
  g_autoptr (JsonParser) parser = gptd_json_load_bounded (json, (gssize) len, path,
                                                          CONFIG_MAX_SIZE, &local);
  if (parser == NULL)
    {
      g_set_error_literal (error, GPTD_GPT_FILE_ERROR, GPTD_GPT_FILE_ERROR_CHECKPOINT,
                           local->message);
      return NULL;
    }
  JsonNode *rootn = json_parser_get_root (parser);
  JsonObject *obj = rootn != NULL && JSON_NODE_HOLDS_OBJECT (rootn)
                    ? json_node_get_object (rootn) : NULL;
  JsonNode *format = obj ? json_object_get_member (obj, "format") : NULL;
  if (format == NULL || !JSON_NODE_HOLDS_VALUE (format)
      || json_node_get_value_type (format) != G_TYPE_STRING
      || strcmp (json_node_get_string (format), CHECKPOINT_FORMAT) != 0)
    {
      g_set_error (error, GPTD_GPT_FILE_ERROR, GPTD_GPT_FILE_ERROR_CHECKPOINT,
                   "%s: not a gptd checkpoint index (no “format”: “%s”)", path,
                   CHECKPOINT_FORMAT);
      return NULL;
    }
  JsonNode *version = json_object_get_member (obj, "version");
  if (version == NULL || !JSON_NODE_HOLDS_VALUE (version)
      || json_node_get_value_type (version) != G_TYPE_INT64
      || json_node_get_int (version) != CHECKPOINT_VERSION)
    {
      g_set_error (error, GPTD_GPT_FILE_ERROR, GPTD_GPT_FILE_ERROR_CHECKPOINT,
                   "%s: key “version”: not %d (this gptd reads version %d)", path,
                   CHECKPOINT_VERSION, CHECKPOINT_VERSION);
      return NULL;
    }
  JsonNode *latest = json_object_get_member (obj, "latest");
  const char *name = latest != NULL && JSON_NODE_HOLDS_VALUE (latest)
                     && json_node_get_value_type (latest) == G_TYPE_STRING
                     ? json_node_get_string (latest) : NULL;
  guint64 step, k;
  if (name == NULL || !parse_checkpoint_name (name, &step, &k))
    {
      g_set_error (error, GPTD_GPT_FILE_ERROR, GPTD_GPT_FILE_ERROR_CHECKPOINT,
                   "%s: key “latest”: missing or not a checkpoint directory name (step-N)",
                   path);
      return NULL;
    }
  return g_strdup (name);
}

char *
gptd_checkpoint_get_latest (const char *root, GError **error)
{
  g_return_val_if_fail (root != NULL, NULL);
  gboolean exists;
  g_autofree char *name = read_index (root, &exists, error);
  if (name == NULL)
    return NULL;
  g_autofree char *dir = g_build_filename (root, name, NULL);
  if (!g_file_test (dir, G_FILE_TEST_IS_DIR))
    {
      g_set_error (error, GPTD_GPT_FILE_ERROR, GPTD_GPT_FILE_ERROR_CHECKPOINT,
                   "%s/%s names the checkpoint “%s”, which does not exist", root,
                   GPTD_CHECKPOINT_INDEX, dir);
      return NULL;
    }
  return g_steal_pointer (&dir);
}

/* Removes the regular files of @dir, then @dir itself when @remove_dir. */
static gboolean
empty_dir (const char *dir, gboolean remove_dir, GError **error)
{
  g_autoptr (GError) local = NULL;
  g_autoptr (GDir) d = g_dir_open (dir, 0, &local);
  if (d == NULL)
    {
      g_set_error (error, GPTD_GPT_FILE_ERROR, GPTD_GPT_FILE_ERROR_IO, "%s", local->message);
      return FALSE;
    }
  const char *name;
  while ((name = g_dir_read_name (d)) != NULL)
    {
      g_autofree char *p = g_build_filename (dir, name, NULL);
      if (g_file_test (p, G_FILE_TEST_IS_DIR) || g_unlink (p) < 0)
        {
          int errsv = errno;
          g_set_error (error, GPTD_GPT_FILE_ERROR, GPTD_GPT_FILE_ERROR_IO,
                       "Cannot remove “%s”: %s", p,
                       g_file_test (p, G_FILE_TEST_IS_DIR) ? "it is a directory"
                                                            : g_strerror (errsv));
          return FALSE;
        }
    }
  if (remove_dir && g_rmdir (dir) < 0)
    {
      int errsv = errno;
      g_set_error (error, GPTD_GPT_FILE_ERROR, GPTD_GPT_FILE_ERROR_IO,
                   "Cannot remove “%s”: %s", dir, g_strerror (errsv));
      return FALSE;
    }
  return TRUE;
}

typedef struct {
  char   *name;
  guint64 step;
  guint64 k;
} CheckpointDir;

static int
compare_checkpoint_dirs (gconstpointer a, gconstpointer b)
{
  const CheckpointDir *x = a, *y = b;
  if (x->step != y->step)
    return x->step < y->step ? 1 : -1; /* newest first */
  if (x->k != y->k)
    return x->k < y->k ? 1 : -1;
  return 0;
}

/* Removes all checkpoint directories but @latest and the newest keep - 1
 * others. Failures are ignored: the next save tries again. */
static void
prune_checkpoints (const char *root, const char *latest, guint keep)
{
  g_autoptr (GDir) d = g_dir_open (root, 0, NULL);
  if (d == NULL)
    return;
  g_autoptr (GArray) dirs = g_array_new (FALSE, FALSE, sizeof (CheckpointDir));
  const char *name;
  while ((name = g_dir_read_name (d)) != NULL)
    {
      CheckpointDir cd;
      if (strcmp (name, latest) == 0 || !parse_checkpoint_name (name, &cd.step, &cd.k))
        continue;
      g_autofree char *p = g_build_filename (root, name, NULL);
      if (!g_file_test (p, G_FILE_TEST_IS_DIR))
        continue;
      cd.name = g_strdup (name);
      g_array_append_val (dirs, cd);
    }
  g_array_sort (dirs, compare_checkpoint_dirs);
  gboolean removed = FALSE;
  for (guint i = 0; i < dirs->len; i++)
    {
      CheckpointDir *cd = &g_array_index (dirs, CheckpointDir, i);
      if (i + 1 >= keep)
        {
          g_autofree char *p = g_build_filename (root, cd->name, NULL);
          if (empty_dir (p, TRUE, NULL))
            removed = TRUE;
        }
      g_free (cd->name);
    }
  if (removed)
    gptd_fsync_directory (root, NULL);
}

gboolean
gptd_checkpoint_save (const char                  *root,
                      GptdGpt                     *model,
                      GptdAdamW                   *opt,
                      const GptdTrainingInfo      *info,
                      const GptdCheckpointOptions *options,
                      char                       **saved_dir,
                      GError                     **error)
{
  g_return_val_if_fail (root != NULL, FALSE);
  g_return_val_if_fail (model != NULL, FALSE);
  g_return_val_if_fail (info != NULL, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  GptdCheckpointOptions defaults = { NULL, NULL, 2 };
  if (options == NULL)
    options = &defaults;
  guint keep = options->keep ? options->keep : 2;

  if (!make_dir (root, error))
    return FALSE;

  /* Which directory checkpoint.json names now: it must not be touched. */
  gboolean exists;
  g_autoptr (GError) index_error = NULL;
  g_autofree char *latest = read_index (root, &exists, &index_error);
  if (latest == NULL && exists)
    {
      g_propagate_prefixed_error (error, g_steal_pointer (&index_error),
                                  "Cannot save a checkpoint: ");
      return FALSE;
    }

  /* Temporary files of an index write that a crash interrupted. */
  {
    g_autoptr (GDir) d = g_dir_open (root, 0, NULL);
    const char *entry;
    while (d != NULL && (entry = g_dir_read_name (d)) != NULL)
      if (g_str_has_prefix (entry, "." GPTD_CHECKPOINT_INDEX ".tmp-"))
        {
          g_autofree char *p = g_build_filename (root, entry, NULL);
          g_unlink (p);
        }
  }

  /* 1. A fresh directory for the new checkpoint. */
  g_autofree char *base = g_strdup_printf ("step-%08" G_GINT64_FORMAT, MAX (info->step, 0));
  g_autofree char *name = g_strdup (base);
  for (guint k = 1; latest != NULL && strcmp (name, latest) == 0; k++)
    {
      g_free (name);
      name = g_strdup_printf ("%s.%u", base, k);
    }
  g_autofree char *dir = g_build_filename (root, name, NULL);
  if (g_file_test (dir, G_FILE_TEST_IS_DIR))
    {
      /* Not the latest, so the remainder of an interrupted save. */
      if (!empty_dir (dir, FALSE, error))
        return FALSE;
    }
  else if (g_mkdir (dir, 0755) < 0)
    {
      int errsv = errno;
      g_set_error (error, GPTD_GPT_FILE_ERROR, GPTD_GPT_FILE_ERROR_IO,
                   "Cannot create directory “%s”: %s", dir, g_strerror (errsv));
      return FALSE;
    }
  if (!gptd_fsync_directory (root, error))
    return FALSE;

  /* 2. Its files, each durable. */
  if (!gptd_gpt_dir_save_classifier (model, dir, options->vocab_json, options->merges_txt,
                                     options->labels, options->pooling,
                                     options->sequence_length, error))
    return FALSE;
  if (opt != NULL)
    {
      g_autofree char *state = g_build_filename (dir, GPTD_GPT_DIR_TRAINING_STATE, NULL);
      if (!gptd_training_state_save (state, model, opt, info, error))
        return FALSE;
    }

  /* 3. The commit point. */
  g_autofree char *index = g_strdup_printf (
    "{\n  \"format\": \"%s\",\n  \"version\": %d,\n  \"latest\": \"%s\",\n"
    "  \"step\": %" G_GINT64_FORMAT "\n}\n",
    CHECKPOINT_FORMAT, CHECKPOINT_VERSION, name, info->step);
  g_autofree char *index_path = g_build_filename (root, GPTD_CHECKPOINT_INDEX, NULL);
  if (!gptd_atomic_file_set_contents (index_path, index, strlen (index), error))
    return FALSE;

  /* 4. Older checkpoints. */
  prune_checkpoints (root, name, keep);

  if (saved_dir != NULL)
    *saved_dir = g_steal_pointer (&dir);
  return TRUE;
}

GptdGpt *
gptd_checkpoint_load (const char        *root,
                      GptdAdamW        **opt_out,
                      GptdTrainingInfo  *info,
                      GError           **error)
{
  g_return_val_if_fail (root != NULL, NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  g_autofree char *dir = gptd_checkpoint_get_latest (root, error);
  if (dir == NULL)
    return NULL;
  g_autoptr (GptdGpt) model = gptd_gpt_dir_load (dir, error);
  if (model == NULL)
    return NULL;
  if (opt_out == NULL && info == NULL)
    return g_steal_pointer (&model);

  g_autoptr (GptdAdamW) opt = NULL;
  g_autofree char *state = g_build_filename (dir, GPTD_GPT_DIR_TRAINING_STATE, NULL);
  if (opt_out != NULL)
    {
      /* The optimizer keeps moments for the parameters the saved one kept them
       * for: the others were frozen, and are frozen again. */
      g_autoptr (GptdSafetensors) st = gptd_safetensors_open (state, error);
      if (st == NULL)
        return NULL;
      for (guint i = 0; i < gptd_gpt_n_tensors (model); i++)
        {
          const GptdNnTensor *t = gptd_gpt_get_tensor (model, i);
          g_autofree char *name = g_strconcat ("adamw.m.", t->name, NULL);
          if (gptd_safetensors_lookup (st, name) == NULL)
            gptd_gpt_set_frozen (model, t->name, TRUE);
        }
      GptdAdamWParams params;
      gptd_adamw_params_init (&params);
      opt = gptd_adamw_new (model, &params, error);
      if (opt == NULL)
        return NULL;
    }
  if (!gptd_training_state_load (state, model, opt, info, error))
    return NULL;
  if (opt_out != NULL)
    *opt_out = g_steal_pointer (&opt);
  return g_steal_pointer (&model);
}
