/* tests/e2e/e2e-raw.c: a raw control-socket client for the end-to-end tests. It
 * sends what gptctl never would (garbage, oversized or malformed frames, requests
 * the daemon does not support) or behaves as a watcher that stops reading, and
 * prints what the daemon answered as one line of key=value words:
 *
 *   e2e-raw SOCKET garbage|oversized|malformed|truncated|empty|no-text|ping
 *   e2e-raw SOCKET slow-watch RUN_ID SECONDS
 *   e2e-raw SOCKET slow-replay RUN_ID SECONDS
 *   e2e-raw SOCKET pings COUNT INTERVAL_MS
 *   e2e-raw SOCKET stall|idle|big-request
 *   e2e-raw SOCKET hold COUNT
 *   e2e-raw SOCKET load CLIENTS REQUESTS RUN_ID PIPELINE_FILE
 *   e2e-raw SOCKET logs-race RUN_ID
 *
 * stall sends part of a frame and waits, idle sends nothing, big-request
 * announces a 2 MiB request: each expects an error and a closed connection
 * ("error=CODE closed=0|1"). hold opens COUNT connections at once and pings on
 * each: "answered=A refused=R" (refused: an error, then closed). load opens
 * CLIENTS connections that together send REQUESTS mixed requests (ping, ps,
 * status and logs of RUN_ID, validate of PIPELINE_FILE, plugins), each client
 * one at a time, all clients at once: "answered=A errors=E max_ms=M".
 * logs-race opens two connections, asks for the logs of RUN_ID on the first and
 * 100 ms later pings on the second: "ping_first=1" when the ping is answered while the
 * logs answer is still being made (the daemon's loop was not blocked by
 * reading the log), "ping_first=0" when the logs answer came first.
 *
 * Output: "error=CODE closed=0|1" for the refused frames, "ok=1" for ping,
 * "events=N end=0|1 error=CODE closed=0|1" for slow-watch and slow-replay (a
 * watch from the start, read only after SECONDS), "answered=N max_ms=M"
 * for pings (COUNT pings on one connection, INTERVAL_MS apart, and the longest
 * any took to be answered). Exit status 0 when the
 * exchange could be carried out, 1 otherwise (a timeout included: every read
 * gives up after 20 seconds).
 */
#include <gptd/frame.h>
#include <gptd.pb-c.h>

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

static int
connect_to (const char *path)
{
  struct sockaddr_un addr = { .sun_family = AF_UNIX };
  g_strlcpy (addr.sun_path, path, sizeof addr.sun_path);
  int fd = socket (AF_UNIX, SOCK_STREAM, 0);
  if (fd < 0 || connect (fd, (struct sockaddr *) &addr, sizeof addr) != 0)
    {
      fprintf (stderr, "e2e-raw: cannot connect to %s: %s\n", path, g_strerror (errno));
      return -1;
    }
  return fd;
}

static gboolean
send_all (int fd, const void *data, gsize len)
{
  const guint8 *p = data;
  while (len > 0)
    {
      ssize_t n = write (fd, p, len);
      if (n < 0 && errno == EINTR)
        continue;
      if (n < 0)
        return FALSE;
      p += n;
      len -= (gsize) n;
    }
  return TRUE;
}

/* Waits up to 20 s for the socket to be readable. */
static gboolean
wait_readable (int fd)
{
  struct pollfd pfd = { .fd = fd, .events = POLLIN };
  return poll (&pfd, 1, 20000) == 1;
}

/* Reads one Response; NULL at the end of the stream (*closed set) or on error. */
static Gptd__Response *
read_response (int fd, gboolean *closed)
{
  if (!wait_readable (fd))
    {
      fprintf (stderr, "e2e-raw: no answer within 20 s\n");
      return NULL;
    }
  g_autoptr (GError) error = NULL;
  Gptd__Response *resp =
    (Gptd__Response *) gptd_frame_read_fd (fd, &gptd__response__descriptor, 0, &error);
  if (resp == NULL)
    {
      if (g_error_matches (error, GPTD_FRAME_ERROR, GPTD_FRAME_ERROR_CLOSED)
          || (error->domain == GPTD_FRAME_ERROR && error->code == GPTD_FRAME_ERROR_IO))
        *closed = TRUE;
      else
        fprintf (stderr, "e2e-raw: %s\n", error->message);
    }
  return resp;
}

/* Expects an error Response and then the end of the stream. */
static int
expect_error_and_close (int fd)
{
  gboolean closed = FALSE;
  Gptd__Response *resp = read_response (fd, &closed);
  guint code = 0;
  if (resp != NULL)
    {
      code = resp->error ? resp->error->code : 0;
      if (resp->error)
        fprintf (stderr, "e2e-raw: gptd said: %s\n", resp->error->message);
      protobuf_c_message_free_unpacked (&resp->base, NULL);
      resp = read_response (fd, &closed);
      if (resp != NULL)
        protobuf_c_message_free_unpacked (&resp->base, NULL);
    }
  printf ("error=%u closed=%d\n", code, closed);
  return (resp == NULL && (closed || code)) ? 0 : 1;
}

static gboolean
send_request (int fd, Gptd__Request *req)
{
  g_autoptr (GError) error = NULL;
  if (!gptd_frame_write_fd (fd, &req->base, &error))
    {
      fprintf (stderr, "e2e-raw: %s\n", error->message);
      return FALSE;
    }
  return TRUE;
}

static int
slow_watch (int fd, const char *run_id, guint seconds, gboolean from_start)
{
  Gptd__Request req = GPTD__REQUEST__INIT;
  Gptd__WatchRequest watch = GPTD__WATCH_REQUEST__INIT;
  watch.run_id = (char *) run_id;
  watch.from_start = from_start;
  req.id = 1;
  req.body_case = GPTD__REQUEST__BODY_WATCH;
  req.watch = &watch;
  if (!send_request (fd, &req))
    return 1;
  /* Stop reading, as a stuck watcher does. */
  sleep (seconds);
  guint events = 0, code = 0;
  gboolean end = FALSE, closed = FALSE;
  for (;;)
    {
      Gptd__Response *resp = read_response (fd, &closed);
      if (resp == NULL)
        break;
      if (resp->error)
        code = resp->error->code;
      if (resp->body_case == GPTD__RESPONSE__BODY_EVENT)
        events++;
      if (resp->end)
        end = TRUE;
      protobuf_c_message_free_unpacked (&resp->base, NULL);
      if (end)
        break;
    }
  printf ("events=%u end=%d error=%u closed=%d\n", events, end, code, closed);
  return closed || end ? 0 : 1;
}

/* ---- Many connections -------------------------------------------------------- */

static gboolean
ping_on (int fd, guint64 id)
{
  Gptd__Request req = GPTD__REQUEST__INIT;
  Gptd__Empty empty = GPTD__EMPTY__INIT;
  req.id = id;
  req.body_case = GPTD__REQUEST__BODY_PING;
  req.ping = &empty;
  return send_request (fd, &req);
}

static int
hold (const char *path, int count)
{
  g_autofree int *fds = g_new (int, count);
  for (int i = 0; i < count; i++)
    fds[i] = connect_to (path);
  int answered = 0, refused = 0;
  for (int i = 0; i < count; i++)
    {
      if (fds[i] < 0)
        continue;
      gboolean closed = FALSE;
      ping_on (fds[i], 1);
      Gptd__Response *resp = read_response (fds[i], &closed);
      if (resp != NULL && resp->body_case == GPTD__RESPONSE__BODY_OK)
        answered++;
      else if (resp != NULL && resp->error != NULL
               && resp->error->code == GPTD__ERROR_CODE__ERROR_CODE_TOO_MANY_CONNECTIONS)
        {
          if (refused == 0)
            fprintf (stderr, "e2e-raw: gptd said: %s\n", resp->error->message);
          Gptd__Response *more = read_response (fds[i], &closed);
          if (more == NULL && closed)
            refused++;
          if (more != NULL)
            protobuf_c_message_free_unpacked (&more->base, NULL);
        }
      if (resp != NULL)
        protobuf_c_message_free_unpacked (&resp->base, NULL);
    }
  for (int i = 0; i < count; i++)
    if (fds[i] >= 0)
      close (fds[i]);
  printf ("answered=%d refused=%d\n", answered, refused);
  return 0;
}

typedef struct {
  int fd;
  GptdFrameDecoder *dec;
  int left;          /* requests still to send */
  gboolean waiting;  /* a request is out */
  gint64 sent_at;
} LoadClient;

static gboolean
load_send (LoadClient *lc, guint64 serial, const char *run_id, const char *pipeline)
{
  Gptd__Request req = GPTD__REQUEST__INIT;
  Gptd__Empty empty = GPTD__EMPTY__INIT;
  Gptd__RunIdRequest rid = GPTD__RUN_ID_REQUEST__INIT;
  Gptd__RunRequest run = GPTD__RUN_REQUEST__INIT;
  Gptd__PluginsRequest plugins = GPTD__PLUGINS_REQUEST__INIT;
  rid.run_id = (char *) run_id;
  run.pipeline = (char *) pipeline;
  run.filename = (char *) "load.pipeline";
  run.workdir = (char *) "/";
  req.id = serial;
  switch (serial % 6)
    {
    case 0: req.body_case = GPTD__REQUEST__BODY_PING; req.ping = &empty; break;
    case 1: req.body_case = GPTD__REQUEST__BODY_PS; req.ps = &empty; break;
    case 2: req.body_case = GPTD__REQUEST__BODY_STATUS; req.status = &rid; break;
    case 3: req.body_case = GPTD__REQUEST__BODY_VALIDATE; req.validate = &run; break;
    case 4: req.body_case = GPTD__REQUEST__BODY_LOGS; req.logs = &rid; break;
    default: req.body_case = GPTD__REQUEST__BODY_PLUGINS; req.plugins = &plugins; break;
    }
  lc->waiting = TRUE;
  lc->left--;
  lc->sent_at = g_get_monotonic_time ();
  return send_request (lc->fd, &req);
}

static int
logs_race (const char *path, const char *run_id)
{
  int a = connect_to (path), b = connect_to (path);
  if (a < 0 || b < 0)
    return 1;
  Gptd__Request logs = GPTD__REQUEST__INIT, ping = GPTD__REQUEST__INIT;
  Gptd__RunIdRequest rid = GPTD__RUN_ID_REQUEST__INIT;
  Gptd__Empty empty = GPTD__EMPTY__INIT;
  rid.run_id = (char *) run_id;
  logs.id = 1;
  logs.body_case = GPTD__REQUEST__BODY_LOGS;
  logs.logs = &rid;
  ping.id = 2;
  ping.body_case = GPTD__REQUEST__BODY_PING;
  ping.ping = &empty;
  /* The ping goes out once the daemon has had time to start reading the log
   * (a log of tens of megabytes takes it about half a second). */
  if (!send_request (a, &logs))
    return 1;
  g_usleep (100 * 1000);
  if (!send_request (b, &ping))
    return 1;
  gboolean closed = FALSE;
  Gptd__Response *pong = read_response (b, &closed);
  if (pong == NULL)
    return 1;
  protobuf_c_message_free_unpacked (&pong->base, NULL);
  struct pollfd pfd = { .fd = a, .events = POLLIN };
  gboolean logs_answered = poll (&pfd, 1, 0) == 1;
  Gptd__Response *answer = read_response (a, &closed);
  gboolean logs_ok = answer != NULL && answer->error == NULL;
  if (answer != NULL)
    protobuf_c_message_free_unpacked (&answer->base, NULL);
  printf ("ping_first=%d logs_ok=%d\n", !logs_answered, logs_ok);
  close (a);
  close (b);
  return logs_ok ? 0 : 1;
}

static int
load (const char *path, int clients, int requests, const char *run_id, const char *file)
{
  g_autofree char *pipeline = NULL;
  if (!g_file_get_contents (file, &pipeline, NULL, NULL))
    {
      fprintf (stderr, "e2e-raw: cannot read %s\n", file);
      return 1;
    }
  g_autofree LoadClient *lcs = g_new0 (LoadClient, clients);
  g_autofree struct pollfd *pfds = g_new0 (struct pollfd, clients);
  guint64 serial = 0;
  int answered = 0, errors = 0, open = 0;
  double max_ms = 0;
  for (int i = 0; i < clients; i++)
    {
      lcs[i].fd = connect_to (path);
      if (lcs[i].fd < 0)
        return 1;
      lcs[i].dec = gptd_frame_decoder_new (0);
      lcs[i].left = requests / clients + (i < requests % clients);
      open++;
    }
  for (int i = 0; i < clients; i++)
    if (lcs[i].left > 0 && !load_send (&lcs[i], serial++, run_id, pipeline))
      return 1;
  guint8 buf[65536];
  while (open > 0)
    {
      int n = 0;
      for (int i = 0; i < clients; i++)
        {
          pfds[i].fd = lcs[i].waiting ? lcs[i].fd : -1;
          pfds[i].events = POLLIN;
          pfds[i].revents = 0;
          n += lcs[i].waiting;
        }
      if (n == 0)
        break;
      if (poll (pfds, (nfds_t) clients, 30000) <= 0)
        {
          fprintf (stderr, "e2e-raw: %d requests unanswered after 30 s\n", n);
          break;
        }
      for (int i = 0; i < clients; i++)
        {
          LoadClient *lc = &lcs[i];
          if (pfds[i].revents == 0)
            continue;
          ssize_t got = read (lc->fd, buf, sizeof buf);
          if (got <= 0)
            {
              fprintf (stderr, "e2e-raw: client %d: the connection was closed\n", i);
              lc->waiting = FALSE;
              open--;
              continue;
            }
          gptd_frame_decoder_feed (lc->dec, buf, (gsize) got);
          for (;;)
            {
              g_autoptr (GBytes) payload = NULL;
              g_autoptr (GError) error = NULL;
              if (gptd_frame_decoder_next (lc->dec, &payload, &error) != GPTD_FRAME_OK)
                break;
              gsize len;
              const guint8 *p = g_bytes_get_data (payload, &len);
              Gptd__Response *resp = (Gptd__Response *)
                gptd_frame_unpack (&gptd__response__descriptor, p, len, &error);
              if (resp == NULL)
                return 1;
              /* Every request of the mix is answered by one frame. */
              gboolean last = TRUE;
              if (resp->error != NULL && resp->error->code != 0)
                {
                  if (errors++ == 0)
                    fprintf (stderr, "e2e-raw: gptd said: %s\n", resp->error->message);
                  last = TRUE;
                }
              protobuf_c_message_free_unpacked (&resp->base, NULL);
              if (!last)
                continue;
              answered++;
              max_ms = MAX (max_ms, (double) (g_get_monotonic_time () - lc->sent_at) / 1000.0);
              lc->waiting = FALSE;
              if (lc->left > 0)
                {
                  if (!load_send (lc, serial++, run_id, pipeline))
                    return 1;
                }
              else
                open--;
            }
        }
    }
  for (int i = 0; i < clients; i++)
    {
      close (lcs[i].fd);
      gptd_frame_decoder_free (lcs[i].dec);
    }
  printf ("answered=%d errors=%d max_ms=%.0f\n", answered, errors, max_ms);
  return answered == requests ? 0 : 1;
}

int
main (int argc, char **argv)
{
  if (argc < 3)
    {
      fprintf (stderr, "usage: e2e-raw SOCKET MODE [ARGS]\n");
      return 2;
    }
  /* A refused connection is closed by the daemon: writing to it is an error, not
   * a signal. */
  signal (SIGPIPE, SIG_IGN);
  const char *mode = argv[2];
  if (strcmp (mode, "hold") == 0 && argc == 4)
    return hold (argv[1], atoi (argv[3]));
  if (strcmp (mode, "logs-race") == 0 && argc == 4)
    return logs_race (argv[1], argv[3]);
  if (strcmp (mode, "load") == 0 && argc == 7)
    return load (argv[1], atoi (argv[3]), atoi (argv[4]), argv[5], argv[6]);
  int fd = connect_to (argv[1]);
  if (fd < 0)
    return 1;
  int status = 1;

  if (strcmp (mode, "garbage") == 0)
    {
      const char junk[] = "GET / HTTP/1.1\r\nHost: gptd\r\n\r\n";
      if (send_all (fd, junk, sizeof junk - 1))
        status = expect_error_and_close (fd);
    }
  else if (strcmp (mode, "oversized") == 0)
    {
      /* 16 MiB + 1: one byte over the limit, followed by some of its payload. */
      guint8 frame[4 + 64] = { 0x01, 0x00, 0x00, 0x01 };
      if (send_all (fd, frame, sizeof frame))
        status = expect_error_and_close (fd);
    }
  else if (strcmp (mode, "malformed") == 0)
    {
      const guint8 frame[] = { 0, 0, 0, 5, 0x08, 0xff, 0xff, 0xff, 0xff };
      if (send_all (fd, frame, sizeof frame))
        status = expect_error_and_close (fd);
    }
  else if (strcmp (mode, "big-request") == 0)
    {
      /* 2 MiB: an answer could be that large, a request may not. */
      guint8 frame[4 + 64] = { 0x00, 0x20, 0x00, 0x00 };
      if (send_all (fd, frame, sizeof frame))
        status = expect_error_and_close (fd);
    }
  else if (strcmp (mode, "stall") == 0)
    {
      /* A header and part of the payload, then nothing more. */
      const guint8 frame[] = { 0, 0, 0, 100, 0x08, 0x01 };
      if (send_all (fd, frame, sizeof frame))
        status = expect_error_and_close (fd);
    }
  else if (strcmp (mode, "idle") == 0)
    status = expect_error_and_close (fd);
  else if (strcmp (mode, "truncated") == 0)
    {
      /* Half a frame, then hang up: nothing to answer. */
      const guint8 frame[] = { 0, 0, 0, 100, 0x08, 0x01 };
      status = send_all (fd, frame, sizeof frame) ? 0 : 1;
      printf ("sent=1\n");
    }
  else if (strcmp (mode, "empty") == 0 || strcmp (mode, "no-text") == 0
           || strcmp (mode, "ping") == 0)
    {
      Gptd__Request req = GPTD__REQUEST__INIT;
      Gptd__RunIdRequest rid = GPTD__RUN_ID_REQUEST__INIT;
      Gptd__Empty empty = GPTD__EMPTY__INIT;
      req.id = 7;
      Gptd__ClassifyRequest cr = GPTD__CLASSIFY_REQUEST__INIT;
      (void) rid;
      if (strcmp (mode, "no-text") == 0)
        {
          cr.model = (char *) "/nowhere";
          req.body_case = GPTD__REQUEST__BODY_CLASSIFY;
          req.classify = &cr;
        }
      else if (strcmp (mode, "ping") == 0)
        {
          req.body_case = GPTD__REQUEST__BODY_PING;
          req.ping = &empty;
        }
      if (send_request (fd, &req))
        {
          gboolean closed = FALSE;
          Gptd__Response *resp = read_response (fd, &closed);
          if (resp != NULL)
            {
              printf ("id=%" G_GUINT64_FORMAT " error=%u ok=%d\n", resp->id,
                      resp->error ? resp->error->code : 0,
                      resp->body_case == GPTD__RESPONSE__BODY_OK);
              if (resp->error)
                fprintf (stderr, "e2e-raw: gptd said: %s\n", resp->error->message);
              protobuf_c_message_free_unpacked (&resp->base, NULL);
              status = 0;
            }
        }
    }
  else if (strcmp (mode, "pings") == 0 && argc == 5)
    {
      int count = atoi (argv[3]), interval_ms = atoi (argv[4]), answered = 0;
      double max_ms = 0;
      for (int i = 0; i < count; i++)
        {
          Gptd__Request req = GPTD__REQUEST__INIT;
          Gptd__Empty empty = GPTD__EMPTY__INIT;
          req.id = (guint64) i + 1;
          req.body_case = GPTD__REQUEST__BODY_PING;
          req.ping = &empty;
          gint64 t0 = g_get_monotonic_time ();
          gboolean closed = FALSE;
          if (!send_request (fd, &req))
            break;
          Gptd__Response *resp = read_response (fd, &closed);
          if (resp == NULL)
            break;
          double ms = (double) (g_get_monotonic_time () - t0) / 1000.0;
          if (resp->body_case == GPTD__RESPONSE__BODY_OK)
            answered++;
          max_ms = MAX (max_ms, ms);
          protobuf_c_message_free_unpacked (&resp->base, NULL);
          g_usleep ((gulong) interval_ms * 1000);
        }
      printf ("answered=%d max_ms=%.0f\n", answered, max_ms);
      status = answered == count ? 0 : 1;
    }
  else if (strcmp (mode, "slow-watch") == 0 && argc == 5)
    status = slow_watch (fd, argv[3], (guint) atoi (argv[4]), FALSE);
  else if (strcmp (mode, "slow-replay") == 0 && argc == 5)
    status = slow_watch (fd, argv[3], (guint) atoi (argv[4]), TRUE);
  else
    {
      fprintf (stderr, "e2e-raw: unknown mode %s\n", mode);
      status = 2;
    }
  close (fd);
  return status;
}
