/* gpt2-lora-file.c: LoRA adapters on disk.  A model directory of a model
 * with adapters (a checkpoint) stores them beside the base tensors and says
 * "lora_rank" and "lora_alpha" in config.json.  An adapter directory holds
 * only what training changed, in PEFT's layout:
 *
 *   adapter_config.json        peft_type "LORA", r, lora_alpha,
 *                              target_modules, fan_in_fan_out,
 *                              base_model_name_or_path (the base directory)
 *   adapter_model.safetensors  "base_model.model.transformer.h.N.<layer>.
 *                              lora_A.weight" [r, in] and "...lora_B.weight"
 *                              [out, r] (nn.Linear layouts, the transposes
 *                              of gptd's A and B), and the other trained
 *                              tensors (a classifier's head as
 *                              "base_model.model.score.weight"/".bias")
 *   config.json                the adapted model's configuration (and a
 *                              classifier's labels)
 *
 * Loading an adapter directory loads the base, adds the adapters and merges
 * them, so that every reader of model directories reads both.
 */
#include "config.h"
#include "nn/gpt2-lora-file.h"

#include <gptd/json-load.h>
#include <gptd/atomic-file.h>
#include <gptd/gpt2-file.h>
#include <gptd/safetensors.h>
#include <json-glib/json-glib.h>
#include <errno.h>
#include <math.h>
#include <string.h>

#define PEFT_PREFIX "base_model.model."

/* ---- config.json keys ---------------------------------------------------- */

char *
gptd__lora_json_add_keys (char *json, const GptdGpt *model)
{
  int rank = gptd_gpt_get_lora_rank (model);
  if (rank == 0)
    return json;
  char *end = strrchr (json, '}');
  g_return_val_if_fail (end != NULL, json);
  /* The last member ends the line before the closing brace. */
  while (end > json && (end[-1] == '\n' || end[-1] == ' '))
    end--;
  GString *s = g_string_new_len (json, end - json);
  char alpha[G_ASCII_DTOSTR_BUF_SIZE];
  g_ascii_formatd (alpha, sizeof alpha, "%.9g",
                   (double) gptd_gpt_get_lora_alpha (model));
  g_string_append_printf (s, ",\n  \"lora_rank\": %d,\n  \"lora_alpha\": %s\n}\n",
                          rank, alpha);
  g_free (json);
  return g_string_free (s, FALSE);
}

gboolean
gptd__lora_json_read_keys (const char *json, gsize length, const char *path,
                           int *rank, float *alpha, GError **error)
{
  *rank = 0;
  *alpha = 0.0f;
  g_autoptr (JsonParser) parser = gptd_json_load_bounded (json, (gssize) length, path, 0, NULL);
  if (parser == NULL)
    return TRUE; /* gptd_gpt_config_from_json() reports it */
  JsonNode *root = json_parser_get_root (parser);
  if (root == NULL || !JSON_NODE_HOLDS_OBJECT (root))
    return TRUE;
  JsonObject *obj = json_node_get_object (root);
  JsonNode *r = json_object_get_member (obj, "lora_rank");
  JsonNode *a = json_object_get_member (obj, "lora_alpha");
  if (r == NULL && a == NULL)
    return TRUE;
  if (r == NULL || a == NULL || !JSON_NODE_HOLDS_VALUE (r) ||
      json_node_get_value_type (r) != G_TYPE_INT64 || !JSON_NODE_HOLDS_VALUE (a) ||
      (json_node_get_value_type (a) != G_TYPE_INT64 &&
       json_node_get_value_type (a) != G_TYPE_DOUBLE))
    {
      g_set_error (error, GPTD_GPT_FILE_ERROR, GPTD_GPT_FILE_ERROR_CONFIG,
                   "%s: \"lora_rank\" (an integer) and \"lora_alpha\" (a number) "
                   "come together",
                   path);
      return FALSE;
    }
  gint64 rv = json_node_get_int (r);
  double av = json_node_get_value_type (a) == G_TYPE_INT64
                  ? (double) json_node_get_int (a)
                  : json_node_get_double (a);
  if (rv < 1 || rv > G_MAXINT || !(av > 0.0) || !isfinite (av))
    {
      g_set_error (error, GPTD_GPT_FILE_ERROR, GPTD_GPT_FILE_ERROR_CONFIG,
                   "%s: \"lora_rank\" must be a positive integer and "
                   "\"lora_alpha\" a positive number, not %" G_GINT64_FORMAT
                   " and %g",
                   path, rv, av);
      return FALSE;
    }
  *rank = (int) rv;
  *alpha = (float) av;
  return TRUE;
}

/* ---- adapter directories -------------------------------------------------- */

/* The PEFT name of a gptd tensor: "h.0.attn.c_attn.lora_A" gives
 * "base_model.model.transformer.h.0.attn.c_attn.lora_A.weight", a head
 * "base_model.model.score.weight" (classifier) or
 * "base_model.model.lm_head.weight", anything else
 * "base_model.model.transformer.<name>". */
static char *
peft_name (const char *name, gboolean classifier)
{
  if (g_str_has_suffix (name, ".lora_A") || g_str_has_suffix (name, ".lora_B"))
    return g_strconcat (PEFT_PREFIX "transformer.", name, ".weight", NULL);
  if (g_str_has_prefix (name, "lm_head."))
    return g_strconcat (PEFT_PREFIX, classifier ? "score." : "lm_head.",
                        name + strlen ("lm_head."), NULL);
  return g_strconcat (PEFT_PREFIX "transformer.", name, NULL);
}

static gboolean
is_adapter (const char *name)
{
  return g_str_has_suffix (name, ".lora_A") || g_str_has_suffix (name, ".lora_B");
}

static float *
transpose (const float *x, size_t rows, size_t cols)
{
  float *t = g_new (float, rows * cols);
  for (size_t i = 0; i < rows; i++)
    for (size_t j = 0; j < cols; j++)
      t[j * rows + i] = x[i * cols + j];
  return t;
}

gboolean
gptd_gpt_dir_save_adapter (GptdGpt           *model,
                           const char        *dir,
                           const char        *base_dir,
                           const char        *vocab_json,
                           const char        *merges_txt,
                           const char *const *labels,
                           const char        *pooling,
                           int                sequence_length,
                           GError           **error)
{
  g_return_val_if_fail (model != NULL, FALSE);
  g_return_val_if_fail (dir != NULL && base_dir != NULL, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);
  int rank = gptd_gpt_get_lora_rank (model);
  if (rank == 0)
    {
      g_set_error (error, GPTD_GPT_FILE_ERROR, GPTD_GPT_FILE_ERROR_STATE,
                   "%s: the model has no LoRA adapters to save", dir);
      return FALSE;
    }
  if (g_mkdir_with_parents (dir, 0755) < 0)
    {
      int errsv = errno;
      g_set_error (error, GPTD_GPT_FILE_ERROR, GPTD_GPT_FILE_ERROR_IO,
                   "Cannot create directory “%s”: %s", dir, g_strerror (errsv));
      return FALSE;
    }
  const GptdGptConfig *config = gptd_gpt_get_config (model);
  gboolean classifier = config->n_out != 0 && !config->tie_embeddings;

  /* The adapters and every other tensor that trained. */
  g_autoptr (GptdSafetensorsWriter) w = gptd_safetensors_writer_new ();
  g_autoptr (GPtrArray) keep = g_ptr_array_new_with_free_func (g_free);
  for (guint i = 0; i < gptd_gpt_n_tensors (model); i++)
    {
      const GptdNnTensor *t = gptd_gpt_get_tensor (model, i);
      if (t->frozen && !is_adapter (t->name))
        continue;
      char *name = peft_name (t->name, classifier);
      g_ptr_array_add (keep, name);
      if (is_adapter (t->name))
        {
          float *tr = transpose (t->data, t->shape[0], t->shape[1]);
          g_ptr_array_add (keep, tr);
          size_t shape[2] = { t->shape[1], t->shape[0] };
          gptd_safetensors_writer_add_f32 (w, name, 2, shape, tr);
        }
      else
        gptd_safetensors_writer_add_f32 (w, name, (guint) t->ndim, t->shape, t->data);
    }
  gptd_safetensors_writer_set_metadata (w, "format", "pt");
  g_autofree char *weights = g_build_filename (dir, GPTD_GPT_DIR_ADAPTER_WEIGHTS, NULL);
  if (!gptd_safetensors_writer_write (w, weights, error))
    return FALSE;

  char alpha[G_ASCII_DTOSTR_BUF_SIZE];
  g_ascii_formatd (alpha, sizeof alpha, "%.9g", (double) gptd_gpt_get_lora_alpha (model));
  g_autoptr (JsonBuilder) b = json_builder_new ();
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "peft_type");
  json_builder_add_string_value (b, "LORA");
  json_builder_set_member_name (b, "task_type");
  json_builder_add_string_value (b, classifier ? "SEQ_CLS" : "CAUSAL_LM");
  json_builder_set_member_name (b, "base_model_name_or_path");
  json_builder_add_string_value (b, base_dir);
  json_builder_set_member_name (b, "r");
  json_builder_add_int_value (b, rank);
  json_builder_set_member_name (b, "lora_alpha");
  json_builder_add_double_value (b, g_ascii_strtod (alpha, NULL));
  json_builder_set_member_name (b, "lora_dropout");
  json_builder_add_double_value (b, 0.0);
  json_builder_set_member_name (b, "bias");
  json_builder_add_string_value (b, "none");
  json_builder_set_member_name (b, "fan_in_fan_out");
  json_builder_add_boolean_value (b, TRUE);
  json_builder_set_member_name (b, "target_modules");
  json_builder_begin_array (b);
  json_builder_add_string_value (b, "c_attn");
  json_builder_add_string_value (b, "c_proj");
  json_builder_add_string_value (b, "c_fc");
  json_builder_end_array (b);
  json_builder_set_member_name (b, "modules_to_save");
  if (classifier)
    {
      json_builder_begin_array (b);
      json_builder_add_string_value (b, "score");
      json_builder_end_array (b);
    }
  else
    json_builder_add_null_value (b);
  json_builder_end_object (b);
  g_autoptr (JsonGenerator) gen = json_generator_new ();
  g_autoptr (JsonNode) root = json_builder_get_root (b);
  json_generator_set_root (gen, root);
  json_generator_set_pretty (gen, TRUE);
  g_autofree char *text = json_generator_to_data (gen, NULL);
  g_autofree char *acfg = g_strconcat (text, "\n", NULL);
  g_autofree char *acfg_path = g_build_filename (dir, GPTD_GPT_DIR_ADAPTER_CONFIG, NULL);
  if (!gptd_atomic_file_set_contents (acfg_path, acfg, strlen (acfg), error))
    return FALSE;

  g_autofree char *json =
      gptd_gpt_config_to_json_classifier (config, labels, pooling, sequence_length);
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

gboolean
gptd__gpt_dir_is_adapter (const char *dir)
{
  g_autofree char *acfg = g_build_filename (dir, GPTD_GPT_DIR_ADAPTER_CONFIG, NULL);
  g_autofree char *weights = g_build_filename (dir, GPTD_GPT_DIR_WEIGHTS, NULL);
  return g_file_test (acfg, G_FILE_TEST_EXISTS) && !g_file_test (weights, G_FILE_TEST_EXISTS);
}

/* Copies the stored tensor @s of @st into @t (transposed for an adapter),
 * checking shape and values. */
static gboolean
fill_tensor (const GptdNnTensor *t, GptdSafetensors *st, const GptdSafetensorsTensor *s,
             gboolean transposed, GError **error)
{
  const char *path = gptd_safetensors_get_path (st);
  gboolean same = s->n_dims == (guint) t->ndim;
  for (int d = 0; same && d < t->ndim; d++)
    same = s->shape[d] == t->shape[transposed ? t->ndim - 1 - d : d];
  if (!same)
    {
      g_set_error (error, GPTD_GPT_FILE_ERROR, GPTD_GPT_FILE_ERROR_SHAPE,
                   "%s: tensor “%s” does not have the shape the model gives “%s”", path,
                   s->name, t->name);
      return FALSE;
    }
  g_autofree float *tmp = transposed ? g_new (float, t->numel) : NULL;
  if (!gptd_safetensors_tensor_to_f32 (st, s, transposed ? tmp : t->data, error))
    return FALSE;
  if (transposed)
    for (size_t i = 0; i < t->shape[1]; i++)
      for (size_t j = 0; j < t->shape[0]; j++)
        t->data[j * t->shape[1] + i] = tmp[i * t->shape[0] + j];
  for (size_t k = 0; k < t->numel; k++)
    if (!isfinite (t->data[k]))
      {
        g_set_error (error, GPTD_GPT_FILE_ERROR, GPTD_GPT_FILE_ERROR_NOT_FINITE,
                     "%s: tensor “%s” holds %g: weights must be finite numbers", path,
                     s->name, (double) t->data[k]);
        return FALSE;
      }
  return TRUE;
}

GptdGpt *
gptd__gpt_dir_load_adapter (const char *dir, GError **error)
{
  g_autofree char *acfg_path = g_build_filename (dir, GPTD_GPT_DIR_ADAPTER_CONFIG, NULL);
  g_autoptr (GError) local = NULL;
  g_autoptr (JsonParser) parser = gptd_json_load_file_bounded (acfg_path, 0, &local);
  if (parser == NULL)
    {
      /* The message begins with the file's name. */
      g_set_error_literal (error, GPTD_GPT_FILE_ERROR, GPTD_GPT_FILE_ERROR_CONFIG,
                           local->message);
      return NULL;
    }
  JsonNode *root = json_parser_get_root (parser);
  JsonObject *obj = root != NULL && JSON_NODE_HOLDS_OBJECT (root)
                        ? json_node_get_object (root) : NULL;
  const char *base = obj ? json_object_get_string_member_with_default (
                               obj, "base_model_name_or_path", NULL) : NULL;
  JsonNode *rn = obj ? json_object_get_member (obj, "r") : NULL;
  JsonNode *an = obj ? json_object_get_member (obj, "lora_alpha") : NULL;
  if (base == NULL || rn == NULL || an == NULL || !JSON_NODE_HOLDS_VALUE (rn) ||
      !JSON_NODE_HOLDS_VALUE (an) || json_node_get_value_type (rn) != G_TYPE_INT64)
    {
      g_set_error (error, GPTD_GPT_FILE_ERROR, GPTD_GPT_FILE_ERROR_CONFIG,
                   "%s: needs \"base_model_name_or_path\" (a string), \"r\" (an "
                   "integer) and \"lora_alpha\" (a number)",
                   acfg_path);
      return NULL;
    }
  gint64 rank = json_node_get_int (rn);
  double alpha = json_node_get_value_type (an) == G_TYPE_INT64
                     ? (double) json_node_get_int (an) : json_node_get_double (an);
  g_autofree char *base_dir = g_path_is_absolute (base)
                                  ? g_strdup (base)
                                  : g_build_filename (dir, base, NULL);

  /* The adapted model's shape (a classifier's head differs from the base's). */
  g_autofree char *config_path = g_build_filename (dir, GPTD_GPT_DIR_CONFIG, NULL);
  g_autofree char *json = NULL;
  gsize json_len;
  if (!g_file_get_contents (config_path, &json, &json_len, &local))
    {
      g_set_error (error, GPTD_GPT_FILE_ERROR, GPTD_GPT_FILE_ERROR_IO, "%s",
                   local->message);
      return NULL;
    }
  GptdGptConfig config;
  if (!gptd_gpt_config_from_json (json, (gssize) json_len, config_path, &config, NULL,
                                  error))
    return NULL;

  g_autoptr (GptdGpt) base_model = gptd_gpt_dir_load (base_dir, &local);
  if (base_model == NULL)
    {
      g_set_error (error, local->domain, local->code, "%s: base model: %s", acfg_path,
                   local->message);
      return NULL;
    }
  g_autoptr (GptdGpt) model = gptd_gpt_new (&config, error);
  if (model == NULL)
    return NULL;
  if (rank < 1 || rank > G_MAXINT
      || !gptd_gpt_add_lora (model, (int) rank, (float) alpha, 0, &local))
    {
      g_set_error (error, GPTD_GPT_FILE_ERROR, GPTD_GPT_FILE_ERROR_CONFIG,
                   "%s: \"r\" %" G_GINT64_FORMAT " and \"lora_alpha\" %g do not fit "
                   "the model%s%s",
                   acfg_path, rank, alpha, local ? ": " : "", local ? local->message : "");
      return NULL;
    }

  g_autofree char *weights = g_build_filename (dir, GPTD_GPT_DIR_ADAPTER_WEIGHTS, NULL);
  g_autoptr (GptdSafetensors) st = gptd_safetensors_open (weights, error);
  if (st == NULL)
    return NULL;
  gboolean classifier = config.n_out != 0 && !config.tie_embeddings;
  guint used = 0;
  for (guint i = 0; i < gptd_gpt_n_tensors (model); i++)
    {
      const GptdNnTensor *t = gptd_gpt_get_tensor (model, i);
      g_autofree char *name = peft_name (t->name, classifier);
      const GptdSafetensorsTensor *s = gptd_safetensors_lookup (st, name);
      if (s != NULL)
        {
          if (!fill_tensor (t, st, s, is_adapter (t->name), error))
            return NULL;
          used++;
          continue;
        }
      const GptdNnTensor *bt = is_adapter (t->name)
                                   ? NULL : gptd_gpt_lookup_tensor (base_model, t->name);
      if (bt == NULL && strcmp (t->name, "lm_head.weight") == 0
          && gptd_gpt_get_config (base_model)->tie_embeddings)
        bt = gptd_gpt_lookup_tensor (base_model, "wte.weight");
      if (bt == NULL || bt->numel != t->numel || bt->ndim != t->ndim
          || memcmp (bt->shape, t->shape, sizeof t->shape) != 0)
        {
          g_set_error (error, GPTD_GPT_FILE_ERROR, GPTD_GPT_FILE_ERROR_MISSING,
                       "%s: tensor “%s” is neither stored (as “%s”) nor in the base "
                       "model %s with that shape",
                       weights, t->name, name, base_dir);
          return NULL;
        }
      memcpy (t->data, bt->data, t->numel * sizeof (float));
    }
  if (used != gptd_safetensors_get_n_tensors (st))
    {
      g_set_error (error, GPTD_GPT_FILE_ERROR, GPTD_GPT_FILE_ERROR_UNEXPECTED,
                   "%s: %u stored tensor%s not part of the model", weights,
                   gptd_safetensors_get_n_tensors (st) - used,
                   gptd_safetensors_get_n_tensors (st) - used == 1 ? " is" : "s are");
      return NULL;
    }
  if (!gptd_gpt_merge_lora (model, error))
    return NULL;
  return g_steal_pointer (&model);
}
