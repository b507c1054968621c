/* generate.c: the text generator: a model, its tokenizer and a KV cache; the
 * book's generate() loop with left truncation to the context, the KV-cache
 * path (with its re-prefill once the window slides), eos, stop strings,
 * streaming of whole UTF-8 characters and cancellation; and the same loop cut
 * into steps (GptdGeneration), so that a server can decode several
 * generations of one model together.  Sampling itself is in sampling.c.
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
decode_token (GptdGenerator *g, GptdBpeDecoder *decoder, gint32 id,
              GString *piece, GError **error)
{
  g_string_truncate (piece, 0);
  if (g->bpe == NULL)
    return TRUE;
  gsize len;
  if (gptd_bpe_get_token (g->bpe, (guint32) id, &len) == NULL)
    {
      /* A model vocabulary larger than the tokenizer's (padded): the id has
       * no text; close what is pending and show a replacement. */
      gptd_bpe_decoder_finish (decoder, piece);
      g_string_append_unichar (piece, 0xFFFD);
    }
  else if (!gptd_bpe_decoder_push (decoder, (guint32) id, piece, error))
    return FALSE;
  replace_nul (piece);
  return TRUE;
}

/* A prompt has at least one token, each inside the model's vocabulary. */
static gboolean
check_prompt (GptdGenerator *g, const gint32 *prompt, int n_prompt, GError **error)
{
  if (n_prompt < 1)
    {
      g_set_error (error, GPTD_GENERATE_ERROR, GPTD_GENERATE_ERROR_PROMPT,
                   "the prompt is empty: generation needs at least one token");
      return FALSE;
    }
  for (int i = 0; i < n_prompt; i++)
    if (prompt[i] < 0 || prompt[i] >= g->vocab_size)
      {
        g_set_error (error, GPTD_GENERATE_ERROR, GPTD_GENERATE_ERROR_PROMPT,
                     "prompt token %d is id %d, outside the model's vocabulary "
                     "of %d",
                     i, prompt[i], g->vocab_size);
        return FALSE;
      }
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
  if (!check_prompt (g, prompt, n_prompt, error))
    return NULL;

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
      if (!decode_token (g, g->decoder, next, piece, error))
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

/* ---- generations stepped from outside ---------------------------------------- */

struct _GptdGeneration {
  GptdGenerator *g;
  GptdGenerateOptions opts;
  char **stop_strings;         /* opts.stop's copy */
  GptdGenerateCallbacks cb;
  gboolean has_cb;
  GptdSampler *sampler;
  GptdBpeDecoder *decoder;     /* with a tokenizer */
  GptdStopMatcher *stops;      /* NULL: no stop strings */
  GptdGptKvCache *cache;
  GString *text, *piece, *shown;
  gint32 *seq;                 /* the window's tokens, then the new ones */
  int len;                     /* tokens in seq */
  int n_prompt, n_prompt_dropped;
  int step;                    /* tokens sampled so far (the loop's step) */
  /* The prefill under way (the prompt, or a slid window fed again): tokens
   * seq[pf_start + pf_done .. pf_start + pf_len) are still to be fed. */
  gboolean prefilling;
  int pf_start, pf_len, pf_done;
  gboolean done, finished;
  GptdGenerateStop stop;
};

GptdGeneration *
gptd_generation_new (GptdGenerator *generator, const gint32 *prompt,
                     int n_prompt, const GptdGenerateOptions *options,
                     const GptdGenerateCallbacks *callbacks, GError **error)
{
  g_return_val_if_fail (generator != NULL && options != NULL, NULL);
  g_return_val_if_fail (prompt != NULL || n_prompt == 0, NULL);
  GptdGenerator *g = generator;
  if (!gptd_generate_options_validate (options, error))
    return NULL;
  if (!options->use_kv_cache)
    {
      g_set_error (error, GPTD_GENERATE_ERROR, GPTD_GENERATE_ERROR_OPTIONS,
                   "a stepped generation decodes with the KV cache only");
      return NULL;
    }
  if (!check_prompt (g, prompt, n_prompt, error))
    return NULL;
  g_autoptr (GptdStopMatcher) stops = NULL;
  if (options->stop != NULL && options->stop[0] != NULL)
    {
      if (g->bpe == NULL)
        {
          g_set_error (error, GPTD_GENERATE_ERROR, GPTD_GENERATE_ERROR_OPTIONS,
                       "stop strings need a tokenizer to decode the text with");
          return NULL;
        }
      stops = gptd_stop_matcher_new (options->stop, error);
      if (stops == NULL)
        return NULL;
    }

  const int ctx = g->context_length;
  int dropped = n_prompt > ctx ? n_prompt - ctx : 0;
  int len = n_prompt - dropped;
  /* The cache never holds more than the window, nor more than the prompt
   * and the new tokens. */
  int cache_len = (int) MIN ((gint64) ctx, (gint64) len + options->max_new_tokens);
  g_autoptr (GptdGptKvCache) cache =
    gptd_gpt_kv_cache_new (g->model, MAX (cache_len, 1), error);
  if (cache == NULL)
    return NULL;

  GptdGeneration *gen = g_new0 (GptdGeneration, 1);
  gen->g = g;
  gen->opts = *options;
  gen->stop_strings = g_strdupv ((char **) options->stop);
  gen->opts.stop = (const char *const *) gen->stop_strings;
  if (callbacks != NULL)
    {
      gen->cb = *callbacks;
      gen->has_cb = TRUE;
    }
  gen->sampler = gptd_sampler_new (options, g->vocab_size);
  if (g->bpe != NULL)
    gen->decoder = gptd_bpe_decoder_new (g->bpe);
  gen->stops = g_steal_pointer (&stops);
  gen->cache = g_steal_pointer (&cache);
  gen->text = g_string_new (NULL);
  gen->piece = g_string_new (NULL);
  gen->shown = g_string_new (NULL);
  gen->seq = g_new (gint32, (gsize) len + options->max_new_tokens + 1);
  memcpy (gen->seq, prompt + dropped, sizeof (gint32) * len);
  gen->len = len;
  gen->n_prompt = len;
  gen->n_prompt_dropped = dropped;
  gen->stop = GPTD_GENERATE_STOP_LENGTH;
  gen->done = options->max_new_tokens == 0;
  return gen;
}

void
gptd_generation_free (GptdGeneration *gen)
{
  if (gen == NULL)
    return;
  g_strfreev (gen->stop_strings);
  gptd_sampler_free (gen->sampler);
  gptd_bpe_decoder_free (gen->decoder);
  gptd_stop_matcher_free (gen->stops);
  gptd_gpt_kv_cache_free (gen->cache);
  g_string_free (gen->text, TRUE);
  g_string_free (gen->piece, TRUE);
  g_string_free (gen->shown, TRUE);
  g_free (gen->seq);
  g_free (gen);
}

gboolean
gptd_generation_is_done (const GptdGeneration *gen)
{
  g_return_val_if_fail (gen != NULL, TRUE);
  return gen->done;
}

/* The loop's check at the top of each step. */
static gboolean
generation_check_cancel (GptdGeneration *gen)
{
  if (gen->has_cb && gen->cb.cancelled != NULL &&
      gen->cb.cancelled (gen->cb.user_data))
    {
      gen->stop = GPTD_GENERATE_STOP_CANCELLED;
      gen->done = TRUE;
      gen->prefilling = FALSE;
    }
  return gen->done;
}

/* Whether the next step feeds a window (the prompt, or a slid window) rather
 * than one token: as next_logits() decides. */
static gboolean
generation_next_is_prefill (const GptdGeneration *gen)
{
  return gen->step == 0 || gen->len > gen->g->context_length;
}

gboolean
gptd_generation_needs_prefill (const GptdGeneration *gen)
{
  g_return_val_if_fail (gen != NULL, FALSE);
  return !gen->done && (gen->prefilling || generation_next_is_prefill (gen));
}

/* The rest of a step once its logits are known: as the loop of
 * gptd_generator_generate_ids(). */
static gboolean
generation_advance (GptdGeneration *gen, const float *logits, GError **error)
{
  GptdGenerator *g = gen->g;
  const GptdGenerateCallbacks *cb = gen->has_cb ? &gen->cb : NULL;
  gint32 next = gptd_sampler_sample (gen->sampler, logits);
  gen->step++;
  if (next == gen->opts.eos_id)
    {
      gen->stop = GPTD_GENERATE_STOP_EOS;
      gen->done = TRUE;
      return TRUE;
    }
  gen->seq[gen->len++] = next;
  if (!decode_token (g, gen->decoder, next, gen->piece, error))
    return FALSE;
  if (release_text (gen->stops, next, gen->piece, gen->shown, gen->text, cb))
    {
      gen->stop = GPTD_GENERATE_STOP_STRING;
      gen->done = TRUE;
      return TRUE;
    }
  if (gen->step >= gen->opts.max_new_tokens)
    gen->done = TRUE;
  return TRUE;
}

int
gptd_generation_prefill (GptdGeneration *gen, int max_tokens, GError **error)
{
  g_return_val_if_fail (gen != NULL && max_tokens > 0, -1);
  g_return_val_if_fail (gptd_generation_needs_prefill (gen), -1);
  GptdGenerator *g = gen->g;
  if (!gen->prefilling)
    {
      if (generation_check_cancel (gen))
        return 0;
      const int ctx = g->context_length;
      gen->pf_start = gen->len > ctx ? gen->len - ctx : 0;
      gen->pf_len = gen->len - gen->pf_start;
      gen->pf_done = 0;
      gen->prefilling = TRUE;
      gptd_gpt_kv_cache_reset (gen->cache);
    }
  else if (generation_check_cancel (gen))
    return 0;
  int n = MIN (max_tokens, gen->pf_len - gen->pf_done);
  const float *logits =
    gptd_gpt_forward_cached (g->model, gen->cache,
                             gen->seq + gen->pf_start + gen->pf_done, n, error);
  if (logits == NULL)
    return -1;
  gen->pf_done += n;
  if (gen->pf_done < gen->pf_len)
    return n;
  gen->prefilling = FALSE;
  return generation_advance (gen, logits, error) ? n : -1;
}

gboolean
gptd_generation_step_batch (GptdGeneration *const *gens, int n,
                            GptdGptDecodeBatch *batch, GError **error)
{
  g_return_val_if_fail (n >= 0 && (gens != NULL || n == 0), FALSE);
  g_return_val_if_fail (batch != NULL, FALSE);
  g_autofree GptdGptKvCache **caches = g_new (GptdGptKvCache *, MAX (n, 1));
  g_autofree gint32 *tokens = g_new (gint32, MAX (n, 1));
  g_autofree GptdGeneration **live = g_new (GptdGeneration *, MAX (n, 1));
  int m = 0;
  for (int i = 0; i < n; i++)
    {
      GptdGeneration *gen = gens[i];
      g_return_val_if_fail (!gptd_generation_needs_prefill (gen), FALSE);
      g_return_val_if_fail (gen->g == gens[0]->g, FALSE);
      if (gen->done || generation_check_cancel (gen))
        continue;
      /* The cache holds seq[0..len-1): the newest token goes in. */
      g_assert (gptd_gpt_kv_cache_get_length (gen->cache) == gen->len - 1);
      caches[m] = gen->cache;
      tokens[m] = gen->seq[gen->len - 1];
      live[m++] = gen;
    }
  if (m == 0)
    return TRUE;
  const float *logits = gptd_gpt_forward_batch (batch, caches, tokens, m, error);
  if (logits == NULL)
    return FALSE;
  const size_t V = (size_t) gens[0]->g->vocab_size;
  for (int i = 0; i < m; i++)
    if (!generation_advance (live[i], logits + i * V, error))
      return FALSE;
  return TRUE;
}

GptdGenerateStop
gptd_generation_get_stop (const GptdGeneration *gen)
{
  g_return_val_if_fail (gen != NULL, GPTD_GENERATE_STOP_LENGTH);
  return gen->stop;
}

int
gptd_generation_get_n_tokens (const GptdGeneration *gen)
{
  g_return_val_if_fail (gen != NULL, 0);
  return gen->len - gen->n_prompt;
}

void
gptd_generation_finish (GptdGeneration *gen)
{
  g_return_if_fail (gen != NULL);
  if (gen->finished)
    return;
  gen->finished = TRUE;
  gen->done = TRUE;
  if (gen->decoder == NULL)
    return;
  const GptdGenerateCallbacks *cb = gen->has_cb ? &gen->cb : NULL;
  /* Bytes of an unfinished character become U+FFFD. */
  g_string_truncate (gen->piece, 0);
  gptd_bpe_decoder_finish (gen->decoder, gen->piece);
  if (gen->stop == GPTD_GENERATE_STOP_STRING)
    return;
  if (release_text (gen->stops, -1, gen->piece, gen->shown, gen->text, cb))
    gen->stop = GPTD_GENERATE_STOP_STRING;
  else if (gen->stops != NULL)
    {
      g_string_truncate (gen->piece, 0);
      gptd_stop_matcher_finish (gen->stops, gen->piece);
      g_string_append_len (gen->text, gen->piece->str, gen->piece->len);
      if (gen->piece->len > 0 && cb != NULL && cb->token != NULL)
        cb->token (-1, gen->piece->str, gen->piece->len, cb->user_data);
    }
}

const char *
gptd_generation_get_text (const GptdGeneration *gen, gsize *len)
{
  g_return_val_if_fail (gen != NULL, NULL);
  if (len != NULL)
    *len = gen->text->len;
  return gen->text->str;
}
