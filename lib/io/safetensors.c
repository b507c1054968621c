/* lib/io/safetensors.c: a validating, memory-mapping safetensors reader and an
 * atomic safetensors writer (format described in gptd/safetensors.h).
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include <gptd/safetensors.h>
#include <gptd/atomic-file.h>
#include <gptd/json-load.h>

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <json-glib/json-glib.h>

#if G_BYTE_ORDER != G_LITTLE_ENDIAN
#error "gptd's safetensors code assumes a little-endian host"
#endif

G_DEFINE_QUARK (gptd-safetensors-error-quark, gptd_safetensors_error)

/* ------------------------------------------------------------------------ */
/* Dtypes */

static const struct {
  const char *name;
  size_t      size;
} dtype_info[] = {
#define DTYPE_INFO(name, str, size) { str, size },
  GPTD_SAFETENSORS_DTYPE_MAP (DTYPE_INFO)
#undef DTYPE_INFO
};

const char *
gptd_safetensors_dtype_to_string (GptdSafetensorsDtype dtype)
{
  g_return_val_if_fail ((size_t) dtype < G_N_ELEMENTS (dtype_info), NULL);
  return dtype_info[dtype].name;
}

gboolean
gptd_safetensors_dtype_from_string (const char           *str,
                                    GptdSafetensorsDtype *dtype)
{
  g_return_val_if_fail (str != NULL, FALSE);
  for (size_t i = 0; i < G_N_ELEMENTS (dtype_info); i++)
    if (strcmp (str, dtype_info[i].name) == 0)
      {
        if (dtype != NULL)
          *dtype = (GptdSafetensorsDtype) i;
        return TRUE;
      }
  return FALSE;
}

size_t
gptd_safetensors_dtype_size (GptdSafetensorsDtype dtype)
{
  g_return_val_if_fail ((size_t) dtype < G_N_ELEMENTS (dtype_info), 0);
  return dtype_info[dtype].size;
}

/* ------------------------------------------------------------------------ */
/* Conversions */

static inline float
f16_to_f32 (uint16_t h)
{
  uint32_t sign = (uint32_t) (h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t mant = h & 0x3ffu;
  uint32_t bits;
  float f;

  if (exp == 0)
    {
      /* Zero or subnormal: mant * 2^-24, exact in float32. */
      f = (float) mant * 0x1p-24f;
      memcpy (&bits, &f, sizeof bits);
      bits |= sign;
    }
  else if (exp == 31)
    bits = sign | 0x7f800000u | (mant << 13); /* infinity or NaN */
  else
    bits = sign | ((exp + (127 - 15)) << 23) | (mant << 13);
  memcpy (&f, &bits, sizeof f);
  return f;
}

void
gptd_safetensors_f16_to_f32 (const void *src, float *dst, size_t n)
{
  const guint8 *s = src;
  for (size_t i = 0; i < n; i++)
    {
      uint16_t h;
      memcpy (&h, s + 2 * i, sizeof h);
      dst[i] = f16_to_f32 (h);
    }
}

void
gptd_safetensors_bf16_to_f32 (const void *src, float *dst, size_t n)
{
  const guint8 *s = src;
  for (size_t i = 0; i < n; i++)
    {
      uint16_t h;
      uint32_t bits;
      memcpy (&h, s + 2 * i, sizeof h);
      bits = (uint32_t) h << 16;
      memcpy (dst + i, &bits, sizeof bits);
    }
}

static void
f64_to_f32 (const void *src, float *dst, size_t n)
{
  const guint8 *s = src;
  for (size_t i = 0; i < n; i++)
    {
      double d;
      memcpy (&d, s + 8 * i, sizeof d);
      dst[i] = (float) d;
    }
}

/* ------------------------------------------------------------------------ */
/* Reader */

struct _GptdSafetensors {
  char                  *path;
  void                  *map;
  size_t                 map_size;
  const guint8          *data_area;
  guint64                data_size;
  GptdSafetensorsTensor *tensors;   /* sorted by name */
  guint                  n_tensors;
  GHashTable            *by_name;   /* name -> index + 1 */
  GHashTable            *metadata;  /* key -> value */
};

static void st_error (GError **error, int code, const char *path, const char *format, ...)
  G_GNUC_PRINTF (4, 5);

/* Sets an error whose message starts with the file name. */
static void
st_error (GError    **error,
          int         code,
          const char *path,
          const char *format,
          ...)
{
  va_list args;
  va_start (args, format);
  g_autofree char *msg = g_strdup_vprintf (format, args);
  va_end (args);
  g_set_error (error, GPTD_SAFETENSORS_ERROR, code, "%s: %s", path, msg);
}

/* Formats a shape as "[a, b, c]". */
static char *
shape_to_string (guint n_dims, const size_t *shape)
{
  GString *s = g_string_new ("[");
  for (guint i = 0; i < n_dims; i++)
    g_string_append_printf (s, "%s%zu", i ? ", " : "", shape[i]);
  g_string_append_c (s, ']');
  return g_string_free (s, FALSE);
}

/* Reads a non-negative JSON integer. */
static gboolean
node_get_uint (JsonNode *node, guint64 *out)
{
  if (node == NULL || !JSON_NODE_HOLDS_VALUE (node)
      || json_node_get_value_type (node) != G_TYPE_INT64)
    return FALSE;
  gint64 v = json_node_get_int (node);
  if (v < 0)
    return FALSE;
  *out = (guint64) v;
  return TRUE;
}

static int
compare_tensor_names (const void *a, const void *b)
{
  const GptdSafetensorsTensor *ta = a, *tb = b;
  return strcmp (ta->name, tb->name);
}

/* Tensor layout used while checking offsets. */
typedef struct {
  guint64     begin;
  guint64     end;
  const char *name;
} Span;

static int
compare_spans (const void *a, const void *b)
{
  const Span *sa = a, *sb = b;
  if (sa->begin != sb->begin)
    return sa->begin < sb->begin ? -1 : 1;
  if (sa->end != sb->end)
    return sa->end < sb->end ? -1 : 1;
  return strcmp (sa->name, sb->name);
}

static gboolean
parse_metadata (GptdSafetensors *st, JsonNode *node, GError **error)
{
  if (!JSON_NODE_HOLDS_OBJECT (node))
    {
      st_error (error, GPTD_SAFETENSORS_ERROR_METADATA, st->path,
                "“__metadata__” is not a JSON object");
      return FALSE;
    }
  JsonObject *obj = json_node_get_object (node);
  g_autoptr (GList) members = json_object_get_members (obj);
  for (GList *l = members; l != NULL; l = l->next)
    {
      const char *key = l->data;
      JsonNode *value = json_object_get_member (obj, key);
      if (!JSON_NODE_HOLDS_VALUE (value)
          || json_node_get_value_type (value) != G_TYPE_STRING)
        {
          st_error (error, GPTD_SAFETENSORS_ERROR_METADATA, st->path,
                    "metadata entry “%s” is not a string", key);
          return FALSE;
        }
      g_hash_table_replace (st->metadata, g_strdup (key),
                            g_strdup (json_node_get_string (value)));
    }
  return TRUE;
}

/* Parses one tensor entry into @t (name already set); checks everything that
 * concerns the entry alone. */
static gboolean
parse_entry (GptdSafetensors       *st,
             GptdSafetensorsTensor *t,
             JsonNode              *node,
             guint64               *begin_out,
             guint64               *end_out,
             GError               **error)
{
  const char *name = t->name;

  if (!JSON_NODE_HOLDS_OBJECT (node))
    {
      st_error (error, GPTD_SAFETENSORS_ERROR_ENTRY, st->path,
                "tensor “%s”: the entry is not a JSON object", name);
      return FALSE;
    }
  JsonObject *obj = json_node_get_object (node);

  /* dtype */
  JsonNode *dtype_node = json_object_get_member (obj, "dtype");
  if (dtype_node == NULL || !JSON_NODE_HOLDS_VALUE (dtype_node)
      || json_node_get_value_type (dtype_node) != G_TYPE_STRING)
    {
      st_error (error, GPTD_SAFETENSORS_ERROR_ENTRY, st->path,
                "tensor “%s”: “dtype” is missing or not a string", name);
      return FALSE;
    }
  const char *dtype_str = json_node_get_string (dtype_node);
  if (!gptd_safetensors_dtype_from_string (dtype_str, &t->dtype))
    {
      st_error (error, GPTD_SAFETENSORS_ERROR_DTYPE, st->path,
                "tensor “%s” has unknown dtype “%s”", name, dtype_str);
      return FALSE;
    }

  /* shape */
  JsonNode *shape_node = json_object_get_member (obj, "shape");
  if (shape_node == NULL || !JSON_NODE_HOLDS_ARRAY (shape_node))
    {
      st_error (error, GPTD_SAFETENSORS_ERROR_ENTRY, st->path,
                "tensor “%s”: “shape” is missing or not an array", name);
      return FALSE;
    }
  JsonArray *shape = json_node_get_array (shape_node);
  guint n_dims = json_array_get_length (shape);
  if (n_dims > GPTD_SAFETENSORS_MAX_DIMS)
    {
      st_error (error, GPTD_SAFETENSORS_ERROR_ENTRY, st->path,
                "tensor “%s” has %u dimensions; at most %d are supported",
                name, n_dims, GPTD_SAFETENSORS_MAX_DIMS);
      return FALSE;
    }
  t->n_dims = n_dims;
  size_t n_elements = 1;
  gboolean overflow = FALSE;
  for (guint i = 0; i < n_dims; i++)
    {
      guint64 d;
      if (!node_get_uint (json_array_get_element (shape, i), &d) || d > G_MAXSIZE)
        {
          st_error (error, GPTD_SAFETENSORS_ERROR_ENTRY, st->path,
                    "tensor “%s”: shape entry %u is not a non-negative integer",
                    name, i);
          return FALSE;
        }
      t->shape[i] = (size_t) d;
      if (!g_size_checked_mul (&n_elements, n_elements, (size_t) d))
        overflow = TRUE;
    }
  size_t n_bytes = 0;
  if (overflow
      || !g_size_checked_mul (&n_bytes, n_elements, gptd_safetensors_dtype_size (t->dtype)))
    {
      g_autofree char *s = shape_to_string (n_dims, t->shape);
      st_error (error, GPTD_SAFETENSORS_ERROR_SIZE, st->path,
                "tensor “%s”: shape %s is too large", name, s);
      return FALSE;
    }
  t->n_elements = n_elements;
  t->n_bytes = n_bytes;

  /* data_offsets */
  JsonNode *off_node = json_object_get_member (obj, "data_offsets");
  guint64 begin, end;
  if (off_node == NULL || !JSON_NODE_HOLDS_ARRAY (off_node)
      || json_array_get_length (json_node_get_array (off_node)) != 2
      || !node_get_uint (json_array_get_element (json_node_get_array (off_node), 0), &begin)
      || !node_get_uint (json_array_get_element (json_node_get_array (off_node), 1), &end))
    {
      st_error (error, GPTD_SAFETENSORS_ERROR_ENTRY, st->path,
                "tensor “%s”: “data_offsets” is missing or not two non-negative integers",
                name);
      return FALSE;
    }
  if (begin > end)
    {
      st_error (error, GPTD_SAFETENSORS_ERROR_OFFSETS, st->path,
                "tensor “%s”: data_offsets [%" G_GUINT64_FORMAT ", %" G_GUINT64_FORMAT
                "] begin after they end", name, begin, end);
      return FALSE;
    }
  if (end - begin != (guint64) n_bytes)
    {
      g_autofree char *s = shape_to_string (n_dims, t->shape);
      st_error (error, GPTD_SAFETENSORS_ERROR_SIZE, st->path,
                "tensor “%s”: data_offsets [%" G_GUINT64_FORMAT ", %" G_GUINT64_FORMAT
                "] span %" G_GUINT64_FORMAT " bytes, but shape %s of %s needs %zu",
                name, begin, end, end - begin, s, dtype_info[t->dtype].name, n_bytes);
      return FALSE;
    }
  *begin_out = begin;
  *end_out = end;
  return TRUE;
}

/* Checks that the tensors tile the data area: no overlap, no hole, all inside. */
static gboolean
check_layout (GptdSafetensors *st, Span *spans, guint n, GError **error)
{
  if (n > 1)
    qsort (spans, n, sizeof *spans, compare_spans);

  /* Overlaps first: they are wrong whatever the file size. */
  guint64 max_end = 0;
  const Span *max_span = NULL;
  for (guint i = 0; i < n; i++)
    {
      if (max_span != NULL && spans[i].begin < max_end)
        {
          st_error (error, GPTD_SAFETENSORS_ERROR_OVERLAP, st->path,
                    "tensors “%s” (data_offsets [%" G_GUINT64_FORMAT ", %"
                    G_GUINT64_FORMAT "]) and “%s” ([%" G_GUINT64_FORMAT ", %"
                    G_GUINT64_FORMAT "]) overlap", max_span->name, max_span->begin,
                    max_span->end, spans[i].name, spans[i].begin, spans[i].end);
          return FALSE;
        }
      if (max_span == NULL || spans[i].end >= max_end)
        {
          max_end = spans[i].end;
          max_span = &spans[i];
        }
    }
  const char *max_name = max_span != NULL ? max_span->name : NULL;

  gboolean contiguous = TRUE;
  guint64 pos = 0;
  for (guint i = 0; i < n; i++)
    {
      if (spans[i].begin != pos)
        contiguous = FALSE;
      pos = spans[i].end;
    }

  if (max_end > st->data_size)
    {
      if (contiguous)
        {
          st_error (error, GPTD_SAFETENSORS_ERROR_TRUNCATED, st->path,
                    "the file is truncated: its tensors need %" G_GUINT64_FORMAT
                    " bytes of data after the header, but it holds %" G_GUINT64_FORMAT
                    " (tensor “%s” ends at %" G_GUINT64_FORMAT ")",
                    max_end, st->data_size, max_name, max_end);
          return FALSE;
        }
      for (guint i = 0; i < n; i++)
        if (spans[i].end > st->data_size)
          {
            st_error (error, GPTD_SAFETENSORS_ERROR_OFFSETS, st->path,
                      "tensor “%s”: data_offsets [%" G_GUINT64_FORMAT ", %"
                      G_GUINT64_FORMAT "] lie outside the data area of %"
                      G_GUINT64_FORMAT " bytes", spans[i].name, spans[i].begin,
                      spans[i].end, st->data_size);
            return FALSE;
          }
    }

  pos = 0;
  for (guint i = 0; i < n; i++)
    {
      if (spans[i].begin != pos)
        {
          st_error (error, GPTD_SAFETENSORS_ERROR_GAP, st->path,
                    "bytes [%" G_GUINT64_FORMAT ", %" G_GUINT64_FORMAT
                    ") of the data area, before tensor “%s”, belong to no tensor",
                    pos, spans[i].begin, spans[i].name);
          return FALSE;
        }
      pos = spans[i].end;
    }
  if (pos != st->data_size)
    {
      st_error (error, GPTD_SAFETENSORS_ERROR_GAP, st->path,
                "the last %" G_GUINT64_FORMAT " bytes of the file belong to no tensor",
                st->data_size - pos);
      return FALSE;
    }
  return TRUE;
}

GptdSafetensors *
gptd_safetensors_open (const char *path, GError **error)
{
  g_return_val_if_fail (path != NULL, NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  g_autoptr (GptdSafetensors) st = g_new0 (GptdSafetensors, 1);
  st->path = g_strdup (path);
  st->metadata = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);
  st->by_name = g_hash_table_new (g_str_hash, g_str_equal);

  int fd = open (path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    {
      int errsv = errno;
      st_error (error, GPTD_SAFETENSORS_ERROR_IO, path, "cannot open: %s",
                g_strerror (errsv));
      return NULL;
    }
  struct stat sb;
  if (fstat (fd, &sb) < 0)
    {
      int errsv = errno;
      close (fd);
      st_error (error, GPTD_SAFETENSORS_ERROR_IO, path, "cannot stat: %s",
                g_strerror (errsv));
      return NULL;
    }
  if (!S_ISREG (sb.st_mode))
    {
      close (fd);
      st_error (error, GPTD_SAFETENSORS_ERROR_IO, path, "not a regular file");
      return NULL;
    }
  guint64 file_size = (guint64) sb.st_size;
  if (file_size < 8)
    {
      close (fd);
      st_error (error, GPTD_SAFETENSORS_ERROR_TRUNCATED, path,
                "the file is truncated: %" G_GUINT64_FORMAT
                " bytes, too short for the 8-byte header length", file_size);
      return NULL;
    }
  if (file_size > G_MAXSIZE)
    {
      close (fd);
      st_error (error, GPTD_SAFETENSORS_ERROR_IO, path, "the file is too large to map");
      return NULL;
    }
  void *map = mmap (NULL, (size_t) file_size, PROT_READ, MAP_PRIVATE, fd, 0);
  int errsv = errno;
  close (fd);
  if (map == MAP_FAILED)
    {
      st_error (error, GPTD_SAFETENSORS_ERROR_IO, path, "cannot map: %s",
                g_strerror (errsv));
      return NULL;
    }
  st->map = map;
  st->map_size = (size_t) file_size;

  guint64 header_len;
  memcpy (&header_len, map, sizeof header_len);
  header_len = GUINT64_FROM_LE (header_len);
  if (header_len == 0)
    {
      st_error (error, GPTD_SAFETENSORS_ERROR_HEADER_SIZE, path,
                "the header length is 0");
      return NULL;
    }
  if (header_len > GPTD_SAFETENSORS_MAX_HEADER)
    {
      st_error (error, GPTD_SAFETENSORS_ERROR_HEADER_SIZE, path,
                "the header length %" G_GUINT64_FORMAT " is larger than the %"
                G_GUINT64_FORMAT " bytes allowed", header_len, GPTD_SAFETENSORS_MAX_HEADER);
      return NULL;
    }
  if (header_len > file_size - 8)
    {
      st_error (error, GPTD_SAFETENSORS_ERROR_HEADER_SIZE, path,
                "the header length %" G_GUINT64_FORMAT " runs past the end of the file (%"
                G_GUINT64_FORMAT " bytes)", header_len, file_size);
      return NULL;
    }
  const char *header = (const char *) map + 8;
  st->data_area = (const guint8 *) map + 8 + header_len;
  st->data_size = file_size - 8 - header_len;

  const char *bad_utf8;
  if (!g_utf8_validate_len (header, (gsize) header_len, &bad_utf8))
    {
      st_error (error, GPTD_SAFETENSORS_ERROR_JSON, path,
                "the header is not valid UTF-8 (byte %" G_GSIZE_FORMAT ")",
                (gsize) (8 + (bad_utf8 - header)));
      return NULL;
    }
  gsize deep_at = 0;
  if (!gptd_json_check_depth (header, (gsize) header_len, GPTD_JSON_MAX_DEPTH, &deep_at))
    {
      st_error (error, GPTD_SAFETENSORS_ERROR_JSON, path,
                "the header nests arrays and objects deeper than %u levels (byte %"
                G_GSIZE_FORMAT ")", (guint) GPTD_JSON_MAX_DEPTH, (gsize) 8 + deep_at);
      return NULL;
    }
  g_autoptr (GError) json_error = NULL;
  g_autoptr (JsonParser) parser = gptd_json_load_bounded (header, (gssize) header_len,
                                                          "header", header_len, &json_error);
  if (parser == NULL)
    {
      const char *msg = json_error->message;
      if (g_str_has_prefix (msg, "header: not valid JSON: "))
        msg += strlen ("header: not valid JSON: ");
      st_error (error, GPTD_SAFETENSORS_ERROR_JSON, path,
                "the header is not valid JSON: %s", msg);
      return NULL;
    }
  JsonNode *root = json_parser_get_root (parser);
  if (root == NULL || !JSON_NODE_HOLDS_OBJECT (root))
    {
      st_error (error, GPTD_SAFETENSORS_ERROR_JSON, path,
                "the header is not a JSON object");
      return NULL;
    }
  JsonObject *obj = json_node_get_object (root);
  g_autoptr (GList) members = json_object_get_members (obj);
  guint n_members = g_list_length (members);

  st->tensors = g_new0 (GptdSafetensorsTensor, n_members);
  g_autofree Span *spans = g_new0 (Span, n_members);
  guint n = 0;
  for (GList *l = members; l != NULL; l = l->next)
    {
      const char *name = l->data;
      JsonNode *node = json_object_get_member (obj, name);
      if (strcmp (name, "__metadata__") == 0)
        {
          if (!parse_metadata (st, node, error))
            return NULL;
          continue;
        }
      GptdSafetensorsTensor *t = &st->tensors[n];
      t->name = g_strdup (name);
      st->n_tensors = n + 1; /* so that the name is freed on error */
      if (!parse_entry (st, t, node, &spans[n].begin, &spans[n].end, error))
        return NULL;
      t->offset = spans[n].begin;
      spans[n].name = t->name;
      n++;
    }
  st->n_tensors = n;

  if (!check_layout (st, spans, n, error))
    return NULL;

  for (guint i = 0; i < n; i++)
    st->tensors[i].data = st->data_area + st->tensors[i].offset;
  if (n > 1)
    qsort (st->tensors, n, sizeof *st->tensors, compare_tensor_names);
  for (guint i = 0; i < n; i++)
    g_hash_table_insert (st->by_name, (gpointer) st->tensors[i].name,
                         GUINT_TO_POINTER (i + 1));

  return g_steal_pointer (&st);
}

void
gptd_safetensors_free (GptdSafetensors *st)
{
  if (st == NULL)
    return;
  if (st->map != NULL)
    munmap (st->map, st->map_size);
  for (guint i = 0; i < st->n_tensors; i++)
    g_free ((char *) st->tensors[i].name);
  g_free (st->tensors);
  g_clear_pointer (&st->by_name, g_hash_table_unref);
  g_clear_pointer (&st->metadata, g_hash_table_unref);
  g_free (st->path);
  g_free (st);
}

const char *
gptd_safetensors_get_path (const GptdSafetensors *st)
{
  g_return_val_if_fail (st != NULL, NULL);
  return st->path;
}

guint
gptd_safetensors_get_n_tensors (const GptdSafetensors *st)
{
  g_return_val_if_fail (st != NULL, 0);
  return st->n_tensors;
}

const GptdSafetensorsTensor *
gptd_safetensors_get_tensor (const GptdSafetensors *st, guint index)
{
  g_return_val_if_fail (st != NULL, NULL);
  g_return_val_if_fail (index < st->n_tensors, NULL);
  return &st->tensors[index];
}

const GptdSafetensorsTensor *
gptd_safetensors_lookup (const GptdSafetensors *st, const char *name)
{
  g_return_val_if_fail (st != NULL, NULL);
  g_return_val_if_fail (name != NULL, NULL);
  guint i = GPOINTER_TO_UINT (g_hash_table_lookup (st->by_name, name));
  return i == 0 ? NULL : &st->tensors[i - 1];
}

gboolean
gptd_safetensors_tensor_to_f32 (const GptdSafetensors       *st,
                                const GptdSafetensorsTensor *tensor,
                                float                       *dst,
                                GError                     **error)
{
  g_return_val_if_fail (st != NULL, FALSE);
  g_return_val_if_fail (tensor != NULL, FALSE);
  g_return_val_if_fail (dst != NULL || tensor->n_elements == 0, FALSE);

#ifdef MADV_WILLNEED
  /* Ask for a large tensor's pages at once rather than fault by fault. */
  if (tensor->n_bytes >= ((size_t) 1 << 20))
    {
      uintptr_t page = (uintptr_t) sysconf (_SC_PAGESIZE);
      uintptr_t start = (uintptr_t) tensor->data & ~(page - 1);
      madvise ((void *) start, (uintptr_t) tensor->data + tensor->n_bytes - start,
               MADV_WILLNEED);
    }
#endif

  switch (tensor->dtype)
    {
    case GPTD_SAFETENSORS_DTYPE_F32:
      if (tensor->n_bytes > 0)
        memcpy (dst, tensor->data, tensor->n_bytes);
      return TRUE;
    case GPTD_SAFETENSORS_DTYPE_F16:
      gptd_safetensors_f16_to_f32 (tensor->data, dst, tensor->n_elements);
      return TRUE;
    case GPTD_SAFETENSORS_DTYPE_BF16:
      gptd_safetensors_bf16_to_f32 (tensor->data, dst, tensor->n_elements);
      return TRUE;
    case GPTD_SAFETENSORS_DTYPE_F64:
      f64_to_f32 (tensor->data, dst, tensor->n_elements);
      return TRUE;
    default:
      st_error (error, GPTD_SAFETENSORS_ERROR_DTYPE, st->path,
                "tensor “%s” has dtype %s, which cannot be read as float32 "
                "(F32, F16, BF16 and F64 can)", tensor->name,
                dtype_info[tensor->dtype].name);
      return FALSE;
    }
}

gboolean
gptd_safetensors_read_f32 (const GptdSafetensors *st,
                           const char            *name,
                           guint                  n_dims,
                           const size_t          *shape,
                           float                 *dst,
                           GError               **error)
{
  g_return_val_if_fail (st != NULL, FALSE);
  g_return_val_if_fail (name != NULL, FALSE);

  const GptdSafetensorsTensor *t = gptd_safetensors_lookup (st, name);
  if (t == NULL)
    {
      st_error (error, GPTD_SAFETENSORS_ERROR_NOT_FOUND, st->path,
                "tensor “%s” is missing", name);
      return FALSE;
    }
  if (shape != NULL)
    {
      gboolean same = t->n_dims == n_dims;
      for (guint i = 0; same && i < n_dims; i++)
        same = t->shape[i] == shape[i];
      if (!same)
        {
          g_autofree char *have = shape_to_string (t->n_dims, t->shape);
          g_autofree char *want = shape_to_string (n_dims, shape);
          st_error (error, GPTD_SAFETENSORS_ERROR_SHAPE, st->path,
                    "tensor “%s” has shape %s, expected %s", name, have, want);
          return FALSE;
        }
    }
  return gptd_safetensors_tensor_to_f32 (st, t, dst, error);
}

const char *
gptd_safetensors_get_metadata (const GptdSafetensors *st, const char *key)
{
  g_return_val_if_fail (st != NULL, NULL);
  g_return_val_if_fail (key != NULL, NULL);
  return g_hash_table_lookup (st->metadata, key);
}

GHashTable *
gptd_safetensors_get_metadata_table (const GptdSafetensors *st)
{
  g_return_val_if_fail (st != NULL, NULL);
  return st->metadata;
}

/* ------------------------------------------------------------------------ */
/* Writer */

typedef struct {
  char                *name;
  GptdSafetensorsDtype dtype;
  guint                n_dims;
  size_t               shape[GPTD_SAFETENSORS_MAX_DIMS];
  const void          *data;
  size_t               n_bytes;
  guint64              begin;
} WriterEntry;

struct _GptdSafetensorsWriter {
  GPtrArray  *entries;   /* WriterEntry*, in order added */
  GHashTable *metadata;  /* key -> value */
  gboolean    keep_order;
};

static void
writer_entry_free (gpointer p)
{
  WriterEntry *e = p;
  g_free (e->name);
  g_free (e);
}

GptdSafetensorsWriter *
gptd_safetensors_writer_new (void)
{
  GptdSafetensorsWriter *w = g_new0 (GptdSafetensorsWriter, 1);
  w->entries = g_ptr_array_new_with_free_func (writer_entry_free);
  w->metadata = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);
  return w;
}

void
gptd_safetensors_writer_free (GptdSafetensorsWriter *writer)
{
  if (writer == NULL)
    return;
  g_ptr_array_unref (writer->entries);
  g_hash_table_unref (writer->metadata);
  g_free (writer);
}

void
gptd_safetensors_writer_add (GptdSafetensorsWriter *writer,
                             const char            *name,
                             GptdSafetensorsDtype   dtype,
                             guint                  n_dims,
                             const size_t          *shape,
                             const void            *data)
{
  g_return_if_fail (writer != NULL);
  g_return_if_fail (name != NULL && g_utf8_validate (name, -1, NULL));
  g_return_if_fail (strcmp (name, "__metadata__") != 0);
  g_return_if_fail ((size_t) dtype < G_N_ELEMENTS (dtype_info));
  g_return_if_fail (n_dims <= GPTD_SAFETENSORS_MAX_DIMS);
  g_return_if_fail (shape != NULL || n_dims == 0);

  size_t n = 1;
  for (guint i = 0; i < n_dims; i++)
    g_return_if_fail (g_size_checked_mul (&n, n, shape[i]));
  size_t n_bytes;
  g_return_if_fail (g_size_checked_mul (&n_bytes, n, dtype_info[dtype].size));
  g_return_if_fail (data != NULL || n_bytes == 0);

  WriterEntry *e = g_new0 (WriterEntry, 1);
  e->name = g_strdup (name);
  e->dtype = dtype;
  e->n_dims = n_dims;
  if (n_dims > 0)
    memcpy (e->shape, shape, n_dims * sizeof *shape);
  e->data = data;
  e->n_bytes = n_bytes;
  g_ptr_array_add (writer->entries, e);
}

void
gptd_safetensors_writer_add_f32 (GptdSafetensorsWriter *writer,
                                 const char            *name,
                                 guint                  n_dims,
                                 const size_t          *shape,
                                 const float           *data)
{
  gptd_safetensors_writer_add (writer, name, GPTD_SAFETENSORS_DTYPE_F32, n_dims, shape, data);
}

void
gptd_safetensors_writer_set_metadata (GptdSafetensorsWriter *writer,
                                      const char            *key,
                                      const char            *value)
{
  g_return_if_fail (writer != NULL);
  g_return_if_fail (key != NULL && g_utf8_validate (key, -1, NULL));
  g_return_if_fail (value != NULL && g_utf8_validate (value, -1, NULL));
  g_hash_table_replace (writer->metadata, g_strdup (key), g_strdup (value));
}

void
gptd_safetensors_writer_set_keep_order (GptdSafetensorsWriter *writer,
                                        gboolean               keep_order)
{
  g_return_if_fail (writer != NULL);
  writer->keep_order = keep_order;
}

/* Appends @s as a JSON string literal. */
static void
append_json_string (GString *out, const char *s)
{
  g_string_append_c (out, '"');
  for (const unsigned char *p = (const unsigned char *) s; *p; p++)
    {
      if (*p == '"' || *p == '\\')
        {
          g_string_append_c (out, '\\');
          g_string_append_c (out, (char) *p);
        }
      else if (*p < 0x20)
        g_string_append_printf (out, "\\u%04x", *p);
      else
        g_string_append_c (out, (char) *p);
    }
  g_string_append_c (out, '"');
}

static int
compare_strv (const void *a, const void *b)
{
  return strcmp (*(const char * const *) a, *(const char * const *) b);
}

static int
compare_entries_layout (gconstpointer a, gconstpointer b)
{
  const WriterEntry *ea = *(WriterEntry * const *) a;
  const WriterEntry *eb = *(WriterEntry * const *) b;
  size_t sa = dtype_info[ea->dtype].size, sb = dtype_info[eb->dtype].size;
  if (sa != sb)
    return sa > sb ? -1 : 1;
  return strcmp (ea->name, eb->name);
}

gboolean
gptd_safetensors_writer_write (GptdSafetensorsWriter *writer,
                               const char            *path,
                               GError               **error)
{
  g_return_val_if_fail (writer != NULL, FALSE);
  g_return_val_if_fail (path != NULL, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  /* Names must be unique. */
  g_autoptr (GHashTable) seen = g_hash_table_new (g_str_hash, g_str_equal);
  for (guint i = 0; i < writer->entries->len; i++)
    {
      WriterEntry *e = writer->entries->pdata[i];
      if (!g_hash_table_add (seen, e->name))
        {
          st_error (error, GPTD_SAFETENSORS_ERROR_DUPLICATE, path,
                    "tensor “%s” was given twice", e->name);
          return FALSE;
        }
    }

  /* Lay the tensors out. */
  g_autoptr (GPtrArray) order = g_ptr_array_sized_new (writer->entries->len);
  for (guint i = 0; i < writer->entries->len; i++)
    g_ptr_array_add (order, writer->entries->pdata[i]);
  if (!writer->keep_order)
    g_ptr_array_sort (order, compare_entries_layout);
  guint64 pos = 0;
  for (guint i = 0; i < order->len; i++)
    {
      WriterEntry *e = order->pdata[i];
      e->begin = pos;
      pos += e->n_bytes;
    }

  /* The header: metadata first (keys sorted), then tensors in layout order. */
  g_autoptr (GString) json = g_string_new ("{");
  gboolean first = TRUE;
  if (g_hash_table_size (writer->metadata) > 0)
    {
      g_autofree const char **keys =
        (const char **) g_hash_table_get_keys_as_array (writer->metadata, NULL);
      qsort (keys, g_hash_table_size (writer->metadata), sizeof *keys, compare_strv);
      g_string_append (json, "\"__metadata__\":{");
      for (guint i = 0; keys[i] != NULL; i++)
        {
          if (i > 0)
            g_string_append_c (json, ',');
          append_json_string (json, keys[i]);
          g_string_append_c (json, ':');
          append_json_string (json, g_hash_table_lookup (writer->metadata, keys[i]));
        }
      g_string_append_c (json, '}');
      first = FALSE;
    }
  for (guint i = 0; i < order->len; i++)
    {
      WriterEntry *e = order->pdata[i];
      if (!first)
        g_string_append_c (json, ',');
      first = FALSE;
      append_json_string (json, e->name);
      g_string_append_printf (json, ":{\"dtype\":\"%s\",\"shape\":[",
                              dtype_info[e->dtype].name);
      for (guint d = 0; d < e->n_dims; d++)
        g_string_append_printf (json, "%s%zu", d ? "," : "", e->shape[d]);
      g_string_append_printf (json, "],\"data_offsets\":[%" G_GUINT64_FORMAT ",%"
                              G_GUINT64_FORMAT "]}", e->begin, e->begin + e->n_bytes);
    }
  g_string_append_c (json, '}');
  /* Pad with spaces so that the data area starts 8-byte aligned. */
  while ((8 + json->len) % 8 != 0)
    g_string_append_c (json, ' ');
  if ((guint64) json->len > GPTD_SAFETENSORS_MAX_HEADER)
    {
      st_error (error, GPTD_SAFETENSORS_ERROR_HEADER_SIZE, path,
                "the header would be %" G_GSIZE_FORMAT " bytes, more than the %"
                G_GUINT64_FORMAT " allowed", json->len, GPTD_SAFETENSORS_MAX_HEADER);
      return FALSE;
    }

  g_autoptr (GptdAtomicFile) file = gptd_atomic_file_open (path, error);
  if (file == NULL)
    return FALSE;
  guint64 header_len = GUINT64_TO_LE ((guint64) json->len);
  if (!gptd_atomic_file_write (file, &header_len, sizeof header_len, error)
      || !gptd_atomic_file_write (file, json->str, json->len, error))
    return FALSE;
  for (guint i = 0; i < order->len; i++)
    {
      WriterEntry *e = order->pdata[i];
      if (!gptd_atomic_file_write (file, e->data, e->n_bytes, error))
        return FALSE;
    }
  return gptd_atomic_file_commit (file, error);
}
