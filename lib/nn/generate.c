/* generate.c: the text generator: a model, its tokenizer and a KV cache; the
 * book's generate() loop with left truncation to the context, the KV-cache
 * path (with its re-prefill once the window slides), eos, streaming of whole
 * UTF-8 characters and cancellation.  Sampling itself is in sampling.c.
 */
#include "config.h"

#include <gptd/generate.h>
#include <gptd/gpt2-file.h>
#include <gptd/bpe.h>
#include <gptd/quant.h>

#include <string.h>

struct _GptdGenerator {
  GptdGpt *model;
  GptdBpe *bpe;             /* NULL: ids only */
  GptdBpeDecoder *decoder;  /* with bpe */
  GptdGptKvCache *cache;    /* made on first use */
  int context_length;
  int vocab_size;
};

static const char *const stop_names[] = { "length", "eos", "cancelled", "stop" };

const char *
gptd_generate_stop_to_string (GptdGenerateStop stop)
{
  g_return_val_if_fail ((guint) stop < G_N_ELEMENTS (stop_names), "unknown");
  return stop_names[stop];
}

GptdGenerator *
gptd_generator_new (GptdGpt *model, int context_length, GError **error)
{
  g_return_val_if_fail (model != NULL, NULL);
  g_autoptr (GptdGpt) owned = model;
  const GptdGptConfig *cfg = gptd_gpt_get_config (model);

  if (cfg->n_out != 0 && cfg->n_out != cfg->vocab_size)
    {
      g_set_error (error, GPTD_GENERATE_ERROR, GPTD_GENERATE_ERROR_MODEL,
                   "the model's output head has %d outputs for a vocabulary "
                   "of %d: it is a classifier, not a language model",
                   cfg->n_out, cfg->vocab_size);
      return NULL;
    }
  if (context_length < 0 || context_length > cfg->context_length)
    {
      g_set_error (error, GPTD_GENERATE_ERROR, GPTD_GENERATE_ERROR_CONTEXT,
                   "context length %d is longer than the model's context of "
                   "%d positions",
                   context_length, cfg->context_length);
      return NULL;
    }

  GptdGenerator *g = g_new0 (GptdGenerator, 1);
  g->model = g_steal_pointer (&owned);
  g->context_length = context_length > 0 ? context_length : cfg->context_length;
  g->vocab_size = cfg->vocab_size;
  return g;
}

void
gptd_generator_load_options_init (GptdGeneratorLoadOptions *options)
{
  g_return_if_fail (options != NULL);
  memset (options, 0, sizeof *options);
  options->weights = -1;
}

GptdGenerator *
gptd_generator_load (const char *model_dir, const char *vocab,
                     int context_length, GError **error)
{
  GptdGeneratorLoadOptions o;
  gptd_generator_load_options_init (&o);
  o.vocab = vocab;
  o.context_length = context_length;
  return gptd_generator_load_full (model_dir, &o, error);
}

GptdGenerator *
gptd_generator_load_full (const char *model_dir,
                          const GptdGeneratorLoadOptions *options,
                          GError **error)
{
  g_return_val_if_fail (model_dir != NULL && options != NULL, NULL);
  const char *vocab = options->vocab;
  int context_length = options->context_length;

  /* The tokenizer defaults to the model directory's own; for a checkpoint
   * root that is the latest checkpoint's directory. */
  g_autofree char *own_vocab = NULL;
  if (vocab == NULL)
    {
      g_autofree char *config = g_build_filename (model_dir, GPTD_GPT_DIR_CONFIG,
                                                  NULL);
      g_autofree char *index = g_build_filename (model_dir,
                                                 GPTD_CHECKPOINT_INDEX, NULL);
      if (!g_file_test (config, G_FILE_TEST_EXISTS) &&
          g_file_test (index, G_FILE_TEST_EXISTS))
        {
          own_vocab = gptd_checkpoint_get_latest (model_dir, error);
          if (own_vocab == NULL)
            return NULL;
        }
      else
        own_vocab = g_strdup (model_dir);
      vocab = own_vocab;
    }

  g_autoptr (GptdBpe) bpe = gptd_bpe_load (vocab, error);
  if (bpe == NULL)
    return NULL;
  GptdGpt *model = options->weights == GPTD_WEIGHT_FORMAT_FP32
                      ? gptd_gpt_dir_load (model_dir, error)
                      : gptd_gpt_dir_load_with_format (model_dir,
                                                       options->weights, error);
  if (model == NULL)
    return NULL;
  /* A LoRA checkpoint decodes with its adapters merged. */
  if (!gptd_gpt_merge_lora (model, error))
    {
      gptd_gpt_free (model);
      return NULL;
    }
  GptdGenerator *g = gptd_generator_new (model, context_length, error);
  if (g == NULL)
    return NULL;
  if (gptd_bpe_get_n_vocab (bpe) > (guint) g->vocab_size)
    {
      g_set_error (error, GPTD_GENERATE_ERROR, GPTD_GENERATE_ERROR_TOKENIZER,
                   "the tokenizer %s has %u tokens, more than the vocabulary "
                   "of %d of the model in %s",
                   gptd_bpe_get_source (bpe), gptd_bpe_get_n_vocab (bpe),
                   g->vocab_size, model_dir);
      gptd_generator_free (g);
      return NULL;
    }
  g->decoder = gptd_bpe_decoder_new (bpe);
  g->bpe = g_steal_pointer (&bpe);
  return g;
}

void
gptd_generator_free (GptdGenerator *generator)
{
  if (generator == NULL)
    return;
  gptd_gpt_kv_cache_free (generator->cache);
  gptd_bpe_decoder_free (generator->decoder);
  gptd_bpe_unref (generator->bpe);
  gptd_gpt_free (generator->model);
  g_free (generator);
}

GptdGpt *
gptd_generator_get_model (GptdGenerator *generator)
{
  g_return_val_if_fail (generator != NULL, NULL);
  return generator->model;
}

int
gptd_generator_get_context_length (const GptdGenerator *generator)
{
  g_return_val_if_fail (generator != NULL, 0);
  return generator->context_length;
}

gboolean
gptd_generator_has_tokenizer (const GptdGenerator *generator)
{
  g_return_val_if_fail (generator != NULL, FALSE);
  return generator->bpe != NULL;
}

gint32 *
gptd_generator_encode (GptdGenerator *generator, const char *text,
                       int *n_ids, GError **error)
{
  g_return_val_if_fail (generator != NULL && text != NULL, NULL);
  g_return_val_if_fail (n_ids != NULL, NULL);
  if (generator->bpe == NULL)
    {
      g_set_error (error, GPTD_GENERATE_ERROR, GPTD_GENERATE_ERROR_TOKENIZER,
                   "the generator has no tokenizer to encode the prompt with");
      return NULL;
    }
  /* Prompts may name special tokens such as <|endoftext|> (as the book's
   * allowed_special) and invalid UTF-8 becomes U+FFFD. */
  GptdBpeEncodeOptions opts = { 0 };
  opts.special = GPTD_BPE_SPECIAL_ALLOWED;
  opts.invalid = GPTD_BPE_INVALID_REPLACE;
  g_autoptr (GArray) ids = g_array_new (FALSE, FALSE, sizeof (guint32));
  if (!gptd_bpe_encode (generator->bpe, text, strlen (text), &opts, ids, error))
    return NULL;
  gint32 *out = g_new (gint32, ids->len + 1);
  for (guint i = 0; i < ids->len; i++)
    out[i] = (gint32) g_array_index (ids, guint32, i);
  *n_ids = (int) ids->len;
  return out;
}

void
gptd_generate_result_free (GptdGenerateResult *result)
{
  if (result == NULL)
    return;
  g_free (result->ids);
  g_free (result->text);
  g_free (result);
}

/* Computes the logits of the next token after seq[0..len) (len >= 1), looking
 * at the last context_length tokens.  With the cache, @first says the cache
 * does not yet hold seq[0..len-1). */
static const float *
next_logits (GptdGenerator *g, const gint32 *seq, int len, gboolean use_cache,
             gboolean first, GError **error)
{
  const int ctx = g->context_length;
  int start = len > ctx ? len - ctx : 0;
  int T = len - start;

  if (!use_cache)
    {
      // (1, T) -> (1, 1, V)
      if (!gptd_gpt_forward (g->model, seq + start, NULL, 1, T,
                             GPTD_GPT_FORWARD_LAST_ONLY, NULL, error))
        return NULL;
      return gptd_gpt_get_logits (g->model, NULL, NULL, NULL);
    }

  if (g->cache == NULL)
    {
      g->cache = gptd_gpt_kv_cache_new (g->model, ctx, error);
      if (g->cache == NULL)
        return NULL;
    }
  if (first || len > ctx)
    {
      /* The prompt, or a window that slid: positions are absolute, so every
       * cached key and value is stale; feed the whole window again. */
      gptd_gpt_kv_cache_reset (g->cache);
      return gptd_gpt_forward_cached (g->model, g->cache, seq + start, T,
                                      error);
    }
  /* The cache holds seq[0..len-1); append the newest token. */
  g_assert (gptd_gpt_kv_cache_get_length (g->cache) == len - 1);
  return gptd_gpt_forward_cached (g->model, g->cache, seq + len - 1, 1, error);
}

/* Replaces U+0000 by U+FFFD, so that text is always a C string (for
 * callers, protobuf strings and C-string APIs alike). */
static void
replace_nul (GString *s)
{
  for (gsize i = 0; i < s->len; i++)
    if (s->str[i] == '\0')
      {
        g_string_erase (s, (gssize) i, 1);
        g_string_insert (s, (gssize) i, "\xef\xbf\xbd");
        i += 2;
      }
}

/* Passes @piece through the stop strings (when there are any) into @text and
 * the callback, as token @id.  Returns TRUE when a stop string was reached. */
static gboolean
release_text (GptdStopMatcher *stops, gint32 id, GString *piece,
              GString *shown, GString *text, const GptdGenerateCallbacks *cb)
{
  gboolean hit = FALSE;
  GString *out = piece;
  if (stops != NULL)
    {
      g_string_truncate (shown, 0);
      hit = gptd_stop_matcher_push (stops, piece->str, piece->len, shown);
      out = shown;
    }
  g_string_append_len (text, out->str, out->len);
  if (cb != NULL && cb->token != NULL && (id >= 0 || out->len > 0))
    cb->token (id, out->str, out->len, cb->user_data);
  return hit;
}

/* Decodes one token into @piece when there is a tokenizer (else leaves it
 * empty). */
static gboolean
decode_token (GptdGenerator *g, gint32 id, GString *piece, GError **error)
{
  g_string_truncate (piece, 0);
  if (g->bpe == NULL)
    return TRUE;
  gsize len;
  if (gptd_bpe_get_token (g->bpe, (guint32) id, &len) == NULL)
    {
      /* A model vocabulary larger than the tokenizer's (padded): the id has
       * no text; close what is pending and show a replacement. */
      gptd_bpe_decoder_finish (g->decoder, piece);
      g_string_append_unichar (piece, 0xFFFD);
    }
  else if (!gptd_bpe_decoder_push (g->decoder, (guint32) id, piece, error))
    return FALSE;
  replace_nul (piece);
  return TRUE;
}

GptdGenerateResult *
gptd_generator_generate_ids (GptdGenerator *generator, const gint32 *prompt,
                             int n_prompt, const GptdGenerateOptions *options,
                             const GptdGenerateCallbacks *callbacks,
                             GError **error)
{
  g_return_val_if_fail (generator != NULL, NULL);
  g_return_val_if_fail (options != NULL, NULL);
  g_return_val_if_fail (prompt != NULL || n_prompt == 0, NULL);
  GptdGenerator *g = generator;

  if (!gptd_generate_options_validate (options, error))
    return NULL;
  if (!options->use_kv_cache &&
      gptd_gpt_get_weight_format (g->model) != GPTD_WEIGHT_FORMAT_FP32)
    {
      g_set_error (error, GPTD_GENERATE_ERROR, GPTD_GENERATE_ERROR_OPTIONS,
                   "the model's weights are %s, which only the KV-cache path "
                   "uses: generate with the KV cache",
                   gptd_weight_format_to_string (
                     gptd_gpt_get_weight_format (g->model)));
      return NULL;
    }
  if (n_prompt < 1)
    {
      g_set_error (error, GPTD_GENERATE_ERROR, GPTD_GENERATE_ERROR_PROMPT,
                   "the prompt is empty: generation needs at least one token");
      return NULL;
    }
  for (int i = 0; i < n_prompt; i++)
    if (prompt[i] < 0 || prompt[i] >= g->vocab_size)
      {
        g_set_error (error, GPTD_GENERATE_ERROR, GPTD_GENERATE_ERROR_PROMPT,
                     "prompt token %d is id %d, outside the model's vocabulary "
                     "of %d",
                     i, prompt[i], g->vocab_size);
        return NULL;
      }

  /* Left truncation: only the last context_length prompt tokens matter. */
  const int ctx = g->context_length;
  int dropped = n_prompt > ctx ? n_prompt - ctx : 0;
  int len = n_prompt - dropped;
  gint32 *seq = g_new (gint32, (gsize) len + options->max_new_tokens);
  memcpy (seq, prompt + dropped, sizeof (gint32) * len);

  g_autoptr (GptdGenerateResult) res = g_new0 (GptdGenerateResult, 1);
  res->n_prompt = len;
  res->n_prompt_dropped = dropped;
  res->stop = GPTD_GENERATE_STOP_LENGTH;
  g_autoptr (GptdSampler) sampler = gptd_sampler_new (options, g->vocab_size);
  g_autoptr (GString) text = g_string_new (NULL);
  g_autoptr (GString) piece = g_string_new (NULL);
  g_autoptr (GString) shown = g_string_new (NULL);
  g_autoptr (GptdStopMatcher) stops = NULL;
  if (options->stop != NULL && options->stop[0] != NULL)
    {
      if (g->bpe == NULL)
        {
          g_set_error (error, GPTD_GENERATE_ERROR, GPTD_GENERATE_ERROR_OPTIONS,
                       "stop strings need a tokenizer to decode the text with");
          g_free (seq);
          return NULL;
        }
      stops = gptd_stop_matcher_new (options->stop, error);
      if (stops == NULL)
        {
          g_free (seq);
          return NULL;
        }
    }
  if (g->decoder != NULL)
    gptd_bpe_decoder_finish (g->decoder, piece); /* a fresh stream */
  g_string_truncate (piece, 0);

  gint64 t0 = g_get_monotonic_time (), t1 = t0;
  gboolean ok = TRUE;
  for (int step = 0; step < options->max_new_tokens; step++)
    {
      if (callbacks != NULL && callbacks->cancelled != NULL &&
          callbacks->cancelled (callbacks->user_data))
        {
          res->stop = GPTD_GENERATE_STOP_CANCELLED;
          break;
        }
      const float *logits = next_logits (g, seq, len, options->use_kv_cache,
                                         step == 0, error);
      if (logits == NULL)
        {
          ok = FALSE;
          break;
        }
      gint32 next = gptd_sampler_sample (sampler, logits);
      if (step == 0)
        t1 = g_get_monotonic_time ();
      if (next == options->eos_id)
        {
          res->stop = GPTD_GENERATE_STOP_EOS;
          break;
        }
      seq[len++] = next;
      if (!decode_token (g, next, piece, error))
        {
          ok = FALSE;
          break;
        }
      if (release_text (stops, next, piece, shown, text, callbacks))
        {
          res->stop = GPTD_GENERATE_STOP_STRING;
          break;
        }
    }
  gint64 t2 = g_get_monotonic_time ();

  if (g->decoder != NULL)
    {
      /* Bytes of an unfinished character become U+FFFD. */
      g_string_truncate (piece, 0);
      gptd_bpe_decoder_finish (g->decoder, piece);
      if (ok && res->stop != GPTD_GENERATE_STOP_STRING)
        {
          if (release_text (stops, -1, piece, shown, text, callbacks))
            res->stop = GPTD_GENERATE_STOP_STRING;
          else if (stops != NULL)
            {
              /* The text ended short of any stop string: what was held back
               * is shown. */
              g_string_truncate (piece, 0);
              gptd_stop_matcher_finish (stops, piece);
              g_string_append_len (text, piece->str, piece->len);
              if (piece->len > 0 && callbacks != NULL && callbacks->token != NULL)
                callbacks->token (-1, piece->str, piece->len, callbacks->user_data);
            }
        }
    }
  if (!ok)
    {
      g_free (seq);
      return NULL;
    }

  res->n_ids = len - res->n_prompt;
  res->ids = g_new (gint32, res->n_ids + 1);
  memcpy (res->ids, seq + res->n_prompt, sizeof (gint32) * res->n_ids);
  g_free (seq);
  if (g->bpe != NULL)
    {
      res->text_len = text->len;
      res->text = g_string_free (g_steal_pointer (&text), FALSE);
    }
  res->prefill_s = (t1 - t0) / 1e6;
  res->decode_s = (t2 - t1) / 1e6;
  return g_steal_pointer (&res);
}

GptdGenerateResult *
gptd_generator_generate (GptdGenerator *generator, const char *prompt,
                         const GptdGenerateOptions *options,
                         const GptdGenerateCallbacks *callbacks,
                         GError **error)
{
  g_return_val_if_fail (generator != NULL && prompt != NULL, NULL);
  int n = 0;
  g_autofree gint32 *ids = gptd_generator_encode (generator, prompt, &n, error);
  if (ids == NULL)
    return NULL;
  return gptd_generator_generate_ids (generator, ids, n, options, callbacks,
                                      error);
}
