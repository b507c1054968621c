/* upper.c: the upper stage: upper-cases the text of each Document (process style). */
#include <string.h>

#include "example.h"

static const GptdPadSpec doc_in[] = { { "default", "gptd.Document", 0 }, { NULL } };
static const GptdPadSpec doc_out[] = { { "default", "gptd.Document", 0 }, { NULL } };

static gpointer
upper_create (GptdStageContext *ctx, const GptdParams *params, GError **error)
{
  return g_new0 (int, 1);   /* no state: any non-NULL instance */
}

static gboolean
upper_process (gpointer self, GptdStageContext *ctx, guint input,
               const ProtobufCMessage *msg, GError **error)
{
  const Gptd__Document *in = (const Gptd__Document *) msg;
  if (!g_utf8_validate ((const char *) in->text.data, in->text.len, NULL))
    {
      g_set_error (error, GPTD_STAGE_ERROR, GPTD_STAGE_ERROR_INPUT,
                   "%s: the text at byte offset %" G_GUINT64_FORMAT " is not UTF-8",
                   in->source, in->offset);
      return FALSE;
    }
  g_autofree char *text = g_utf8_strup ((const char *) in->text.data, in->text.len);
  Gptd__Document out = *in;   /* a shallow copy: @msg belongs to the runner */
  out.text.data = (guint8 *) text;
  out.text.len = strlen (text);
  return gptd_stage_push (ctx, 0, &out.base, error);
}

const GptdStageType example_upper_type = {
  .name = "upper",
  .description = "Upper-cases the text of Documents",
  .inputs = doc_in,
  .outputs = doc_out,
  .create = upper_create,
  .process = upper_process,
  .destroy = g_free,
};
