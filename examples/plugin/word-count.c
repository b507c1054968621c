/* word-count.c: the word-count stage: counts the words of its Documents (runs of
 * non-space characters at least min-length long) and, at the end, sends one
 * Document saying how many, and logs it (process style with finish). */
#include <string.h>

#include "example.h"

typedef struct {
  gint64 min_length;
  guint64 words;
  guint64 documents;
} WordCount;

static const GptdParamSpec word_count_params[] = {
  { "min-length", GPTD_PARAM_INT, "1", 1, 1000, NULL,
    "count only words of at least this many characters" },
  { NULL }
};
static const GptdPadSpec doc_in[] = { { "default", "gptd.Document", 0 }, { NULL } };
static const GptdPadSpec doc_out[] = { { "default", "gptd.Document", 0 }, { NULL } };

static gpointer
word_count_create (GptdStageContext *ctx, const GptdParams *params, GError **error)
{
  WordCount *self = g_new0 (WordCount, 1);
  self->min_length = gptd_params_get_int (params, "min-length");
  return self;
}

static gboolean
word_count_process (gpointer data, GptdStageContext *ctx, guint input,
                    const ProtobufCMessage *msg, GError **error)
{
  WordCount *self = data;
  const Gptd__Document *doc = (const Gptd__Document *) msg;
  gint64 run = 0;
  for (gsize i = 0; i <= doc->text.len; i++)
    {
      if (i < doc->text.len && !g_ascii_isspace (doc->text.data[i]))
        {
          /* UTF-8 continuation bytes do not start a character. */
          if ((doc->text.data[i] & 0xC0) != 0x80)
            run++;
          continue;
        }
      if (run >= self->min_length)
        self->words++;
      run = 0;
    }
  self->documents++;
  return TRUE;
}

static gboolean
word_count_finish (gpointer data, GptdStageContext *ctx, GError **error)
{
  WordCount *self = data;
  g_autofree char *text = g_strdup_printf ("%" G_GUINT64_FORMAT " words in %"
                                           G_GUINT64_FORMAT " documents", self->words,
                                           self->documents);
  gptd_stage_log (ctx, G_LOG_LEVEL_INFO, "%s", text);
  Gptd__Document out = GPTD__DOCUMENT__INIT;
  out.source = (char *) "word-count";
  out.text.data = (guint8 *) text;
  out.text.len = strlen (text);
  out.last = TRUE;
  return gptd_stage_push (ctx, 0, &out.base, error);
}

const GptdStageType example_word_count_type = {
  .name = "word-count",
  .description = "Counts the words of Documents and sends the count",
  .params = word_count_params,
  .inputs = doc_in,
  .outputs = doc_out,
  .create = word_count_create,
  .process = word_count_process,
  .finish = word_count_finish,
  .destroy = g_free,
};
