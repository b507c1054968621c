/* gptd/classify.h: a trained sequence classifier (a GPT-2 with a class head, as
 * classifier-trainer writes it in Hugging Face's GPT2ForSequenceClassification
 * layout) with its tokenizer, class names and pooling, answering texts with
 * class probabilities.
 *
 * A text is classified as the book's classify_review() does (chapter 6): it is
 * encoded, its first max_length tokens are kept, and
 *
 *  - with pooling "last" (the book's) the row is padded with <|endoftext|>
 *    (50256) to max_length and the head reads the last position, padding
 *    included.  max_length defaults to the length the training rows were
 *    padded to (config.json's "sequence_length"), so that the input is exactly
 *    what the trainer's accuracy computation saw; without it, the model's
 *    context length;
 *  - with pooling "last-token" the head reads the last real token.  Attention
 *    is causal, so the padding after it cannot change its hidden state: the
 *    row is not padded at all.  max_length defaults to the model's context.
 *
 * The predicted class is the index of the largest logit (the lowest among
 * equals, as torch.argmax); the probabilities are the softmax of the logits.
 * A classifier is not thread-safe; use one per thread.
 */
#pragma once

#include <glib.h>

#include <gptd/bpe.h>
#include <gptd/nn.h>
#include <gptd/quant.h>

G_BEGIN_DECLS

/**
 * GPTD_CLASSIFY_ERROR:
 *
 * Error domain of classification.  Errors in this domain use
 * #GptdClassifyError.  Loading the model or the tokenizer reports the errors
 * of those modules.
 */
#define GPTD_CLASSIFY_ERROR (gptd_classify_error_quark ())

/**
 * gptd_classify_error_quark:
 *
 * Returns: the quark of %GPTD_CLASSIFY_ERROR.
 */
GQuark gptd_classify_error_quark (void);

/**
 * GptdClassifyError:
 * @GPTD_CLASSIFY_ERROR_MODEL: the model is not a classifier (its head is a
 *   language-model head, or its class names do not match the head).
 * @GPTD_CLASSIFY_ERROR_LENGTH: max_length is not positive or longer than the
 *   model's context.
 * @GPTD_CLASSIFY_ERROR_INPUT: the text has no token, or a token id is
 *   outside the model's vocabulary.
 * @GPTD_CLASSIFY_ERROR_TOKENIZER: text was given but the classifier has no
 *   tokenizer.
 *
 * Error codes of %GPTD_CLASSIFY_ERROR.
 */
typedef enum {
  GPTD_CLASSIFY_ERROR_MODEL,
  GPTD_CLASSIFY_ERROR_LENGTH,
  GPTD_CLASSIFY_ERROR_INPUT,
  GPTD_CLASSIFY_ERROR_TOKENIZER,
} GptdClassifyError;

/**
 * GPTD_CLASSIFY_PAD_ID:
 *
 * The padding token of pooling "last": GPT-2's <|endoftext|>.
 */
#define GPTD_CLASSIFY_PAD_ID 50256

/**
 * GptdClassifier:
 *
 * A classifier: its model, tokenizer, class names, pooling and max_length.
 */
typedef struct _GptdClassifier GptdClassifier;

/**
 * gptd_classifier_new:
 * @model: (transfer full): a model with a class head (n_out classes, untied);
 *   freed on failure too.
 * @bpe: (nullable) (transfer none): its tokenizer; without one only
 *   gptd_classifier_classify_ids() works.
 * @labels: (nullable) (array zero-terminated=1): the class names in id order;
 *   NULL names them LABEL_i.
 * @pooling: (nullable): "last" (the default) or "last-token".
 * @sequence_length: the length the training rows were padded to; 0 when
 *   unknown.
 * @error: return location for a #GError.
 *
 * Returns: (transfer full): the classifier, or NULL with
 *   %GPTD_CLASSIFY_ERROR_MODEL (not a classifier, class names of another
 *   number, unknown pooling).
 */
GptdClassifier *gptd_classifier_new (GptdGpt *model, GptdBpe *bpe,
                                     const char *const *labels,
                                     const char *pooling, int sequence_length,
                                     GError **error);

/**
 * gptd_classifier_load:
 * @model_dir: a classifier directory (config.json, model.safetensors,
 *   vocab.json and merges.txt), or a training run's checkpoint root, whose
 *   latest checkpoint is loaded.
 * @vocab: (nullable): another tokenizer, as gptd_bpe_load() takes it (a
 *   directory, or "gpt2" from $GPTD_DATA_DIR); NULL: the directory's own.
 * @error: return location for a #GError.
 *
 * Loads the model, the tokenizer, and the class names, pooling and training
 * length from config.json (id2label, pooling, sequence_length).
 *
 * Returns: (transfer full): the classifier, or NULL with the error of the part
 *   that failed, its message naming the directory.
 */
GptdClassifier *gptd_classifier_load (const char *model_dir, const char *vocab,
                                      GError **error);

/**
 * gptd_classifier_free:
 * @classifier: (nullable): a classifier.
 *
 * Frees the classifier with its model.
 */
void gptd_classifier_free (GptdClassifier *classifier);

/**
 * gptd_classifier_set_weight_format:
 * @classifier: a classifier.
 * @format: the weight format to classify with.
 * @error: return location for a #GError.
 *
 * Converts the classifier's linear layers to @format (gptd/quant.h;
 * %GPTD_WEIGHT_FORMAT_FP32 goes back to the float32 weights).  With bf16 or
 * q8 the texts go through the KV-cache path, the only one that uses them.
 *
 * Returns: %FALSE with @error when the weights cannot be converted.
 */
gboolean gptd_classifier_set_weight_format (GptdClassifier *classifier,
                                            GptdWeightFormat format,
                                            GError **error);

/**
 * gptd_classifier_get_model:
 * @classifier: a classifier.
 *
 * Returns: (transfer none): its model.
 */
GptdGpt *gptd_classifier_get_model (GptdClassifier *classifier);

/**
 * gptd_classifier_get_n_classes:
 * @classifier: a classifier.
 *
 * Returns: the number of classes (rows of the head).
 */
int gptd_classifier_get_n_classes (const GptdClassifier *classifier);

/**
 * gptd_classifier_get_label:
 * @classifier: a classifier.
 * @id: 0 <= @id < gptd_classifier_get_n_classes().
 *
 * Returns: (transfer none): the name of class @id.
 */
const char *gptd_classifier_get_label (const GptdClassifier *classifier, int id);

/**
 * gptd_classifier_get_pooling:
 * @classifier: a classifier.
 *
 * Returns: (transfer none): "last" or "last-token".
 */
const char *gptd_classifier_get_pooling (const GptdClassifier *classifier);

/**
 * gptd_classifier_get_sequence_length:
 * @classifier: a classifier.
 *
 * Returns: the length its training rows were padded to, or 0 when unknown.
 */
int gptd_classifier_get_sequence_length (const GptdClassifier *classifier);

/**
 * gptd_classifier_get_max_length:
 * @classifier: a classifier.
 *
 * Returns: how many tokens of a text are kept (and, with pooling "last", the
 *   length rows are padded to).
 */
int gptd_classifier_get_max_length (const GptdClassifier *classifier);

/**
 * gptd_classifier_set_max_length:
 * @classifier: a classifier.
 * @max_length: the new length, 1 .. context_length; 0 restores the default
 *   (see the top of this header).
 * @error: return location for a #GError.
 *
 * Returns: FALSE with %GPTD_CLASSIFY_ERROR_LENGTH when @max_length is out of
 *   range; the length is then unchanged.
 */
gboolean gptd_classifier_set_max_length (GptdClassifier *classifier,
                                         int max_length, GError **error);

/**
 * gptd_classifier_encode:
 * @classifier: a classifier with a tokenizer.
 * @text: UTF-8 text (need not be NUL-terminated).
 * @len: its length in bytes, or -1 when NUL-terminated.
 * @n_ids: (out): the number of ids.
 * @error: return location for a #GError.
 *
 * Encodes @text with the classifier's tokenizer: special-token strings are
 * ordinary text, invalid UTF-8 becomes U+FFFD.  Nothing is truncated.
 *
 * Returns: (transfer full) (array length=n_ids): the ids, or NULL with
 *   %GPTD_CLASSIFY_ERROR_TOKENIZER.
 */
gint32 *gptd_classifier_encode (GptdClassifier *classifier, const char *text,
                                gssize len, int *n_ids, GError **error);

/**
 * gptd_classifier_classify_ids:
 * @classifier: a classifier.
 * @ids: (array length=n_ids): token ids.
 * @n_ids: their number, >= 1; ids past max_length are left out.
 * @probs: (out caller-allocates) (nullable): n_classes probabilities.
 * @error: return location for a #GError.
 *
 * Classifies one token sequence as described at the top of this header.
 *
 * Returns: the predicted class, or -1 with %GPTD_CLASSIFY_ERROR_INPUT (no
 *   token, an id outside the vocabulary) or a model error.
 */
int gptd_classifier_classify_ids (GptdClassifier *classifier, const gint32 *ids,
                                  int n_ids, float *probs, GError **error);

/**
 * gptd_classifier_classify:
 * @classifier: a classifier with a tokenizer.
 * @text: UTF-8 text.
 * @len: its length in bytes, or -1 when NUL-terminated.
 * @probs: (out caller-allocates) (nullable): n_classes probabilities.
 * @error: return location for a #GError.
 *
 * gptd_classifier_encode() then gptd_classifier_classify_ids().
 *
 * Returns: the predicted class, or -1 with @error set (an empty text is
 *   %GPTD_CLASSIFY_ERROR_INPUT).
 */
int gptd_classifier_classify (GptdClassifier *classifier, const char *text,
                              gssize len, float *probs, GError **error);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (GptdClassifier, gptd_classifier_free)

G_END_DECLS
