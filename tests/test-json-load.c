/* tests/test-json-load.c: bounded JSON parsing (lib/io/json-load.c): the depth
 * scan counts brackets outside strings only, a text nested past the limit or
 * larger than the size limit is refused with the file name and byte offset
 * before json-glib sees it, and a file is read no further than the limit.
 */
#include <gptd/json-load.h>

#include <string.h>

#include <glib/gstdio.h>

/* Returns @depth opening brackets of @open followed by as many closing ones. */
static char *
nested (guint depth, char open, char close)
{
  char *s = g_malloc (2 * (gsize) depth + 1);
  memset (s, open, depth);
  memset (s + depth, close, depth);
  s[2 * (gsize) depth] = '\0';
  return s;
}

static void
test_depth_scan (void)
{
  gsize off = 0;
  g_autofree char *ok = nested (GPTD_JSON_MAX_DEPTH, '[', ']');
  g_assert_true (gptd_json_check_depth (ok, strlen (ok), GPTD_JSON_MAX_DEPTH, &off));
  g_autofree char *deep = nested (GPTD_JSON_MAX_DEPTH + 1, '[', ']');
  g_assert_false (gptd_json_check_depth (deep, strlen (deep), GPTD_JSON_MAX_DEPTH, &off));
  g_assert_cmpuint (off, ==, GPTD_JSON_MAX_DEPTH);

  /* Brackets inside strings do not count, escaped quotes do not end a string. */
  const char *in_string = "{\"k\": \"[[[[[\\\"[[[[\", \"v\": [1, [2]]}";
  g_assert_true (gptd_json_check_depth (in_string, strlen (in_string), 3, &off));
  g_assert_false (gptd_json_check_depth (in_string, strlen (in_string), 2, &off));
  g_assert_cmpuint (off, ==, (gsize) (strstr (in_string, "[2]") - in_string));
  /* A backslash escaping a backslash does not escape the closing quote. */
  const char *backslash = "[\"\\\\\", [[1]]]";
  g_assert_true (gptd_json_check_depth (backslash, strlen (backslash), 3, &off));
  g_assert_false (gptd_json_check_depth (backslash, strlen (backslash), 2, &off));
  /* Objects and arrays count alike; closing brackets bring the depth back. */
  const char *siblings = "[{}, {}, [{}], {\"a\": [{}]}]";
  g_assert_true (gptd_json_check_depth (siblings, strlen (siblings), 4, &off));
  g_assert_false (gptd_json_check_depth (siblings, strlen (siblings), 3, &off));
}

static void
test_load_deep (void)
{
  /* A hundred thousand levels: json-glib alone would overflow the stack. */
  g_autoptr (GError) error = NULL;
  g_autofree char *deep = nested (100000, '[', ']');
  g_autoptr (JsonParser) p = gptd_json_load_bounded (deep, -1, "deep.json", 0, &error);
  g_assert_null (p);
  g_assert_error (error, GPTD_JSON_ERROR, GPTD_JSON_ERROR_TOO_DEEP);
  g_assert_nonnull (strstr (error->message, "deep.json"));
  g_assert_nonnull (strstr (error->message, "(byte 64)"));
  g_clear_error (&error);

  /* Unbalanced: only opening brackets, objects this time. */
  g_autofree char *open = g_strnfill (100000, '{');
  p = gptd_json_load_bounded (open, -1, "open.json", 0, &error);
  g_assert_null (p);
  g_assert_error (error, GPTD_JSON_ERROR, GPTD_JSON_ERROR_TOO_DEEP);
  g_clear_error (&error);

  /* The limit itself is accepted and parsed. */
  g_autofree char *ok = nested (GPTD_JSON_MAX_DEPTH, '[', ']');
  p = gptd_json_load_bounded (ok, -1, "ok.json", 0, &error);
  g_assert_no_error (error);
  g_assert_nonnull (p);
  g_assert_true (JSON_NODE_HOLDS_ARRAY (json_parser_get_root (p)));
}

static void
test_load_errors (void)
{
  g_autoptr (GError) error = NULL;
  /* Syntax errors keep json-glib's line and column under the file's name. */
  g_autoptr (JsonParser) p = gptd_json_load_bounded ("{\n\"a\" 1}", -1, "x.json", 0, &error);
  g_assert_null (p);
  g_assert_error (error, GPTD_JSON_ERROR, GPTD_JSON_ERROR_SYNTAX);
  g_assert_true (g_str_has_prefix (error->message, "x.json: not valid JSON: 2:"));
  g_clear_error (&error);

  /* Over the size limit. */
  const char *text = "{\"a\": [1, 2, 3]}";
  p = gptd_json_load_bounded (text, -1, "big.json", 8, &error);
  g_assert_null (p);
  g_assert_error (error, GPTD_JSON_ERROR, GPTD_JSON_ERROR_TOO_LARGE);
  g_assert_nonnull (strstr (error->message, "big.json"));
  g_clear_error (&error);
  p = gptd_json_load_bounded (text, -1, "big.json", strlen (text), &error);
  g_assert_no_error (error);
  g_assert_nonnull (p);
}

static void
test_load_file (void)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *dir = g_dir_make_tmp ("gptd-json-XXXXXX", &error);
  g_assert_no_error (error);
  g_autofree char *path = g_build_filename (dir, "f.json", NULL);

  /* Missing: G_FILE_ERROR_NOENT naming the path. */
  g_autoptr (JsonParser) p = gptd_json_load_file_bounded (path, 0, &error);
  g_assert_null (p);
  g_assert_error (error, G_FILE_ERROR, G_FILE_ERROR_NOENT);
  g_assert_nonnull (strstr (error->message, path));
  g_clear_error (&error);

  g_autofree char *deep = nested (100000, '[', ']');
  g_assert_true (g_file_set_contents (path, deep, -1, NULL));
  p = gptd_json_load_file_bounded (path, 0, &error);
  g_assert_null (p);
  g_assert_error (error, GPTD_JSON_ERROR, GPTD_JSON_ERROR_TOO_DEEP);
  g_assert_nonnull (strstr (error->message, path));
  g_clear_error (&error);

  g_assert_true (g_file_set_contents (path, "{\"a\": 1}", -1, NULL));
  p = gptd_json_load_file_bounded (path, 4, &error);
  g_assert_null (p);
  g_assert_error (error, GPTD_JSON_ERROR, GPTD_JSON_ERROR_TOO_LARGE);
  g_clear_error (&error);
  p = gptd_json_load_file_bounded (path, 0, &error);
  g_assert_no_error (error);
  g_assert_cmpint (json_object_get_int_member (json_node_get_object (json_parser_get_root (p)),
                                               "a"), ==, 1);
  g_clear_object (&p);

  /* An endless file is read no further than the limit. */
  p = gptd_json_load_file_bounded ("/dev/zero", 1 << 16, &error);
  g_assert_null (p);
  g_assert_error (error, GPTD_JSON_ERROR, GPTD_JSON_ERROR_TOO_LARGE);
  g_clear_error (&error);

  g_unlink (path);
  g_rmdir (dir);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/io/json-load/depth-scan", test_depth_scan);
  g_test_add_func ("/io/json-load/deep", test_load_deep);
  g_test_add_func ("/io/json-load/errors", test_load_errors);
  g_test_add_func ("/io/json-load/file", test_load_file);
  return g_test_run ();
}
