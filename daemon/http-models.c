/* daemon/http-models.c: the HTTP gateway's models directory. Each subdirectory
 * holding a config.json is a model whose id is the directory's name: a
 * classifier when the config says so (GPT2ForSequenceClassification in
 * architectures, or num_labels, as the daemon decides), else a language model.
 * A trainer's checkpoint root (checkpoint.json naming the latest checkpoint)
 * stands for its latest checkpoint, as it does for the daemon. Ids are checked
 * before they touch the file system. A language model's chat
 * template is Alpaca unless the directory's `prompt-template` file names another.
 * Prompt tokens are counted with the model's own tokenizer, cached; generation
 * stops at config.json's eos_token_id, else at the tokenizer's <|endoftext|>.
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "http.h"

#include <gptd/json-load.h>
#include <gptd/bpe.h>
#include <gptd/gpt2-file.h>

#include <errno.h>
#include <string.h>
#include <sys/stat.h>

#define MODEL_CONFIG "config.json"
#define MODEL_TEMPLATE "prompt-template"

void
gptd__http_model_free (GptdHttpModel *model)
{
  if (model == NULL)
    return;
  g_free (model->id);
  g_free (model->dir);
  g_free (model->files_dir);
  g_free (model);
}

gboolean
gptd__http_model_id_valid (const char *id)
{
  if (id == NULL || *id == '\0' || strlen (id) > 255 || !g_utf8_validate (id, -1, NULL))
    return FALSE;
  if (strcmp (id, ".") == 0 || strcmp (id, "..") == 0)
    return FALSE;
  for (const char *p = id; *p; p = g_utf8_next_char (p))
    {
      gunichar c = g_utf8_get_char (p);
      if (c == '/' || c == '\\' || g_unichar_iscntrl (c))
        return FALSE;
    }
  return TRUE;
}

/* Reads @dir/config.json into @model's kind and eos id; a trainer's checkpoint
 * root stands for its latest checkpoint, as for the daemon. */
static gboolean
model_read_config (GptdHttpModel *model, GError **error)
{
  g_autofree char *path = g_build_filename (model->dir, MODEL_CONFIG, NULL);
  g_autofree char *index = g_build_filename (model->dir, GPTD_CHECKPOINT_INDEX, NULL);
  if (!g_file_test (path, G_FILE_TEST_EXISTS) && g_file_test (index, G_FILE_TEST_IS_REGULAR))
    {
      g_autofree char *latest = gptd_checkpoint_get_latest (model->dir, NULL);
      if (latest != NULL)
        {
          g_free (path);
          path = g_build_filename (latest, MODEL_CONFIG, NULL);
        }
    }
  model->files_dir = g_path_get_dirname (path);
  struct stat st;
  if (stat (path, &st) != 0 || !S_ISREG (st.st_mode))
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_NOT_FOUND, "%s: no such file", path);
      return FALSE;
    }
  model->created = (gint64) st.st_mtime;
  g_autoptr (JsonParser) parser = gptd_json_load_file_bounded (path, 0, error);
  if (parser == NULL)
    return FALSE;
  JsonNode *root = json_parser_get_root (parser);
  if (root == NULL || !JSON_NODE_HOLDS_OBJECT (root))
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA, "%s: not a JSON object", path);
      return FALSE;
    }
  JsonObject *obj = json_node_get_object (root);
  model->kind = gptd_gpt_config_is_classifier (obj) ? GPTD_HTTP_MODEL_CLASSIFIER
                                                    : GPTD_HTTP_MODEL_LANGUAGE;
  model->eos_id = -1;
  JsonNode *node = json_object_get_member (obj, "eos_token_id");
  if (node != NULL && JSON_NODE_HOLDS_VALUE (node)
      && json_node_get_value_type (node) == G_TYPE_INT64)
    {
      gint64 eos = json_node_get_int (node);
      if (eos >= 0 && eos < G_MAXINT32)
        model->eos_id = (int) eos;
    }
  return TRUE;
}

static GptdHttpModel *
model_open (const char *models_dir, const char *id, GError **error)
{
  g_autoptr (GptdHttpModel) model = g_new0 (GptdHttpModel, 1);
  model->id = g_strdup (id);
  g_autofree char *dir = g_build_filename (models_dir, id, NULL);
  model->dir = g_canonicalize_filename (dir, NULL);
  if (!model_read_config (model, error))
    return NULL;
  return g_steal_pointer (&model);
}

static int
compare_models (gconstpointer a, gconstpointer b)
{
  const GptdHttpModel *ma = *(GptdHttpModel *const *) a, *mb = *(GptdHttpModel *const *) b;
  return strcmp (ma->id, mb->id);
}

GPtrArray *
gptd__http_models_list (const char *models_dir, GError **error)
{
  g_autoptr (GPtrArray) models =
    g_ptr_array_new_with_free_func ((GDestroyNotify) gptd__http_model_free);
  GError *local = NULL;
  g_autoptr (GDir) dir = g_dir_open (models_dir, 0, &local);
  if (dir == NULL)
    {
      if (g_error_matches (local, G_FILE_ERROR, G_FILE_ERROR_NOENT))
        {
          g_error_free (local);
          return g_steal_pointer (&models);
        }
      g_propagate_prefixed_error (error, local, "the models directory %s: ", models_dir);
      return NULL;
    }
  const char *name;
  while ((name = g_dir_read_name (dir)) != NULL)
    {
      if (!gptd__http_model_id_valid (name) || name[0] == '.')
        continue;
      GptdHttpModel *model = model_open (models_dir, name, NULL);
      if (model != NULL)
        g_ptr_array_add (models, model);
    }
  g_ptr_array_sort (models, compare_models);
  return g_steal_pointer (&models);
}

GptdHttpModel *
gptd__http_model_find (const char *models_dir, const char *id, GError **error)
{
  if (!gptd__http_model_id_valid (id))
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                   "'%s' cannot name a model: an id is a directory name without '/', "
                   "control characters, '.' or '..'", id);
      return NULL;
    }
  g_autoptr (GError) local = NULL;
  GptdHttpModel *model = model_open (models_dir, id, &local);
  if (model == NULL)
    {
      if (g_error_matches (local, G_IO_ERROR, G_IO_ERROR_NOT_FOUND))
        g_set_error (error, G_IO_ERROR, G_IO_ERROR_NOT_FOUND,
                     "The model '%s' does not exist (no %s/%s/" MODEL_CONFIG "); "
                     "GET /v1/models lists the models", id, models_dir, id);
      else
        g_set_error (error, G_IO_ERROR, G_IO_ERROR_FAILED, "The model '%s' cannot be read: %s",
                     id, local->message);
    }
  return model;
}

GptdPromptTemplate *
gptd__http_model_template (const GptdHttpModel *model, GError **error)
{
  g_autofree char *path = g_build_filename (model->dir, MODEL_TEMPLATE, NULL);
  g_autofree char *text = NULL;
  GError *local = NULL;
  if (!g_file_get_contents (path, &text, NULL, &local))
    {
      if (g_error_matches (local, G_FILE_ERROR, G_FILE_ERROR_NOENT))
        {
          g_error_free (local);
          return gptd__prompt_template_builtin ("alpaca");
        }
      g_propagate_error (error, local);
      return NULL;
    }
  g_strstrip (text);
  GptdPromptTemplate *builtin = gptd__prompt_template_builtin (text);
  if (builtin != NULL)
    return builtin;
  return gptd__prompt_template_load (path, error);
}

/* ---- Counting tokens ------------------------------------------------------------ */

static GMutex tokenizers_lock;
static GHashTable *tokenizers;   /* model directory -> GptdBpe* */

/* The tokenizer of @model, from the cache (NULL when it cannot be read). */
static GptdBpe *
model_tokenizer (const GptdHttpModel *model)
{
  g_mutex_lock (&tokenizers_lock);
  if (tokenizers == NULL)
    tokenizers = g_hash_table_new_full (g_str_hash, g_str_equal, g_free,
                                        (GDestroyNotify) gptd_bpe_unref);
  GptdBpe *bpe = g_hash_table_lookup (tokenizers, model->dir);
  if (bpe != NULL)
    gptd_bpe_ref (bpe);
  g_mutex_unlock (&tokenizers_lock);
  if (bpe != NULL)
    return bpe;
  g_autoptr (GError) error = NULL;
  bpe = gptd_bpe_load (model->files_dir, &error);
  if (bpe == NULL)
    {
      g_debug ("The tokenizer of the model %s: %s", model->id, error->message);
      return NULL;
    }
  g_mutex_lock (&tokenizers_lock);
  g_hash_table_replace (tokenizers, g_strdup (model->dir), gptd_bpe_ref (bpe));
  g_mutex_unlock (&tokenizers_lock);
  return bpe;
}

gint64
gptd__http_model_count_tokens (const GptdHttpModel *model, const char *text)
{
  g_autoptr (GptdBpe) bpe = model_tokenizer (model);
  if (bpe == NULL)
    return -1;
  g_autoptr (GArray) ids = g_array_new (FALSE, FALSE, sizeof (guint32));
  GptdBpeEncodeOptions opts = { 0 };
  opts.special = GPTD_BPE_SPECIAL_ALLOWED;
  if (!gptd_bpe_encode (bpe, text, strlen (text), &opts, ids, NULL))
    return -1;
  return (gint64) ids->len;
}

int
gptd__http_model_eos_id (const GptdHttpModel *model)
{
  if (model->eos_id >= 0)
    return model->eos_id;
  g_autoptr (GptdBpe) bpe = model_tokenizer (model);
  gint64 id = bpe != NULL ? gptd_bpe_get_special_id (bpe, "<|endoftext|>") : -1;
  return id >= 0 && id < G_MAXINT32 ? (int) id : -1;
}
