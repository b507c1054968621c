/* core.h: the stage types of the core plugin (core.so) and what their files
 * share. */
#ifndef GPTD_CORE_H
#define GPTD_CORE_H

#include <gptd/stage.h>

extern const GptdStageType gptd__text_source_type;
extern const GptdStageType gptd__dump_type;
extern const GptdStageType gptd__table_source_type;

/* Checks that data[0..len) is UTF-8. When it is not: without @replace, returns FALSE
 * with an error "WHERE: invalid UTF-8 at byte offset N" (N = @offset plus the
 * position of the first bad byte); with @replace, logs a warning naming @where and
 * the offset and, when @fixed is not NULL, sets *fixed to a copy with U+FFFD in place
 * of the invalid bytes (free it with g_free()). *fixed is NULL when nothing was
 * replaced; *fixed_len (when not NULL) is its length, since NUL bytes (valid UTF-8)
 * stay in it. */
gboolean gptd__core_check_utf8 (GptdStageContext *ctx, const char *where,
                                guint64 offset, const guint8 *data, gsize len,
                                gboolean replace, char **fixed, gsize *fixed_len,
                                GError **error);

#endif /* GPTD_CORE_H */
