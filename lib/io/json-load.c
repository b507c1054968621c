/* lib/io/json-load.c: JSON parsing with bounded nesting depth and size: a byte
 * scan counting bracket depth outside strings, then json-glib.
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include <gptd/json-load.h>

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <glib/gstdio.h>

G_DEFINE_QUARK (gptd-json-error-quark, gptd_json_error)

gboolean
gptd_json_check_depth (const char *data,
                       gsize       length,
                       guint       max_depth,
                       gsize      *offset)
{
  g_return_val_if_fail (data != NULL || length == 0, FALSE);

  const char *p = data, *end = data + length;
  guint depth = 0;
  while (p < end)
    {
      /* Only brackets and quotes matter; skip everything else quickly. */
      char c = *p;
      if (c == '"')
        {
          for (p++; p < end && *p != '"'; p++)
            if (*p == '\\' && p + 1 < end)
              p++;
          if (p < end)
            p++;
          continue;
        }
      if (c == '[' || c == '{')
        {
          if (++depth > max_depth)
            {
              if (offset)
                *offset = (gsize) (p - data);
              return FALSE;
            }
        }
      else if ((c == ']' || c == '}') && depth > 0)
        depth--;
      p++;
    }
  return TRUE;
}

JsonParser *
gptd_json_load_bounded (const char *data,
                        gssize      length,
                        const char *filename,
                        gsize       max_size,
                        GError    **error)
{
  g_return_val_if_fail (data != NULL, NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  const char *fname = filename ? filename : "<data>";
  gsize len = length < 0 ? strlen (data) : (gsize) length;
  if (max_size == 0)
    max_size = GPTD_JSON_MAX_SIZE;
  if (len > max_size)
    {
      g_set_error (error, GPTD_JSON_ERROR, GPTD_JSON_ERROR_TOO_LARGE,
                   "%s: %" G_GSIZE_FORMAT " bytes of JSON, more than the limit of %"
                   G_GSIZE_FORMAT, fname, len, max_size);
      return NULL;
    }
  gsize off = 0;
  if (!gptd_json_check_depth (data, len, GPTD_JSON_MAX_DEPTH, &off))
    {
      g_set_error (error, GPTD_JSON_ERROR, GPTD_JSON_ERROR_TOO_DEEP,
                   "%s: arrays and objects nested deeper than %u levels (byte %"
                   G_GSIZE_FORMAT ")", fname, (guint) GPTD_JSON_MAX_DEPTH, off);
      return NULL;
    }

  g_autoptr (JsonParser) parser = json_parser_new_immutable ();
  g_autoptr (GError) local = NULL;
  if (!json_parser_load_from_data (parser, data, (gssize) len, &local))
    {
      /* json-glib names the text "<data>"; the caller's file name replaces it. */
      const char *msg = local->message;
      if (g_str_has_prefix (msg, "<data>:"))
        msg += strlen ("<data>:");
      g_set_error (error, GPTD_JSON_ERROR, GPTD_JSON_ERROR_SYNTAX,
                   "%s: not valid JSON: %s", fname, msg);
      return NULL;
    }
  return g_steal_pointer (&parser);
}

/* Reads at most max_size + 1 bytes of a file, so that an endless or huge file
 * (a device, a FIFO) is refused without reading all of it. */
static char *
read_bounded (const char *path, gsize max_size, gsize *length, GError **error)
{
  int fd = g_open (path, O_RDONLY | O_CLOEXEC, 0);
  if (fd < 0)
    {
      int e = errno;
      g_set_error (error, G_FILE_ERROR, g_file_error_from_errno (e),
                   "Failed to open file “%s”: %s", path, g_strerror (e));
      return NULL;
    }
  struct stat st;
  if (fstat (fd, &st) == 0 && S_ISREG (st.st_mode) && (guint64) st.st_size > max_size)
    {
      g_set_error (error, GPTD_JSON_ERROR, GPTD_JSON_ERROR_TOO_LARGE,
                   "%s: %" G_GUINT64_FORMAT " bytes of JSON, more than the limit of %"
                   G_GSIZE_FORMAT, path, (guint64) st.st_size, max_size);
      close (fd);
      return NULL;
    }
  GByteArray *buf = g_byte_array_new ();
  guint8 chunk[65536];
  for (;;)
    {
      ssize_t n = read (fd, chunk, sizeof chunk);
      if (n < 0 && errno == EINTR)
        continue;
      if (n < 0)
        {
          int e = errno;
          g_set_error (error, G_FILE_ERROR, g_file_error_from_errno (e),
                       "Failed to read from file “%s”: %s", path, g_strerror (e));
          close (fd);
          g_byte_array_unref (buf);
          return NULL;
        }
      if (n == 0)
        break;
      g_byte_array_append (buf, chunk, (guint) n);
      if (buf->len > max_size)
        {
          g_set_error (error, GPTD_JSON_ERROR, GPTD_JSON_ERROR_TOO_LARGE,
                       "%s: more than %" G_GSIZE_FORMAT " bytes of JSON (the limit)",
                       path, max_size);
          close (fd);
          g_byte_array_unref (buf);
          return NULL;
        }
    }
  close (fd);
  *length = buf->len;
  g_byte_array_append (buf, (const guint8 *) "", 1);
  return (char *) g_byte_array_free (buf, FALSE);
}

JsonParser *
gptd_json_load_file_bounded (const char *path,
                             gsize       max_size,
                             GError    **error)
{
  g_return_val_if_fail (path != NULL, NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  if (max_size == 0)
    max_size = GPTD_JSON_MAX_SIZE;
  gsize len = 0;
  g_autofree char *data = read_bounded (path, max_size, &len, error);
  if (data == NULL)
    return NULL;
  return gptd_json_load_bounded (data, (gssize) len, path, max_size, error);
}
