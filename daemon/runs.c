/* daemon/runs.c: the daemon's run table, kept in the state directory: run
 * directories, status files written atomically, the framed event log, and the
 * rebuilding of the table (with interrupted runs marked) when the daemon starts.
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include "runs.h"
#include "remove-tree.h"

#include <gptd/atomic-file.h>
#include <gptd/frame.h>
#include <gptd/json-load.h>
#include <gptd/message-json.h>

#include <errno.h>
#include <pwd.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <glib/gstdio.h>
#include <json-glib/json-glib.h>

/* STATE/runs/.next-id: the next ID to give, written when a run is removed, so
 * that a removed run's ID never names another run. */
#define NEXT_ID_FILE ".next-id"

struct _GptdRunTable {
  char *state_dir;
  char *runs_dir;
  int lock_fd;
  GHashTable *runs;  /* id -> GptdRun* (owned) */
  guint64 next_id;
  GptdRunEventFunc func;
  gpointer user_data;
};

static double
now_s (void)
{
  return (double) g_get_real_time () / G_USEC_PER_SEC;
}

gboolean
gptd__run_state_is_final (Gptd__RunState state)
{
  switch (state)
    {
    case GPTD__RUN_STATE__RUN_STATE_SUCCEEDED:
    case GPTD__RUN_STATE__RUN_STATE_FAILED:
    case GPTD__RUN_STATE__RUN_STATE_CANCELLED:
    case GPTD__RUN_STATE__RUN_STATE_INTERRUPTED:
    case GPTD__RUN_STATE__RUN_STATE_PAUSED:
      return TRUE;
    default:
      return FALSE;
    }
}

gboolean
gptd__run_is_finished (const GptdRun *run)
{
  return gptd__run_state_is_final (run->state);
}

static void
run_free (GptdRun *run)
{
  if (run == NULL)
    return;
  if (run->log_fd >= 0)
    close (run->log_fd);
  if (run->json_fd >= 0)
    close (run->json_fd);
  g_free (run->id);
  g_free (run->dir);
  g_free (run->name);
  g_free (run->filename);
  g_free (run->owner);
  g_free (run->error);
  g_free (run->error_stage);
  if (run->progress)
    protobuf_c_message_free_unpacked (&run->progress->base, NULL);
  if (run->watchers)
    g_ptr_array_unref (run->watchers);
  g_free (run);
}

static GptdRun *
run_new (GptdRunTable *table, const char *id)
{
  GptdRun *run = g_new0 (GptdRun, 1);
  run->id = g_strdup (id);
  run->dir = g_build_filename (table->runs_dir, id, NULL);
  run->log_fd = -1;
  run->json_fd = -1;
  run->table = table;
  run->watchers = g_ptr_array_new ();
  return run;
}

/* A copy of @msg owned by protobuf-c (freed with protobuf_c_message_free_unpacked). */
static ProtobufCMessage *
message_copy (const ProtobufCMessage *msg)
{
  gsize size = protobuf_c_message_get_packed_size (msg);
  g_autofree guint8 *buf = g_malloc (size ? size : 1);
  protobuf_c_message_pack (msg, buf);
  return protobuf_c_message_unpack (msg->descriptor, NULL, size, buf);
}

/* ---- status.json -------------------------------------------------------------- */

static char *user_name (guint uid);

void
gptd__run_fill_info (const GptdRun *run, Gptd__RunInfo *info)
{
  gptd__run_info__init (info);
  info->id = run->id;
  info->name = run->name ? run->name : (char *) "";
  info->state = run->state;
  info->created = run->created;
  info->started = run->started;
  info->finished = run->finished;
  info->filename = run->filename ? run->filename : (char *) "";
  info->error = run->error ? run->error : (char *) "";
  info->error_stage = run->error_stage ? run->error_stage : (char *) "";
  info->progress = run->progress;
  info->run_dir = run->dir;
  info->pid = run->pid;
  info->owner_uid = run->owner_uid;
  info->owner_gid = run->owner_gid;
  info->owner = run->owner ? run->owner : (char *) "";
}

/* Attempts at writing status.json, and the pause before each retry: a short
 * outage (EIO, space freed a moment later) is ridden out without blocking the
 * event loop for long. */
#define STATUS_ATTEMPTS 3
#define STATUS_RETRY_US (20 * 1000)
/* A stale status is tried again at most this often (seconds) on ordinary events,
 * and at every state change. */
#define STATUS_RETRY_INTERVAL 5.0

gboolean
gptd__run_write_status (GptdRun *run, GError **error)
{
  Gptd__RunInfo info;
  gptd__run_fill_info (run, &info);
  g_autofree char *json = gptd_message_to_json_string (&info.base, TRUE, TRUE);
  g_autofree char *path = g_build_filename (run->dir, GPTD_RUN_STATUS_FILE, NULL);
  g_autofree char *text = g_strconcat (json, "\n", NULL);
  g_autoptr (GError) local = NULL;
  run->status_tried = now_s ();
  for (int attempt = 1; attempt <= STATUS_ATTEMPTS; attempt++)
    {
      g_clear_error (&local);
      if (gptd_atomic_file_set_contents (path, text, strlen (text), &local))
        {
          if (run->status_stale)
            g_message ("run %s: its status is written again", run->id);
          run->status_stale = FALSE;
          return TRUE;
        }
      if (attempt < STATUS_ATTEMPTS)
        g_usleep ((gulong) STATUS_RETRY_US * (gulong) attempt);
    }
  g_warning ("run %s: cannot write its status (%d attempts): %s; its event log holds "
             "the state, and the status is written again later", run->id, STATUS_ATTEMPTS,
             local->message);
  run->status_stale = TRUE;
  g_propagate_error (error, g_steal_pointer (&local));
  return FALSE;
}

void
gptd__run_set_pid (GptdRun *run, int pid)
{
  run->pid = pid;
  gptd__run_write_status (run, NULL);
}

/* Fills the scalar, string and enum fields of the flat message @msg (initialised)
 * from the members of @obj named as the fields. Strings point into @obj. Nested
 * messages and repeated fields are left alone. */
static void
json_fill_message (JsonObject *obj, ProtobufCMessage *msg)
{
  const ProtobufCMessageDescriptor *desc = msg->descriptor;
  for (unsigned i = 0; i < desc->n_fields; i++)
    {
      const ProtobufCFieldDescriptor *f = &desc->fields[i];
      if (f->label == PROTOBUF_C_LABEL_REPEATED || !json_object_has_member (obj, f->name))
        continue;
      JsonNode *node = json_object_get_member (obj, f->name);
      void *slot = (char *) msg + f->offset;
      gboolean is_null = JSON_NODE_HOLDS_NULL (node);
      if (!is_null && !JSON_NODE_HOLDS_VALUE (node))
        continue;
      switch (f->type)
        {
        case PROTOBUF_C_TYPE_STRING:
          if (!is_null && json_node_get_value_type (node) == G_TYPE_STRING)
            *(const char **) slot = json_node_get_string (node);
          break;
        case PROTOBUF_C_TYPE_DOUBLE:
          *(double *) slot = is_null ? NAN : json_node_get_double (node);
          break;
        case PROTOBUF_C_TYPE_FLOAT:
          *(float *) slot = is_null ? NAN : (float) json_node_get_double (node);
          break;
        case PROTOBUF_C_TYPE_BOOL:
          if (!is_null)
            *(protobuf_c_boolean *) slot = json_node_get_boolean (node);
          break;
        /* Integers that do not fit the field (a negative count, ...) are left
         * out rather than wrapped around. */
        case PROTOBUF_C_TYPE_INT32:
        case PROTOBUF_C_TYPE_SINT32:
        case PROTOBUF_C_TYPE_SFIXED32:
          if (!is_null && json_node_get_int (node) >= G_MININT32
              && json_node_get_int (node) <= G_MAXINT32)
            *(int32_t *) slot = (int32_t) json_node_get_int (node);
          break;
        case PROTOBUF_C_TYPE_UINT32:
        case PROTOBUF_C_TYPE_FIXED32:
          if (!is_null && json_node_get_int (node) >= 0
              && json_node_get_int (node) <= G_MAXUINT32)
            *(uint32_t *) slot = (uint32_t) json_node_get_int (node);
          break;
        case PROTOBUF_C_TYPE_INT64:
        case PROTOBUF_C_TYPE_SINT64:
        case PROTOBUF_C_TYPE_SFIXED64:
          if (!is_null)
            *(int64_t *) slot = json_node_get_int (node);
          break;
        case PROTOBUF_C_TYPE_UINT64:
        case PROTOBUF_C_TYPE_FIXED64:
          if (!is_null && json_node_get_int (node) >= 0)
            *(uint64_t *) slot = (uint64_t) json_node_get_int (node);
          break;
        case PROTOBUF_C_TYPE_ENUM:
          if (is_null)
            break;
          if (json_node_get_value_type (node) == G_TYPE_STRING)
            {
              const ProtobufCEnumValue *v =
                gptd_enum_from_json_name (f->descriptor, json_node_get_string (node));
              if (v != NULL)
                *(int *) slot = v->value;
            }
          else
            *(int *) slot = (int) json_node_get_int (node);
          break;
        default:
          break;
        }
    }
}

static gboolean
run_load_status (GptdRun *run, GError **error)
{
  g_autofree char *path = g_build_filename (run->dir, GPTD_RUN_STATUS_FILE, NULL);
  g_autoptr (JsonParser) parser = gptd_json_load_file_bounded (path, 0, error);
  if (parser == NULL)
    return FALSE;
  JsonNode *root = json_parser_get_root (parser);
  if (root == NULL || !JSON_NODE_HOLDS_OBJECT (root))
    {
      g_set_error (error, G_FILE_ERROR, G_FILE_ERROR_INVAL, "%s: not a JSON object", path);
      return FALSE;
    }
  JsonObject *obj = json_node_get_object (root);
  Gptd__RunInfo info = GPTD__RUN_INFO__INIT;
  json_fill_message (obj, &info.base);
  run->name = g_strdup (info.name);
  run->filename = g_strdup (info.filename);
  run->state = info.state;
  run->created = info.created;
  run->started = info.started;
  run->finished = info.finished;
  run->error = *info.error ? g_strdup (info.error) : NULL;
  run->error_stage = *info.error_stage ? g_strdup (info.error_stage) : NULL;
  run->pid = info.pid;
  run->owner_uid = info.owner_uid;
  run->owner_gid = info.owner_gid;
  run->owner = g_strdup (*info.owner ? info.owner : NULL);
  /* A root daemon believes the directory's owner, which only root can change,
   * rather than the status file. */
  struct stat st;
  if (geteuid () == 0 && stat (run->dir, &st) == 0 && st.st_uid != run->owner_uid)
    {
      run->owner_uid = st.st_uid;
      run->owner_gid = st.st_gid;
      g_free (run->owner);
      run->owner = user_name (st.st_uid);
    }
  JsonNode *prog = json_object_get_member (obj, "progress");
  if (prog != NULL && JSON_NODE_HOLDS_OBJECT (prog))
    {
      Gptd__Progress p = GPTD__PROGRESS__INIT;
      json_fill_message (json_node_get_object (prog), &p.base);
      run->progress = (Gptd__Progress *) message_copy (&p.base);
    }
  return TRUE;
}

/* The name of the user @uid, or the uid in decimal. */
static char *
user_name (guint uid)
{
  struct passwd *pw = getpwuid (uid);
  return pw ? g_strdup (pw->pw_name) : g_strdup_printf ("%u", uid);
}

gboolean
gptd__run_set_owner (GptdRun *run, guint uid, guint gid, GError **error)
{
  run->owner_uid = uid;
  run->owner_gid = gid;
  g_free (run->owner);
  run->owner = user_name (uid);
  if (geteuid () == 0 && uid != 0)
    {
      /* The directory and what the worker reads are the owner's; the status and
       * the event logs stay the daemon's. */
      static const char *const files[] = { ".", GPTD_RUN_PIPELINE_FILE, GPTD_RUN_REQUEST_FILE };
      for (gsize i = 0; i < G_N_ELEMENTS (files); i++)
        {
          g_autofree char *path = g_build_filename (run->dir, files[i], NULL);
          if (chown (path, uid, gid) != 0)
            {
              int saved = errno;
              g_set_error (error, G_FILE_ERROR, g_file_error_from_errno (saved),
                           "Cannot give %s to uid %u: %s", path, uid, g_strerror (saved));
              return FALSE;
            }
        }
    }
  return gptd__run_write_status (run, error);
}

/* ---- The event log ------------------------------------------------------------ */

static gboolean
open_append (const char *dir, const char *name, int *fd, GError **error)
{
  if (*fd >= 0)
    return TRUE;
  g_autofree char *path = g_build_filename (dir, name, NULL);
  *fd = open (path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
  if (*fd < 0)
    {
      int saved = errno;
      g_set_error (error, G_FILE_ERROR, g_file_error_from_errno (saved),
                   "Cannot open the event log %s: %s", path, g_strerror (saved));
      return FALSE;
    }
  return TRUE;
}

static gboolean
run_open_log (GptdRun *run, GError **error)
{
  return open_append (run->dir, GPTD_RUN_EVENTS_FILE, &run->log_fd, error)
         && open_append (run->dir, GPTD_RUN_EVENTS_JSON_FILE, &run->json_fd, error);
}

static void
close_fd (int *fd)
{
  if (*fd >= 0)
    {
      fsync (*fd);
      close (*fd);
      *fd = -1;
    }
}

static void
run_close_log (GptdRun *run)
{
  close_fd (&run->log_fd);
  close_fd (&run->json_fd);
}

static gboolean
write_all (int fd, const void *data, gsize size)
{
  const guint8 *p = data;
  while (size > 0)
    {
      ssize_t n = write (fd, p, size);
      if (n < 0 && errno == EINTR)
        continue;
      if (n < 0)
        return FALSE;
      p += n;
      size -= (gsize) n;
    }
  return TRUE;
}

static void
run_append_log (GptdRun *run, const Gptd__Event *event)
{
  g_autoptr (GError) error = NULL;
  if (!run_open_log (run, &error))
    {
      g_warning ("run %s: %s", run->id, error->message);
      return;
    }
  g_autoptr (GBytes) frame = gptd_frame_encode (&event->base, 0, &error);
  if (frame == NULL)
    {
      g_warning ("run %s: event %" G_GUINT64_FORMAT " not logged: %s", run->id, event->seq,
                 error->message);
      return;
    }
  gsize size;
  const guint8 *data = g_bytes_get_data (frame, &size);
  if (!write_all (run->log_fd, data, size))
    g_warning ("run %s: cannot write its event log: %s", run->id, g_strerror (errno));
  g_autofree char *json = gptd_message_to_json_string (&event->base, FALSE, FALSE);
  g_autofree char *line = g_strconcat (json, "\n", NULL);
  if (!write_all (run->json_fd, line, strlen (line)))
    g_warning ("run %s: cannot write %s: %s", run->id, GPTD_RUN_EVENTS_JSON_FILE,
               g_strerror (errno));
}

/* Scans the event log of a run found unfinished on disk: the last sequence number,
 * and the offset after the last whole frame (a torn tail is cut off so that new
 * events follow whole frames). */
static void
run_recover_log (GptdRun *run, Gptd__Event **last_state, Gptd__Event **last_progress)
{
  g_autofree char *path = g_build_filename (run->dir, GPTD_RUN_EVENTS_FILE, NULL);
  g_autofree char *data = NULL;
  gsize length = 0;
  if (!g_file_get_contents (path, &data, &length, NULL))
    return;
  g_autoptr (GptdFrameDecoder) dec = gptd_frame_decoder_new (0);
  gptd_frame_decoder_feed (dec, data, length);
  for (;;)
    {
      g_autoptr (GBytes) payload = NULL;
      if (gptd_frame_decoder_next (dec, &payload, NULL) != GPTD_FRAME_OK)
        break;
      gsize n;
      const guint8 *p = g_bytes_get_data (payload, &n);
      Gptd__Event *ev = (Gptd__Event *) gptd_frame_unpack (&gptd__event__descriptor, p, n, NULL);
      if (ev == NULL)
        continue;
      run->last_seq = MAX (run->last_seq, ev->seq);
      Gptd__Event **keep = ev->body_case == GPTD__EVENT__BODY_STATE && ev->state
                             ? last_state
                             : ev->body_case == GPTD__EVENT__BODY_PROGRESS && ev->progress
                                 ? last_progress : NULL;
      if (keep != NULL)
        {
          if (*keep)
            protobuf_c_message_free_unpacked (&(*keep)->base, NULL);
          *keep = ev;
        }
      else
        protobuf_c_message_free_unpacked (&ev->base, NULL);
    }
  guint64 good = gptd_frame_decoder_get_offset (dec);
  if (good < length)
    {
      g_message ("run %s: cutting a torn event at byte %" G_GUINT64_FORMAT " of %s",
                 run->id, good, path);
      if (truncate (path, (off_t) good) != 0)
        g_warning ("run %s: cannot truncate %s: %s", run->id, path, g_strerror (errno));
    }

  /* The JSON log likewise ends after its last whole line. */
  g_autofree char *jpath = g_build_filename (run->dir, GPTD_RUN_EVENTS_JSON_FILE, NULL);
  g_autofree char *jdata = NULL;
  gsize jlen = 0;
  if (g_file_get_contents (jpath, &jdata, &jlen, NULL) && jlen > 0 && jdata[jlen - 1] != '\n')
    {
      const char *nl = g_strrstr_len (jdata, (gssize) jlen, "\n");
      off_t keep = nl ? (off_t) (nl - jdata + 1) : 0;
      if (truncate (jpath, keep) != 0)
        g_warning ("run %s: cannot truncate %s: %s", run->id, jpath, g_strerror (errno));
    }
}

gboolean
gptd__run_record_event (GptdRun *run, Gptd__Event *event)
{
  if (gptd__run_is_finished (run))
    return FALSE;

  char *saved_id = event->run_id;
  event->run_id = run->id;
  event->seq = ++run->last_seq;
  if (event->time <= 0)
    event->time = now_s ();

  run_append_log (run, event);
  gboolean status_written = FALSE;

  if (event->body_case == GPTD__EVENT__BODY_PROGRESS && event->progress != NULL)
    {
      if (run->progress)
        protobuf_c_message_free_unpacked (&run->progress->base, NULL);
      run->progress = (Gptd__Progress *) message_copy (&event->progress->base);
    }
  else if (event->body_case == GPTD__EVENT__BODY_STATE && event->state != NULL)
    {
      const Gptd__StateChange *change = event->state;
      if (change->state != run->state)
        {
          run->state = change->state;
          if (change->state == GPTD__RUN_STATE__RUN_STATE_RUNNING && run->started <= 0)
            run->started = event->time;
          if (gptd__run_state_is_final (change->state))
            {
              run->finished = event->time;
              g_free (run->error);
              g_free (run->error_stage);
              run->error = change->error && *change->error ? g_strdup (change->error) : NULL;
              run->error_stage = change->stage && *change->stage ? g_strdup (change->stage) : NULL;
              run_close_log (run);
            }
          gptd__run_write_status (run, NULL);
          status_written = TRUE;
        }
    }
  if (run->status_stale && !status_written
      && now_s () - run->status_tried >= STATUS_RETRY_INTERVAL)
    gptd__run_write_status (run, NULL);

  if (run->table->func)
    run->table->func (run, event, run->table->user_data);
  event->run_id = saved_id;
  return TRUE;
}

void
gptd__run_finish (GptdRun *run, Gptd__RunState state, const char *stage, const char *error)
{
  g_return_if_fail (gptd__run_state_is_final (state));
  Gptd__Event ev = GPTD__EVENT__INIT;
  Gptd__StateChange change = GPTD__STATE_CHANGE__INIT;
  change.state = state;
  change.stage = (char *) (stage ? stage : "");
  change.error = (char *) (error ? error : "");
  ev.body_case = GPTD__EVENT__BODY_STATE;
  ev.state = &change;
  ev.run_id = (char *) "";
  gptd__run_record_event (run, &ev);
}

void
gptd__run_reopen (GptdRun *run, const char *why)
{
  g_return_if_fail (gptd__run_is_finished (run));
  g_return_if_fail (run->state != GPTD__RUN_STATE__RUN_STATE_SUCCEEDED);

  g_autofree char *line = g_strdup_printf ("%s (the run had %s)",
                                           why ? why : "resuming from the last checkpoint",
                                           run->state == GPTD__RUN_STATE__RUN_STATE_FAILED
                                             ? "failed"
                                             : run->state == GPTD__RUN_STATE__RUN_STATE_CANCELLED
                                               ? "been cancelled"
                                               : run->state == GPTD__RUN_STATE__RUN_STATE_PAUSED
                                                 ? "been paused" : "been interrupted");
  /* Not final any more: the events that follow are recorded again. */
  run->state = GPTD__RUN_STATE__RUN_STATE_QUEUED;
  run->finished = 0;
  g_clear_pointer (&run->error, g_free);
  g_clear_pointer (&run->error_stage, g_free);

  Gptd__Event ev = GPTD__EVENT__INIT;
  Gptd__LogLine log = GPTD__LOG_LINE__INIT;
  log.stage = (char *) "gptd";
  log.level = GPTD__LOG_LEVEL__LOG_LEVEL_MESSAGE;
  log.message = line;
  ev.body_case = GPTD__EVENT__BODY_LOG;
  ev.log = &log;
  ev.run_id = (char *) "";
  gptd__run_record_event (run, &ev);

  Gptd__Event sev = GPTD__EVENT__INIT;
  Gptd__StateChange change = GPTD__STATE_CHANGE__INIT;
  change.state = GPTD__RUN_STATE__RUN_STATE_QUEUED;
  change.stage = (char *) "";
  change.error = (char *) "";
  sev.body_case = GPTD__EVENT__BODY_STATE;
  sev.state = &change;
  sev.run_id = (char *) "";
  gptd__run_record_event (run, &sev);
  /* The state did not change from the event's point of view (it was set
   * above), so the status is written here. */
  gptd__run_write_status (run, NULL);
}

static void
free_message (gpointer msg)
{
  protobuf_c_message_free_unpacked (msg, NULL);
}

GPtrArray *
gptd__run_read_log (GptdRun *run, gboolean skip_progress, GError **error)
{
  g_autoptr (GptdRunLogReader) reader = gptd__run_log_reader_new (run, error);
  if (reader == NULL)
    return NULL;
  g_autoptr (GPtrArray) events =
    g_ptr_array_new_with_free_func (free_message);
  for (;;)
    {
      g_autoptr (GError) local = NULL;
      Gptd__Event *ev = gptd__run_log_reader_next (reader, &local);
      if (local != NULL)
        {
          g_propagate_error (error, g_steal_pointer (&local));
          return NULL;
        }
      if (ev == NULL)
        break;
      if (skip_progress && ev->body_case == GPTD__EVENT__BODY_PROGRESS)
        protobuf_c_message_free_unpacked (&ev->base, NULL);
      else
        g_ptr_array_add (events, ev);
    }
  return g_steal_pointer (&events);
}

struct _GptdRunLogReader {
  int fd;
  char *path;
  GptdFrameDecoder *dec;
};

GptdRunLogReader *
gptd__run_log_reader_new (GptdRun *run, GError **error)
{
  g_autofree char *path = g_build_filename (run->dir, GPTD_RUN_EVENTS_FILE, NULL);
  int fd = open (path, O_RDONLY | O_CLOEXEC);
  if (fd < 0 && errno == ENOENT)
    {
      /* A run whose log was never written: an empty log. */
      fd = open ("/dev/null", O_RDONLY | O_CLOEXEC);
    }
  if (fd < 0)
    {
      int saved = errno;
      g_set_error (error, G_FILE_ERROR, g_file_error_from_errno (saved),
                   "Cannot read the event log %s: %s", path, g_strerror (saved));
      return NULL;
    }
  GptdRunLogReader *reader = g_new0 (GptdRunLogReader, 1);
  reader->fd = fd;
  reader->path = g_steal_pointer (&path);
  reader->dec = gptd_frame_decoder_new (0);
  return reader;
}

Gptd__Event *
gptd__run_log_reader_next (GptdRunLogReader *reader, GError **error)
{
  for (;;)
    {
      g_autoptr (GBytes) payload = NULL;
      g_autoptr (GError) local = NULL;
      GptdFrameStatus st = gptd_frame_decoder_next (reader->dec, &payload, &local);
      if (st == GPTD_FRAME_FAILED)
        {
          g_set_error (error, GPTD_FRAME_ERROR, local->code, "%s: %s", reader->path,
                       local->message);
          return NULL;
        }
      if (st == GPTD_FRAME_OK)
        {
          gsize n;
          const guint8 *p = g_bytes_get_data (payload, &n);
          Gptd__Event *ev = (Gptd__Event *) gptd_frame_unpack (&gptd__event__descriptor,
                                                               p, n, &local);
          if (ev == NULL)
            {
              g_set_error (error, GPTD_FRAME_ERROR, local->code, "%s: %s", reader->path,
                           local->message);
              return NULL;
            }
          return ev;
        }
      guint8 buf[65536];
      ssize_t n = read (reader->fd, buf, sizeof buf);
      if (n < 0 && errno == EINTR)
        continue;
      if (n < 0)
        {
          int saved = errno;
          g_set_error (error, G_FILE_ERROR, g_file_error_from_errno (saved),
                       "Cannot read the event log %s: %s", reader->path, g_strerror (saved));
          return NULL;
        }
      if (n == 0)
        return NULL;
      gptd_frame_decoder_feed (reader->dec, buf, (gsize) n);
    }
}

void
gptd__run_log_reader_free (GptdRunLogReader *reader)
{
  if (reader == NULL)
    return;
  close (reader->fd);
  g_free (reader->path);
  gptd_frame_decoder_free (reader->dec);
  g_free (reader);
}

/* ---- run.json ----------------------------------------------------------------- */

static gboolean
write_request (const char *dir, const char *filename, const char *workdir,
               const char *const *settings, const char *const *environment, GError **error)
{
  g_autoptr (JsonBuilder) b = json_builder_new ();
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "filename");
  json_builder_add_string_value (b, filename);
  json_builder_set_member_name (b, "workdir");
  json_builder_add_string_value (b, workdir ? workdir : "");
  json_builder_set_member_name (b, "settings");
  json_builder_begin_array (b);
  for (gsize i = 0; settings && settings[i]; i++)
    json_builder_add_string_value (b, settings[i]);
  json_builder_end_array (b);
  if (environment != NULL)
    {
      json_builder_set_member_name (b, "environment");
      json_builder_begin_array (b);
      for (gsize i = 0; environment[i]; i++)
        json_builder_add_string_value (b, environment[i]);
      json_builder_end_array (b);
    }
  json_builder_end_object (b);
  g_autoptr (JsonNode) root = json_builder_get_root (b);
  g_autoptr (JsonGenerator) gen = json_generator_new ();
  json_generator_set_root (gen, root);
  json_generator_set_pretty (gen, TRUE);
  g_autofree char *json = json_generator_to_data (gen, NULL);
  g_autofree char *text = g_strconcat (json, "\n", NULL);
  g_autofree char *path = g_build_filename (dir, GPTD_RUN_REQUEST_FILE, NULL);
  return gptd_atomic_file_set_contents (path, text, strlen (text), error);
}

gboolean
gptd__run_dir_write_request (const char *dir, const char *text, gssize length,
                             const char *filename, const char *workdir,
                             const char *const *settings, const char *const *environment,
                             GError **error)
{
  g_autofree char *ppath = g_build_filename (dir, GPTD_RUN_PIPELINE_FILE, NULL);
  gsize n = length < 0 ? strlen (text) : (gsize) length;
  return gptd_atomic_file_set_contents (ppath, text, n, error)
         && write_request (dir, filename, workdir, settings, environment, error);
}

gboolean
gptd__run_dir_read_request (const char *dir, char **text, char **filename, char **workdir,
                            char ***settings, GError **error)
{
  g_autofree char *ppath = g_build_filename (dir, GPTD_RUN_PIPELINE_FILE, NULL);
  g_autofree char *rpath = g_build_filename (dir, GPTD_RUN_REQUEST_FILE, NULL);
  g_autofree char *data = NULL;
  g_autoptr (JsonParser) parser = gptd_json_load_file_bounded (rpath, 0, error);
  if (parser == NULL)
    return FALSE;
  JsonNode *root = json_parser_get_root (parser);
  if (root == NULL || !JSON_NODE_HOLDS_OBJECT (root))
    {
      g_set_error (error, G_FILE_ERROR, G_FILE_ERROR_INVAL, "%s: not a JSON object", rpath);
      return FALSE;
    }
  JsonObject *obj = json_node_get_object (root);
  const char *fn = json_object_get_string_member_with_default (obj, "filename", NULL);
  if (fn == NULL || !*fn)
    {
      g_set_error (error, G_FILE_ERROR, G_FILE_ERROR_INVAL, "%s: no filename", rpath);
      return FALSE;
    }
  if (!g_file_get_contents (ppath, &data, NULL, error))
    return FALSE;
  GPtrArray *sb = g_ptr_array_new ();
  JsonArray *arr = json_object_has_member (obj, "settings")
                     ? json_object_get_array_member (obj, "settings") : NULL;
  for (guint i = 0; arr && i < json_array_get_length (arr); i++)
    {
      const char *s = json_array_get_string_element (arr, i);
      if (s)
        g_ptr_array_add (sb, g_strdup (s));
    }
  *text = g_steal_pointer (&data);
  *filename = g_strdup (fn);
  *workdir = g_strdup (json_object_get_string_member_with_default (obj, "workdir", ""));
  g_ptr_array_add (sb, NULL);
  *settings = (char **) g_ptr_array_free (sb, FALSE);
  return TRUE;
}

char **
gptd__run_dir_read_environment (const char *dir)
{
  g_autofree char *rpath = g_build_filename (dir, GPTD_RUN_REQUEST_FILE, NULL);
  g_autoptr (JsonParser) parser = gptd_json_load_file_bounded (rpath, 0, NULL);
  JsonNode *root = parser ? json_parser_get_root (parser) : NULL;
  if (root == NULL || !JSON_NODE_HOLDS_OBJECT (root))
    return NULL;
  JsonObject *obj = json_node_get_object (root);
  if (!json_object_has_member (obj, "environment"))
    return NULL;
  JsonArray *arr = json_object_get_array_member (obj, "environment");
  GPtrArray *env = g_ptr_array_new ();
  for (guint i = 0; arr && i < json_array_get_length (arr); i++)
    {
      const char *s = json_array_get_string_element (arr, i);
      if (s && strchr (s, '=') != NULL)
        g_ptr_array_add (env, g_strdup (s));
    }
  g_ptr_array_add (env, NULL);
  return (char **) g_ptr_array_free (env, FALSE);
}

/* ---- The table ---------------------------------------------------------------- */

static gboolean
is_run_id (const char *name)
{
  if (!*name || name[0] == '0' || strlen (name) > 18)
    return FALSE;
  for (const char *p = name; *p; p++)
    if (!g_ascii_isdigit (*p))
      return FALSE;
  return TRUE;
}

/* TRUE when @pid is a live gptd worker of @dir (it may outlive a killed daemon). */
static gboolean
worker_alive (int pid, const char *dir)
{
  if (pid <= 0 || kill (pid, 0) != 0)
    return FALSE;
  g_autofree char *proc = g_strdup_printf ("/proc/%d/cmdline", pid);
  g_autofree char *cmdline = NULL;
  gsize len = 0;
  if (!g_file_get_contents (proc, &cmdline, &len, NULL))
    return FALSE;
  gboolean worker = FALSE, same_dir = FALSE;
  for (gsize i = 0; i < len; i += strlen (cmdline + i) + 1)
    {
      if (strcmp (cmdline + i, "--worker") == 0)
        worker = TRUE;
      else if (strcmp (cmdline + i, dir) == 0)
        same_dir = TRUE;
    }
  return worker && same_dir;
}

static void
table_load (GptdRunTable *table)
{
  g_autoptr (GDir) d = g_dir_open (table->runs_dir, 0, NULL);
  if (d == NULL)
    return;
  const char *name;
  while ((name = g_dir_read_name (d)) != NULL)
    {
      if (!is_run_id (name))
        continue;
      guint64 id = g_ascii_strtoull (name, NULL, 10);
      table->next_id = MAX (table->next_id, id + 1);
      GptdRun *run = run_new (table, name);
      g_autoptr (GError) error = NULL;
      if (!run_load_status (run, &error))
        {
          g_warning ("Skipping run %s: %s", name, error->message);
          run_free (run);
          continue;
        }
      g_hash_table_insert (table->runs, run->id, run);
      if (gptd__run_is_finished (run))
        continue;

      /* The run was queued or running when the daemon that owned it stopped, or
       * so says its status: the event log, written before the status, may know
       * better (a status write that failed on a full disk). */
      Gptd__Event *last_state = NULL, *last_progress = NULL;
      run_recover_log (run, &last_state, &last_progress);
      if (last_progress != NULL)
        {
          if (run->progress)
            protobuf_c_message_free_unpacked (&run->progress->base, NULL);
          run->progress = (Gptd__Progress *) message_copy (&last_progress->progress->base);
          protobuf_c_message_free_unpacked (&last_progress->base, NULL);
        }
      if (last_state != NULL && gptd__run_state_is_final (last_state->state->state))
        {
          const Gptd__StateChange *change = last_state->state;
          g_autofree char *was = gptd_enum_json_name (&gptd__run_state__descriptor, run->state);
          g_autofree char *is = gptd_enum_json_name (&gptd__run_state__descriptor,
                                                     change->state);
          g_message ("run %s: its status says %s, but its event log ends %s: the status "
                     "is rebuilt from the log", run->id, was, is);
          run->state = change->state;
          run->finished = last_state->time;
          g_free (run->error);
          g_free (run->error_stage);
          run->error = change->error && *change->error ? g_strdup (change->error) : NULL;
          run->error_stage = change->stage && *change->stage ? g_strdup (change->stage) : NULL;
          run->pid = 0;
          protobuf_c_message_free_unpacked (&last_state->base, NULL);
          gptd__run_write_status (run, NULL);
          continue;
        }
      if (last_state != NULL)
        protobuf_c_message_free_unpacked (&last_state->base, NULL);
      g_autofree char *why = NULL;
      if (worker_alive (run->pid, run->dir))
        {
          kill (run->pid, SIGTERM);
          why = g_strdup_printf ("gptd stopped while the run was running; its worker "
                                 "(pid %d) was told to stop", run->pid);
        }
      else
        why = g_strdup ("gptd stopped while the run was running");
      run->pid = 0;
      g_message ("run %s was interrupted: %s", run->id, why);
      gptd__run_finish (run, GPTD__RUN_STATE__RUN_STATE_INTERRUPTED, NULL, why);
    }
}

GptdRunTable *
gptd__run_table_open (const char *state_dir, GError **error)
{
  g_return_val_if_fail (state_dir != NULL, NULL);

  g_autofree char *runs_dir = g_build_filename (state_dir, "runs", NULL);
  if (g_mkdir_with_parents (runs_dir, 0750) != 0)
    {
      int saved = errno;
      g_set_error (error, G_FILE_ERROR, g_file_error_from_errno (saved),
                   "Cannot create the state directory %s: %s", runs_dir, g_strerror (saved));
      return NULL;
    }
  g_autofree char *lock = g_build_filename (state_dir, "lock", NULL);
  int fd = open (lock, O_RDWR | O_CREAT | O_CLOEXEC, 0640);
  if (fd < 0)
    {
      int saved = errno;
      g_set_error (error, G_FILE_ERROR, g_file_error_from_errno (saved),
                   "Cannot open %s: %s", lock, g_strerror (saved));
      return NULL;
    }
  if (flock (fd, LOCK_EX | LOCK_NB) != 0)
    {
      int saved = errno;
      close (fd);
      if (saved == EWOULDBLOCK)
        g_set_error (error, G_FILE_ERROR, G_FILE_ERROR_EXIST,
                     "Another gptd is using the state directory %s", state_dir);
      else
        g_set_error (error, G_FILE_ERROR, g_file_error_from_errno (saved),
                     "Cannot lock %s: %s", lock, g_strerror (saved));
      return NULL;
    }
  GptdRunTable *table = g_new0 (GptdRunTable, 1);
  table->state_dir = g_strdup (state_dir);
  table->runs_dir = g_steal_pointer (&runs_dir);
  table->lock_fd = fd;
  table->runs = g_hash_table_new_full (g_str_hash, g_str_equal, NULL, (GDestroyNotify) run_free);
  table->next_id = 1;
  table_load (table);
  /* IDs of removed runs are not given again. */
  g_autofree char *next_path = g_build_filename (table->runs_dir, NEXT_ID_FILE, NULL);
  g_autofree char *next_text = NULL;
  if (g_file_get_contents (next_path, &next_text, NULL, NULL))
    table->next_id = MAX (table->next_id, g_ascii_strtoull (next_text, NULL, 10));
  return table;
}

void
gptd__run_table_free (GptdRunTable *table)
{
  if (table == NULL)
    return;
  g_hash_table_unref (table->runs);
  close (table->lock_fd);
  g_free (table->state_dir);
  g_free (table->runs_dir);
  g_free (table);
}

void
gptd__run_table_set_event_func (GptdRunTable *table, GptdRunEventFunc func, gpointer user_data)
{
  table->func = func;
  table->user_data = user_data;
}

const char *
gptd__run_table_get_state_dir (GptdRunTable *table)
{
  return table->state_dir;
}

GptdRun *
gptd__run_table_lookup (GptdRunTable *table, const char *id)
{
  if (id == NULL)
    return NULL;
  return g_hash_table_lookup (table->runs, id);
}

static gint
compare_runs (gconstpointer a, gconstpointer b)
{
  const GptdRun *ra = *(const GptdRun *const *) a;
  const GptdRun *rb = *(const GptdRun *const *) b;
  guint64 ia = g_ascii_strtoull (ra->id, NULL, 10);
  guint64 ib = g_ascii_strtoull (rb->id, NULL, 10);
  return ia < ib ? -1 : ia > ib;
}

GPtrArray *
gptd__run_table_list (GptdRunTable *table)
{
  GPtrArray *list = g_ptr_array_new ();
  GHashTableIter it;
  gpointer value;
  g_hash_table_iter_init (&it, table->runs);
  while (g_hash_table_iter_next (&it, NULL, &value))
    g_ptr_array_add (list, value);
  g_ptr_array_sort (list, compare_runs);
  return list;
}

gboolean
gptd__run_table_remove (GptdRunTable *table, GptdRun *run, GError **error)
{
  g_return_val_if_fail (run != NULL && run->table == table, FALSE);
  g_autofree char *next = g_strdup_printf ("%" G_GUINT64_FORMAT "\n", table->next_id);
  g_autofree char *next_path = g_build_filename (table->runs_dir, NEXT_ID_FILE, NULL);
  if (!gptd_atomic_file_set_contents (next_path, next, strlen (next), error))
    return FALSE;
  /* Out of the table's sight first (a daemon started later does not load a
   * half-deleted run), then deleted. */
  g_autofree char *doomed_name = g_strdup_printf (".removed-%s", run->id);
  g_autofree char *doomed = g_build_filename (table->runs_dir, doomed_name, NULL);
  if (g_rename (run->dir, doomed) != 0)
    {
      int saved = errno;
      g_set_error (error, G_FILE_ERROR, g_file_error_from_errno (saved),
                   "Cannot move the run directory %s aside to %s: %s", run->dir, doomed,
                   g_strerror (saved));
      return FALSE;
    }
  g_hash_table_remove (table->runs, run->id);
  g_autoptr (GError) local = NULL;
  if (!gptd__remove_tree (doomed, &local))
    g_warning ("The removed run's directory is left behind: %s", local->message);
  return TRUE;
}

gboolean
gptd__run_remove_checkpoint (GptdRun *run, GError **error)
{
  g_autofree char *dir = g_build_filename (run->dir, GPTD_RUN_CHECKPOINT_DIR, NULL);
  if (!g_file_test (dir, G_FILE_TEST_EXISTS | G_FILE_TEST_IS_SYMLINK))
    return TRUE;
  g_autofree char *mark = g_build_filename (run->dir, GPTD_RUN_CHECKPOINT_REMOVED_FILE, NULL);
  if (!gptd_atomic_file_set_contents (mark, "", 0, error))
    return FALSE;
  return gptd__remove_tree (dir, error);
}

gboolean
gptd__run_checkpoint_removed (const GptdRun *run)
{
  g_autofree char *mark = g_build_filename (run->dir, GPTD_RUN_CHECKPOINT_REMOVED_FILE, NULL);
  return g_file_test (mark, G_FILE_TEST_EXISTS);
}

static void
remove_tree (const char *dir)
{
  g_autoptr (GDir) d = g_dir_open (dir, 0, NULL);
  const char *name;
  while (d && (name = g_dir_read_name (d)) != NULL)
    {
      g_autofree char *p = g_build_filename (dir, name, NULL);
      g_unlink (p);
    }
  g_rmdir (dir);
}

GptdRun *
gptd__run_table_create (GptdRunTable *table, const char *name, const char *text,
                        const char *filename, const char *workdir,
                        const char *const *settings, const char *const *environment,
                        GError **error)
{
  g_autofree char *id = NULL;
  g_autofree char *dir = NULL;
  /* Skip IDs whose directory exists (left behind unreadable). */
  for (;;)
    {
      g_free (id);
      g_free (dir);
      id = g_strdup_printf ("%" G_GUINT64_FORMAT, table->next_id++);
      dir = g_build_filename (table->runs_dir, id, NULL);
      if (g_mkdir (dir, 0750) == 0)
        break;
      if (errno != EEXIST)
        {
          int saved = errno;
          g_set_error (error, G_FILE_ERROR, g_file_error_from_errno (saved),
                       "Cannot create the run directory %s: %s", dir, g_strerror (saved));
          return NULL;
        }
    }

  GptdRun *run = run_new (table, id);
  run->name = g_strdup (name);
  run->filename = g_strdup (filename);
  run->state = GPTD__RUN_STATE__RUN_STATE_QUEUED;
  run->created = now_s ();

  if (!gptd__run_dir_write_request (dir, text, -1, filename, workdir, settings, environment,
                                    error)
      || !run_open_log (run, error)
      || !gptd__run_write_status (run, error))
    {
      run_free (run);
      remove_tree (dir);
      return NULL;
    }
  g_hash_table_insert (table->runs, run->id, run);
  return run;
}
