/* classifier.c: the `classifier` stage: gptd.Document -> gptd.Prediction, the
 * book's classify_review() with a classifier that classifier-trainer wrote.
 *
 * The model is `model=` (a classifier directory or a run's checkpoint root,
 * loaded when the run starts) or comes as gptd.Model messages on the `model`
 * input (the last one is used, loaded when the first text needs it).  Texts are
 * the documents of the default input (chunks of one source are joined) and
 * `text=`, answered after them.  Each text is encoded with the model's
 * tokenizer and classified as gptd/classify.h describes (with pooling=last:
 * the first max-length tokens padded with <|endoftext|> to the training
 * length, exactly the rows the trainer measured its accuracy on).  Each
 * prediction is pushed as a gptd.Prediction and appended as a JSON line to
 * `output=` (by default predictions.jsonl in the run directory).  Documents
 * that carry a label (table-source) are counted against the prediction, and
 * the agreement is logged at the end.
 */
#include "config.h"

#include <gptd/classify.h>
#include <gptd/message-json.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "generate-plugin.h"

/* The model input comes first: the runner delivers it in full before the
 * documents. */
enum { INPUT_MODEL = 0, INPUT_TEXTS = 1 };

static const GptdParamSpec classifier_params[] = {
  { "model", GPTD_PARAM_PATH, NULL, 0, 0, NULL,
    "classifier directory (config.json with id2label, model.safetensors, "
    "vocab.json, merges.txt) or a run's checkpoint root; else link input.model", 0 },
  { "text", GPTD_PARAM_STRING, NULL, 0, 0, NULL,
    "a text to classify (answered after the documents of the input, if any)", 0 },
  { "vocab", GPTD_PARAM_STRING, NULL, 0, 0, NULL,
    "tokenizer: a directory with vocab.json + merges.txt or encoder.json + "
    "vocab.bpe, or a name such as gpt2 ($GPTD_DATA_DIR); default: the model "
    "directory's own", 0 },
  { "max-length", GPTD_PARAM_INT, NULL, 1, G_MAXINT32, NULL,
    "tokens of a text that are kept (its first ones); with pooling=last also the "
    "length texts are padded to.  Default: with pooling=last the length the "
    "model was trained with, else the model's context", 0 },
  { "threads", GPTD_PARAM_INT, NULL, 1, 4096, NULL,
    "threads for the model (default: one per CPU)", 0 },
  { "output", GPTD_PARAM_PATH, NULL, 0, 0, NULL,
    "write each prediction to this file as a JSON line (default: "
    "predictions.jsonl in the run directory)", 0 },
  { NULL }
};

static const GptdPadSpec classifier_inputs[] = {
  { "model", "gptd.Model", GPTD_PAD_OPTIONAL },
  { "default", "gptd.Document", GPTD_PAD_OPTIONAL },
  { NULL }
};

static const GptdPadSpec classifier_outputs[] = {
  { "default", "gptd.Prediction", 0 },
  { NULL }
};

typedef struct {
  char *vocab;
  int max_length;           /* 0: the classifier's default */
  char *text;
  char *model_dir;          /* the model in use */
  GptdClassifier *classifier; /* loaded lazily for input models */
  FILE *output;
  char *output_path;
  GString *doc;             /* chunks of the current document */
  char *doc_source;
  char *doc_label;
  guint n_predictions;
  guint n_labelled;         /* documents that carried a known label */
  guint n_agree;            /* ... whose prediction matched it */
} Classifier;

static void
classifier_destroy (gpointer data)
{
  Classifier *self = data;
  if (self == NULL)
    return;
  gptd_classifier_free (self->classifier);
  if (self->output != NULL)
    fclose (self->output);
  g_free (self->output_path);
  g_free (self->vocab);
  g_free (self->text);
  g_free (self->model_dir);
  if (self->doc != NULL)
    g_string_free (self->doc, TRUE);
  g_free (self->doc_source);
  g_free (self->doc_label);
  g_free (self);
}

static gboolean
classifier_load (Classifier *self, GptdStageContext *ctx, GError **error)
{
  gptd_classifier_free (self->classifier);
  self->classifier = NULL;
  gint64 t0 = g_get_monotonic_time ();
  g_autoptr (GError) local = NULL;
  self->classifier = gptd_classifier_load (self->model_dir, self->vocab, &local);
  if (self->classifier == NULL ||
      !gptd_classifier_set_max_length (self->classifier, self->max_length, &local))
    {
      g_set_error (error, GPTD_STAGE_ERROR, GPTD_STAGE_ERROR_INPUT,
                   "cannot load the classifier %s: %s", self->model_dir,
                   local->message);
      return FALSE;
    }
  GptdClassifier *c = self->classifier;
  g_autoptr (GString) names = g_string_new (NULL);
  for (int i = 0; i < gptd_classifier_get_n_classes (c); i++)
    g_string_append_printf (names, "%s%s", i ? ", " : "",
                            gptd_classifier_get_label (c, i));
  gptd_stage_log (ctx, G_LOG_LEVEL_INFO,
                  "loaded %s (%d classes: %s; pooling %s, max-length %d) in %.2f s",
                  self->model_dir, gptd_classifier_get_n_classes (c), names->str,
                  gptd_classifier_get_pooling (c), gptd_classifier_get_max_length (c),
                  (g_get_monotonic_time () - t0) / 1e6);
  return TRUE;
}

static gpointer
classifier_create (GptdStageContext *ctx, const GptdParams *params, GError **error)
{
  Classifier *self = g_new0 (Classifier, 1);
  if (gptd_params_is_set (params, "max-length"))
    self->max_length = (int) gptd_params_get_int (params, "max-length");
  if (gptd_params_is_set (params, "threads"))
    gptd_nn_set_num_threads ((int) gptd_params_get_int (params, "threads"));
  /* A path (relative to the pipeline file) or a name such as gpt2. */
  self->vocab = gptd_params_resolve_name_or_path (params, "vocab");
  self->text = g_strdup (gptd_params_get_string (params, "text"));

  if (gptd_params_is_set (params, "output"))
    self->output_path = g_strdup (gptd_params_get_string (params, "output"));
  else if (gptd_stage_context_get_run_dir (ctx) != NULL)
    self->output_path = g_build_filename (gptd_stage_context_get_run_dir (ctx),
                                          "predictions.jsonl", NULL);
  if (self->output_path != NULL)
    {
      self->output = fopen (self->output_path, "w");
      if (self->output == NULL)
        {
          int e = errno;
          g_set_error (error, GPTD_STAGE_ERROR, GPTD_STAGE_ERROR_IO,
                       "cannot open output %s: %s", self->output_path, g_strerror (e));
          classifier_destroy (self);
          return NULL;
        }
    }
  if (gptd_params_is_set (params, "model"))
    {
      self->model_dir = g_strdup (gptd_params_get_string (params, "model"));
      if (!classifier_load (self, ctx, error))
        {
          classifier_destroy (self);
          return NULL;
        }
    }
  return self;
}

/* Classifies one text and sends the prediction everywhere it goes. */
static gboolean
classifier_answer (Classifier *self, GptdStageContext *ctx, const char *source,
                   const char *text, gsize len, const char *label, GError **error)
{
  if (self->model_dir == NULL)
    {
      g_set_error (error, GPTD_STAGE_ERROR, GPTD_STAGE_ERROR_INPUT,
                   "no model: set model= or link input.model to a stage that sends a "
                   "classifier");
      return FALSE;
    }
  if (self->classifier == NULL && !classifier_load (self, ctx, error))
    return FALSE;

  GptdClassifier *c = self->classifier;
  int n_classes = gptd_classifier_get_n_classes (c);
  g_autofree float *probs = g_new (float, n_classes);
  g_autoptr (GError) local = NULL;
  int n_ids = 0;
  g_autofree gint32 *ids = gptd_classifier_encode (c, text, (gssize) len, &n_ids, &local);
  int best = ids == NULL ? -1
                         : gptd_classifier_classify_ids (c, ids, n_ids, probs, &local);
  if (best < 0)
    {
      g_set_error (error, GPTD_STAGE_ERROR, GPTD_STAGE_ERROR_INPUT,
                   "classifying text %u (%s) failed: %s", self->n_predictions,
                   source ? source : "text=", local->message);
      return FALSE;
    }
  if (n_ids > gptd_classifier_get_max_length (c))
    gptd_stage_log (ctx, G_LOG_LEVEL_INFO,
                    "text %u (%s): %d tokens, only the first %d are read (max-length)",
                    self->n_predictions, source ? source : "text=", n_ids,
                    gptd_classifier_get_max_length (c));

  Gptd__Prediction p = GPTD__PREDICTION__INIT;
  p.source = (char *) (source ? source : "");
  p.label = (uint32_t) best;
  p.label_name = (char *) gptd_classifier_get_label (c, best);
  p.n_probabilities = n_classes;
  p.probabilities = probs;
  if (label != NULL && label[0] != '\0')
    {
      self->n_labelled++;
      self->n_agree += g_str_equal (label, p.label_name);
    }
  if (self->output != NULL)
    {
      g_autofree char *line = gptd_message_to_json_string (&p.base, TRUE, FALSE);
      if (fputs (line, self->output) == EOF || fputc ('\n', self->output) == EOF ||
          fflush (self->output) != 0)
        {
          int e = errno;
          g_set_error (error, GPTD_STAGE_ERROR, GPTD_STAGE_ERROR_IO,
                       "cannot write to output %s: %s", self->output_path, g_strerror (e));
          return FALSE;
        }
    }
  self->n_predictions++;
  return gptd_stage_push (ctx, 0, &p.base, error);
}

static gboolean
classifier_process (gpointer data, GptdStageContext *ctx, guint input,
                    const ProtobufCMessage *msg, GError **error)
{
  Classifier *self = data;
  if (input == INPUT_MODEL)
    {
      const Gptd__Model *m = (const Gptd__Model *) msg;
      if (m->path == NULL || m->path[0] == '\0')
        {
          g_set_error (error, GPTD_STAGE_ERROR, GPTD_STAGE_ERROR_INPUT,
                       "a gptd.Model message on input model names no directory");
          return FALSE;
        }
      /* The last model wins; it is loaded when the first text needs it. */
      g_free (self->model_dir);
      self->model_dir = g_strdup (m->path);
      g_clear_pointer (&self->classifier, gptd_classifier_free);
      return TRUE;
    }

  const Gptd__Document *d = (const Gptd__Document *) msg;
  if (self->doc == NULL)
    self->doc = g_string_new (NULL);
  if (self->doc_source == NULL)
    {
      self->doc_source = g_strdup (d->source);
      self->doc_label = g_strdup (d->label);
    }
  g_string_append_len (self->doc, (const char *) d->text.data, d->text.len);
  if (!d->last)
    return TRUE;
  gboolean ok = TRUE;
  if (self->doc->len == 0)
    gptd_stage_log (ctx, G_LOG_LEVEL_WARNING,
                    "document %" G_GUINT64_FORMAT " (%s) is empty: no prediction",
                    d->index, self->doc_source ? self->doc_source : "");
  else
    ok = classifier_answer (self, ctx, self->doc_source, self->doc->str, self->doc->len,
                            self->doc_label, error);
  g_string_truncate (self->doc, 0);
  g_clear_pointer (&self->doc_source, g_free);
  g_clear_pointer (&self->doc_label, g_free);
  return ok;
}

static gboolean
classifier_finish (gpointer data, GptdStageContext *ctx, GError **error)
{
  Classifier *self = data;
  if (self->doc != NULL && self->doc->len > 0)
    {
      /* A source whose last chunk never came: answer what arrived. */
      if (!classifier_answer (self, ctx, self->doc_source, self->doc->str, self->doc->len,
                              self->doc_label, error))
        return FALSE;
      g_string_truncate (self->doc, 0);
    }
  if (self->text != NULL &&
      !classifier_answer (self, ctx, NULL, self->text, strlen (self->text), NULL, error))
    return FALSE;
  if (self->n_predictions == 0)
    gptd_stage_log (ctx, G_LOG_LEVEL_WARNING, "no text: set text= or link the input");
  if (self->n_labelled > 0)
    gptd_stage_log (ctx, G_LOG_LEVEL_MESSAGE,
                    "%u of %u labelled texts predicted as labelled (%.2f%%)",
                    self->n_agree, self->n_labelled, 100.0 * self->n_agree / self->n_labelled);
  return TRUE;
}

const GptdStageType gptd__classifier_type = {
  .name = "classifier",
  .description = "Classifies texts with a fine-tuned GPT-2 classifier: the predicted "
                 "label and the class probabilities (the book's classify_review)",
  .params = classifier_params,
  .inputs = classifier_inputs,
  .outputs = classifier_outputs,
  .create = classifier_create,
  .process = classifier_process,
  .finish = classifier_finish,
  .destroy = classifier_destroy,
};
