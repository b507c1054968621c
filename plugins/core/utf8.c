/* utf8.c: the UTF-8 check that the core sources (text-source, table-source) apply to
 * the text they read: invalid UTF-8 is an error naming where it is and its byte
 * offset, or (invalid=replace) is replaced with U+FFFD and a warning is logged. */
#include "config.h"

#include <string.h>

#include "core.h"

gboolean
gptd__core_check_utf8 (GptdStageContext *ctx, const char *where, guint64 offset,
                       const guint8 *data, gsize len, gboolean replace, char **fixed,
                       GError **error)
{
  const char *bad = NULL;

  if (fixed)
    *fixed = NULL;
  if (g_utf8_validate ((const char *) data, (gssize) len, &bad))
    return TRUE;
  guint64 at = offset + (guint64) ((const guint8 *) bad - data);
  if (!replace)
    {
      g_set_error (error, GPTD_STAGE_ERROR, GPTD_STAGE_ERROR_INPUT,
                   "%s: invalid UTF-8 at byte offset %" G_GUINT64_FORMAT
                   " (set invalid=replace to replace it with U+FFFD)", where, at);
      return FALSE;
    }
  gptd_stage_log (ctx, G_LOG_LEVEL_WARNING,
                  "%s: invalid UTF-8 from byte offset %" G_GUINT64_FORMAT
                  " replaced with U+FFFD", where, at);
  if (fixed)
    *fixed = g_utf8_make_valid ((const char *) data, (gssize) len);
  return TRUE;
}
