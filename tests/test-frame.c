/* tests/test-frame.c: unit tests of the frame codec (lib/io/frame.c): whole frames
 * split at every possible boundary, truncated streams, oversized lengths, garbage
 * payloads, and blocking reads and writes on a socket pair.
 */
#include <gptd/frame.h>
#include <gptd.pb-c.h>

#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* Three Requests of different sizes, framed back to back. */
static GByteArray *
make_stream (void)
{
  GByteArray *stream = g_byte_array_new ();
  for (guint i = 0; i < 3; i++)
    {
      Gptd__Request req = GPTD__REQUEST__INIT;
      Gptd__RunIdRequest status = GPTD__RUN_ID_REQUEST__INIT;
      Gptd__Empty empty = GPTD__EMPTY__INIT;
      g_autofree char *id = g_strnfill (1 + i * 300, 'a' + i);
      req.id = i + 1;
      if (i == 1)
        {
          req.body_case = GPTD__REQUEST__BODY_PING;
          req.ping = &empty;
        }
      else
        {
          status.run_id = id;
          req.body_case = GPTD__REQUEST__BODY_STATUS;
          req.status = &status;
        }
      g_autoptr (GError) error = NULL;
      g_autoptr (GBytes) frame = gptd_frame_encode (&req.base, 0, &error);
      g_assert_no_error (error);
      gsize n;
      const guint8 *data = g_bytes_get_data (frame, &n);
      g_assert_cmpuint (n, ==, 4 + protobuf_c_message_get_packed_size (&req.base));
      g_byte_array_append (stream, data, (guint) n);
    }
  return stream;
}

static void
check_request (GBytes *payload, guint i)
{
  g_autoptr (GError) error = NULL;
  gsize n;
  const guint8 *data = g_bytes_get_data (payload, &n);
  Gptd__Request *req = (Gptd__Request *) gptd_frame_unpack (&gptd__request__descriptor,
                                                             data, n, &error);
  g_assert_no_error (error);
  g_assert_nonnull (req);
  g_assert_cmpuint (req->id, ==, i + 1);
  if (i == 1)
    g_assert_cmpint (req->body_case, ==, GPTD__REQUEST__BODY_PING);
  else
    {
      g_assert_cmpint (req->body_case, ==, GPTD__REQUEST__BODY_STATUS);
      g_assert_cmpuint (strlen (req->status->run_id), ==, 1 + i * 300);
      g_assert_cmpint (req->status->run_id[0], ==, 'a' + i);
    }
  protobuf_c_message_free_unpacked (&req->base, NULL);
}

/* Feeds @stream in chunks of @chunk bytes and checks the three frames come out. */
static void
decode_in_chunks (GByteArray *stream, gsize chunk)
{
  g_autoptr (GptdFrameDecoder) dec = gptd_frame_decoder_new (0);
  guint seen = 0;
  for (gsize pos = 0; pos < stream->len; pos += chunk)
    {
      gsize n = MIN (chunk, stream->len - pos);
      gptd_frame_decoder_feed (dec, stream->data + pos, n);
      for (;;)
        {
          g_autoptr (GBytes) payload = NULL;
          g_autoptr (GError) error = NULL;
          GptdFrameStatus st = gptd_frame_decoder_next (dec, &payload, &error);
          g_assert_no_error (error);
          if (st == GPTD_FRAME_NEED_MORE)
            break;
          g_assert_cmpint (st, ==, GPTD_FRAME_OK);
          check_request (payload, seen++);
        }
    }
  g_assert_cmpuint (seen, ==, 3);
  g_assert_cmpuint (gptd_frame_decoder_get_offset (dec), ==, stream->len);
  g_assert_cmpuint (gptd_frame_decoder_get_buffered (dec), ==, 0);
  g_autoptr (GError) error = NULL;
  g_assert_true (gptd_frame_decoder_finish (dec, &error));
  g_assert_no_error (error);
}

static void
test_chunkings (void)
{
  g_autoptr (GByteArray) stream = make_stream ();
  /* Every chunk size from one byte to the whole stream at once. */
  for (gsize chunk = 1; chunk <= stream->len; chunk++)
    decode_in_chunks (stream, chunk);
}

static void
test_split_everywhere (void)
{
  /* The stream cut in two at every position, including inside headers. */
  g_autoptr (GByteArray) stream = make_stream ();
  for (gsize cut = 0; cut <= stream->len; cut++)
    {
      g_autoptr (GptdFrameDecoder) dec = gptd_frame_decoder_new (0);
      guint seen = 0;
      const gsize parts[2][2] = { { 0, cut }, { cut, stream->len } };
      for (guint p = 0; p < 2; p++)
        {
          gptd_frame_decoder_feed (dec, stream->data + parts[p][0], parts[p][1] - parts[p][0]);
          g_autoptr (GBytes) payload = NULL;
          while (gptd_frame_decoder_next (dec, &payload, NULL) == GPTD_FRAME_OK)
            {
              check_request (payload, seen++);
              g_clear_pointer (&payload, g_bytes_unref);
            }
        }
      g_assert_cmpuint (seen, ==, 3);
    }
}

static void
test_truncated (void)
{
  g_autoptr (GByteArray) stream = make_stream ();
  /* Every proper prefix that does not end on a frame boundary is truncated. */
  gsize first = 4 + (stream->data[3] | (gsize) stream->data[2] << 8);
  for (gsize len = 1; len < stream->len; len++)
    {
      g_autoptr (GptdFrameDecoder) dec = gptd_frame_decoder_new (0);
      gptd_frame_decoder_feed (dec, stream->data, len);
      g_autoptr (GBytes) payload = NULL;
      guint seen = 0;
      while (gptd_frame_decoder_next (dec, &payload, NULL) == GPTD_FRAME_OK)
        {
          seen++;
          g_clear_pointer (&payload, g_bytes_unref);
        }
      g_autoptr (GError) error = NULL;
      gboolean clean = gptd_frame_decoder_finish (dec, &error);
      if (len == first)
        {
          g_assert_cmpuint (seen, ==, 1);
          g_assert_true (clean);
          g_assert_no_error (error);
        }
      else if (clean)
        {
          /* Only a frame boundary ends cleanly. */
          g_assert_no_error (error);
          g_assert_cmpuint (gptd_frame_decoder_get_buffered (dec), ==, 0);
          g_assert_cmpuint (seen, >=, 1);
        }
      else
        {
          g_assert_error (error, GPTD_FRAME_ERROR, GPTD_FRAME_ERROR_TRUNCATED);
          g_assert_nonnull (strstr (error->message, "ended inside"));
        }
    }
  /* The empty stream ends cleanly. */
  g_autoptr (GptdFrameDecoder) dec = gptd_frame_decoder_new (0);
  g_assert_true (gptd_frame_decoder_finish (dec, NULL));
}

static void
test_oversized (void)
{
  g_autoptr (GptdFrameDecoder) dec = gptd_frame_decoder_new (1024);
  /* One good frame, then a header announcing 1025 bytes. */
  g_autoptr (GByteArray) stream = make_stream ();
  gsize first = 4 + (stream->data[3] | (gsize) stream->data[2] << 8);
  gptd_frame_decoder_feed (dec, stream->data, first);
  const guint8 big[4] = { 0x00, 0x00, 0x04, 0x01 };
  gptd_frame_decoder_feed (dec, big, 4);

  g_autoptr (GBytes) payload = NULL;
  g_autoptr (GError) error = NULL;
  g_assert_cmpint (gptd_frame_decoder_next (dec, &payload, &error), ==, GPTD_FRAME_OK);
  g_assert_no_error (error);
  check_request (payload, 0);
  g_clear_pointer (&payload, g_bytes_unref);

  /* Refused at once, without waiting for the payload. */
  g_assert_cmpint (gptd_frame_decoder_next (dec, &payload, &error), ==, GPTD_FRAME_FAILED);
  g_assert_error (error, GPTD_FRAME_ERROR, GPTD_FRAME_ERROR_TOO_LARGE);
  g_assert_null (payload);
  g_autofree char *where = g_strdup_printf ("at byte %" G_GSIZE_FORMAT, first);
  g_assert_nonnull (strstr (error->message, where));
  g_assert_nonnull (strstr (error->message, "1025"));
  g_clear_error (&error);

  /* The decoder stays failed; later bytes are dropped. */
  gptd_frame_decoder_feed (dec, stream->data, stream->len);
  g_assert_cmpuint (gptd_frame_decoder_get_buffered (dec), ==, 0);
  g_assert_cmpint (gptd_frame_decoder_next (dec, &payload, &error), ==, GPTD_FRAME_FAILED);
  g_assert_error (error, GPTD_FRAME_ERROR, GPTD_FRAME_ERROR_TOO_LARGE);
  g_clear_error (&error);
  g_assert_false (gptd_frame_decoder_finish (dec, &error));
  g_assert_error (error, GPTD_FRAME_ERROR, GPTD_FRAME_ERROR_TOO_LARGE);
  g_clear_error (&error);

  /* The default limit: 16 MiB is accepted, one byte more is not. */
  g_autoptr (GptdFrameDecoder) dflt = gptd_frame_decoder_new (0);
  const guint8 at_limit[4] = { 0x01, 0x00, 0x00, 0x00 };
  gptd_frame_decoder_feed (dflt, at_limit, 4);
  g_assert_cmpint (gptd_frame_decoder_next (dflt, &payload, &error), ==, GPTD_FRAME_NEED_MORE);
  g_assert_no_error (error);
  g_autoptr (GptdFrameDecoder) over = gptd_frame_decoder_new (0);
  const guint8 over_limit[4] = { 0x01, 0x00, 0x00, 0x01 };
  gptd_frame_decoder_feed (over, over_limit, 4);
  g_assert_cmpint (gptd_frame_decoder_next (over, &payload, &error), ==, GPTD_FRAME_FAILED);
  g_assert_error (error, GPTD_FRAME_ERROR, GPTD_FRAME_ERROR_TOO_LARGE);
  g_clear_error (&error);
  /* A garbage header is usually an absurd length. */
  g_autoptr (GptdFrameDecoder) text = gptd_frame_decoder_new (0);
  gptd_frame_decoder_feed (text, "GET / HTTP/1.1\r\n", 16);
  g_assert_cmpint (gptd_frame_decoder_next (text, &payload, &error), ==, GPTD_FRAME_FAILED);
  g_assert_error (error, GPTD_FRAME_ERROR, GPTD_FRAME_ERROR_TOO_LARGE);
}

static void
test_encode_too_large (void)
{
  Gptd__RunIdRequest status = GPTD__RUN_ID_REQUEST__INIT;
  g_autofree char *id = g_strnfill (2000, 'x');
  status.run_id = id;
  g_autoptr (GError) error = NULL;
  g_autoptr (GBytes) frame = gptd_frame_encode (&status.base, 1000, &error);
  g_assert_null (frame);
  g_assert_error (error, GPTD_FRAME_ERROR, GPTD_FRAME_ERROR_TOO_LARGE);
  g_assert_nonnull (strstr (error->message, "gptd.RunIdRequest"));
  g_clear_error (&error);
  frame = gptd_frame_encode (&status.base, 4000, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (g_bytes_get_size (frame), ==, 4 + protobuf_c_message_get_packed_size (&status.base));
}

static void
test_garbage_payload (void)
{
  /* Whole frames whose payloads are not valid Requests. Each is framed correctly,
   * so the decoder returns it; unpacking reports it as malformed. */
  static const struct {
    const char *what;
    guint8 bytes[8];
    gsize len;
  } cases[] = {
    { "truncated varint", { 0x08, 0xff, 0xff }, 3 },
    { "string longer than the payload", { 0xa2, 0x01, 0x7f, 'a' }, 4 },
    { "wire type 7", { 0x0f, 0x00 }, 2 },
    { "field number 0", { 0x00, 0x01 }, 2 },
    { "fixed64 cut short", { 0x09, 0x01, 0x02 }, 3 },
  };
  for (gsize i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_test_message ("case: %s", cases[i].what);
      guint8 frame[12] = { 0, 0, 0, (guint8) cases[i].len };
      memcpy (frame + 4, cases[i].bytes, cases[i].len);
      g_autoptr (GptdFrameDecoder) dec = gptd_frame_decoder_new (0);
      gptd_frame_decoder_feed (dec, frame, 4 + cases[i].len);
      g_autoptr (GBytes) payload = NULL;
      g_assert_cmpint (gptd_frame_decoder_next (dec, &payload, NULL), ==, GPTD_FRAME_OK);
      gsize n;
      const guint8 *data = g_bytes_get_data (payload, &n);
      g_autoptr (GError) error = NULL;
      ProtobufCMessage *msg = gptd_frame_unpack (&gptd__request__descriptor, data, n, &error);
      g_assert_null (msg);
      g_assert_error (error, GPTD_FRAME_ERROR, GPTD_FRAME_ERROR_MALFORMED);
      g_assert_nonnull (strstr (error->message, "gptd.Request"));
    }

  /* An empty payload is a valid, empty message. */
  g_autoptr (GError) error = NULL;
  Gptd__Request *req = (Gptd__Request *) gptd_frame_unpack (&gptd__request__descriptor,
                                                             (const guint8 *) "", 0, &error);
  g_assert_no_error (error);
  g_assert_cmpint (req->body_case, ==, GPTD__REQUEST__BODY__NOT_SET);
  protobuf_c_message_free_unpacked (&req->base, NULL);
}

static void
test_fd (void)
{
  int sv[2];
  g_assert_cmpint (socketpair (AF_UNIX, SOCK_STREAM, 0, sv), ==, 0);

  Gptd__Event ev = GPTD__EVENT__INIT;
  Gptd__LogLine line = GPTD__LOG_LINE__INIT;
  ev.run_id = (char *) "7";
  ev.seq = 42;
  ev.body_case = GPTD__EVENT__BODY_LOG;
  ev.log = &line;
  line.stage = (char *) "corpus";
  line.message = (char *) "read 3 files";
  line.level = GPTD__LOG_LEVEL__LOG_LEVEL_WARNING;

  g_autoptr (GError) error = NULL;
  g_assert_true (gptd_frame_write_fd (sv[0], &ev.base, &error));
  g_assert_no_error (error);
  Gptd__Event *got = (Gptd__Event *) gptd_frame_read_fd (sv[1], &gptd__event__descriptor, 0, &error);
  g_assert_no_error (error);
  g_assert_cmpstr (got->run_id, ==, "7");
  g_assert_cmpuint (got->seq, ==, 42);
  g_assert_cmpint (got->body_case, ==, GPTD__EVENT__BODY_LOG);
  g_assert_cmpstr (got->log->message, ==, "read 3 files");
  g_assert_cmpint (got->log->level, ==, GPTD__LOG_LEVEL__LOG_LEVEL_WARNING);
  protobuf_c_message_free_unpacked (&got->base, NULL);

  /* Oversized header. */
  const guint8 big[4] = { 0x7f, 0xff, 0xff, 0xff };
  g_assert_cmpint (write (sv[0], big, 4), ==, 4);
  got = (Gptd__Event *) gptd_frame_read_fd (sv[1], &gptd__event__descriptor, 0, &error);
  g_assert_null (got);
  g_assert_error (error, GPTD_FRAME_ERROR, GPTD_FRAME_ERROR_TOO_LARGE);
  g_clear_error (&error);

  /* A partial frame, then the end of the stream. */
  const guint8 part[6] = { 0, 0, 0, 10, 0x08, 0x01 };
  g_assert_cmpint (write (sv[0], part, 6), ==, 6);
  shutdown (sv[0], SHUT_WR);
  got = (Gptd__Event *) gptd_frame_read_fd (sv[1], &gptd__event__descriptor, 0, &error);
  g_assert_null (got);
  g_assert_error (error, GPTD_FRAME_ERROR, GPTD_FRAME_ERROR_TRUNCATED);
  g_clear_error (&error);

  /* The end of the stream between frames. */
  got = (Gptd__Event *) gptd_frame_read_fd (sv[1], &gptd__event__descriptor, 0, &error);
  g_assert_null (got);
  g_assert_error (error, GPTD_FRAME_ERROR, GPTD_FRAME_ERROR_CLOSED);
  close (sv[0]);
  close (sv[1]);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/frame/decode/chunkings", test_chunkings);
  g_test_add_func ("/frame/decode/split-everywhere", test_split_everywhere);
  g_test_add_func ("/frame/decode/truncated", test_truncated);
  g_test_add_func ("/frame/decode/oversized", test_oversized);
  g_test_add_func ("/frame/decode/garbage-payload", test_garbage_payload);
  g_test_add_func ("/frame/encode/too-large", test_encode_too_large);
  g_test_add_func ("/frame/fd", test_fd);
  return g_test_run ();
}
