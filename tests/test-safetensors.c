/* tests/test-safetensors.c: the safetensors writer and reader: round trips,
 * F16/BF16/F64 conversion, every kind of corrupt file giving its own error,
 * random corruption never crashing the reader, and an interrupted write
 * leaving the previous file readable.
 */
#include <gptd/atomic-file.h>
#include <gptd/safetensors.h>

#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <glib/gstdio.h>

/* Writes a test file quickly, without the fsync that g_file_set_contents()
 * does when it replaces a file (loops of corruptions would be slow). */
static gboolean
set_contents (const char *path, const char *data, gssize length, GError **error)
{
  FILE *fp = fopen (path, "wb");
  g_assert_nonnull (fp);
  size_t n = length < 0 ? strlen (data) : (size_t) length;
  g_assert_cmpuint (fwrite (data, 1, n, fp), ==, n);
  g_assert_cmpint (fclose (fp), ==, 0);
  return TRUE;
}

typedef struct {
  char *dir;
  char *path;
} Fixture;

static void
fixture_setup (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  f->dir = g_dir_make_tmp ("gptd-st-XXXXXX", &error);
  g_assert_no_error (error);
  f->path = g_build_filename (f->dir, "t.safetensors", NULL);
}

static void
fixture_teardown (Fixture *f, gconstpointer data)
{
  gptd_atomic_file_set_fault_func (NULL, NULL);
  g_autoptr (GDir) d = g_dir_open (f->dir, 0, NULL);
  const char *name;
  while (d != NULL && (name = g_dir_read_name (d)) != NULL)
    {
      g_autofree char *p = g_build_filename (f->dir, name, NULL);
      g_unlink (p);
    }
  g_rmdir (f->dir);
  g_free (f->dir);
  g_free (f->path);
}

/* Writes a file by hand: header length field, header text, data bytes. */
static void
write_raw (const char *path, guint64 header_len_field, const char *header,
           const void *data, size_t data_len)
{
  GByteArray *b = g_byte_array_new ();
  guint64 le = GUINT64_TO_LE (header_len_field);
  g_byte_array_append (b, (const guint8 *) &le, 8);
  g_byte_array_append (b, (const guint8 *) header, (guint) strlen (header));
  if (data_len > 0)
    g_byte_array_append (b, data, (guint) data_len);
  g_autoptr (GError) error = NULL;
  g_assert_true (set_contents (path, (const char *) b->data, b->len, &error));
  g_byte_array_unref (b);
}

/* Writes a file with a correct header length field. */
static void
write_file (const char *path, const char *header, const void *data, size_t data_len)
{
  write_raw (path, strlen (header), header, data, data_len);
}

/* Opens @path expecting @code; the message must contain the path and each
 * of the NULL-terminated strings that follow. */
static void
expect_open_error (const char *path, int code, ...)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GptdSafetensors) st = gptd_safetensors_open (path, &error);
  g_assert_null (st);
  g_assert_error (error, GPTD_SAFETENSORS_ERROR, code);
  g_test_message ("error: %s", error->message);
  g_assert_nonnull (strstr (error->message, path));
  va_list args;
  va_start (args, code);
  const char *s;
  while ((s = va_arg (args, const char *)) != NULL)
    if (strstr (error->message, s) == NULL)
      g_error ("“%s” not in error message “%s”", s, error->message);
  va_end (args);
}

/* ------------------------------------------------------------------------ */

static void
test_round_trip (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  float a[6] = { 1, -2, 3.5f, 1e-30f, -0.0f, 65504 };
  float b[24];
  for (int i = 0; i < 24; i++)
    b[i] = (float) i * 0.25f - 3;
  float scalar = 42;
  gint64 ids[3] = { 5, -1, 1LL << 40 };
  uint16_t halves[2] = { 0x3c00, 0xc000 };
  size_t shape_a[2] = { 2, 3 };
  size_t shape_b[3] = { 2, 3, 4 };
  size_t shape_empty[2] = { 0, 5 };
  size_t shape_ids[1] = { 3 };
  size_t shape_h[1] = { 2 };

  g_autoptr (GptdSafetensorsWriter) w = gptd_safetensors_writer_new ();
  gptd_safetensors_writer_add_f32 (w, "z.a", 2, shape_a, a);
  gptd_safetensors_writer_add_f32 (w, "b \"quoted\"\\ é", 3, shape_b, b);
  gptd_safetensors_writer_add_f32 (w, "scalar", 0, NULL, &scalar);
  gptd_safetensors_writer_add_f32 (w, "empty", 2, shape_empty, NULL);
  gptd_safetensors_writer_add (w, "ids", GPTD_SAFETENSORS_DTYPE_I64, 1, shape_ids, ids);
  gptd_safetensors_writer_add (w, "half", GPTD_SAFETENSORS_DTYPE_F16, 1, shape_h, halves);
  gptd_safetensors_writer_set_metadata (w, "format", "pt");
  gptd_safetensors_writer_set_metadata (w, "note", "line\nbreak \"and\" tab\t");
  gptd_safetensors_writer_set_metadata (w, "format", "gptd"); /* replaces */
  g_assert_true (gptd_safetensors_writer_write (w, f->path, &error));
  g_assert_no_error (error);

  /* The data area starts 8-byte aligned, the padding is spaces. */
  g_autofree char *raw = NULL;
  gsize raw_len;
  g_assert_true (g_file_get_contents (f->path, &raw, &raw_len, NULL));
  guint64 hlen;
  memcpy (&hlen, raw, 8);
  hlen = GUINT64_FROM_LE (hlen);
  g_assert_cmpuint ((8 + hlen) % 8, ==, 0);
  g_assert_cmpuint (raw_len, ==, 8 + hlen + sizeof a + sizeof b + sizeof scalar
                    + sizeof ids + sizeof halves);
  g_assert_cmpint (raw[8], ==, '{');

  g_autoptr (GptdSafetensors) st = gptd_safetensors_open (f->path, &error);
  g_assert_no_error (error);
  g_assert_cmpstr (gptd_safetensors_get_path (st), ==, f->path);
  g_assert_cmpuint (gptd_safetensors_get_n_tensors (st), ==, 6);

  /* Listed by name. */
  const char *names[] = { "b \"quoted\"\\ é", "empty", "half", "ids", "scalar", "z.a" };
  for (guint i = 0; i < 6; i++)
    g_assert_cmpstr (gptd_safetensors_get_tensor (st, i)->name, ==, names[i]);

  const GptdSafetensorsTensor *t = gptd_safetensors_lookup (st, "z.a");
  g_assert_nonnull (t);
  g_assert_cmpint (t->dtype, ==, GPTD_SAFETENSORS_DTYPE_F32);
  g_assert_cmpuint (t->n_dims, ==, 2);
  g_assert_cmpuint (t->shape[0], ==, 2);
  g_assert_cmpuint (t->shape[1], ==, 3);
  g_assert_cmpuint (t->n_elements, ==, 6);
  g_assert_cmpuint (t->n_bytes, ==, sizeof a);
  g_assert_cmpmem (t->data, t->n_bytes, a, sizeof a);
  /* Wider dtypes come first, so every tensor is aligned to its size. */
  for (guint i = 0; i < 6; i++)
    {
      const GptdSafetensorsTensor *ti = gptd_safetensors_get_tensor (st, i);
      g_assert_cmpuint ((uintptr_t) ti->data % gptd_safetensors_dtype_size (ti->dtype), ==, 0);
    }

  float out[24];
  g_assert_true (gptd_safetensors_read_f32 (st, "b \"quoted\"\\ é", 3, shape_b, out, &error));
  g_assert_no_error (error);
  g_assert_cmpmem (out, sizeof b, b, sizeof b);
  g_assert_true (gptd_safetensors_read_f32 (st, "scalar", 0, NULL, out, &error));
  g_assert_cmpfloat (out[0], ==, 42);
  t = gptd_safetensors_lookup (st, "scalar");
  g_assert_cmpuint (t->n_dims, ==, 0);
  g_assert_cmpuint (t->n_elements, ==, 1);
  t = gptd_safetensors_lookup (st, "empty");
  g_assert_cmpuint (t->n_elements, ==, 0);
  g_assert_true (gptd_safetensors_read_f32 (st, "empty", 2, shape_empty, NULL, &error));
  g_assert_no_error (error);
  t = gptd_safetensors_lookup (st, "ids");
  g_assert_cmpint (t->dtype, ==, GPTD_SAFETENSORS_DTYPE_I64);
  g_assert_cmpmem (t->data, t->n_bytes, ids, sizeof ids);
  g_assert_true (gptd_safetensors_read_f32 (st, "half", 1, shape_h, out, &error));
  g_assert_cmpfloat (out[0], ==, 1);
  g_assert_cmpfloat (out[1], ==, -2);
  g_assert_null (gptd_safetensors_lookup (st, "nope"));

  g_assert_cmpstr (gptd_safetensors_get_metadata (st, "format"), ==, "gptd");
  g_assert_cmpstr (gptd_safetensors_get_metadata (st, "note"), ==, "line\nbreak \"and\" tab\t");
  g_assert_null (gptd_safetensors_get_metadata (st, "other"));
  g_assert_cmpuint (g_hash_table_size (gptd_safetensors_get_metadata_table (st)), ==, 2);
}

static void
test_keep_order (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  float x[2] = { 1, 2 }, y[3] = { 3, 4, 5 };
  size_t s2[1] = { 2 }, s3[1] = { 3 };
  g_autoptr (GptdSafetensorsWriter) w = gptd_safetensors_writer_new ();
  gptd_safetensors_writer_set_keep_order (w, TRUE);
  gptd_safetensors_writer_add_f32 (w, "zz", 1, s3, y);
  gptd_safetensors_writer_add_f32 (w, "aa", 1, s2, x);
  g_assert_true (gptd_safetensors_writer_write (w, f->path, &error));
  g_autoptr (GptdSafetensors) st = gptd_safetensors_open (f->path, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (gptd_safetensors_lookup (st, "zz")->offset, ==, 0);
  g_assert_cmpuint (gptd_safetensors_lookup (st, "aa")->offset, ==, sizeof y);
  /* Without metadata the header has no "__metadata__" entry. */
  g_assert_cmpuint (g_hash_table_size (gptd_safetensors_get_metadata_table (st)), ==, 0);
}

static void
test_empty_file_of_tensors (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GptdSafetensorsWriter) w = gptd_safetensors_writer_new ();
  g_assert_true (gptd_safetensors_writer_write (w, f->path, &error));
  g_autoptr (GptdSafetensors) st = gptd_safetensors_open (f->path, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (gptd_safetensors_get_n_tensors (st), ==, 0);
}

static void
test_duplicate (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  float x[1] = { 1 };
  size_t s[1] = { 1 };
  g_autoptr (GptdSafetensorsWriter) w = gptd_safetensors_writer_new ();
  gptd_safetensors_writer_add_f32 (w, "x", 1, s, x);
  gptd_safetensors_writer_add_f32 (w, "x", 1, s, x);
  g_assert_false (gptd_safetensors_writer_write (w, f->path, &error));
  g_assert_error (error, GPTD_SAFETENSORS_ERROR, GPTD_SAFETENSORS_ERROR_DUPLICATE);
  g_assert_false (g_file_test (f->path, G_FILE_TEST_EXISTS));
}

/* A file written by Python's safetensors (safetensors.numpy.save_file with
 * metadata {"format": "np"}), byte for byte: header padded with spaces. */
static void
test_reference_layout (Fixture *f, gconstpointer data)
{
  const char *header =
    "{\"__metadata__\":{\"format\":\"np\"},"
    "\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
    "\"b\":{\"dtype\":\"BF16\",\"shape\":[1,2],\"data_offsets\":[8,12]}}    ";
  guint8 bytes[12];
  float av[2] = { 0.5f, -1.5f };
  uint16_t bv[2] = { 0x3f80, 0xc0a0 }; /* 1.0, -5.0 */
  memcpy (bytes, av, 8);
  memcpy (bytes + 8, bv, 4);
  write_file (f->path, header, bytes, sizeof bytes);

  g_autoptr (GError) error = NULL;
  g_autoptr (GptdSafetensors) st = gptd_safetensors_open (f->path, &error);
  g_assert_no_error (error);
  float out[2];
  size_t shape_b[2] = { 1, 2 };
  g_assert_true (gptd_safetensors_read_f32 (st, "a", 1, (size_t[]) { 2 }, out, &error));
  g_assert_cmpfloat (out[0], ==, 0.5f);
  g_assert_cmpfloat (out[1], ==, -1.5f);
  g_assert_true (gptd_safetensors_read_f32 (st, "b", 2, shape_b, out, &error));
  g_assert_cmpfloat (out[0], ==, 1.0f);
  g_assert_cmpfloat (out[1], ==, -5.0f);
  g_assert_cmpstr (gptd_safetensors_get_metadata (st, "format"), ==, "np");
}

/* ------------------------------------------------------------------------ */
/* Conversions */

static void
test_f16 (Fixture *f, gconstpointer data)
{
  static const struct { uint16_t bits; float value; } cases[] = {
    { 0x0000, 0.0f },
    { 0x8000, -0.0f },
    { 0x3c00, 1.0f },
    { 0xbc00, -1.0f },
    { 0x3555, 0.333251953125f },
    { 0x4248, 3.140625f },
    { 0x7bff, 65504.0f },          /* largest normal */
    { 0x0400, 6.103515625e-05f },  /* smallest normal, 2^-14 */
    { 0x03ff, 6.097555160522461e-05f }, /* largest subnormal */
    { 0x0001, 5.960464477539063e-08f }, /* smallest subnormal, 2^-24 */
    { 0x8001, -5.960464477539063e-08f },
    { 0x7c00, INFINITY },
    { 0xfc00, -INFINITY },
  };
  uint16_t bits[G_N_ELEMENTS (cases) + 1];
  for (size_t i = 0; i < G_N_ELEMENTS (cases); i++)
    bits[i] = cases[i].bits;
  bits[G_N_ELEMENTS (cases)] = 0x7e00; /* NaN */

  size_t shape[1] = { G_N_ELEMENTS (bits) };
  g_autoptr (GptdSafetensorsWriter) w = gptd_safetensors_writer_new ();
  gptd_safetensors_writer_add (w, "h", GPTD_SAFETENSORS_DTYPE_F16, 1, shape, bits);
  g_autoptr (GError) error = NULL;
  g_assert_true (gptd_safetensors_writer_write (w, f->path, &error));
  g_autoptr (GptdSafetensors) st = gptd_safetensors_open (f->path, &error);
  g_assert_no_error (error);

  float out[G_N_ELEMENTS (bits)];
  g_assert_true (gptd_safetensors_read_f32 (st, "h", 1, shape, out, &error));
  for (size_t i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_assert_cmpfloat (out[i], ==, cases[i].value);
      g_assert_cmpint (signbit (out[i]) != 0, ==, signbit (cases[i].value) != 0);
    }
  g_assert_true (isnan (out[G_N_ELEMENTS (cases)]));

  /* Every finite half converts exactly: check against a formula. */
  for (uint32_t h = 0; h < 0x10000; h++)
    {
      uint16_t hb = (uint16_t) h;
      float v;
      gptd_safetensors_f16_to_f32 (&hb, &v, 1);
      int e = (h >> 10) & 0x1f;
      int m = h & 0x3ff;
      double expect;
      if (e == 31)
        continue;
      else if (e == 0)
        expect = ldexp (m, -24);
      else
        expect = ldexp (1024 + m, e - 25);
      if (h & 0x8000)
        expect = -expect;
      if ((double) v != expect)
        g_error ("half 0x%04x gave %.9g, expected %.9g", h, v, expect);
    }
}

static void
test_bf16 (Fixture *f, gconstpointer data)
{
  uint16_t bits[] = { 0x3f80, 0xbf80, 0x4049, 0x0001, 0x7f80, 0xff80, 0x0000, 0x8000, 0x7fc0 };
  float expect[] = { 1.0f, -1.0f, 3.140625f, 9.18354962e-41f, INFINITY, -INFINITY, 0.0f, -0.0f };
  size_t shape[2] = { 3, 3 };
  g_autoptr (GptdSafetensorsWriter) w = gptd_safetensors_writer_new ();
  gptd_safetensors_writer_add (w, "b", GPTD_SAFETENSORS_DTYPE_BF16, 2, shape, bits);
  g_autoptr (GError) error = NULL;
  g_assert_true (gptd_safetensors_writer_write (w, f->path, &error));
  g_autoptr (GptdSafetensors) st = gptd_safetensors_open (f->path, &error);
  g_assert_no_error (error);
  float out[9];
  g_assert_true (gptd_safetensors_read_f32 (st, "b", 2, shape, out, &error));
  for (size_t i = 0; i < G_N_ELEMENTS (expect); i++)
    {
      g_assert_cmpfloat (out[i], ==, expect[i]);
      g_assert_cmpint (signbit (out[i]) != 0, ==, signbit (expect[i]) != 0);
    }
  g_assert_true (isnan (out[8]));
}

static void
test_f64 (Fixture *f, gconstpointer data)
{
  double v[3] = { 1.0 / 3.0, -1e300, 2.5 };
  size_t shape[1] = { 3 };
  g_autoptr (GptdSafetensorsWriter) w = gptd_safetensors_writer_new ();
  gptd_safetensors_writer_add (w, "d", GPTD_SAFETENSORS_DTYPE_F64, 1, shape, v);
  g_autoptr (GError) error = NULL;
  g_assert_true (gptd_safetensors_writer_write (w, f->path, &error));
  g_autoptr (GptdSafetensors) st = gptd_safetensors_open (f->path, &error);
  float out[3];
  g_assert_true (gptd_safetensors_read_f32 (st, "d", 1, shape, out, &error));
  g_assert_cmpfloat (out[0], ==, (float) (1.0 / 3.0));
  g_assert_true (isinf (out[1]) && out[1] < 0);
  g_assert_cmpfloat (out[2], ==, 2.5f);
}

static void
test_dtype_names (Fixture *f, gconstpointer data)
{
  GptdSafetensorsDtype d;
  g_assert_true (gptd_safetensors_dtype_from_string ("BF16", &d));
  g_assert_cmpint (d, ==, GPTD_SAFETENSORS_DTYPE_BF16);
  g_assert_cmpstr (gptd_safetensors_dtype_to_string (d), ==, "BF16");
  g_assert_cmpuint (gptd_safetensors_dtype_size (d), ==, 2);
  g_assert_true (gptd_safetensors_dtype_from_string ("I64", &d));
  g_assert_cmpuint (gptd_safetensors_dtype_size (d), ==, 8);
  g_assert_false (gptd_safetensors_dtype_from_string ("f32", &d));
  g_assert_false (gptd_safetensors_dtype_from_string ("Q4_0", &d));
}

/* ------------------------------------------------------------------------ */
/* Reading errors on valid files */

static void
test_read_errors (Fixture *f, gconstpointer data)
{
  gint32 ints[4] = { 1, 2, 3, 4 };
  float x[4] = { 1, 2, 3, 4 };
  size_t s4[1] = { 4 }, s22[2] = { 2, 2 };
  g_autoptr (GptdSafetensorsWriter) w = gptd_safetensors_writer_new ();
  gptd_safetensors_writer_add (w, "ints", GPTD_SAFETENSORS_DTYPE_I32, 1, s4, ints);
  gptd_safetensors_writer_add_f32 (w, "x", 1, s4, x);
  g_autoptr (GError) error = NULL;
  g_assert_true (gptd_safetensors_writer_write (w, f->path, &error));
  g_autoptr (GptdSafetensors) st = gptd_safetensors_open (f->path, &error);
  g_assert_no_error (error);
  float out[4];

  g_assert_false (gptd_safetensors_read_f32 (st, "missing.weight", 1, s4, out, &error));
  g_assert_error (error, GPTD_SAFETENSORS_ERROR, GPTD_SAFETENSORS_ERROR_NOT_FOUND);
  g_assert_nonnull (strstr (error->message, "missing.weight"));
  g_assert_nonnull (strstr (error->message, f->path));
  g_clear_error (&error);

  g_assert_false (gptd_safetensors_read_f32 (st, "x", 2, s22, out, &error));
  g_assert_error (error, GPTD_SAFETENSORS_ERROR, GPTD_SAFETENSORS_ERROR_SHAPE);
  g_assert_nonnull (strstr (error->message, "“x”"));
  g_assert_nonnull (strstr (error->message, "[4]"));
  g_assert_nonnull (strstr (error->message, "[2, 2]"));
  g_clear_error (&error);

  g_assert_false (gptd_safetensors_read_f32 (st, "ints", 1, s4, out, &error));
  g_assert_error (error, GPTD_SAFETENSORS_ERROR, GPTD_SAFETENSORS_ERROR_DTYPE);
  g_assert_nonnull (strstr (error->message, "ints"));
  g_assert_nonnull (strstr (error->message, "I32"));
}

/* ------------------------------------------------------------------------ */
/* Corrupt files: each gives its own error */

static const float data16[4] = { 1, 2, 3, 4 };

static void
test_corrupt_short (Fixture *f, gconstpointer data)
{
  g_assert_true (set_contents (f->path, "", 0, NULL));
  expect_open_error (f->path, GPTD_SAFETENSORS_ERROR_TRUNCATED, "truncated", NULL);
  g_assert_true (set_contents (f->path, "\x10\0\0\0\0", 5, NULL));
  expect_open_error (f->path, GPTD_SAFETENSORS_ERROR_TRUNCATED, "truncated", NULL);
}

static void
test_corrupt_truncated (Fixture *f, gconstpointer data)
{
  size_t s[1] = { 4 };
  g_autoptr (GptdSafetensorsWriter) w = gptd_safetensors_writer_new ();
  gptd_safetensors_writer_add_f32 (w, "a", 1, s, data16);
  gptd_safetensors_writer_add_f32 (w, "b", 1, s, data16);
  g_assert_true (gptd_safetensors_writer_write (w, f->path, NULL));
  g_autofree char *raw = NULL;
  gsize len;
  g_assert_true (g_file_get_contents (f->path, &raw, &len, NULL));
  /* Cut in the last tensor's data. */
  g_assert_true (set_contents (f->path, raw, (gssize) len - 5, NULL));
  expect_open_error (f->path, GPTD_SAFETENSORS_ERROR_TRUNCATED, "truncated", "“b”", NULL);
}

static void
test_corrupt_header_len (Fixture *f, gconstpointer data)
{
  const char *h = "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}";
  /* Beyond the end of the file. */
  write_raw (f->path, strlen (h) + 17, h, data16, 16);
  expect_open_error (f->path, GPTD_SAFETENSORS_ERROR_HEADER_SIZE, "past the end", NULL);
  /* Far beyond: must not be trusted for an allocation or a read. */
  write_raw (f->path, G_MAXUINT64, h, data16, 16);
  expect_open_error (f->path, GPTD_SAFETENSORS_ERROR_HEADER_SIZE, "larger than", NULL);
  write_raw (f->path, 0, h, data16, 16);
  expect_open_error (f->path, GPTD_SAFETENSORS_ERROR_HEADER_SIZE, NULL);
}

static void
test_corrupt_json (Fixture *f, gconstpointer data)
{
  write_file (f->path, "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]", data16, 16);
  expect_open_error (f->path, GPTD_SAFETENSORS_ERROR_JSON, "not valid JSON", NULL);
  write_file (f->path, "[1,2,3]", NULL, 0);
  expect_open_error (f->path, GPTD_SAFETENSORS_ERROR_JSON, "not a JSON object", NULL);
  write_file (f->path, "{\"\xff\xfe\":1}", NULL, 0);
  expect_open_error (f->path, GPTD_SAFETENSORS_ERROR_JSON, "UTF-8", NULL);
}

static void
test_corrupt_deep (Fixture *f, gconstpointer data)
{
  /* A header of a hundred thousand nested arrays is refused before json-glib,
   * whose recursion would overflow the stack, sees it. */
  g_autofree char *opens = g_strnfill (100000, '[');
  g_autofree char *closes = g_strnfill (100000, ']');
  g_autofree char *header = g_strdup_printf ("{\"a\":%s%s}", opens, closes);
  write_file (f->path, header, NULL, 0);
  expect_open_error (f->path, GPTD_SAFETENSORS_ERROR_JSON, "deeper than 64", "(byte 76)", NULL);
  /* Nested metadata in a training state file reads the same. */
  g_autofree char *meta = g_strdup_printf ("{\"__metadata__\":{\"k\":%s}}", opens);
  write_file (f->path, meta, NULL, 0);
  expect_open_error (f->path, GPTD_SAFETENSORS_ERROR_JSON, "deeper than 64", NULL);
}

static void
test_corrupt_entry (Fixture *f, gconstpointer data)
{
  static const char *headers[] = {
    /* the entry is not an object */
    "{\"w\":[1,2]}",
    /* no dtype */
    "{\"w\":{\"shape\":[4],\"data_offsets\":[0,16]}}",
    /* dtype not a string */
    "{\"w\":{\"dtype\":4,\"shape\":[4],\"data_offsets\":[0,16]}}",
    /* no shape */
    "{\"w\":{\"dtype\":\"F32\",\"data_offsets\":[0,16]}}",
    /* negative dimension */
    "{\"w\":{\"dtype\":\"F32\",\"shape\":[-4],\"data_offsets\":[0,16]}}",
    /* fractional dimension */
    "{\"w\":{\"dtype\":\"F32\",\"shape\":[4.0],\"data_offsets\":[0,16]}}",
    /* too many dimensions */
    "{\"w\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,4],\"data_offsets\":[0,16]}}",
    /* three offsets */
    "{\"w\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,8,16]}}",
    /* offsets as strings */
    "{\"w\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[\"0\",\"16\"]}}",
    /* no offsets */
    "{\"w\":{\"dtype\":\"F32\",\"shape\":[4]}}",
  };
  for (size_t i = 0; i < G_N_ELEMENTS (headers); i++)
    {
      g_test_message ("header %s", headers[i]);
      write_file (f->path, headers[i], data16, 16);
      expect_open_error (f->path, GPTD_SAFETENSORS_ERROR_ENTRY, "“w”", NULL);
    }
}

static void
test_corrupt_dtype (Fixture *f, gconstpointer data)
{
  write_file (f->path, "{\"h.0.mlp.c_fc.weight\":{\"dtype\":\"Q4_K\",\"shape\":[4],\"data_offsets\":[0,16]}}",
              data16, 16);
  expect_open_error (f->path, GPTD_SAFETENSORS_ERROR_DTYPE, "“h.0.mlp.c_fc.weight”", "Q4_K", NULL);
}

static void
test_corrupt_offsets (Fixture *f, gconstpointer data)
{
  /* begin after end */
  write_file (f->path,
              "{\"a\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[16,0]}}",
              data16, 16);
  expect_open_error (f->path, GPTD_SAFETENSORS_ERROR_OFFSETS, "“a”", NULL);
  /* outside the data area (and not a truncation: the layout has a hole) */
  write_file (f->path,
              "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
              "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[1000000,1000008]}}",
              data16, 16);
  expect_open_error (f->path, GPTD_SAFETENSORS_ERROR_OFFSETS, "“b”", "outside", NULL);
  /* near the top of the 64-bit range */
  write_file (f->path,
              "{\"a\":{\"dtype\":\"U8\",\"shape\":[16],\"data_offsets\":[9223372036854775800,9223372036854775816]}}",
              data16, 16);
  expect_open_error (f->path, GPTD_SAFETENSORS_ERROR_ENTRY, "“a”", NULL);
  write_file (f->path,
              "{\"a\":{\"dtype\":\"U8\",\"shape\":[16],\"data_offsets\":[9223372036854775790,9223372036854775806]}}",
              data16, 16);
  expect_open_error (f->path, GPTD_SAFETENSORS_ERROR_OFFSETS, "“a”", NULL);
}

static void
test_corrupt_size (Fixture *f, gconstpointer data)
{
  write_file (f->path,
              "{\"w\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,16]}}",
              data16, 16);
  expect_open_error (f->path, GPTD_SAFETENSORS_ERROR_SIZE, "“w”", "[3]", NULL);
  /* a shape whose byte size overflows */
  write_file (f->path,
              "{\"w\":{\"dtype\":\"F32\",\"shape\":[4611686018427387904,8],\"data_offsets\":[0,16]}}",
              data16, 16);
  expect_open_error (f->path, GPTD_SAFETENSORS_ERROR_SIZE, "“w”", NULL);
}

static void
test_corrupt_overlap (Fixture *f, gconstpointer data)
{
  write_file (f->path,
              "{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,12]},"
              "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}",
              data16, 16);
  expect_open_error (f->path, GPTD_SAFETENSORS_ERROR_OVERLAP, "“a”", "“b”", NULL);
  /* the same bytes twice */
  write_file (f->path,
              "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},"
              "\"b\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}",
              data16, 16);
  expect_open_error (f->path, GPTD_SAFETENSORS_ERROR_OVERLAP, "“a”", "“b”", NULL);
}

static void
test_corrupt_gap (Fixture *f, gconstpointer data)
{
  write_file (f->path,
              "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
              "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}",
              data16, 16);
  expect_open_error (f->path, GPTD_SAFETENSORS_ERROR_GAP, "“b”", NULL);
  write_file (f->path,
              "{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,12]}}",
              data16, 16);
  expect_open_error (f->path, GPTD_SAFETENSORS_ERROR_GAP, "4 bytes", NULL);
}

static void
test_corrupt_metadata (Fixture *f, gconstpointer data)
{
  write_file (f->path,
              "{\"__metadata__\":{\"step\":12},"
              "\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}",
              data16, 16);
  expect_open_error (f->path, GPTD_SAFETENSORS_ERROR_METADATA, "“step”", NULL);
  write_file (f->path,
              "{\"__metadata__\":[\"x\"],"
              "\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}",
              data16, 16);
  expect_open_error (f->path, GPTD_SAFETENSORS_ERROR_METADATA, NULL);
}

static void
test_corrupt_not_regular (Fixture *f, gconstpointer data)
{
  expect_open_error (f->dir, GPTD_SAFETENSORS_ERROR_IO, NULL);
  g_autofree char *missing = g_build_filename (f->dir, "missing.safetensors", NULL);
  expect_open_error (missing, GPTD_SAFETENSORS_ERROR_IO, NULL);
}

/* Every truncation and many random byte changes of a valid file either open
 * cleanly or fail with an error; none may crash or read out of bounds (run
 * under AddressSanitizer to see the latter). */
static void
test_corrupt_random (Fixture *f, gconstpointer data)
{
  float a[6] = { 1, 2, 3, 4, 5, 6 };
  uint16_t h[3] = { 1, 2, 3 };
  size_t s23[2] = { 2, 3 }, s3[1] = { 3 };
  g_autoptr (GptdSafetensorsWriter) w = gptd_safetensors_writer_new ();
  gptd_safetensors_writer_add_f32 (w, "a", 2, s23, a);
  gptd_safetensors_writer_add (w, "h", GPTD_SAFETENSORS_DTYPE_F16, 1, s3, h);
  gptd_safetensors_writer_set_metadata (w, "k", "v");
  g_assert_true (gptd_safetensors_writer_write (w, f->path, NULL));
  g_autofree char *raw = NULL;
  gsize len;
  g_assert_true (g_file_get_contents (f->path, &raw, &len, NULL));

  for (gsize cut = 0; cut < len; cut++)
    {
      g_assert_true (set_contents (f->path, raw, (gssize) cut, NULL));
      g_autoptr (GError) error = NULL;
      g_autoptr (GptdSafetensors) st = gptd_safetensors_open (f->path, &error);
      g_assert_null (st);
      g_assert_nonnull (error);
    }

  g_autoptr (GRand) rand = g_rand_new_with_seed (1234);
  g_autofree char *copy = g_malloc (len);
  guint n_ok = 0, n_err = 0;
  for (int iter = 0; iter < 600; iter++)
    {
      memcpy (copy, raw, len);
      int n_changes = g_rand_int_range (rand, 1, 4);
      for (int c = 0; c < n_changes; c++)
        {
          /* Mostly the header, where structure lives. */
          gsize pos = (gsize) g_rand_int_range (rand, 0, (gint32) MIN (len, 8 + 160));
          static const char pool[] = "0123456789[]{},:\" -eE.FIUB";
          if (g_rand_boolean (rand))
            copy[pos] = pool[g_rand_int_range (rand, 0, sizeof pool - 1)];
          else
            copy[pos] = (char) g_rand_int_range (rand, 0, 256);
        }
      g_assert_true (set_contents (f->path, copy, (gssize) len, NULL));
      g_autoptr (GError) error = NULL;
      g_autoptr (GptdSafetensors) st = gptd_safetensors_open (f->path, &error);
      if (st == NULL)
        {
          g_assert_nonnull (error);
          n_err++;
          continue;
        }
      n_ok++;
      /* What opened must be fully readable within the file. */
      for (guint i = 0; i < gptd_safetensors_get_n_tensors (st); i++)
        {
          const GptdSafetensorsTensor *t = gptd_safetensors_get_tensor (st, i);
          g_autofree float *buf = g_new (float, MAX (t->n_elements, 1));
          g_autoptr (GError) e2 = NULL;
          if (!gptd_safetensors_tensor_to_f32 (st, t, buf, &e2))
            g_assert_nonnull (e2);
        }
    }
  g_test_message ("%u mutations opened, %u were rejected", n_ok, n_err);
  g_assert_cmpuint (n_err, >, 0);
}

/* ------------------------------------------------------------------------ */
/* Interrupted writes */

typedef struct {
  guint64 fail_at;
  int result;
} WriteFault;

static int
write_fault (GptdAtomicFileOp op, const char *path, guint64 offset,
             size_t *length, gpointer user_data)
{
  WriteFault *wf = user_data;
  if (op != GPTD_ATOMIC_FILE_OP_WRITE || offset + *length <= wf->fail_at)
    return 0;
  *length = wf->fail_at > offset ? (size_t) (wf->fail_at - offset) : 0;
  return wf->result;
}

static void
test_interrupted_write (Fixture *f, gconstpointer data)
{
  float old_v[64], new_v[64];
  for (int i = 0; i < 64; i++)
    {
      old_v[i] = (float) i;
      new_v[i] = (float) -i;
    }
  size_t s[2] = { 8, 8 };
  g_autoptr (GError) error = NULL;
  {
    g_autoptr (GptdSafetensorsWriter) w = gptd_safetensors_writer_new ();
    gptd_safetensors_writer_add_f32 (w, "w", 2, s, old_v);
    gptd_safetensors_writer_set_metadata (w, "step", "1");
    g_assert_true (gptd_safetensors_writer_write (w, f->path, &error));
  }

  GStatBuf sb;
  g_assert_cmpint (g_stat (f->path, &sb), ==, 0);
  guint64 file_size = (guint64) sb.st_size; /* the new file has the same size */

  /* Fail at offsets all through the new file, with a full disk and with a
   * crash; the old file must stay readable and unchanged each time. */
  for (int mode = 0; mode < 2; mode++)
    for (guint64 fail_at = 0; fail_at < file_size; fail_at += 7)
      {
        WriteFault wf = { fail_at, mode == 0 ? ENOSPC : GPTD_ATOMIC_FILE_FAULT_CRASH };
        g_autoptr (GptdSafetensorsWriter) w = gptd_safetensors_writer_new ();
        gptd_safetensors_writer_add_f32 (w, "w", 2, s, new_v);
        gptd_safetensors_writer_set_metadata (w, "step", "2");
        gptd_atomic_file_set_fault_func (write_fault, &wf);
        gboolean ok = gptd_safetensors_writer_write (w, f->path, &error);
        gptd_atomic_file_set_fault_func (NULL, NULL);
        g_assert_false (ok);
        g_assert_error (error, G_FILE_ERROR,
                        (mode == 0 ? G_FILE_ERROR_NOSPC : G_FILE_ERROR_IO));
        g_assert_nonnull (strstr (error->message, f->path));
        g_clear_error (&error);

        g_autoptr (GptdSafetensors) st = gptd_safetensors_open (f->path, &error);
        g_assert_no_error (error);
        g_assert_cmpstr (gptd_safetensors_get_metadata (st, "step"), ==, "1");
        float out[64];
        g_assert_true (gptd_safetensors_read_f32 (st, "w", 2, s, out, &error));
        g_assert_cmpmem (out, sizeof out, old_v, sizeof old_v);
      }

  /* Without a fault, the new content replaces the old. */
  g_autoptr (GptdSafetensorsWriter) w = gptd_safetensors_writer_new ();
  gptd_safetensors_writer_add_f32 (w, "w", 2, s, new_v);
  g_assert_true (gptd_safetensors_writer_write (w, f->path, &error));
  g_autoptr (GptdSafetensors) st = gptd_safetensors_open (f->path, &error);
  g_assert_no_error (error);
  g_assert_null (gptd_safetensors_get_metadata (st, "step"));
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
#define ADD(path, func) \
  g_test_add ("/io/safetensors/" path, Fixture, NULL, fixture_setup, func, fixture_teardown)
  ADD ("round-trip", test_round_trip);
  ADD ("keep-order", test_keep_order);
  ADD ("no-tensors", test_empty_file_of_tensors);
  ADD ("duplicate", test_duplicate);
  ADD ("reference-layout", test_reference_layout);
  ADD ("convert/f16", test_f16);
  ADD ("convert/bf16", test_bf16);
  ADD ("convert/f64", test_f64);
  ADD ("dtype-names", test_dtype_names);
  ADD ("read-errors", test_read_errors);
  ADD ("corrupt/short", test_corrupt_short);
  ADD ("corrupt/truncated", test_corrupt_truncated);
  ADD ("corrupt/header-length", test_corrupt_header_len);
  ADD ("corrupt/json", test_corrupt_json);
  ADD ("corrupt/deep", test_corrupt_deep);
  ADD ("corrupt/entry", test_corrupt_entry);
  ADD ("corrupt/dtype", test_corrupt_dtype);
  ADD ("corrupt/offsets", test_corrupt_offsets);
  ADD ("corrupt/size", test_corrupt_size);
  ADD ("corrupt/overlap", test_corrupt_overlap);
  ADD ("corrupt/gap", test_corrupt_gap);
  ADD ("corrupt/metadata", test_corrupt_metadata);
  ADD ("corrupt/not-regular", test_corrupt_not_regular);
  ADD ("corrupt/random", test_corrupt_random);
  ADD ("interrupted-write", test_interrupted_write);
#undef ADD
  return g_test_run ();
}
