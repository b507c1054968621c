/* fuzz/fuzz-util.h: what the libFuzzer targets share — a scratch directory made
 * once per process, writing an input to a file there, splitting an input into
 * parts at a separator byte, and the registry of the build tree's plugins. */
#pragma once

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <glib.h>
#include <glib/gstdio.h>
#include <gptd/registry.h>

/* The separator between the parts of one input (a file and a second file, a
 * pipeline and its settings): 0x01, which no part needs. */
#define FUZZ_SEP 0x01

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

/* A directory for the target's files, removed at exit. */
static const char *fuzz_dir_path;

static void
fuzz_dir_remove (void)
{
  g_autoptr (GDir) d = g_dir_open (fuzz_dir_path, 0, NULL);
  const char *name;
  while (d && (name = g_dir_read_name (d)))
    {
      g_autofree char *p = g_build_filename (fuzz_dir_path, name, NULL);
      g_unlink (p);
    }
  g_rmdir (fuzz_dir_path);
}

G_GNUC_UNUSED static const char *
fuzz_dir (void)
{
  if (fuzz_dir_path == NULL)
    {
      fuzz_dir_path = g_dir_make_tmp ("gptd-fuzz-XXXXXX", NULL);
      g_assert (fuzz_dir_path != NULL);
      atexit (fuzz_dir_remove);
    }
  return fuzz_dir_path;
}

/* Writes @size bytes to NAME in the scratch directory; returns its path. */
G_GNUC_UNUSED static char *
fuzz_write (const char *name, const void *data, size_t size)
{
  char *path = g_build_filename (fuzz_dir (), name, NULL);
  g_assert (g_file_set_contents (path, data, (gssize) size, NULL));
  return path;
}

/* The part @index of @data cut at FUZZ_SEP (empty past the last one). */
G_GNUC_UNUSED static void
fuzz_part (const uint8_t *data, size_t size, guint index, const uint8_t **part, size_t *len)
{
  const uint8_t *p = data, *end = data + size;
  for (guint i = 0; i < index && p < end; i++)
    {
      const uint8_t *sep = memchr (p, FUZZ_SEP, (size_t) (end - p));
      p = sep ? sep + 1 : end;
    }
  const uint8_t *sep = memchr (p, FUZZ_SEP, (size_t) (end - p));
  *part = p;
  *len = (size_t) ((sep ? sep : end) - p);
}

/* The registry of the build tree's plugins (or of GPTD_PLUGIN_PATH), made once. */
G_GNUC_UNUSED static GptdRegistry *
fuzz_registry (void)
{
  static GptdRegistry *registry;
  if (registry == NULL)
    {
      g_setenv ("GPTD_PLUGIN_PATH", GPTD_BUILD_PLUGIN_PATH, FALSE);
      registry = gptd_registry_new ();
      g_autoptr (GError) error = NULL;
      if (!gptd_registry_scan (registry, &error))
        g_error ("cannot load the plugins: %s", error->message);
    }
  return registry;
}

/* Drops GLib's messages below critical: bad inputs are expected to be reported,
 * and printing every report would slow the fuzzer down. A critical or an error
 * is printed and then aborts the process: GLib's own fatal path may stop with
 * SIGTRAP, which libFuzzer does not handle, so the input would not be kept;
 * on SIGABRT libFuzzer writes it to a crash-* file. */
static GLogWriterOutput
fuzz_quiet_writer (GLogLevelFlags level, const GLogField *fields, gsize n_fields,
                   gpointer user_data)
{
  if (level & (G_LOG_LEVEL_ERROR | G_LOG_LEVEL_CRITICAL))
    {
      g_log_writer_standard_streams (level, fields, n_fields, user_data);
      abort ();
    }
  return G_LOG_WRITER_HANDLED;
}

/* Warnings are not fatal (a bad input may be warned about); criticals are: they
 * are broken preconditions, that is bugs. */
G_GNUC_UNUSED static void
fuzz_init_logging (void)
{
  static gboolean done;
  if (done)
    return;
  done = TRUE;
  g_log_set_always_fatal (G_LOG_FATAL_MASK | G_LOG_LEVEL_CRITICAL);
  g_log_set_writer_func (fuzz_quiet_writer, NULL, NULL);
}
