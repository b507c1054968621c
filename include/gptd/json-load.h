/* gptd/json-load.h: JSON parsing with bounded nesting depth and size.
 *
 * json-glib parses recursively, one C stack frame per nesting level, and frees
 * a parsed tree recursively too: a file of a hundred thousand `[` crashes the
 * process. Every JSON text gptd reads (config.json, checkpoint.json, encoder.json
 * and vocab.json, safetensors headers, the daemon's run files) goes through
 * gptd_json_load_bounded() or gptd_json_load_file_bounded(), which first scan the
 * bytes, counting bracket depth outside strings, and refuse a text nested deeper
 * than %GPTD_JSON_MAX_DEPTH or larger than the caller's size limit before
 * json-glib sees it.
 *
 * Errors are in the %GPTD_JSON_ERROR domain and their messages begin with the
 * file name they were given.
 */
#pragma once

#include <glib.h>
#include <json-glib/json-glib.h>

G_BEGIN_DECLS

/**
 * GPTD_JSON_MAX_DEPTH:
 *
 * The deepest nesting of arrays and objects gptd accepts in a JSON text. The
 * files gptd reads nest at most a few levels.
 */
#define GPTD_JSON_MAX_DEPTH 64

/**
 * GPTD_JSON_MAX_SIZE:
 *
 * The size limit used when a caller passes 0: 64 MiB.
 */
#define GPTD_JSON_MAX_SIZE ((gsize) 64 << 20)

#define GPTD_JSON_ERROR (gptd_json_error_quark ())
GQuark gptd_json_error_quark (void);

/**
 * GptdJsonError:
 * @GPTD_JSON_ERROR_TOO_DEEP: arrays or objects nest deeper than the limit; the
 *   message names the byte offset of the bracket past the limit.
 * @GPTD_JSON_ERROR_TOO_LARGE: the text is larger than the size limit.
 * @GPTD_JSON_ERROR_SYNTAX: json-glib refused the text; its message follows.
 */
typedef enum {
  GPTD_JSON_ERROR_TOO_DEEP,
  GPTD_JSON_ERROR_TOO_LARGE,
  GPTD_JSON_ERROR_SYNTAX,
} GptdJsonError;

/**
 * gptd_json_check_depth:
 * @data: the JSON text
 * @length: its length in bytes
 * @max_depth: the deepest nesting allowed
 * @offset: (out) (optional): the byte offset of the first bracket past @max_depth
 *
 * Scans @data once, counting `[` and `{` against `]` and `}` outside strings
 * (backslash escapes included). It does not check the syntax otherwise.
 *
 * Returns: %TRUE if no bracket is nested deeper than @max_depth
 */
gboolean gptd_json_check_depth (const char *data,
                                gsize       length,
                                guint       max_depth,
                                gsize      *offset);

/**
 * gptd_json_load_bounded:
 * @data: the JSON text
 * @length: its length in bytes, or -1 if it is NUL-terminated
 * @filename: the name to give in errors
 * @max_size: the largest text accepted, or 0 for %GPTD_JSON_MAX_SIZE
 * @error: return location for a #GError
 *
 * Refuses a text larger than @max_size (%GPTD_JSON_ERROR_TOO_LARGE) or nested
 * deeper than %GPTD_JSON_MAX_DEPTH (%GPTD_JSON_ERROR_TOO_DEEP, naming the byte
 * offset), then parses it with an immutable #JsonParser
 * (%GPTD_JSON_ERROR_SYNTAX: "FILENAME: not valid JSON: LINE:COLUMN: ...").
 *
 * Returns: (transfer full): the parser holding the parsed tree, or %NULL with
 *   @error set
 */
JsonParser *gptd_json_load_bounded (const char *data,
                                    gssize      length,
                                    const char *filename,
                                    gsize       max_size,
                                    GError    **error);

/**
 * gptd_json_load_file_bounded:
 * @path: the file to read
 * @max_size: the largest file accepted, or 0 for %GPTD_JSON_MAX_SIZE
 * @error: return location for a #GError
 *
 * Reads @path, refusing it before reading past @max_size, and parses it as
 * gptd_json_load_bounded() does. A file that cannot be read gives a
 * %G_FILE_ERROR naming @path, with the code derived from errno as
 * g_file_get_contents() does (so callers can tell a missing file from a bad one).
 *
 * Returns: (transfer full): the parser, or %NULL with @error set
 */
JsonParser *gptd_json_load_file_bounded (const char *path,
                                         gsize       max_size,
                                         GError    **error);

G_END_DECLS
