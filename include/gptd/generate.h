/* gptd/generate.h: text generation from a GPT-2 model: sampling options, a
 * seeded sampler and a generator that holds a model, its tokenizer and a KV
 * cache.
 *
 * Generation follows the book's generate(): each step takes the logits of the
 * last position of at most the last context_length tokens (longer prompts are
 * truncated from the left, as idx[:, -context_size:]), picks the next token
 * and appends it, until max_new_tokens tokens were made or the token eos_id
 * came out (it is not appended) or the caller cancelled.
 *
 * Picking a token, in this order:
 *
 *  1. temperature 0: greedy, the index of the largest logit (the lowest index
 *     among equal largest logits, as torch.argmax).  top-k and top-p do not
 *     change the result and are skipped.
 *  2. top-k (when 0 < top_k < vocabulary): logits below the k-th largest
 *     logit are dropped (logits equal to it are all kept, as the book's
 *     torch.where(logits < min_val, -inf, logits)).
 *  3. temperature: the kept logits are divided by the temperature.
 *  4. softmax over the kept logits (in double precision).
 *  5. top-p (when top_p < 1): the tokens are ordered by probability, largest
 *     first (lower index first among equals), and the smallest prefix whose
 *     cumulative probability reaches top_p is kept (at least one token).
 *  6. the kept probabilities are renormalised and one token is drawn by
 *     inverse CDF: u = uniform [0, 1) from the generator's random stream,
 *     and the first token, in ascending index order, whose cumulative
 *     probability exceeds u.
 *
 * The random stream is xoshiro256** seeded from the 64-bit seed through
 * splitmix64; every sampled token consumes exactly one draw, greedy steps
 * none.  The same model, prompt, options and seed give the same tokens on
 * every machine and thread count where the model's logits are the same.
 *
 * With use_kv_cache, the prompt window is fed once and every new token costs
 * one position's work; the tokens are identical to those of recomputing the
 * last window at each step.  Once the sequence is longer than the context,
 * the window slides and every cached position changes (positions are
 * absolute), so from then on each step empties the cache and feeds the last
 * context_length tokens again: as slow as generating without a cache.
 */
#pragma once

#include <glib.h>
#include <stddef.h>
#include <stdint.h>

#include <gptd/nn.h>

G_BEGIN_DECLS

/* ------------------------------------------------------------------------ */
/* Errors                                                                   */

/**
 * GPTD_GENERATE_ERROR:
 *
 * Error domain of generation.  Errors in this domain use #GptdGenerateError.
 * Loading a model or tokenizer reports the errors of those modules.
 */
#define GPTD_GENERATE_ERROR (gptd_generate_error_quark ())

/**
 * gptd_generate_error_quark:
 *
 * Returns: the quark of %GPTD_GENERATE_ERROR.
 */
GQuark gptd_generate_error_quark (void);

/**
 * GptdGenerateError:
 * @GPTD_GENERATE_ERROR_OPTIONS: a sampling option is out of range (the
 *   message names it).
 * @GPTD_GENERATE_ERROR_CONTEXT: the context length asked for is longer than
 *   the model's, or not positive.
 * @GPTD_GENERATE_ERROR_MODEL: the model cannot generate text (its output head
 *   is not a language-model head).
 * @GPTD_GENERATE_ERROR_PROMPT: the prompt is empty, or has a token id
 *   outside the model's vocabulary.
 * @GPTD_GENERATE_ERROR_TOKENIZER: text was asked for but the generator has
 *   no tokenizer, or a generated id is outside the tokenizer's vocabulary.
 *
 * Error codes of %GPTD_GENERATE_ERROR.
 */
typedef enum {
  GPTD_GENERATE_ERROR_OPTIONS,
  GPTD_GENERATE_ERROR_CONTEXT,
  GPTD_GENERATE_ERROR_MODEL,
  GPTD_GENERATE_ERROR_PROMPT,
  GPTD_GENERATE_ERROR_TOKENIZER,
} GptdGenerateError;

/* ------------------------------------------------------------------------ */
/* Options                                                                  */

/**
 * GptdGenerateOptions:
 * @max_new_tokens: most tokens to generate, >= 0.
 * @temperature: 0 for greedy decoding, else > 0 (divides the logits).
 * @top_k: keep the @top_k largest logits; 0 keeps all.
 * @top_p: nucleus sampling threshold in (0, 1]; 1 keeps all.
 * @seed: seed of the sampling random stream.
 * @eos_id: generation stops when this token comes out (it is not part of
 *   the output); -1 for none.
 * @use_kv_cache: feed each new token through the KV cache instead of
 *   recomputing the window (same tokens, much faster).  A model with bf16 or
 *   q8 weights (gptd/quant.h) generates only with the cache.
 * @stop: (nullable) (array zero-terminated=1): stop strings: generation ends
 *   before the first occurrence of any of them in the generated text, which
 *   is neither reported nor part of the result (see #GptdStopMatcher); NULL
 *   or empty for none.  Not copied: it must outlive the generation.
 *
 * How to generate.  gptd_generate_options_init() gives the defaults.
 */
typedef struct {
  int max_new_tokens;
  double temperature;
  int top_k;
  double top_p;
  guint64 seed;
  int eos_id;
  gboolean use_kv_cache;
  const char *const *stop;
} GptdGenerateOptions;

/**
 * GPTD_GENERATE_DEFAULT_SEED:
 *
 * The seed gptd_generate_options_init() sets (the book's torch.manual_seed).
 */
#define GPTD_GENERATE_DEFAULT_SEED 123

/**
 * gptd_generate_options_init:
 * @options: (out caller-allocates): filled with the defaults.
 *
 * Defaults: 50 new tokens, greedy (temperature 0), no top-k, top-p 1, seed
 * %GPTD_GENERATE_DEFAULT_SEED, no eos, KV cache on.
 */
void gptd_generate_options_init (GptdGenerateOptions *options);

/**
 * gptd_generate_options_validate:
 * @options: the options.
 * @error: return location for a #GError.
 *
 * Checks the ranges: max_new_tokens >= 0, temperature >= 0 and finite,
 * top_k >= 0, 0 < top_p <= 1, eos_id >= -1.
 *
 * Returns: FALSE with %GPTD_GENERATE_ERROR_OPTIONS naming the option.
 */
gboolean gptd_generate_options_validate (const GptdGenerateOptions *options,
                                         GError **error);

/* ------------------------------------------------------------------------ */
/* Sampler                                                                  */

/**
 * GptdSampler:
 *
 * Picks tokens from logits with the options' temperature, top-k and top-p
 * (in the order described at the top of this header) and its own seeded
 * random stream.  It keeps scratch buffers for one vocabulary size.  Not
 * thread-safe; one per generation.
 */
typedef struct _GptdSampler GptdSampler;

/**
 * gptd_sampler_new:
 * @options: the sampling options (copied; they must be valid).
 * @n_vocab: the number of logits per step, >= 1.
 *
 * Returns: (transfer full): a sampler whose random stream starts at the
 *   options' seed.
 */
GptdSampler *gptd_sampler_new (const GptdGenerateOptions *options,
                               int n_vocab);

/**
 * gptd_sampler_free:
 * @sampler: (nullable): a sampler.
 */
void gptd_sampler_free (GptdSampler *sampler);

/**
 * gptd_sampler_sample:
 * @sampler: a sampler.
 * @logits: n_vocab logits.
 *
 * Picks the next token.  Greedy steps draw no random number; sampled steps
 * draw exactly one.
 *
 * Returns: the token id, 0 <= id < n_vocab.
 */
gint32 gptd_sampler_sample (GptdSampler *sampler, const float *logits);

/**
 * gptd_sampler_get_distribution:
 * @sampler: a sampler.
 * @logits: n_vocab logits.
 * @probs: (out caller-allocates): n_vocab probabilities.
 *
 * Computes the distribution gptd_sampler_sample() draws from: zero for every
 * token removed by top-k or top-p, the renormalised softmax elsewhere.  For
 * greedy options it is one at the argmax.  Draws no random number.
 *
 * Returns: the number of tokens with a nonzero share.
 */
int gptd_sampler_get_distribution (GptdSampler *sampler, const float *logits,
                                   double *probs);

/**
 * gptd_sampler_uniform:
 * @sampler: a sampler.
 *
 * Draws the next number of the sampler's random stream (what a sampled step
 * uses).
 *
 * Returns: a double uniform in [0, 1), with 53 random bits.
 */
double gptd_sampler_uniform (GptdSampler *sampler);

/**
 * gptd_argmax:
 * @values: @n values.
 * @n: >= 1.
 *
 * Returns: the index of the largest value, the lowest among equals (NaN
 *   values are never chosen unless all are NaN, then 0).
 */
gint32 gptd_argmax (const float *values, int n);

/* ------------------------------------------------------------------------ */
/* Stop strings                                                             */

/**
 * GPTD_STOP_STRINGS_MAX:
 *
 * The most stop strings one generation takes.
 */
#define GPTD_STOP_STRINGS_MAX 16

/**
 * GPTD_STOP_STRING_MAX_BYTES:
 *
 * The longest stop string, in bytes.
 */
#define GPTD_STOP_STRING_MAX_BYTES 256

/**
 * GptdStopMatcher:
 *
 * Watches generated text for stop strings.  Text goes in piece by piece
 * (whole UTF-8 characters, as the generator produces them) and what may be
 * shown comes out: everything before the first occurrence of any stop string.
 * A tail of the text that could still be the start of a stop string is held
 * back until later text decides, so a stop string split over tokens is never
 * partly released; when several stop strings could match, the one that starts
 * first wins.
 */
typedef struct _GptdStopMatcher GptdStopMatcher;

/**
 * gptd_stop_matcher_new:
 * @stops: (nullable) (array zero-terminated=1): the stop strings (copied).
 * @error: return location for a #GError.
 *
 * Returns: (transfer full): a matcher, or NULL with
 *   %GPTD_GENERATE_ERROR_OPTIONS when a stop string is empty, not valid
 *   UTF-8 or longer than %GPTD_STOP_STRING_MAX_BYTES, or there are more than
 *   %GPTD_STOP_STRINGS_MAX.  NULL or no strings gives a matcher that releases
 *   everything at once.
 */
GptdStopMatcher *gptd_stop_matcher_new (const char *const *stops,
                                        GError **error);

/**
 * gptd_stop_matcher_free:
 * @matcher: (nullable): a matcher.
 */
void gptd_stop_matcher_free (GptdStopMatcher *matcher);

/**
 * gptd_stop_matcher_is_empty:
 * @matcher: (nullable): a matcher.
 *
 * Returns: whether @matcher has no stop string (NULL has none).
 */
gboolean gptd_stop_matcher_is_empty (const GptdStopMatcher *matcher);

/**
 * gptd_stop_matcher_push:
 * @matcher: a matcher.
 * @text: the next piece of generated text.
 * @len: its length in bytes.
 * @out: the text now safe to show is appended here.
 *
 * Returns: %TRUE when a stop string has been reached: @out got the text up
 *   to it, and the rest (this piece and any later one) is dropped.
 */
gboolean gptd_stop_matcher_push (GptdStopMatcher *matcher, const char *text,
                                 gsize len, GString *out);

/**
 * gptd_stop_matcher_finish:
 * @matcher: a matcher.
 * @out: the text held back is appended here.
 *
 * The text ended without reaching a stop string: what was held back is
 * released (nothing after a match).
 */
void gptd_stop_matcher_finish (GptdStopMatcher *matcher, GString *out);

/**
 * gptd_stop_matcher_get_held:
 * @matcher: a matcher.
 *
 * Returns: how many bytes are held back, waiting for more text.
 */
gsize gptd_stop_matcher_get_held (const GptdStopMatcher *matcher);

/* ------------------------------------------------------------------------ */
/* Generator                                                                */

/**
 * GptdGenerator:
 *
 * A loaded model with its tokenizer (optional) and a KV cache, ready to
 * generate.  A generator may be used from any thread but by one thread at a
 * time; it has no global state, so several generators can run at once on
 * different threads.  Loading is the slow part: keep generators around and
 * reuse them.
 */
typedef struct _GptdGenerator GptdGenerator;

/**
 * gptd_generator_new:
 * @model: (transfer full): a language model (n_out == vocab_size).
 * @context_length: the window each step looks at, 1..the model's context;
 *   0 means the model's context.
 * @error: return location for a #GError.
 *
 * Makes a generator for ids only (no tokenizer: gptd_generator_generate()
 * needs one, see gptd_generator_load()).  On failure @model is freed.
 *
 * Returns: (transfer full): the generator, or NULL with
 *   %GPTD_GENERATE_ERROR_MODEL or %GPTD_GENERATE_ERROR_CONTEXT.
 */
GptdGenerator *gptd_generator_new (GptdGpt *model, int context_length,
                                   GError **error);

/**
 * gptd_generator_load:
 * @model_dir: a model directory (config.json and model.safetensors).
 * @vocab: (nullable): the tokenizer: a directory with vocab.json and
 *   merges.txt (or encoder.json and vocab.bpe), or "gpt2" for the GPT-2
 *   vocabulary in $GPTD_DATA_DIR; NULL means @model_dir's own vocab.json and
 *   merges.txt.
 * @context_length: 0 for the model's context, or a shorter window.
 * @error: return location for a #GError.
 *
 * Loads the model and its tokenizer.
 *
 * Returns: (transfer full): the generator, or NULL with the error of the
 *   part that failed (model file, tokenizer, context length).
 */
GptdGenerator *gptd_generator_load (const char *model_dir, const char *vocab,
                                    int context_length, GError **error);

/**
 * GptdGeneratorLoadOptions:
 * @vocab: (nullable): the tokenizer, as gptd_generator_load()'s @vocab.
 * @context_length: 0 for the model's context, or a shorter window.
 * @weights: the weight format of the decoding path (a #GptdWeightFormat of
 *   gptd/quant.h), or -1 for the one stored (fp32 for an ordinary model
 *   directory, the stored format for one written by `gptd quantize`).
 *
 * How gptd_generator_load_full() loads a model.
 * gptd_generator_load_options_init() gives the defaults.
 */
typedef struct {
  const char *vocab;
  int context_length;
  int weights;
} GptdGeneratorLoadOptions;

/**
 * gptd_generator_load_options_init:
 * @options: (out caller-allocates): filled with the defaults: the model
 *   directory's own tokenizer, the model's context, the stored weights.
 */
void gptd_generator_load_options_init (GptdGeneratorLoadOptions *options);

/**
 * gptd_generator_load_full:
 * @model_dir: a model directory or checkpoint root, float32 or quantized
 *   (gptd/quant.h).
 * @options: how to load it.
 * @error: return location for a #GError.
 *
 * gptd_generator_load() with a choice of weight format: a float32 model is
 * converted to @options->weights when it is loaded; a quantized directory
 * must hold that format (or @options->weights is -1).
 *
 * Returns: (transfer full): the generator, or NULL with the error of the
 *   part that failed (model file, format, tokenizer, context length).
 */
GptdGenerator *gptd_generator_load_full (const char *model_dir,
                                         const GptdGeneratorLoadOptions *options,
                                         GError **error);

/**
 * gptd_generator_free:
 * @generator: (nullable): a generator.
 *
 * Frees the generator with its model, tokenizer and cache.
 */
void gptd_generator_free (GptdGenerator *generator);

/**
 * gptd_generator_get_model:
 * @generator: a generator.
 *
 * Returns: (transfer none): its model.
 */
GptdGpt *gptd_generator_get_model (GptdGenerator *generator);

/**
 * gptd_generator_get_context_length:
 * @generator: a generator.
 *
 * Returns: the window length each step looks at.
 */
int gptd_generator_get_context_length (const GptdGenerator *generator);

/**
 * gptd_generator_has_tokenizer:
 * @generator: a generator.
 *
 * Returns: TRUE when it can generate from text (gptd_generator_generate()).
 */
gboolean gptd_generator_has_tokenizer (const GptdGenerator *generator);

/**
 * gptd_generator_encode:
 * @generator: a generator with a tokenizer.
 * @text: UTF-8 text.
 * @n_ids: (out): number of ids.
 * @error: return location for a #GError.
 *
 * Encodes @text with the generator's tokenizer.
 *
 * Returns: (transfer full): the ids (free with g_free()), or NULL with
 *   %GPTD_GENERATE_ERROR_TOKENIZER when there is no tokenizer.  An empty
 *   text gives a non-NULL array and *@n_ids 0.
 */
gint32 *gptd_generator_encode (GptdGenerator *generator, const char *text,
                               int *n_ids, GError **error);

/**
 * GptdGenerateStop:
 * @GPTD_GENERATE_STOP_LENGTH: max_new_tokens tokens were generated.
 * @GPTD_GENERATE_STOP_EOS: the eos token came out.
 * @GPTD_GENERATE_STOP_CANCELLED: the cancel check said so.
 * @GPTD_GENERATE_STOP_STRING: the text reached one of the options' stop
 *   strings.
 *
 * Why generation stopped.
 */
typedef enum {
  GPTD_GENERATE_STOP_LENGTH,
  GPTD_GENERATE_STOP_EOS,
  GPTD_GENERATE_STOP_CANCELLED,
  GPTD_GENERATE_STOP_STRING,
} GptdGenerateStop;

/**
 * gptd_generate_stop_to_string:
 * @stop: a stop reason.
 *
 * Returns: "length", "eos", "cancelled" or "stop" (the Sample message's
 *   stop_reason).
 */
const char *gptd_generate_stop_to_string (GptdGenerateStop stop);

/**
 * GptdGenerateTokenFunc:
 * @id: the new token id; -1 for the final call that flushes text held back.
 * @text: the UTF-8 characters completed by this token, NUL-terminated (may be
 *   empty while a character spans several tokens); always "" for a generator
 *   without a tokenizer.  Only valid during the call.
 * @text_len: length of @text in bytes.
 * @user_data: the callbacks' user data.
 *
 * Called after each generated token (the eos token is not reported).  When
 * the tokenizer's decoder still holds bytes of an incomplete character at
 * the end, one last call with @id -1 passes them as U+FFFD replacement
 * characters.  Concatenating every @text gives the result's text.  A
 * generated U+0000 is passed as U+FFFD, so that the text never holds a NUL.
 */
typedef void (*GptdGenerateTokenFunc) (gint32 id, const char *text,
                                       gsize text_len, gpointer user_data);

/**
 * GptdGenerateCancelFunc:
 * @user_data: the callbacks' user data.
 *
 * Asked before each step.
 *
 * Returns: TRUE to stop generating (stop reason "cancelled").
 */
typedef gboolean (*GptdGenerateCancelFunc) (gpointer user_data);

/**
 * GptdGenerateCallbacks:
 * @token: (nullable): called for each new token, for streaming.
 * @cancelled: (nullable): asked before each step.
 * @user_data: passed to both.
 *
 * Hooks into a running generation.
 */
typedef struct {
  GptdGenerateTokenFunc token;
  GptdGenerateCancelFunc cancelled;
  gpointer user_data;
} GptdGenerateCallbacks;

/**
 * GptdGenerateResult:
 * @ids: the generated ids (the prompt and the eos token not included).
 * @n_ids: their number.
 * @text: (nullable): the generated text (NULL without a tokenizer).
 * @text_len: its length in bytes.
 * @n_prompt: prompt tokens that were used (after left truncation).
 * @n_prompt_dropped: prompt tokens dropped from the left because the prompt
 *   was longer than the context.
 * @stop: why generation stopped.
 * @prefill_s: seconds spent on the first step (the prompt).
 * @decode_s: seconds spent on the following steps.
 *
 * The outcome of one generation.  Free with gptd_generate_result_free().
 */
typedef struct {
  gint32 *ids;
  int n_ids;
  char *text;
  gsize text_len;
  int n_prompt;
  int n_prompt_dropped;
  GptdGenerateStop stop;
  double prefill_s;
  double decode_s;
} GptdGenerateResult;

/**
 * gptd_generate_result_free:
 * @result: (nullable): a result.
 */
void gptd_generate_result_free (GptdGenerateResult *result);

/**
 * gptd_generator_generate_ids:
 * @generator: a generator.
 * @prompt: @n_prompt token ids.
 * @n_prompt: >= 1.
 * @options: how to generate (validated here).
 * @callbacks: (nullable): streaming and cancellation hooks.
 * @error: return location for a #GError.
 *
 * Generates a continuation of @prompt.  When the generator has a tokenizer,
 * the text is decoded too and passed to the token callback.  Cancellation is
 * not an error: the result holds what was generated, with stop reason
 * %GPTD_GENERATE_STOP_CANCELLED.
 *
 * Returns: (transfer full): the result, or NULL with
 *   %GPTD_GENERATE_ERROR_OPTIONS, %GPTD_GENERATE_ERROR_PROMPT (empty prompt,
 *   id outside the vocabulary) or a %GPTD_NN_ERROR from the model.
 */
GptdGenerateResult *gptd_generator_generate_ids (GptdGenerator *generator,
                                                 const gint32 *prompt,
                                                 int n_prompt,
                                                 const GptdGenerateOptions *options,
                                                 const GptdGenerateCallbacks *callbacks,
                                                 GError **error);

/**
 * gptd_generator_generate:
 * @generator: a generator with a tokenizer.
 * @prompt: UTF-8 prompt text; it must encode to at least one token.
 * @options: how to generate.
 * @callbacks: (nullable): streaming and cancellation hooks.
 * @error: return location for a #GError.
 *
 * Encodes @prompt and calls gptd_generator_generate_ids().  The token
 * callback receives the text in whole UTF-8 characters as they complete.
 *
 * Returns: (transfer full): the result, or NULL with
 *   %GPTD_GENERATE_ERROR_TOKENIZER (no tokenizer) or the errors of
 *   gptd_generator_generate_ids().
 */
GptdGenerateResult *gptd_generator_generate (GptdGenerator *generator,
                                             const char *prompt,
                                             const GptdGenerateOptions *options,
                                             const GptdGenerateCallbacks *callbacks,
                                             GError **error);


/* ------------------------------------------------------------------------ */
/* Generations stepped from outside (batched serving)                       */

/**
 * GptdGeneration:
 *
 * One generation cut into steps, so that a server can decode several
 * generations of one generator together: each has its own KV cache, sampler
 * (seeded from its options), text decoder, stop strings and cancel check, and
 * gives exactly the tokens and text gptd_generator_generate_ids() gives for
 * the same prompt and options (the prompt's prefill may come in chunks, see
 * gptd_generation_prefill()).  A step is either a prefill (the prompt, or the
 * window fed again once it slides past the context) or one decoded token,
 * which gptd_generation_step_batch() computes for many generations at once
 * (gptd_gpt_forward_batch(): bitwise the logits of one alone).  The callbacks
 * are called as the generator calls them.
 */
typedef struct _GptdGeneration GptdGeneration;

/**
 * gptd_generation_new:
 * @generator: the generator (kept by the caller, must outlive the generation;
 *   its own cache is not used).
 * @prompt: (array length=n_prompt): the prompt's ids.
 * @n_prompt: their count, >= 1.
 * @options: as for gptd_generator_generate_ids() (use_kv_cache must be set);
 *   the stop strings are copied.
 * @callbacks: (nullable): as for gptd_generator_generate_ids(); copied.
 * @error: return location for a #GError.
 *
 * Returns: (transfer full): the generation, no step taken yet; or NULL with
 *   the errors of gptd_generator_generate_ids().
 */
GptdGeneration *gptd_generation_new (GptdGenerator *generator,
                                     const gint32 *prompt, int n_prompt,
                                     const GptdGenerateOptions *options,
                                     const GptdGenerateCallbacks *callbacks,
                                     GError **error);

/**
 * gptd_generation_free:
 * @gen: (nullable): a generation.
 */
void gptd_generation_free (GptdGeneration *gen);

/**
 * gptd_generation_is_done:
 * @gen: a generation.
 *
 * Returns: whether it has ended (length, eos, stop string or cancelled).
 */
gboolean gptd_generation_is_done (const GptdGeneration *gen);

/**
 * gptd_generation_needs_prefill:
 * @gen: a generation.
 *
 * Returns: whether its next step is (the rest of) a prefill, to be run with
 *   gptd_generation_prefill(); else gptd_generation_step_batch().
 */
gboolean gptd_generation_needs_prefill (const GptdGeneration *gen);

/**
 * gptd_generation_prefill:
 * @gen: a generation that needs a prefill.
 * @max_tokens: the most tokens to feed now, >= 1.
 * @error: return location for a #GError.
 *
 * Feeds up to @max_tokens more tokens of the window; once the whole window is
 * in, samples the next token as a step does.  Feeding a prompt in chunks gives
 * the last position's logits as feeding it at once up to the matrix products'
 * rounding (the same for the tiny and float32 models tested); the greedy
 * tokens are the same.
 *
 * Returns: the tokens fed (0 when the generation was cancelled instead),
 *   or -1 with @error when the model fails.
 */
int gptd_generation_prefill (GptdGeneration *gen, int max_tokens,
                             GError **error);

/**
 * gptd_generation_step_batch:
 * @gens: (array length=n): generations of one generator, none needing a
 *   prefill; those done are skipped, and those whose cancel check says so
 *   end cancelled.
 * @n: their count (at most @batch's max_rows).
 * @batch: decoding scratch for the generator's model.
 * @error: return location for a #GError.
 *
 * Decodes one token of every generation in one batched step.
 *
 * Returns: %FALSE with @error when the model fails.
 */
gboolean gptd_generation_step_batch (GptdGeneration *const *gens, int n,
                                     GptdGptDecodeBatch *batch,
                                     GError **error);

/**
 * gptd_generation_finish:
 * @gen: a generation.
 *
 * Ends it: the text held back (an unfinished character, the tail kept for the
 * stop strings) is released through the token callback (id -1), as the
 * generator does at the end.
 */
void gptd_generation_finish (GptdGeneration *gen);

/**
 * gptd_generation_get_stop:
 * @gen: a finished generation.
 *
 * Returns: why it ended.
 */
GptdGenerateStop gptd_generation_get_stop (const GptdGeneration *gen);

/**
 * gptd_generation_get_n_tokens:
 * @gen: a generation.
 *
 * Returns: the tokens generated so far.
 */
int gptd_generation_get_n_tokens (const GptdGeneration *gen);

/**
 * gptd_generation_get_text:
 * @gen: a generation.
 * @len: (out) (optional): its length in bytes.
 *
 * Returns: (transfer none): the text released so far.
 */
const char *gptd_generation_get_text (const GptdGeneration *gen, gsize *len);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (GptdSampler, gptd_sampler_free)
G_DEFINE_AUTOPTR_CLEANUP_FUNC (GptdGeneration, gptd_generation_free)
G_DEFINE_AUTOPTR_CLEANUP_FUNC (GptdStopMatcher, gptd_stop_matcher_free)
G_DEFINE_AUTOPTR_CLEANUP_FUNC (GptdGenerator, gptd_generator_free)
G_DEFINE_AUTOPTR_CLEANUP_FUNC (GptdGenerateResult, gptd_generate_result_free)

G_END_DECLS
