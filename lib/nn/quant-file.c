/* quant-file.c: model directories holding bf16 or q8 weights: saving a
 * converted model, telling a directory's format and loading one back with
 * every tensor checked (the layout is documented in docs/quantization.md).
 *
 * model.safetensors keeps every tensor the float32 model has, under the same
 * names, except the converted matrices (each layer's attn.c_attn, attn.c_proj,
 * mlp.c_fc and mlp.c_proj weights and the head: lm_head.weight, or
 * wte.weight when the head is tied), which are stored output-major, (n, K):
 *
 *   bf16: NAME.bf16   BF16 (n, K)
 *   q8:   NAME.q8     I8   (n, K)
 *         NAME.scale  F16  (n, K / 32)
 *
 * with the metadata gptd.weights = bf16 | q8 (and gptd.block = 32 for q8).
 */
#include "config.h"

#include "nn/gpt2-private.h"
#include "nn/quant-private.h"

#include <gptd/atomic-file.h>
#include <gptd/gpt2-file.h>
#include <gptd/safetensors.h>

#include <errno.h>
#include <math.h>
#include <string.h>

/* The converted matrix of @m (converted or only laid out) that stands for
 * the float32 tensor @t, with whether @t is input-major (Conv1D); NULL
 * when @t is not converted. */
static GptdQuantMatrix *
matrix_of (const GptdGpt *m, GptdGptQuant *q, const GptdNnTensor *t,
           gboolean *input_major)
{
  *input_major = TRUE;
  for (int l = 0; l < m->cfg.n_layer; l++)
    {
      const Block *bl = &m->blocks[l];
      if (t == bl->attn_w)
        return &q->attn[l];
      if (t == bl->proj_w)
        return &q->proj[l];
      if (t == bl->fc_w)
        return &q->fc[l];
      if (t == bl->fcp_w)
        return &q->fcp[l];
    }
  *input_major = FALSE;
  if (t == m->head_w)
    return &q->head;
  return NULL;
}

gboolean
gptd_gpt_quant_dir_save (GptdGpt *model, const char *dir,
                         const char *vocab_json, const char *merges_txt,
                         GError **error)
{
  g_return_val_if_fail (model != NULL && dir != NULL, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);
  GptdGptQuant *q = model->quant;
  if (q == NULL)
    {
      g_set_error (error, GPTD_QUANT_ERROR, GPTD_QUANT_ERROR_FORMAT,
                   "the model's weights are fp32: convert them to bf16 or q8 "
                   "before saving them to %s",
                   dir);
      return FALSE;
    }
  if (g_mkdir_with_parents (dir, 0755) != 0)
    {
      int errsv = errno;
      g_set_error (error, G_FILE_ERROR, g_file_error_from_errno (errsv),
                   "Cannot create directory “%s”: %s", dir,
                   g_strerror (errsv));
      return FALSE;
    }

  g_autoptr (GptdSafetensorsWriter) w = gptd_safetensors_writer_new ();
  g_autoptr (GPtrArray) names = g_ptr_array_new_with_free_func (g_free);
  for (guint i = 0; i < model->n_tensors; i++)
    {
      const GptdNnTensor *t = &model->tensors[i];
      gboolean input_major;
      const GptdQuantMatrix *mat = matrix_of (model, q, t, &input_major);
      if (mat == NULL)
        {
          gptd_safetensors_writer_add_f32 (w, t->name, (guint) t->ndim,
                                           t->shape, t->data);
          continue;
        }
      size_t shape[2] = { mat->n, mat->K };
      if (mat->format == GPTD_WEIGHT_FORMAT_BF16)
        {
          char *name = g_strconcat (t->name, ".bf16", NULL);
          g_ptr_array_add (names, name);
          gptd_safetensors_writer_add (w, name, GPTD_SAFETENSORS_DTYPE_BF16,
                                       2, shape, mat->bf16);
          continue;
        }
      char *qname = g_strconcat (t->name, ".q8", NULL);
      char *dname = g_strconcat (t->name, ".scale", NULL);
      g_ptr_array_add (names, qname);
      g_ptr_array_add (names, dname);
      gptd_safetensors_writer_add (w, qname, GPTD_SAFETENSORS_DTYPE_I8, 2,
                                   shape, mat->qs);
      size_t dshape[2] = { mat->n, mat->K / GPTD_QUANT_BLOCK };
      gptd_safetensors_writer_add (w, dname, GPTD_SAFETENSORS_DTYPE_F16, 2,
                                   dshape, mat->d);
    }
  gptd_safetensors_writer_set_metadata (w, "format", "pt");
  gptd_safetensors_writer_set_metadata (w, GPTD_QUANT_METADATA_FORMAT,
                                        gptd_weight_format_to_string (q->format));
  if (q->format == GPTD_WEIGHT_FORMAT_Q8)
    gptd_safetensors_writer_set_metadata (w, "gptd.block", "32");
  g_autofree char *weights = g_build_filename (dir, GPTD_GPT_DIR_WEIGHTS, NULL);
  if (!gptd_safetensors_writer_write (w, weights, error))
    return FALSE;

  g_autofree char *json = gptd_gpt_config_to_json (&model->cfg);
  g_autofree char *config = g_build_filename (dir, GPTD_GPT_DIR_CONFIG, NULL);
  if (!gptd_atomic_file_set_contents (config, json, strlen (json), error))
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

/* The format named by an open file's metadata (fp32 without one). */
static gboolean
stored_format (const GptdSafetensors *st, GptdWeightFormat *format,
               GError **error)
{
  const char *name = gptd_safetensors_get_metadata (st,
                                                    GPTD_QUANT_METADATA_FORMAT);
  *format = GPTD_WEIGHT_FORMAT_FP32;
  if (name == NULL)
    return TRUE;
  if (!gptd_weight_format_from_string (name, format, error))
    {
      g_prefix_error (error, "%s: metadata %s: ", gptd_safetensors_get_path (st),
                      GPTD_QUANT_METADATA_FORMAT);
      return FALSE;
    }
  return TRUE;
}

gboolean
gptd_gpt_dir_get_weight_format (const char *dir, GptdWeightFormat *format,
                                GError **error)
{
  g_return_val_if_fail (dir != NULL && format != NULL, FALSE);
  g_autofree char *config = g_build_filename (dir, GPTD_GPT_DIR_CONFIG, NULL);
  g_autofree char *index = g_build_filename (dir, GPTD_CHECKPOINT_INDEX, NULL);
  if (!g_file_test (config, G_FILE_TEST_EXISTS) &&
      g_file_test (index, G_FILE_TEST_EXISTS))
    {
      *format = GPTD_WEIGHT_FORMAT_FP32; /* checkpoints are float32 */
      return TRUE;
    }
  g_autofree char *weights = g_build_filename (dir, GPTD_GPT_DIR_WEIGHTS, NULL);
  g_autoptr (GptdSafetensors) st = gptd_safetensors_open (weights, error);
  if (st == NULL)
    return FALSE;
  return stored_format (st, format, error);
}

/* The stored tensor @name with @dtype and shape (@d0, @d1) (@d1 0 for one
 * dimension), or NULL with an error naming the file and tensor. */
static const GptdSafetensorsTensor *
expect (const GptdSafetensors *st, const char *name, GptdSafetensorsDtype dtype,
        size_t d0, size_t d1, GHashTable *seen, GError **error)
{
  const char *path = gptd_safetensors_get_path (st);
  const GptdSafetensorsTensor *t = gptd_safetensors_lookup (st, name);
  if (t == NULL)
    {
      g_set_error (error, GPTD_QUANT_ERROR, GPTD_QUANT_ERROR_FILE,
                   "%s: tensor %s is missing", path, name);
      return NULL;
    }
  g_hash_table_add (seen, (gpointer) t->name);
  if (t->dtype != dtype)
    {
      g_set_error (error, GPTD_QUANT_ERROR, GPTD_QUANT_ERROR_FILE,
                   "%s: tensor %s is %s, expected %s", path, name,
                   gptd_safetensors_dtype_to_string (t->dtype),
                   gptd_safetensors_dtype_to_string (dtype));
      return NULL;
    }
  guint ndim = d1 != 0 ? 2 : 1;
  if (t->n_dims != ndim || t->shape[0] != d0 || (ndim == 2 && t->shape[1] != d1))
    {
      g_autoptr (GString) got = g_string_new (NULL);
      for (guint i = 0; i < t->n_dims; i++)
        g_string_append_printf (got, "%s%zu", i ? ", " : "", t->shape[i]);
      if (ndim == 2)
        g_set_error (error, GPTD_QUANT_ERROR, GPTD_QUANT_ERROR_FILE,
                     "%s: tensor %s has shape [%s], expected [%zu, %zu]%s",
                     path, name, got->str, d0, d1,
                     g_str_has_suffix (name, ".scale")
                       ? " (one scale per block of 32)" : "");
      else
        g_set_error (error, GPTD_QUANT_ERROR, GPTD_QUANT_ERROR_FILE,
                     "%s: tensor %s has shape [%s], expected [%zu]", path,
                     name, got->str, d0);
      return NULL;
    }
  return t;
}

GptdGpt *
gptd_gpt_quant_dir_load (const char *dir, GError **error)
{
  g_return_val_if_fail (dir != NULL, NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  g_autofree char *config_path = g_build_filename (dir, GPTD_GPT_DIR_CONFIG,
                                                   NULL);
  g_autofree char *json = NULL;
  gsize json_len = 0;
  if (!g_file_get_contents (config_path, &json, &json_len, error))
    return NULL;
  GptdGptConfig cfg;
  if (!gptd_gpt_config_from_json (json, (gssize) json_len, config_path, &cfg,
                                  NULL, error))
    return NULL;
  g_autofree char *path = g_build_filename (dir, GPTD_GPT_DIR_WEIGHTS, NULL);
  g_autoptr (GptdSafetensors) st = gptd_safetensors_open (path, error);
  if (st == NULL)
    return NULL;
  GptdWeightFormat format;
  if (!stored_format (st, &format, error))
    return NULL;
  if (format == GPTD_WEIGHT_FORMAT_FP32)
    {
      g_set_error (error, GPTD_QUANT_ERROR, GPTD_QUANT_ERROR_FILE,
                   "%s names no %s metadata: it is not a quantized model "
                   "(load it as an ordinary model directory)",
                   path, GPTD_QUANT_METADATA_FORMAT);
      return NULL;
    }
  const char *block = gptd_safetensors_get_metadata (st, "gptd.block");
  if (format == GPTD_WEIGHT_FORMAT_Q8 &&
      (block == NULL || strcmp (block, "32") != 0))
    {
      g_set_error (error, GPTD_QUANT_ERROR, GPTD_QUANT_ERROR_FILE,
                   "%s: metadata gptd.block is %s%s%s, expected \"32\"", path,
                   block ? "\"" : "", block ? block : "missing",
                   block ? "\"" : "");
      return NULL;
    }

  g_autoptr (GptdGpt) m = gptd_gpt_new (&cfg, error);
  if (m == NULL)
    return NULL;
  GptdGptQuant *q = gptd__gpt_quant_new (m, format, error);
  if (q == NULL)
    return NULL;
  m->quant = q;

  /* Check every tensor, then copy. */
  g_autoptr (GHashTable) seen = g_hash_table_new (g_str_hash, g_str_equal);
  const GptdSafetensorsTensor **src = g_new0 (const GptdSafetensorsTensor *,
                                              2 * (size_t) m->n_tensors);
  gboolean ok = TRUE;
  for (guint i = 0; ok && i < m->n_tensors; i++)
    {
      const GptdNnTensor *t = &m->tensors[i];
      gboolean input_major;
      GptdQuantMatrix *mat = matrix_of (m, q, t, &input_major);
      if (mat == NULL)
        {
          src[2 * i] = expect (st, t->name, GPTD_SAFETENSORS_DTYPE_F32,
                               t->shape[0], t->ndim == 2 ? t->shape[1] : 0,
                               seen, error);
          ok = src[2 * i] != NULL;
        }
      else if (format == GPTD_WEIGHT_FORMAT_BF16)
        {
          g_autofree char *name = g_strconcat (t->name, ".bf16", NULL);
          src[2 * i] = expect (st, name, GPTD_SAFETENSORS_DTYPE_BF16, mat->n,
                               mat->K, seen, error);
          ok = src[2 * i] != NULL;
        }
      else
        {
          g_autofree char *qname = g_strconcat (t->name, ".q8", NULL);
          g_autofree char *dname = g_strconcat (t->name, ".scale", NULL);
          src[2 * i] = expect (st, qname, GPTD_SAFETENSORS_DTYPE_I8, mat->n,
                               mat->K, seen, error);
          ok = src[2 * i] != NULL;
          if (ok)
            src[2 * i + 1] = expect (st, dname, GPTD_SAFETENSORS_DTYPE_F16,
                                     mat->n, mat->K / GPTD_QUANT_BLOCK, seen,
                                     error);
          ok = ok && src[2 * i + 1] != NULL;
        }
    }
  for (guint i = 0; ok && i < gptd_safetensors_get_n_tensors (st); i++)
    {
      const GptdSafetensorsTensor *t = gptd_safetensors_get_tensor (st, i);
      if (!g_hash_table_contains (seen, t->name))
        {
          g_set_error (error, GPTD_QUANT_ERROR, GPTD_QUANT_ERROR_FILE,
                       "%s: tensor %s is not part of a %s model with this "
                       "config.json",
                       path, t->name, gptd_weight_format_to_string (format));
          ok = FALSE;
        }
    }

  float *tmp = NULL;
  if (ok)
    {
      size_t C = (size_t) cfg.n_embd;
      tmp = g_try_new (float, MAX (4 * C * C, (size_t) m->n_out * C));
      if (tmp == NULL)
        {
          g_set_error (error, GPTD_NN_ERROR, GPTD_NN_ERROR_NO_MEMORY,
                       "cannot allocate scratch to load %s", path);
          ok = FALSE;
        }
    }
  for (guint i = 0; ok && i < m->n_tensors; i++)
    {
      GptdNnTensor *t = &m->tensors[i];
      gboolean input_major;
      GptdQuantMatrix *mat = matrix_of (m, q, t, &input_major);
      if (mat == NULL)
        {
          memcpy (t->data, src[2 * i]->data, t->numel * sizeof (float));
          continue;
        }
      size_t n = mat->n, K = mat->K;
      if (format == GPTD_WEIGHT_FORMAT_BF16)
        {
          memcpy (mat->bf16, src[2 * i]->data, n * K * 2);
          gptd__quant_from_bf16 (mat->bf16, n * K, tmp);
        }
      else
        {
          memcpy (mat->qs, src[2 * i]->data, n * K);
          memcpy (mat->d, src[2 * i + 1]->data, n * (K / GPTD_QUANT_BLOCK) * 2);
          for (size_t b = 0; b < n * K / GPTD_QUANT_BLOCK; b++)
            {
              float s = gptd__f16_to_f32 (mat->d[b]);
              if (!isfinite (s) || s < 0.0f)
                {
                  g_set_error (error, GPTD_QUANT_ERROR, GPTD_QUANT_ERROR_FILE,
                               "%s: tensor %s.scale has a scale that is not "
                               "a finite, non-negative number (%g) at block "
                               "%zu",
                               path, t->name, s, b);
                  ok = FALSE;
                  break;
                }
            }
          gptd__quant_from_q8 (mat->qs, mat->d, n * K, tmp);
        }
      // The float32 weights: (n, K) as stored, or (K, n) for Conv1D.
      if (!input_major)
        memcpy (t->data, tmp, n * K * sizeof (float));
      else
        for (size_t j = 0; j < n; j++)
          for (size_t k = 0; k < K; k++)
            t->data[k * n + j] = tmp[j * K + k];
    }
  g_free (tmp);
  g_free (src);
  if (!ok)
    return NULL;
  return g_steal_pointer (&m);
}

GptdGpt *
gptd_gpt_dir_load_with_format (const char *dir, int format, GError **error)
{
  g_return_val_if_fail (dir != NULL, NULL);
  g_return_val_if_fail (format >= -1 && format <= GPTD_WEIGHT_FORMAT_Q8, NULL);
  GptdWeightFormat stored;
  if (!gptd_gpt_dir_get_weight_format (dir, &stored, error))
    return NULL;
  if (stored != GPTD_WEIGHT_FORMAT_FP32)
    {
      if (format != -1 && (GptdWeightFormat) format != stored)
        {
          g_set_error (error, GPTD_QUANT_ERROR, GPTD_QUANT_ERROR_FORMAT,
                       "%s holds %s weights: it cannot be used as %s (convert "
                       "the float32 model instead)",
                       dir, gptd_weight_format_to_string (stored),
                       gptd_weight_format_to_string (format));
          return NULL;
        }
      return gptd_gpt_quant_dir_load (dir, error);
    }
  g_autoptr (GptdGpt) m = gptd_gpt_dir_load (dir, error);
  if (m == NULL || !gptd_gpt_merge_lora (m, error))
    return NULL;
  if (format > GPTD_WEIGHT_FORMAT_FP32 &&
      !gptd_gpt_set_weight_format (m, (GptdWeightFormat) format, error))
    return NULL;
  return g_steal_pointer (&m);
}
