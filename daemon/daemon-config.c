/* daemon/daemon-config.c: reading gptd.conf (see daemon-config.h). */
#include "config.h"

#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <string.h>

#include <gptd/registry.h>

#include "daemon-config.h"
#include "http.h"

#ifndef GPTD_SYSCONFDIR
#define GPTD_SYSCONFDIR "/etc"
#endif

#define GROUP "gptd"

/* KEY_BOOL is held as an integer (0 or 1), written true or false; KEY_ADDR is
 * an address the HTTP gateway can listen on. */
typedef enum { KEY_PATH, KEY_LEVEL, KEY_INT, KEY_USERS, KEY_BOOL, KEY_ADDR } KeyKind;

typedef struct {
  const char *name;
  KeyKind kind;
  gint64 min, max;
  gsize value;   /* offset of the value in GptdDaemonConfig */
  gsize has;     /* offset of its has_ flag */
} Key;

#define K(name, kind, min, max, field) \
  { name, kind, min, max, G_STRUCT_OFFSET (GptdDaemonConfig, field), \
    G_STRUCT_OFFSET (GptdDaemonConfig, has_##field) }

static const Key keys[] = {
  K ("socket", KEY_PATH, 0, 0, socket_path),
  K ("state-dir", KEY_PATH, 0, 0, state_dir),
  K ("data-dir", KEY_PATH, 0, 0, data_dir),
  K ("log-level", KEY_LEVEL, 0, 0, log_level),
  K ("stop-timeout", KEY_INT, 0, 86400, stop_timeout_s),
  K ("client-queue-limit", KEY_INT, 4096, G_GINT64_CONSTANT (1) << 40, client_queue_limit),
  K ("model-cache", KEY_INT, 1, 1024, model_cache),
  K ("generate-threads", KEY_INT, 1, 1024, generate_threads),
  K ("max-runs", KEY_INT, 1, 1024, max_runs),
  K ("threads", KEY_INT, 1, 4096, threads),
  K ("allow-users", KEY_USERS, 0, 0, allow_users),
  K ("cancel-timeout", KEY_INT, 1, 3600, cancel_timeout_s),
  K ("max-connections", KEY_INT, 1, 1048576, max_connections),
  K ("max-connections-per-user", KEY_INT, 1, 1048576, max_connections_per_user),
  K ("request-frame-limit", KEY_INT, 4096, 16777216, request_frame_limit),
  K ("read-timeout", KEY_INT, 1, 86400, read_timeout_s),
  K ("idle-timeout", KEY_INT, 1, 86400 * 7, idle_timeout_s),
  K ("keep-cancelled-checkpoints", KEY_BOOL, 0, 1, keep_cancelled_checkpoints),
  K ("http", KEY_ADDR, 0, 0, http),
  K ("http-token-file", KEY_PATH, 0, 0, http_token_file),
  K ("models", KEY_PATH, 0, 0, models),
  K ("serve-batch", KEY_INT, 1, 256, serve_batch),
  K ("prefill-chunk", KEY_INT, 1, 1048576, prefill_chunk),
};

#define FIELD(cfg, off, type) (*(type *) ((char *) (cfg) + (off)))

char *
gptd__config_default_path (void)
{
  const char *dir = g_getenv ("CONFIGURATION_DIRECTORY");
  if (dir != NULL && *dir != '\0')
    {
      /* systemd may pass several, separated by colons: the first is gptd's. */
      g_auto (GStrv) dirs = g_strsplit (dir, ":", 2);
      return g_build_filename (dirs[0], "gptd.conf", NULL);
    }
  return g_build_filename (GPTD_SYSCONFDIR, "gptd", "gptd.conf", NULL);
}

/* The 1-based line of @path's text where @key is set in [gptd] (0 if not found),
 * for error messages: GKeyFile does not keep line numbers. */
static guint
line_of (const char *text, const char *group, const char *key)
{
  g_auto (GStrv) lines = g_strsplit (text, "\n", -1);
  gboolean in_group = group == NULL;
  for (guint i = 0; lines[i]; i++)
    {
      const char *l = lines[i];
      while (*l == ' ' || *l == '\t')
        l++;
      if (*l == '[')
        {
          g_autofree char *name = g_strndup (l + 1, strcspn (l + 1, "]"));
          if (group != NULL)
            in_group = strcmp (name, group) == 0;
          else if (key == NULL)
            return i + 1;
          continue;
        }
      if (!in_group || key == NULL)
        continue;
      gsize n = strlen (key);
      if (strncmp (l, key, n) == 0 && (l[n] == '=' || l[n] == ' ' || l[n] == '\t'))
        return i + 1;
    }
  return 0;
}

static const char *
closest_key (const char *name)
{
  const char *best = NULL;
  guint best_d = G_MAXUINT;
  for (gsize i = 0; i < G_N_ELEMENTS (keys); i++)
    {
      guint d = gptd_levenshtein (name, keys[i].name);
      if (d < best_d)
        {
          best_d = d;
          best = keys[i].name;
        }
    }
  return best_d <= 3 ? best : NULL;
}

void
gptd__config_clear (GptdDaemonConfig *config)
{
  g_free (config->socket_path);
  g_free (config->state_dir);
  g_free (config->data_dir);
  g_free (config->log_level);
  g_free (config->allow_users);
  g_free (config->http);
  g_free (config->http_token_file);
  g_free (config->models);
  memset (config, 0, sizeof *config);
}

void
gptd__config_overlay (GptdDaemonConfig *config, const GptdDaemonConfig *over)
{
  for (gsize i = 0; i < G_N_ELEMENTS (keys); i++)
    {
      const Key *k = &keys[i];
      if (!FIELD (over, k->has, gboolean))
        continue;
      FIELD (config, k->has, gboolean) = TRUE;
      if (k->kind == KEY_INT || k->kind == KEY_BOOL)
        FIELD (config, k->value, gint64) = FIELD (over, k->value, gint64);
      else
        {
          g_free (FIELD (config, k->value, char *));
          FIELD (config, k->value, char *) = g_strdup (FIELD (over, k->value, char *));
        }
    }
}

/* The uid of the user named @name (a name or a number), or -1. */
static gint64
user_uid (const char *name)
{
  guint64 n;
  if (g_ascii_string_to_unsigned (name, 10, 0, G_MAXUINT32 - 1, &n, NULL))
    return (gint64) n;
  struct passwd *pw = getpwnam (name);
  return pw ? (gint64) pw->pw_uid : -1;
}

/* Whether the user @uid belongs to the group @name (its primary group or a
 * member). */
static gboolean
user_in_group (guint uid, const char *name)
{
  struct group *gr = getgrnam (name);
  struct passwd *pw = getpwuid (uid);
  if (gr == NULL || pw == NULL)
    return FALSE;
  if (pw->pw_gid == gr->gr_gid)
    return TRUE;
  for (char **m = gr->gr_mem; m != NULL && *m != NULL; m++)
    if (strcmp (*m, pw->pw_name) == 0)
      return TRUE;
  return FALSE;
}

gboolean
gptd__config_allows_user (const GptdDaemonConfig *config, guint uid)
{
  if (!config->has_allow_users)
    return FALSE;
  g_auto (GStrv) names = g_strsplit_set (config->allow_users, ", \t", -1);
  for (guint i = 0; names[i]; i++)
    {
      if (names[i][0] == '@' ? user_in_group (uid, names[i] + 1)
                             : *names[i] != '\0' && user_uid (names[i]) == (gint64) uid)
        return TRUE;
    }
  return FALSE;
}

void
gptd__config_copy (GptdDaemonConfig *dest, const GptdDaemonConfig *src)
{
  memset (dest, 0, sizeof *dest);
  gptd__config_overlay (dest, src);
}

void
gptd__config_diff (const GptdDaemonConfig *old, const GptdDaemonConfig *new_, GPtrArray *changes)
{
  for (gsize i = 0; i < G_N_ELEMENTS (keys); i++)
    {
      const Key *k = &keys[i];
      gboolean ho = FIELD (old, k->has, gboolean), hn = FIELD (new_, k->has, gboolean);
      g_autofree char *a = NULL, *b = NULL;
      if (k->kind == KEY_BOOL)
        {
          a = g_strdup (ho ? (FIELD (old, k->value, gint64) ? "true" : "false") : "(default)");
          b = g_strdup (hn ? (FIELD (new_, k->value, gint64) ? "true" : "false") : "(default)");
        }
      else if (k->kind == KEY_INT)
        {
          a = ho ? g_strdup_printf ("%" G_GINT64_FORMAT, FIELD (old, k->value, gint64))
                 : g_strdup ("(default)");
          b = hn ? g_strdup_printf ("%" G_GINT64_FORMAT, FIELD (new_, k->value, gint64))
                 : g_strdup ("(default)");
        }
      else
        {
          a = g_strdup (ho ? FIELD (old, k->value, char *) : "(default)");
          b = g_strdup (hn ? FIELD (new_, k->value, char *) : "(default)");
        }
      if (strcmp (a, b) != 0)
        g_ptr_array_add (changes, g_strdup_printf ("%s: %s -> %s", k->name, a, b));
    }
}

gboolean
gptd__config_load (const char *path, gboolean missing_ok, GptdDaemonConfig *config,
                   GError **error)
{
  memset (config, 0, sizeof *config);
  g_autofree char *text = NULL;
  gsize length = 0;
  GError *local = NULL;
  if (!g_file_get_contents (path, &text, &length, &local))
    {
      if (missing_ok && g_error_matches (local, G_FILE_ERROR, G_FILE_ERROR_NOENT))
        {
          g_error_free (local);
          return TRUE;
        }
      g_propagate_prefixed_error (error, local, "configuration: ");
      return FALSE;
    }
  if (memchr (text, '\0', length) != NULL)
    {
      g_set_error (error, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_PARSE,
                   "%s: the file holds a NUL byte", path);
      return FALSE;
    }
  g_autoptr (GKeyFile) kf = g_key_file_new ();
  if (!g_key_file_load_from_data (kf, text, length, G_KEY_FILE_NONE, &local))
    {
      g_set_error (error, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_PARSE, "%s: %s", path,
                   local->message);
      g_error_free (local);
      return FALSE;
    }
  g_auto (GStrv) groups = g_key_file_get_groups (kf, NULL);
  for (guint i = 0; groups[i]; i++)
    if (strcmp (groups[i], GROUP) != 0)
      {
        g_autofree char *hdr = g_strdup_printf ("[%s]", groups[i]);
        guint line = 0;
        g_auto (GStrv) lines = g_strsplit (text, "\n", -1);
        for (guint j = 0; lines[j] && line == 0; j++)
          if (strstr (lines[j], hdr) != NULL)
            line = j + 1;
        g_set_error (error, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_GROUP_NOT_FOUND,
                     "%s:%u: unknown group [%s]; the settings go in [" GROUP "]", path, line,
                     groups[i]);
        return FALSE;
      }
  if (!g_key_file_has_group (kf, GROUP))
    return TRUE;

  g_auto (GStrv) names = g_key_file_get_keys (kf, GROUP, NULL, NULL);
  for (guint i = 0; names[i]; i++)
    {
      const Key *k = NULL;
      for (gsize j = 0; j < G_N_ELEMENTS (keys) && k == NULL; j++)
        if (strcmp (keys[j].name, names[i]) == 0)
          k = &keys[j];
      guint line = line_of (text, GROUP, names[i]);
      if (k == NULL)
        {
          const char *near = closest_key (names[i]);
          g_set_error (error, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_KEY_NOT_FOUND,
                       "%s:%u: unknown key %s%s%s%s", path, line, names[i],
                       near ? " (did you mean " : "", near ? near : "", near ? "?)" : "");
          gptd__config_clear (config);
          return FALSE;
        }
      g_autofree char *value = g_key_file_get_string (kf, GROUP, names[i], NULL);
      g_strstrip (value);
      if (k->kind == KEY_INT)
        {
          gint64 v = 0;
          if (!g_ascii_string_to_signed (value, 10, k->min, k->max, &v, NULL))
            {
              g_set_error (error, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_INVALID_VALUE,
                           "%s:%u: %s=%s: give a whole number from %" G_GINT64_FORMAT
                           " to %" G_GINT64_FORMAT, path, line, names[i], value, k->min,
                           k->max);
              gptd__config_clear (config);
              return FALSE;
            }
          FIELD (config, k->value, gint64) = v;
        }
      else if (k->kind == KEY_BOOL)
        {
          if (strcmp (value, "true") != 0 && strcmp (value, "false") != 0)
            {
              g_set_error (error, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_INVALID_VALUE,
                           "%s:%u: %s=%s: give true or false", path, line, names[i], value);
              gptd__config_clear (config);
              return FALSE;
            }
          FIELD (config, k->value, gint64) = strcmp (value, "true") == 0;
        }
      else if (k->kind == KEY_ADDR)
        {
          gboolean loopback;
          g_autoptr (GError) local_addr = NULL;
          g_autoptr (GInetSocketAddress) addr =
            gptd__http_parse_address (value, &loopback, &local_addr);
          if (addr == NULL)
            {
              g_set_error (error, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_INVALID_VALUE,
                           "%s:%u: %s=%s: %s", path, line, names[i], value,
                           local_addr->message);
              gptd__config_clear (config);
              return FALSE;
            }
          FIELD (config, k->value, char *) = g_steal_pointer (&value);
        }
      else if (k->kind == KEY_USERS)
        {
          g_auto (GStrv) users = g_strsplit_set (value, ", \t", -1);
          for (guint j = 0; users[j]; j++)
            if (users[j][0] == '@' ? getgrnam (users[j] + 1) == NULL
                                   : *users[j] != '\0' && user_uid (users[j]) < 0)
              {
                g_set_error (error, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_INVALID_VALUE,
                             "%s:%u: %s=%s: there is no %s %s", path, line, names[i], value,
                             users[j][0] == '@' ? "group" : "user",
                             users[j] + (users[j][0] == '@'));
                gptd__config_clear (config);
                return FALSE;
              }
          FIELD (config, k->value, char *) = g_steal_pointer (&value);
        }
      else
        {
          if (*value == '\0'
              || (k->kind == KEY_PATH && !g_path_is_absolute (value))
              || (k->kind == KEY_LEVEL && strcmp (value, "info") != 0
                  && strcmp (value, "debug") != 0))
            {
              g_set_error (error, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_INVALID_VALUE,
                           "%s:%u: %s=%s: %s", path, line, names[i], value,
                           k->kind == KEY_PATH ? "give an absolute path"
                                               : "give info or debug");
              gptd__config_clear (config);
              return FALSE;
            }
          FIELD (config, k->value, char *) = g_steal_pointer (&value);
        }
      FIELD (config, k->has, gboolean) = TRUE;
    }
  return TRUE;
}
