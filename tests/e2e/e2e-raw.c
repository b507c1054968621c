/* tests/e2e/e2e-raw.c: a raw control-socket client for the end-to-end tests. It
 * sends what gptctl never would (garbage, oversized or malformed frames, requests
 * the daemon does not support) or behaves as a watcher that stops reading, and
 * prints what the daemon answered as one line of key=value words:
 *
 *   e2e-raw SOCKET garbage|oversized|malformed|truncated|empty|no-text|ping
 *   e2e-raw SOCKET slow-watch RUN_ID SECONDS
 *   e2e-raw SOCKET pings COUNT INTERVAL_MS
 *
 * Output: "error=CODE closed=0|1" for the refused frames, "ok=1" for ping,
 * "events=N end=0|1 error=CODE closed=0|1" for slow-watch, "answered=N max_ms=M"
 * for pings (COUNT pings on one connection, INTERVAL_MS apart, and the longest
 * any took to be answered). Exit status 0 when the
 * exchange could be carried out, 1 otherwise (a timeout included: every read
 * gives up after 20 seconds).
 */
#include <gptd/frame.h>
#include <gptd.pb-c.h>

#include <errno.h>
#include <poll.h>
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
slow_watch (int fd, const char *run_id, guint seconds)
{
  Gptd__Request req = GPTD__REQUEST__INIT;
  Gptd__WatchRequest watch = GPTD__WATCH_REQUEST__INIT;
  watch.run_id = (char *) run_id;
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

int
main (int argc, char **argv)
{
  if (argc < 3)
    {
      fprintf (stderr, "usage: e2e-raw SOCKET MODE [ARGS]\n");
      return 2;
    }
  int fd = connect_to (argv[1]);
  if (fd < 0)
    return 1;
  const char *mode = argv[2];
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
    status = slow_watch (fd, argv[3], (guint) atoi (argv[4]));
  else
    {
      fprintf (stderr, "e2e-raw: unknown mode %s\n", mode);
      status = 2;
    }
  close (fd);
  return status;
}
