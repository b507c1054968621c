/* daemon/server-conn.c: the daemon's control socket and its connections:
 * listening (on its own socket or the one systemd passed), accepting and
 * reading frames, sending answers with a bounded queue per connection, and
 * watchers (a run's logged events replayed, then live ones). Connections are
 * bounded: in number (in all and per user), in the size of a request frame, in
 * the time a partial frame may take to arrive and in the time one with nothing
 * under way stays open.
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include "server-private.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <glib/gstdio.h>

#ifdef HAVE_SYSTEMD
#include <systemd/sd-daemon.h>
#endif

typedef struct {
  uv_write_t req;
  GBytes *bytes;
  Conn *conn;
} WriteReq;

/* ---- Sending ------------------------------------------------------------------ */

static void
write_done (uv_write_t *req, int status)
{
  WriteReq *wr = (WriteReq *) req;
  Conn *c = wr->conn;
  c->queued -= g_bytes_get_size (wr->bytes);
  g_bytes_unref (wr->bytes);
  g_free (wr);
  if (status < 0)
    {
      if (status != UV_ECANCELED)
        g_debug ("connection %u: write failed: %s", c->id, uv_strerror (status));
      gptd__conn_close (c);
      return;
    }
  if (c->closing)
    return;
  if (c->draining && c->queued == 0)
    {
      gptd__conn_close (c);
      return;
    }
  if (c->replay != NULL && c->queued <= c->server->queue_limit / 2)
    gptd__conn_replay_pump (c);
}

static void
conn_send_bytes (Conn *c, GBytes *bytes)
{
  if (c->closing)
    return;
  WriteReq *wr = g_new0 (WriteReq, 1);
  wr->bytes = g_bytes_ref (bytes);
  wr->conn = c;
  gsize size;
  const void *data = g_bytes_get_data (bytes, &size);
  uv_buf_t buf = uv_buf_init ((char *) data, (unsigned) size);
  c->queued += size;
  int r = uv_write (&wr->req, (uv_stream_t *) &c->pipe, &buf, 1, write_done);
  if (r != 0)
    {
      c->queued -= size;
      g_bytes_unref (wr->bytes);
      g_free (wr);
      g_debug ("connection %u: write failed: %s", c->id, uv_strerror (r));
      gptd__conn_close (c);
    }
}

static void
conn_on_drain_timeout (uv_timer_t *timer)
{
  gptd__conn_close (timer->data);
}

/* Stops reading from @c and closes it once what it was sent is flushed (or after
 * a few seconds, for a client that does not read). */
void
gptd__conn_drain (Conn *c)
{
  if (c->closing || c->draining)
    return;
  c->draining = TRUE;
  /* Nothing more will be sent: a generation for this client stops. */
  gptd__conn_cancel_generations (c);
  uv_read_stop ((uv_stream_t *) &c->pipe);
  if (c->queued == 0)
    gptd__conn_close (c);
  else
    uv_timer_start (&c->drain_timer, conn_on_drain_timeout, 5000, 0);
}


/* Sends an encoded Response frame. */
void
gptd__conn_send_frame (Conn *c, GBytes *frame)
{
  if (c->closing || c->draining)
    return;
  /* A client that sends requests without reading the answers is dropped before
   * its queue grows without bound. */
  if (c->queued > c->server->queue_limit + 2 * (gsize) GPTD_FRAME_MAX_SIZE)
    {
      g_message ("connection %u (pid %d): not reading its answers; dropped", c->id, (int) c->pid);
      gptd__conn_close (c);
      return;
    }
  conn_send_bytes (c, frame);
}

void
gptd__conn_send (Conn *c, Gptd__Response *resp)
{
  if (c->closing || c->draining)
    return;
  g_autoptr (GError) error = NULL;
  g_autoptr (GBytes) frame = gptd_frame_encode (&resp->base, 0, &error);
  if (frame == NULL)
    {
      gptd__conn_send_error (c, resp->id, GPTD__ERROR_CODE__ERROR_CODE_INTERNAL,
                       "The answer is too large to send: %s", error->message);
      return;
    }
  gptd__conn_send_frame (c, frame);
}

void
gptd__conn_send_error (Conn *c, guint64 id, Gptd__ErrorCode code, const char *format, ...)
{
  va_list ap;
  va_start (ap, format);
  g_autofree char *message = g_strdup_vprintf (format, ap);
  va_end (ap);
  Gptd__Response resp = GPTD__RESPONSE__INIT;
  Gptd__Error err = GPTD__ERROR__INIT;
  err.code = code;
  err.message = message;
  resp.id = id;
  resp.error = &err;
  gptd__conn_send (c, &resp);
}

void
gptd__conn_send_ok (Conn *c, guint64 id)
{
  Gptd__Response resp = GPTD__RESPONSE__INIT;
  Gptd__Empty empty = GPTD__EMPTY__INIT;
  resp.id = id;
  resp.body_case = GPTD__RESPONSE__BODY_OK;
  resp.ok = &empty;
  gptd__conn_send (c, &resp);
}

void
gptd__conn_send_run (Conn *c, guint64 id, GptdRun *run, gboolean end)
{
  Gptd__Response resp = GPTD__RESPONSE__INIT;
  Gptd__RunInfo info;
  gptd__run_fill_info (run, &info);
  info.queue_position = gptd__server_queue_position (c->server, run);
  resp.id = id;
  resp.body_case = GPTD__RESPONSE__BODY_RUN;
  resp.run = &info;
  resp.end = end;
  gptd__conn_send (c, &resp);
}
/* ---- Watching ----------------------------------------------------------------- */

void
gptd__conn_unwatch (Conn *c)
{
  if (c->watch_run != NULL)
    g_ptr_array_remove (c->watch_run->watchers, c);
  c->watch_run = NULL;
  g_clear_pointer (&c->replay, gptd__run_log_reader_free);
}

/* The run's story is over for this watcher: its final RunInfo, with end set. */
void
gptd__conn_watch_end (Conn *c)
{
  GptdRun *run = c->watch_run;
  guint64 id = c->watch_id;
  if (run == NULL)
    return;  /* the connection was closed meanwhile */
  gptd__conn_unwatch (c);
  gptd__conn_send_run (c, id, run, TRUE);
}

static void
conn_send_event (Conn *c, const Gptd__Event *event)
{
  Gptd__Response resp = GPTD__RESPONSE__INIT;
  resp.id = c->watch_id;
  resp.body_case = GPTD__RESPONSE__BODY_EVENT;
  resp.event = (Gptd__Event *) event;
  gptd__conn_send (c, &resp);
}

/* Sends the logged events of the watched run while the connection's queue has
 * room; at the end of the log the watcher turns live (or ends, when the run has
 * finished). Events recorded meanwhile are in the log before they are broadcast,
 * so none is missed or sent twice. */
void
gptd__conn_replay_pump (Conn *c)
{
  while (c->replay != NULL && !c->closing && !c->draining
         && c->queued <= c->server->queue_limit / 2)
    {
      g_autoptr (GError) error = NULL;
      Gptd__Event *ev = gptd__run_log_reader_next (c->replay, &error);
      if (error != NULL)
        {
          guint64 id = c->watch_id;
          gptd__conn_unwatch (c);
          gptd__conn_send_error (c, id, GPTD__ERROR_CODE__ERROR_CODE_INTERNAL, "%s", error->message);
          return;
        }
      if (ev != NULL)
        {
          conn_send_event (c, ev);
          protobuf_c_message_free_unpacked (&ev->base, NULL);
          continue;
        }
      g_clear_pointer (&c->replay, gptd__run_log_reader_free);
      if (gptd__run_is_finished (c->watch_run))
        gptd__conn_watch_end (c);
      else
        g_ptr_array_add (c->watch_run->watchers, c);
    }
}

/* Called for every event recorded in any run: forwarded to its live watchers. */
void
gptd__server_on_run_event (GptdRun *run, const Gptd__Event *event, gpointer user_data)
{
  Server *s = user_data;
  if (run->watchers->len == 0)
    return;
  gboolean final = event->body_case == GPTD__EVENT__BODY_STATE && event->state != NULL
                   && gptd__run_state_is_final (event->state->state);
  g_autoptr (GPtrArray) watchers = g_ptr_array_copy (run->watchers, NULL, NULL);
  for (guint i = 0; i < watchers->len; i++)
    {
      Conn *c = watchers->pdata[i];
      if (c->queued > s->queue_limit)
        {
          g_message ("connection %u (pid %d) lagged behind run %s by %" G_GSIZE_FORMAT
                     " bytes; dropped", c->id, (int) c->pid, run->id, c->queued);
          guint64 id = c->watch_id;
          gptd__conn_unwatch (c);
          gptd__conn_send_error (c, id, GPTD__ERROR_CODE__ERROR_CODE_LAGGED,
                           "You fell more than %" G_GSIZE_FORMAT " bytes behind run %s and "
                           "were dropped; watch it again to catch up", s->queue_limit, run->id);
          gptd__conn_drain (c);
          continue;
        }
      conn_send_event (c, event);
      if (final && !c->closing)
        gptd__conn_watch_end (c);
    }
}
void
gptd__server_detach_run (Server *s, GptdRun *run)
{
  /* A watcher replaying the run, or following it live, gets the run's final
   * RunInfo with end set, as when a run it follows ends. */
  /* A copy: a connection whose queue overflows is closed while sending, and
   * leaves s->conns (its structure is freed only once its handles are). */
  g_autoptr (GList) conns = g_list_copy (s->conns);
  for (GList *l = conns; l != NULL; l = l->next)
    {
      Conn *c = l->data;
      if (c->watch_run == run)
        gptd__conn_watch_end (c);
    }
  while (run->watchers->len > 0)
    gptd__conn_unwatch (run->watchers->pdata[0]);
  gptd__server_logs_detach_run (s, run);
  gptd__server_output_detach_run (s, run);
}
/* ---- Connections -------------------------------------------------------------- */

static void
conn_handle_closed (uv_handle_t *handle)
{
  Conn *c = handle->data;
  if (--c->open_handles > 0)
    return;
  gptd_frame_decoder_free (c->dec);
  g_free (c);
}

void
gptd__conn_close (Conn *c)
{
  if (c->closing)
    return;
  c->closing = TRUE;
  gptd__conn_unwatch (c);
  gptd__conn_cancel_generations (c);
  gptd__conn_forget_checks (c);
  gptd__conn_forget_logs (c);
  gptd__conn_forget_output (c);
  c->server->conns = g_list_remove (c->server->conns, c);
  g_debug ("connection %u closed", c->id);
  uv_close ((uv_handle_t *) &c->pipe, conn_handle_closed);
  uv_close ((uv_handle_t *) &c->drain_timer, conn_handle_closed);
  uv_close ((uv_handle_t *) &c->read_timer, conn_handle_closed);
}

/* A gptd.conf setting, else its default. */
#define CONF(s, field, def) ((s)->config.has_##field ? (s)->config.field : (def))

/* Whether @c has something under way: a watch, a generation, a pipeline being
 * loaded, or answers not yet written. */
static gboolean
conn_busy (Conn *c)
{
  return c->watch_run != NULL || c->replay != NULL || c->gen_jobs != NULL
         || c->check_jobs != NULL || c->n_logs_jobs > 0 || c->n_output_jobs > 0
         || c->queued > 0;
}

static void
conn_on_read_timeout (uv_timer_t *timer)
{
  Conn *c = timer->data;
  Server *s = c->server;
  if (c->closing || c->draining)
    return;
  if (c->partial)
    {
      gint64 secs = CONF (s, read_timeout_s, GPTD_DEFAULT_READ_TIMEOUT_S);
      g_message ("connection %u (pid %d): %" G_GSIZE_FORMAT " bytes of a frame and no more "
                 "within %" G_GINT64_FORMAT " s (read-timeout=); closing it", c->id,
                 (int) c->pid, gptd_frame_decoder_get_buffered (c->dec), secs);
      gptd__conn_send_error (c, 0, GPTD__ERROR_CODE__ERROR_CODE_TIMED_OUT,
                             "The rest of the frame (%" G_GSIZE_FORMAT " bytes of it received) "
                             "did not arrive within %" G_GINT64_FORMAT " s (read-timeout= in "
                             "gptd.conf); the connection is closed",
                             gptd_frame_decoder_get_buffered (c->dec), secs);
      gptd__conn_drain (c);
      return;
    }
  gint64 idle = CONF (s, idle_timeout_s, GPTD_DEFAULT_IDLE_TIMEOUT_S);
  if (conn_busy (c))
    {
      uv_timer_start (&c->read_timer, conn_on_read_timeout, (guint64) idle * 1000, 0);
      return;
    }
  g_info ("connection %u (pid %d): idle for %" G_GINT64_FORMAT " s (idle-timeout=); closing it",
          c->id, (int) c->pid, idle);
  gptd__conn_send_error (c, 0, GPTD__ERROR_CODE__ERROR_CODE_TIMED_OUT,
                         "Nothing was asked for %" G_GINT64_FORMAT " s (idle-timeout= in "
                         "gptd.conf); the connection is closed", idle);
  gptd__conn_drain (c);
}

/* Restarts @c's timer after a read: read-timeout= once a partial frame starts
 * (not restarted by more bytes of it, so a frame sent a byte at a time cannot
 * hold the connection), idle-timeout= between frames. */
static void
conn_arm_timer (Conn *c)
{
  Server *s = c->server;
  if (c->closing || c->draining)
    return;
  if (gptd_frame_decoder_get_buffered (c->dec) > 0)
    {
      if (c->partial)
        return;
      c->partial = TRUE;
      uv_timer_start (&c->read_timer, conn_on_read_timeout,
                      (guint64) CONF (s, read_timeout_s, GPTD_DEFAULT_READ_TIMEOUT_S) * 1000, 0);
      return;
    }
  c->partial = FALSE;
  uv_timer_start (&c->read_timer, conn_on_read_timeout,
                  (guint64) CONF (s, idle_timeout_s, GPTD_DEFAULT_IDLE_TIMEOUT_S) * 1000, 0);
}

static void
conn_alloc (uv_handle_t *handle, size_t suggested, uv_buf_t *buf)
{
  buf->base = g_malloc (65536);
  buf->len = 65536;
}

static void
conn_read (uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
  Conn *c = stream->data;
  if (nread > 0 && !c->draining)
    gptd_frame_decoder_feed (c->dec, buf->base, (gsize) nread);
  g_free (buf->base);

  while (nread > 0 && !c->closing && !c->draining)
    {
      g_autoptr (GBytes) payload = NULL;
      g_autoptr (GError) error = NULL;
      GptdFrameStatus st = gptd_frame_decoder_next (c->dec, &payload, &error);
      if (st == GPTD_FRAME_NEED_MORE)
        break;
      if (st == GPTD_FRAME_FAILED)
        {
          g_message ("connection %u (pid %d): %s; closing it", c->id, (int) c->pid,
                     error->message);
          gptd__conn_send_error (c, 0, GPTD__ERROR_CODE__ERROR_CODE_FRAME_TOO_LARGE, "%s",
                           error->message);
          gptd__conn_drain (c);
          return;
        }
      gsize n;
      const guint8 *p = g_bytes_get_data (payload, &n);
      Gptd__Request *req =
        (Gptd__Request *) gptd_frame_unpack (&gptd__request__descriptor, p, n, &error);
      if (req == NULL)
        {
          g_message ("connection %u (pid %d): %s; closing it", c->id, (int) c->pid,
                     error->message);
          gptd__conn_send_error (c, 0, GPTD__ERROR_CODE__ERROR_CODE_MALFORMED, "%s", error->message);
          gptd__conn_drain (c);
          return;
        }
      gptd__conn_dispatch (c, req);
      protobuf_c_message_free_unpacked (&req->base, NULL);
    }
  if (nread > 0)
    conn_arm_timer (c);

  if (nread < 0)
    {
      if (nread != UV_EOF)
        g_debug ("connection %u: %s", c->id, uv_strerror ((int) nread));
      /* The client has hung up (or says it is done): it is closed once the
       * answers already queued are out. */
      gptd__conn_unwatch (c);
      gptd__conn_drain (c);
    }
}

void
gptd__server_on_connection (uv_stream_t *listener, int status)
{
  Server *s = listener->data;
  if (status < 0)
    {
      g_warning ("Accepting a connection failed: %s", uv_strerror (status));
      return;
    }
  Conn *c = g_new0 (Conn, 1);
  c->server = s;
  c->id = ++s->next_conn_id;
  /* Requests are small (a pipeline's text): their frames have a lower limit
   * than the answers'. */
  c->dec = gptd_frame_decoder_new ((gsize) CONF (s, request_frame_limit,
                                                 GPTD_DEFAULT_REQUEST_FRAME_LIMIT));
  uv_pipe_init (&s->loop, &c->pipe, 0);
  uv_timer_init (&s->loop, &c->drain_timer);
  uv_timer_init (&s->loop, &c->read_timer);
  c->pipe.data = c;
  c->drain_timer.data = c;
  c->read_timer.data = c;
  c->open_handles = 3;
  s->conns = g_list_prepend (s->conns, c);
  int r = uv_accept (listener, (uv_stream_t *) &c->pipe);
  if (r != 0)
    {
      g_warning ("Accepting a connection failed: %s", uv_strerror (r));
      gptd__conn_close (c);
      return;
    }
  uv_os_fd_t fd;
  struct ucred cred = { 0 };
  socklen_t len = sizeof cred;
  if (uv_fileno ((uv_handle_t *) &c->pipe, &fd) == 0
      && getsockopt (fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0)
    {
      c->pid = cred.pid;
      c->uid = cred.uid;
      c->gid = cred.gid;
    }
  g_info ("connection %u from pid %d uid %u gid %u", c->id, (int) c->pid, (unsigned) c->uid,
          (unsigned) c->gid);
  /* A daemon that is not root lends its own rights to every client's runs: it
   * serves its own user and root, and those allow-users= lists. */
  if (!gptd__server_serves_user (s, c->uid))
    {
      g_message ("connection %u from pid %d uid %u refused: gptd (uid %u) serves only its own "
                 "user, root and allow-users=", c->id, (int) c->pid, (unsigned) c->uid,
                 (unsigned) geteuid ());
      /* Each of its requests is answered with the refusal. */
      c->refused = TRUE;
    }
  if (s->stopping)
    {
      gptd__conn_close (c);
      return;
    }
  /* Past the caps, the connection is told why and closed. */
  guint total = 0, mine = 0;
  for (GList *l = s->conns; l != NULL; l = l->next)
    {
      Conn *o = l->data;
      if (o == c || o->closing || o->draining)
        continue;
      total++;
      if (o->uid == c->uid)
        mine++;
    }
  gint64 max_total = CONF (s, max_connections, GPTD_DEFAULT_MAX_CONNECTIONS);
  gint64 max_user = CONF (s, max_connections_per_user, GPTD_DEFAULT_MAX_CONNECTIONS_PER_USER);
  if (total >= max_total || mine >= max_user)
    {
      gboolean all = total >= max_total;
      g_message ("connection %u from pid %d uid %u refused: %u connections open%s "
                 "(%s=%" G_GINT64_FORMAT ")", c->id, (int) c->pid, (unsigned) c->uid,
                 all ? total : mine, all ? "" : " for this user",
                 all ? "max-connections" : "max-connections-per-user", all ? max_total : max_user);
      gptd__conn_send_error (c, 0, GPTD__ERROR_CODE__ERROR_CODE_TOO_MANY_CONNECTIONS,
                             "gptd has %u connections open%s, its limit (%s=%" G_GINT64_FORMAT
                             " in gptd.conf); try again once some have closed",
                             all ? total : mine, all ? "" : " for your user",
                             all ? "max-connections" : "max-connections-per-user",
                             all ? max_total : max_user);
      gptd__conn_drain (c);
      return;
    }
  uv_read_start ((uv_stream_t *) &c->pipe, conn_alloc, conn_read);
  conn_arm_timer (c);
}
gboolean
gptd__server_serves_user (Server *s, guint uid)
{
  uid_t self = geteuid ();
  return self == 0 || uid == 0 || uid == self || gptd__config_allows_user (&s->config, uid);
}

gboolean
gptd__conn_may_touch (Conn *c, const GptdRun *run)
{
  return c->uid == 0 || c->uid == run->owner_uid;
}

/* ---- The socket --------------------------------------------------------------- */

/* Removes a socket file left by a daemon that died; refuses a live one. */
static gboolean
check_existing_socket (const char *path, GError **error)
{
  struct stat st;
  if (lstat (path, &st) != 0)
    return TRUE;
  if (!S_ISSOCK (st.st_mode))
    {
      g_set_error (error, G_FILE_ERROR, G_FILE_ERROR_EXIST,
                   "%s exists and is not a socket; remove it or choose another --socket", path);
      return FALSE;
    }
  struct sockaddr_un addr = { .sun_family = AF_UNIX };
  g_strlcpy (addr.sun_path, path, sizeof addr.sun_path);
  int fd = socket (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    {
      g_set_error (error, G_FILE_ERROR, g_file_error_from_errno (errno), "socket(): %s",
                   g_strerror (errno));
      return FALSE;
    }
  int r = connect (fd, (struct sockaddr *) &addr, sizeof addr);
  int saved = errno;
  close (fd);
  if (r == 0)
    {
      g_set_error (error, G_FILE_ERROR, G_FILE_ERROR_EXIST,
                   "Another gptd is already running at %s; stop it first, or give this "
                   "one another --socket", path);
      return FALSE;
    }
  if (saved != ECONNREFUSED)
    {
      g_set_error (error, G_FILE_ERROR, g_file_error_from_errno (saved),
                   "Cannot check the existing socket %s: %s", path, g_strerror (saved));
      return FALSE;
    }
  g_message ("Removing the stale socket %s left by a gptd that is no longer running", path);
  if (g_unlink (path) != 0 && errno != ENOENT)
    {
      saved = errno;
      g_set_error (error, G_FILE_ERROR, g_file_error_from_errno (saved),
                   "Cannot remove the stale socket %s: %s", path, g_strerror (saved));
      return FALSE;
    }
  return TRUE;
}

/* Takes the listening socket systemd passed (socket activation: gptd.socket), when
 * there is one. Returns FALSE with @error for a passed descriptor gptd cannot use;
 * TRUE otherwise, with s->activated telling whether a socket was taken. */
static gboolean
server_listen_activated (Server *s, GError **error)
{
#ifdef HAVE_SYSTEMD
  int n = sd_listen_fds (1);
  if (n <= 0)
    return TRUE;
  if (n > 1 || sd_is_socket_unix (SD_LISTEN_FDS_START, SOCK_STREAM, 1, NULL, 0) <= 0)
    {
      g_set_error (error, G_FILE_ERROR, G_FILE_ERROR_INVAL,
                   "systemd passed %d socket(s); gptd takes one listening Unix stream "
                   "socket (ListenStream= with a path in gptd.socket)", n);
      return FALSE;
    }
  struct sockaddr_un addr = { 0 };
  socklen_t len = sizeof addr;
  if (getsockname (SD_LISTEN_FDS_START, (struct sockaddr *) &addr, &len) == 0
      && len > offsetof (struct sockaddr_un, sun_path) && addr.sun_path[0] != '\0')
    {
      g_free (s->socket_path);
      s->socket_path = g_strndup (addr.sun_path, len - offsetof (struct sockaddr_un, sun_path));
    }
  uv_pipe_init (&s->loop, &s->listener, 0);
  s->listener.data = s;
  s->listening = TRUE;
  s->activated = TRUE;
  int r = uv_pipe_open (&s->listener, SD_LISTEN_FDS_START);
  if (r == 0)
    r = uv_listen ((uv_stream_t *) &s->listener, 128, gptd__server_on_connection);
  if (r != 0)
    {
      g_set_error (error, G_FILE_ERROR, G_FILE_ERROR_FAILED,
                   "Cannot listen on the socket systemd passed (%s): %s", s->socket_path,
                   uv_strerror (r));
      return FALSE;
    }
  g_message ("Listening on %s, passed by systemd", s->socket_path);
#else
  (void) s;
  (void) error;
#endif
  return TRUE;
}

gboolean
gptd__server_listen (Server *s, GError **error)
{
  if (!server_listen_activated (s, error))
    return FALSE;
  if (s->activated)
    return TRUE;
  if (strlen (s->socket_path) >= sizeof (((struct sockaddr_un *) NULL)->sun_path))
    {
      g_set_error (error, G_FILE_ERROR, G_FILE_ERROR_NAMETOOLONG,
                   "The socket path %s is too long for a Unix socket", s->socket_path);
      return FALSE;
    }
  g_autofree char *dir = g_path_get_dirname (s->socket_path);
  if (g_mkdir_with_parents (dir, 0750) != 0)
    {
      int saved = errno;
      g_set_error (error, G_FILE_ERROR, g_file_error_from_errno (saved),
                   "Cannot create the socket directory %s: %s", dir, g_strerror (saved));
      return FALSE;
    }
  if (!check_existing_socket (s->socket_path, error))
    return FALSE;

  uv_pipe_init (&s->loop, &s->listener, 0);
  s->listener.data = s;
  s->listening = TRUE;
  /* Created 0660 (owner and group, e.g. group gptd) with no window where it is
   * more open than that. */
  mode_t old = umask (0117);
  int r = uv_pipe_bind (&s->listener, s->socket_path);
  umask (old);
  if (r == 0)
    r = uv_listen ((uv_stream_t *) &s->listener, 128, gptd__server_on_connection);
  if (r != 0)
    {
      g_set_error (error, G_FILE_ERROR, G_FILE_ERROR_FAILED, "Cannot listen on %s: %s",
                   s->socket_path, uv_strerror (r));
      return FALSE;
    }
  if (chmod (s->socket_path, 0660) != 0)
    g_warning ("Cannot chmod %s: %s", s->socket_path, g_strerror (errno));
  return TRUE;
}

void
gptd__server_close_listener (Server *s)
{
  if (!s->listening)
    return;
  s->listening = FALSE;
  uv_close ((uv_handle_t *) &s->listener, NULL);
  if (!s->activated && g_unlink (s->socket_path) != 0 && errno != ENOENT)
    g_warning ("Cannot remove the socket %s: %s", s->socket_path, g_strerror (errno));
}
