/* test-plugin.c: the plugin loader and registry — the test plugins of the build tree
 * (a good one, one built for ABI 99, one without a descriptor, one re-registering a
 * taken stage type name, one that crashes while loading on request), exclusions by
 * GPTD_PLUGIN_EXCLUDE, the per-file reports of a scan, descriptor checks, the
 * control-protocol form of stage types and the text `gptd plugins` prints. */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include <glib/gstdio.h>
#include <gptd/registry.h>

static char *
test_plugin_dir (void)
{
  return g_test_build_filename (G_TEST_BUILT, ".libs", NULL);
}

static char *
test_plugin (const char *name)
{
  g_autofree char *dir = test_plugin_dir ();
  g_autofree char *file = g_strconcat (name, "." G_MODULE_SUFFIX, NULL);
  return g_build_filename (dir, file, NULL);
}

static GptdRegistry *
scanned (void)
{
  GptdRegistry *r = gptd_registry_new ();
  g_autofree char *dir = test_plugin_dir ();
  g_autoptr (GError) error = NULL;
  g_assert_true (gptd_registry_scan_dir (r, dir, &error));
  g_assert_no_error (error);
  return r;
}

/* The warning naming @file, or NULL. */
static const char *
warning_for (GptdRegistry *r, const char *file)
{
  GPtrArray *w = gptd_registry_get_warnings (r);
  for (guint i = 0; i < w->len; i++)
    if (strstr (w->pdata[i], file))
      return w->pdata[i];
  return NULL;
}

static void
test_scan_good (void)
{
  g_autoptr (GptdRegistry) r = scanned ();
  const GptdStageType *t = gptd_registry_lookup (r, "test-counter");
  g_assert_nonnull (t);
  g_assert_cmpstr (t->name, ==, "test-counter");
  const char *path = NULL;
  const GptdPluginDescriptor *d = gptd_registry_lookup_plugin (r, "test-counter", &path);
  g_assert_nonnull (d);
  g_assert_cmpstr (d->name, ==, "test");
  g_assert_true (g_str_has_suffix (path, "testplugin-good." G_MODULE_SUFFIX));
  g_assert_null (gptd_registry_lookup (r, "no-such-type"));
  g_assert_null (gptd_registry_lookup_plugin (r, "no-such-type", &path));
  g_assert_null (path);

  /* The list is sorted by name and holds each type once. */
  g_autoptr (GPtrArray) list = gptd_registry_list (r);
  g_assert_cmpuint (list->len, >=, 10);
  for (guint i = 1; i < list->len; i++)
    g_assert_cmpint (strcmp (((const GptdStageType *) list->pdata[i - 1])->name,
                             ((const GptdStageType *) list->pdata[i])->name), <, 0);
}

/* A plugin built for another ABI major version is skipped, with a warning naming
 * its file; none of its stage types is registered. */
static void
test_scan_wrong_abi (void)
{
  g_autoptr (GptdRegistry) r = scanned ();
  const char *w = warning_for (r, "testplugin-wrong-abi." G_MODULE_SUFFIX);
  g_assert_nonnull (w);
  g_assert_nonnull (strstr (w, "skipped"));
  g_assert_nonnull (strstr (w, "plugin ABI 99.0"));
  g_assert_null (gptd_registry_lookup (r, "test-from-the-future"));
}

static void
test_scan_no_descriptor (void)
{
  g_autoptr (GptdRegistry) r = scanned ();
  const char *w = warning_for (r, "testplugin-no-descriptor." G_MODULE_SUFFIX);
  g_assert_nonnull (w);
  g_assert_nonnull (strstr (w, "exports no gptd_plugin_descriptor"));
}

/* A stage type name registered twice: the first plugin found keeps it. */
static void
test_scan_duplicate (void)
{
  g_autoptr (GptdRegistry) r = scanned ();
  const char *w = warning_for (r, "testplugin-twin." G_MODULE_SUFFIX);
  g_assert_nonnull (w);
  g_assert_nonnull (strstr (w, "stage type test-counter is already provided by"));
  g_assert_nonnull (strstr (w, "testplugin-good." G_MODULE_SUFFIX));
  const char *path = NULL;
  gptd_registry_lookup_plugin (r, "test-counter", &path);
  g_assert_true (g_str_has_suffix (path, "testplugin-good." G_MODULE_SUFFIX));
}

/* GPTD_PLUGIN_PATH: directories in order; missing and empty entries are ignored. */
static void
test_scan_path (void)
{
  g_autofree char *dir = test_plugin_dir ();
  g_autofree char *path = g_strdup_printf ("/nonexistent/gptd::%s:%s", dir, dir);
  g_autofree char *old = g_strdup (g_getenv ("GPTD_PLUGIN_PATH"));
  g_setenv ("GPTD_PLUGIN_PATH", path, TRUE);
  g_autoptr (GptdRegistry) r = gptd_registry_new ();
  g_autoptr (GError) error = NULL;
  g_assert_true (gptd_registry_scan (r, &error));
  g_assert_no_error (error);
  g_assert_nonnull (gptd_registry_lookup (r, "test-counter"));
  /* The same directory twice loads each file once: one warning per bad file. */
  guint abi_warnings = 0;
  GPtrArray *w = gptd_registry_get_warnings (r);
  for (guint i = 0; i < w->len; i++)
    abi_warnings += strstr (w->pdata[i], "testplugin-wrong-abi") != NULL;
  g_assert_cmpuint (abi_warnings, ==, 1);
  if (old)
    g_setenv ("GPTD_PLUGIN_PATH", old, TRUE);
  else
    g_unsetenv ("GPTD_PLUGIN_PATH");
}

/* GPTD_PLUGIN_EXCLUDE: listed files are not opened, whatever the spelling of their
 * path, and each is named in a warning once; without it they load again. */
static void
test_scan_exclude (void)
{
  g_autofree char *dir = test_plugin_dir ();
  g_autofree char *good_file = g_strconcat ("testplugin-good.", G_MODULE_SUFFIX, NULL);
  g_autofree char *abi_file = g_strconcat ("testplugin-wrong-abi.", G_MODULE_SUFFIX, NULL);
  /* dir/../.libs/file and dir/./file: the same files, spelt otherwise. */
  g_autofree char *good = g_build_filename (dir, "..", ".libs", good_file, NULL);
  g_autofree char *abi = g_build_filename (dir, ".", abi_file, NULL);
  g_autofree char *env = g_strdup_printf (":/nonexistent/x.so:%s::%s", good, abi);
  g_setenv ("GPTD_PLUGIN_EXCLUDE", env, TRUE);
  g_autoptr (GptdRegistry) r = gptd_registry_new ();
  g_autoptr (GError) error = NULL;
  g_assert_true (gptd_registry_scan_dir (r, dir, &error));
  g_assert_no_error (error);
  /* The same directory again: no second warning. */
  g_assert_true (gptd_registry_scan_dir (r, dir, &error));
  g_unsetenv ("GPTD_PLUGIN_EXCLUDE");

  /* testplugin-good was not loaded: test-counter comes from the twin now, and
   * test-params from nowhere. */
  const char *path = NULL;
  g_assert_nonnull (gptd_registry_lookup_plugin (r, "test-counter", &path));
  g_assert_true (g_str_has_suffix (path, "testplugin-twin." G_MODULE_SUFFIX));
  g_assert_null (gptd_registry_lookup (r, "test-params"));
  GPtrArray *w = gptd_registry_get_warnings (r);
  guint good_warnings = 0, abi_warnings = 0;
  for (guint i = 0; i < w->len; i++)
    {
      const char *msg = w->pdata[i];
      g_test_message ("%s", msg);
      if (strstr (msg, good_file))
        {
          good_warnings++;
          g_assert_nonnull (strstr (msg, ": skipped: listed in GPTD_PLUGIN_EXCLUDE"));
        }
      if (strstr (msg, abi_file))
        {
          abi_warnings++;
          /* Not opened, so not the ABI warning. */
          g_assert_nonnull (strstr (msg, "GPTD_PLUGIN_EXCLUDE"));
          g_assert_null (strstr (msg, "ABI 99"));
        }
    }
  g_assert_cmpuint (good_warnings, ==, 1);
  g_assert_cmpuint (abi_warnings, ==, 1);

  /* Without the variable everything loads as before. */
  g_autoptr (GptdRegistry) again = scanned ();
  g_assert_nonnull (gptd_registry_lookup (again, "test-params"));
  g_assert_null (strstr (warning_for (again, abi_file), "GPTD_PLUGIN_EXCLUDE"));
}

typedef struct {
  GPtrArray *events;   /* "loading PATH", "loaded PATH", "failed PATH: message" */
} FileEvents;

static void
record_file_event (const char *path, GptdRegistryFileEvent event, const GError *error,
                   gpointer user_data)
{
  FileEvents *fe = user_data;
  switch (event)
    {
    case GPTD_REGISTRY_FILE_LOADING:
      g_assert_null (error);
      g_ptr_array_add (fe->events, g_strconcat ("loading ", path, NULL));
      break;
    case GPTD_REGISTRY_FILE_LOADED:
      g_assert_null (error);
      g_ptr_array_add (fe->events, g_strconcat ("loaded ", path, NULL));
      break;
    case GPTD_REGISTRY_FILE_FAILED:
      g_assert_nonnull (error);
      g_ptr_array_add (fe->events, g_strdup_printf ("failed %s: %s", path, error->message));
      break;
    }
}

/* The file function hears of each file a scan opens, in the scan's order, before
 * and after; not of excluded files, nor of files met again. */
static void
test_scan_file_func (void)
{
  g_autofree char *dir = test_plugin_dir ();
  g_autofree char *twin = test_plugin ("testplugin-twin");
  g_setenv ("GPTD_PLUGIN_EXCLUDE", twin, TRUE);
  FileEvents fe = { g_ptr_array_new_with_free_func (g_free) };
  g_autoptr (GptdRegistry) r = gptd_registry_new ();
  gptd_registry_set_file_func (r, record_file_event, &fe);
  g_autoptr (GError) error = NULL;
  g_assert_true (gptd_registry_scan_dir (r, dir, &error));
  g_assert_true (gptd_registry_scan_dir (r, dir, &error));
  g_unsetenv ("GPTD_PLUGIN_EXCLUDE");

  for (guint i = 0; i < fe.events->len; i++)
    g_test_message ("%s", (const char *) fe.events->pdata[i]);
  /* Pairs: loading X, then loaded X or failed X; file names in order. */
  g_assert_cmpuint (fe.events->len % 2, ==, 0);
  g_autofree char *last = g_strdup ("");
  guint loaded = 0, failed = 0;
  for (guint i = 0; i < fe.events->len; i += 2)
    {
      const char *a = fe.events->pdata[i], *b = fe.events->pdata[i + 1];
      g_assert_true (g_str_has_prefix (a, "loading "));
      const char *path = a + strlen ("loading ");
      g_assert_true (g_str_has_prefix (path, dir));
      g_assert_cmpint (strcmp (last, path), <, 0);
      g_free (last);
      last = g_strdup (path);
      g_assert_null (strstr (path, "testplugin-twin"));
      g_autofree char *ok = g_strconcat ("loaded ", path, NULL);
      g_autofree char *bad = g_strconcat ("failed ", path, ": ", path, ": skipped: ", NULL);
      if (strcmp (b, ok) == 0)
        loaded++;
      else
        {
          g_assert_true (g_str_has_prefix (b, bad));
          failed++;
        }
      if (strstr (path, "testplugin-good") || strstr (path, "testplugin-crash"))
        g_assert_cmpstr (b, ==, ok);
      if (strstr (path, "testplugin-wrong-abi"))
        g_assert_nonnull (strstr (b, "plugin ABI 99.0"));
    }
  g_assert_cmpuint (loaded, >=, 2);
  g_assert_cmpuint (failed, >=, 2);
  /* The crash plugin loaded quietly (no GPTD_TEST_CRASH_ON_LOAD). */
  g_assert_nonnull (gptd_registry_lookup (r, "test-idle"));
  g_ptr_array_unref (fe.events);
}

/* testplugin-crash kills the process that loads it when GPTD_TEST_CRASH_ON_LOAD=1. */
static void
test_crash_on_load (void)
{
  if (g_test_subprocess ())
    {
      g_setenv ("GPTD_TEST_CRASH_ON_LOAD", "1", TRUE);
      g_autoptr (GptdRegistry) r = gptd_registry_new ();
      g_autofree char *crash = test_plugin ("testplugin-crash");
      gptd_registry_load_file (r, crash, NULL);
      exit (0);
    }
  g_test_trap_subprocess (NULL, 0, G_TEST_SUBPROCESS_DEFAULT);
  g_test_trap_assert_failed ();
}

static void
test_load_file_errors (void)
{
  g_autoptr (GptdRegistry) r = gptd_registry_new ();
  g_autoptr (GError) error = NULL;
  g_autofree char *abi = test_plugin ("testplugin-wrong-abi");
  g_assert_false (gptd_registry_load_file (r, abi, &error));
  g_assert_error (error, GPTD_REGISTRY_ERROR, GPTD_REGISTRY_ERROR_ABI);
  g_assert_true (g_str_has_prefix (error->message, abi));
  g_clear_error (&error);

  g_autofree char *none = test_plugin ("testplugin-no-descriptor");
  g_assert_false (gptd_registry_load_file (r, none, &error));
  g_assert_error (error, GPTD_REGISTRY_ERROR, GPTD_REGISTRY_ERROR_NO_DESCRIPTOR);
  g_clear_error (&error);

  /* Not a shared object at all. */
  g_autofree char *tmp = g_dir_make_tmp ("gptd-test-plugin-XXXXXX", NULL);
  g_autofree char *junk = g_build_filename (tmp, "junk." G_MODULE_SUFFIX, NULL);
  g_assert_true (g_file_set_contents (junk, "not an ELF file", -1, NULL));
  g_assert_false (gptd_registry_load_file (r, junk, &error));
  g_assert_error (error, GPTD_REGISTRY_ERROR, GPTD_REGISTRY_ERROR_OPEN);
  g_assert_nonnull (strstr (error->message, junk));
  g_clear_error (&error);
  /* ... and scanning its directory skips it with a warning. */
  g_assert_true (gptd_registry_scan_dir (r, tmp, &error));
  g_assert_nonnull (warning_for (r, junk));
  g_unlink (junk);
  g_rmdir (tmp);

  g_autofree char *good = test_plugin ("testplugin-good");
  g_assert_true (gptd_registry_load_file (r, good, &error));
  g_assert_no_error (error);
  g_assert_nonnull (gptd_registry_lookup (r, "test-batcher"));
}

/* ---- Descriptor checks ------------------------------------------------------ */

static gpointer
dummy_create (GptdStageContext *ctx, const GptdParams *params, GError **error)
{
  return GINT_TO_POINTER (1);
}

static gboolean
dummy_run (gpointer self, GptdStageContext *ctx, GError **error)
{
  return TRUE;
}

static const char *const no_choices[] = { NULL };
static const GptdParamSpec bad_default[] = {
  { "n", GPTD_PARAM_INT, "ten", 0, 0, NULL, "", 0 }, { NULL } };
static const GptdParamSpec out_of_range_default[] = {
  { "n", GPTD_PARAM_INT, "0", 1, 10, NULL, "", 0 }, { NULL } };
static const GptdParamSpec empty_enum[] = {
  { "mode", GPTD_PARAM_ENUM, NULL, 0, 0, no_choices, "", 0 }, { NULL } };
static const GptdParamSpec twice[] = {
  { "n", GPTD_PARAM_INT, NULL, 0, 0, NULL, "", 0 },
  { "n", GPTD_PARAM_INT, NULL, 0, 0, NULL, "", 0 }, { NULL } };
static const GptdParamSpec reserved_name[] = {
  { "input", GPTD_PARAM_STRING, NULL, 0, 0, NULL, "", 0 }, { NULL } };
static const GptdPadSpec one_input[] = { { "default", "gptd.Document", 0 }, { NULL } };
static const GptdPadSpec untyped_output[] = { { "default", NULL, 0 }, { NULL } };

static const GptdStageType type_no_create = { .name = "x", .run = dummy_run };
static const GptdStageType type_bad_name = { .name = "a b", .create = dummy_create };
static const GptdStageType type_bad_default = { .name = "x", .create = dummy_create,
                                                .params = bad_default };
static const GptdStageType type_range_default = { .name = "x", .create = dummy_create,
                                                  .params = out_of_range_default };
static const GptdStageType type_empty_enum = { .name = "x", .create = dummy_create,
                                               .params = empty_enum };
static const GptdStageType type_twice = { .name = "x", .create = dummy_create,
                                          .params = twice };
static const GptdStageType type_reserved = { .name = "x", .create = dummy_create,
                                             .params = reserved_name };
static const GptdStageType type_no_process = { .name = "x", .create = dummy_create,
                                               .inputs = one_input };
static const GptdStageType type_untyped = { .name = "x", .create = dummy_create,
                                            .run = dummy_run, .outputs = untyped_output };
static const GptdStageType type_ok = { .name = "built-in-ok", .create = dummy_create,
                                       .run = dummy_run };

#define DESC(major, minor, name, type) \
  { major, minor, name, "d", "1", "MIT", (const GptdStageType *const[]){ type, NULL }, { NULL } }

static const struct {
  const char *what;
  GptdPluginDescriptor desc;
  GptdRegistryError code;
} bad_descriptors[] = {
  { "built for a newer minor version", DESC (GPTD_PLUGIN_ABI_MAJOR, GPTD_PLUGIN_ABI_MINOR + 1,
                                             "p", &type_ok), GPTD_REGISTRY_ERROR_ABI },
  { "built for an older major version", DESC (0, 0, "p", &type_ok), GPTD_REGISTRY_ERROR_ABI },
  { "no plugin name", DESC (GPTD_PLUGIN_ABI_MAJOR, 0, NULL, &type_ok),
    GPTD_REGISTRY_ERROR_INVALID },
  { "a stage type without create", DESC (GPTD_PLUGIN_ABI_MAJOR, 0, "p", &type_no_create),
    GPTD_REGISTRY_ERROR_INVALID },
  { "a stage type name with a space", DESC (GPTD_PLUGIN_ABI_MAJOR, 0, "p", &type_bad_name),
    GPTD_REGISTRY_ERROR_INVALID },
  { "a default that does not parse", DESC (GPTD_PLUGIN_ABI_MAJOR, 0, "p", &type_bad_default),
    GPTD_REGISTRY_ERROR_INVALID },
  { "a default out of range", DESC (GPTD_PLUGIN_ABI_MAJOR, 0, "p", &type_range_default),
    GPTD_REGISTRY_ERROR_INVALID },
  { "an enum without choices", DESC (GPTD_PLUGIN_ABI_MAJOR, 0, "p", &type_empty_enum),
    GPTD_REGISTRY_ERROR_INVALID },
  { "a parameter declared twice", DESC (GPTD_PLUGIN_ABI_MAJOR, 0, "p", &type_twice),
    GPTD_REGISTRY_ERROR_INVALID },
  { "a parameter named like a link key", DESC (GPTD_PLUGIN_ABI_MAJOR, 0, "p", &type_reserved),
    GPTD_REGISTRY_ERROR_INVALID },
  { "inputs without process or run", DESC (GPTD_PLUGIN_ABI_MAJOR, 0, "p", &type_no_process),
    GPTD_REGISTRY_ERROR_INVALID },
  { "an output without a message type", DESC (GPTD_PLUGIN_ABI_MAJOR, 0, "p", &type_untyped),
    GPTD_REGISTRY_ERROR_INVALID },
};

static void
test_bad_descriptors (void)
{
  g_autoptr (GptdRegistry) r = gptd_registry_new ();
  for (guint i = 0; i < G_N_ELEMENTS (bad_descriptors); i++)
    {
      g_autoptr (GError) error = NULL;
      g_test_message ("rejects %s", bad_descriptors[i].what);
      g_assert_false (gptd_registry_add_descriptor (r, &bad_descriptors[i].desc, "(test)",
                                                    &error));
      g_assert_error (error, GPTD_REGISTRY_ERROR, (gint) bad_descriptors[i].code);
      g_assert_true (g_str_has_prefix (error->message, "(test): "));
      if (i == 0)
        {
          /* A plugin for a newer host says so, and what to do. */
          g_autofree char *abi = g_strdup_printf ("built for plugin ABI %d.%d, newer than "
                                                  "this gptd's %d.%d", GPTD_PLUGIN_ABI_MAJOR,
                                                  GPTD_PLUGIN_ABI_MINOR + 1,
                                                  GPTD_PLUGIN_ABI_MAJOR,
                                                  GPTD_PLUGIN_ABI_MINOR);
          g_assert_nonnull (strstr (error->message, abi));
          g_assert_nonnull (strstr (error->message, "upgrade gptd"));
        }
    }
  g_assert_null (gptd_registry_lookup (r, "x"));
  g_assert_null (gptd_registry_lookup (r, "built-in-ok"));

  GptdPluginDescriptor good = DESC (GPTD_PLUGIN_ABI_MAJOR, GPTD_PLUGIN_ABI_MINOR, "p", &type_ok);
  g_autoptr (GError) error = NULL;
  g_assert_true (gptd_registry_add_descriptor (r, &good, NULL, &error));
  g_assert_no_error (error);
  const char *path = NULL;
  g_assert_nonnull (gptd_registry_lookup_plugin (r, "built-in-ok", &path));
  g_assert_cmpstr (path, ==, "(built-in)");
}

/* ---- Describing stage types ---------------------------------------------------- */

static const Gptd__ParamInfo *
find_param (const Gptd__StageTypeInfo *info, const char *name)
{
  for (size_t i = 0; i < info->n_params; i++)
    if (strcmp (info->params[i]->name, name) == 0)
      return info->params[i];
  g_assert_not_reached ();
}

static void
test_describe (void)
{
  g_autoptr (GptdRegistry) r = scanned ();
  g_autoptr (GError) error = NULL;
  Gptd__StageTypeInfo *info = gptd_registry_describe (r, "test-params", &error);
  g_assert_no_error (error);
  g_assert_cmpstr (info->name, ==, "test-params");
  g_assert_cmpstr (info->plugin, ==, "test");
  g_assert_cmpstr (info->plugin_version, ==, "1.0");
  g_assert_cmpstr (info->license, ==, "MIT");
  g_assert_true (g_str_has_suffix (info->plugin_path, "testplugin-good." G_MODULE_SUFFIX));
  g_assert_cmpuint (info->n_params, ==, 9);
  const Gptd__ParamInfo *size = find_param (info, "size");
  g_assert_cmpstr (size->type, ==, "int");
  g_assert_cmpstr (size->range, ==, "[1, 100]");
  g_assert_true (size->required);
  g_assert_cmpstr (size->default_value, ==, "");
  const Gptd__ParamInfo *rate = find_param (info, "rate");
  g_assert_cmpstr (rate->type, ==, "double");
  g_assert_cmpstr (rate->range, ==, "(0, 1]");
  g_assert_cmpstr (rate->default_value, ==, "0.5");
  g_assert_false (rate->required);
  g_assert_cmpstr (find_param (info, "mode")->range, ==, "one of: fast, slow");
  g_assert_cmpstr (find_param (info, "split")->type, ==, "double-list");
  g_assert_cmpstr (find_param (info, "file")->type, ==, "path");
  g_assert_cmpstr (find_param (info, "low")->range, ==, "");
  /* The same, field by field (gptd plugins --json). */
  g_assert_true (size->bounded);
  g_assert_cmpfloat (size->min, ==, 1);
  g_assert_cmpfloat (size->max, ==, 100);
  g_assert_false (size->min_exclusive || size->max_exclusive);
  g_assert_true (rate->bounded && rate->min_exclusive && !rate->max_exclusive);
  g_assert_cmpfloat (rate->max, ==, 1);
  g_assert_true (find_param (info, "split")->bounded);
  g_assert_false (find_param (info, "low")->bounded);
  g_assert_false (find_param (info, "flag")->bounded);
  const Gptd__ParamInfo *mode = find_param (info, "mode");
  g_assert_cmpuint (mode->n_choices, ==, 2);
  g_assert_cmpstr (mode->choices[0], ==, "fast");
  g_assert_cmpstr (mode->choices[1], ==, "slow");
  g_assert_cmpuint (size->n_choices, ==, 0);
  g_assert_cmpuint (info->n_inputs, ==, 2);
  g_assert_cmpstr (info->inputs[0]->name, ==, "tokens");
  g_assert_cmpstr (info->inputs[0]->message_type, ==, "gptd.Tokens");
  g_assert_true (info->inputs[0]->optional);
  g_assert_cmpuint (info->n_outputs, ==, 0);

  g_autofree char *text = gptd_stage_type_info_format (info);
  g_test_message ("%s", text);
  g_assert_true (g_str_has_prefix (text, "Stage type: test-params\n"));
  g_assert_nonnull (strstr (text, "  size   int        required, range [1, 100]\n"));
  g_assert_nonnull (strstr (text, "  rate   double     default 0.5, range (0, 1]\n"));
  g_assert_nonnull (strstr (text, "  mode   enum       default fast, one of: fast, slow\n"));
  g_assert_nonnull (strstr (text, "  file   path       no default\n"));
  g_assert_nonnull (strstr (text, "Inputs:\n  tokens  gptd.Tokens\n  model   gptd.Model\n"));
  g_assert_nonnull (strstr (text, "Outputs:\n  none\n"));
  gptd_stage_type_info_free (info);

  info = gptd_registry_describe (r, "test-trainer", &error);
  g_assert_true (info->inputs[0]->epochs);
  g_assert_false (info->inputs[0]->optional);
  g_autofree char *trainer = gptd_stage_type_info_format (info);
  g_assert_nonnull (strstr (trainer, "  default  gptd.Batch  (requests epochs)\n"));
  gptd_stage_type_info_free (info);

  g_assert_null (gptd_registry_describe (r, "test-paramz", &error));
  g_assert_error (error, GPTD_REGISTRY_ERROR, GPTD_REGISTRY_ERROR_NOT_FOUND);
  g_assert_nonnull (strstr (error->message, "did you mean 'test-params'?"));
  g_assert_cmpstr (gptd_registry_suggest (r, "test-sinc"), ==, "test-sink");
  g_assert_null (gptd_registry_suggest (r, "completely-different"));
}

/* The list survives packing and unpacking (it travels to gptctl), and formats the
 * same on both sides. */
static void
test_plugin_list (void)
{
  g_autoptr (GptdRegistry) r = scanned ();
  g_autoptr (GError) error = NULL;
  Gptd__PluginList *list = gptd_registry_to_plugin_list (r, NULL, &error);
  g_assert_no_error (error);
  g_autoptr (GPtrArray) types = gptd_registry_list (r);
  g_assert_cmpuint (list->n_stage_types, ==, types->len);
  g_assert_cmpuint (list->n_warnings, ==, 3);
  g_autofree char *text = gptd_plugin_list_format (list);
  g_test_message ("%s", text);
  /* One line per stage type: "plugin: type: description", in columns. */
  const char *line = strstr (text, "test: test-counter: ");
  g_assert_nonnull (line);
  g_assert_true (g_str_has_prefix (strstr (line, "Sends"), "Sends count Documents numbered from 0\n"));
  g_assert_nonnull (strstr (text, "\nPlugins skipped:\n"));
  g_autofree char *total = g_strdup_printf ("\nTotal: %u stage types\n", types->len);
  g_assert_true (g_str_has_suffix (text, total));

  gsize size = protobuf_c_message_get_packed_size (&list->base);
  g_autofree guint8 *buf = g_malloc (size);
  protobuf_c_message_pack (&list->base, buf);
  Gptd__PluginList *back = gptd__plugin_list__unpack (NULL, size, buf);
  g_assert_nonnull (back);
  g_autofree char *text2 = gptd_plugin_list_format (back);
  g_assert_cmpstr (text, ==, text2);
  gptd__plugin_list__free_unpacked (back, NULL);
  gptd_plugin_list_free (list);

  list = gptd_registry_to_plugin_list (r, "test-sink", &error);
  g_assert_cmpuint (list->n_stage_types, ==, 1);
  g_assert_cmpstr (list->stage_types[0]->name, ==, "test-sink");
  gptd_plugin_list_free (list);
  g_assert_null (gptd_registry_to_plugin_list (r, "nope", &error));
  g_assert_error (error, GPTD_REGISTRY_ERROR, GPTD_REGISTRY_ERROR_NOT_FOUND);
}

static void
test_levenshtein (void)
{
  g_assert_cmpuint (gptd_levenshtein ("", ""), ==, 0);
  g_assert_cmpuint (gptd_levenshtein ("abc", ""), ==, 3);
  g_assert_cmpuint (gptd_levenshtein ("kitten", "sitting"), ==, 3);
  g_assert_cmpuint (gptd_levenshtein ("path", "pathh"), ==, 1);
  g_assert_cmpuint (gptd_levenshtein ("count", "cuont"), ==, 2);
  g_assert_cmpstr (gptd_param_type_to_string (GPTD_PARAM_DOUBLE_LIST), ==, "double-list");
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/plugin/scan/good", test_scan_good);
  g_test_add_func ("/plugin/scan/wrong-abi", test_scan_wrong_abi);
  g_test_add_func ("/plugin/scan/no-descriptor", test_scan_no_descriptor);
  g_test_add_func ("/plugin/scan/duplicate-type", test_scan_duplicate);
  g_test_add_func ("/plugin/scan/search-path", test_scan_path);
  g_test_add_func ("/plugin/scan/exclude", test_scan_exclude);
  g_test_add_func ("/plugin/scan/file-func", test_scan_file_func);
  g_test_add_func ("/plugin/load-file/crash-on-load", test_crash_on_load);
  g_test_add_func ("/plugin/load-file/errors", test_load_file_errors);
  g_test_add_func ("/plugin/descriptor/rejected", test_bad_descriptors);
  g_test_add_func ("/plugin/describe/stage-type", test_describe);
  g_test_add_func ("/plugin/describe/list", test_plugin_list);
  g_test_add_func ("/plugin/levenshtein", test_levenshtein);
  return g_test_run ();
}
