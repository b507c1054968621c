/* lib/io/frame.c: length-prefixed protobuf frames (4-byte big-endian length and
 * the packed message): encoding, an incremental decoder for event-loop readers,
 * and blocking read/write on file descriptors for clients and workers.
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include <gptd/frame.h>

#include <errno.h>
#include <string.h>
#include <unistd.h>

G_DEFINE_QUARK (gptd-frame-error-quark, gptd_frame_error)

static gsize
effective_max (gsize max_size)
{
  return (max_size == 0 || max_size > GPTD_FRAME_MAX_SIZE) ? GPTD_FRAME_MAX_SIZE : max_size;
}

static guint32
read_be32 (const guint8 *p)
{
  return ((guint32) p[0] << 24) | ((guint32) p[1] << 16) | ((guint32) p[2] << 8) | (guint32) p[3];
}

static void
write_be32 (guint8 *p, guint32 v)
{
  p[0] = (guint8) (v >> 24);
  p[1] = (guint8) (v >> 16);
  p[2] = (guint8) (v >> 8);
  p[3] = (guint8) v;
}

GBytes *
gptd_frame_encode (const ProtobufCMessage *msg, gsize max_size, GError **error)
{
  g_return_val_if_fail (msg != NULL, NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  gsize limit = effective_max (max_size);
  gsize packed = protobuf_c_message_get_packed_size (msg);
  if (packed > limit)
    {
      g_set_error (error, GPTD_FRAME_ERROR, GPTD_FRAME_ERROR_TOO_LARGE,
                   "A %s message of %" G_GSIZE_FORMAT " bytes is over the frame limit of %"
                   G_GSIZE_FORMAT " bytes", msg->descriptor->name, packed, limit);
      return NULL;
    }
  guint8 *buf = g_malloc (GPTD_FRAME_HEADER_SIZE + packed);
  write_be32 (buf, (guint32) packed);
  gsize written = protobuf_c_message_pack (msg, buf + GPTD_FRAME_HEADER_SIZE);
  g_assert (written == packed);
  return g_bytes_new_take (buf, GPTD_FRAME_HEADER_SIZE + packed);
}

ProtobufCMessage *
gptd_frame_unpack (const ProtobufCMessageDescriptor *descriptor,
                   const guint8                     *payload,
                   gsize                             length,
                   GError                          **error)
{
  g_return_val_if_fail (descriptor != NULL, NULL);
  g_return_val_if_fail (payload != NULL || length == 0, NULL);

  static const guint8 empty[1] = { 0 };
  ProtobufCMessage *msg = protobuf_c_message_unpack (descriptor, NULL, length,
                                                     length ? payload : empty);
  if (msg == NULL)
    g_set_error (error, GPTD_FRAME_ERROR, GPTD_FRAME_ERROR_MALFORMED,
                 "A frame of %" G_GSIZE_FORMAT " bytes is not a valid %s message",
                 length, descriptor->name);
  return msg;
}

/* ---- Incremental decoder ------------------------------------------------------ */

struct _GptdFrameDecoder {
  GByteArray *buf;     /* fed bytes; buf->data[start..] not yet consumed */
  gsize       start;
  gsize       max_size;
  guint64     offset;  /* stream offset of buf->data[start] */
  GError     *failure; /* set once the stream is unusable */
};

GptdFrameDecoder *
gptd_frame_decoder_new (gsize max_size)
{
  GptdFrameDecoder *d = g_new0 (GptdFrameDecoder, 1);
  d->buf = g_byte_array_new ();
  d->max_size = effective_max (max_size);
  return d;
}

void
gptd_frame_decoder_free (GptdFrameDecoder *decoder)
{
  if (decoder == NULL)
    return;
  g_byte_array_unref (decoder->buf);
  g_clear_error (&decoder->failure);
  g_free (decoder);
}

void
gptd_frame_decoder_feed (GptdFrameDecoder *decoder, const void *data, gsize length)
{
  g_return_if_fail (decoder != NULL);
  g_return_if_fail (data != NULL || length == 0);

  if (decoder->failure != NULL || length == 0)
    return;
  /* Drop the consumed prefix before growing, so the buffer holds at most one
   * partial frame plus the new chunk. */
  if (decoder->start > 0)
    {
      g_byte_array_remove_range (decoder->buf, 0, (guint) decoder->start);
      decoder->start = 0;
    }
  g_byte_array_append (decoder->buf, data, (guint) length);
}

GptdFrameStatus
gptd_frame_decoder_next (GptdFrameDecoder *decoder, GBytes **payload, GError **error)
{
  g_return_val_if_fail (decoder != NULL, GPTD_FRAME_FAILED);
  g_return_val_if_fail (payload != NULL, GPTD_FRAME_FAILED);

  *payload = NULL;
  if (decoder->failure != NULL)
    {
      if (error != NULL)
        *error = g_error_copy (decoder->failure);
      return GPTD_FRAME_FAILED;
    }

  gsize avail = decoder->buf->len - decoder->start;
  if (avail < GPTD_FRAME_HEADER_SIZE)
    return GPTD_FRAME_NEED_MORE;

  const guint8 *p = decoder->buf->data + decoder->start;
  guint32 len = read_be32 (p);
  if (len > decoder->max_size)
    {
      g_set_error (&decoder->failure, GPTD_FRAME_ERROR, GPTD_FRAME_ERROR_TOO_LARGE,
                   "The frame at byte %" G_GUINT64_FORMAT " announces %u bytes, over the "
                   "limit of %" G_GSIZE_FORMAT " bytes", decoder->offset, len,
                   decoder->max_size);
      /* Nothing more will be read from this stream. */
      g_byte_array_set_size (decoder->buf, 0);
      decoder->start = 0;
      if (error != NULL)
        *error = g_error_copy (decoder->failure);
      return GPTD_FRAME_FAILED;
    }
  if (avail - GPTD_FRAME_HEADER_SIZE < len)
    return GPTD_FRAME_NEED_MORE;

  *payload = g_bytes_new (p + GPTD_FRAME_HEADER_SIZE, len);
  decoder->start += GPTD_FRAME_HEADER_SIZE + len;
  decoder->offset += GPTD_FRAME_HEADER_SIZE + len;
  if (decoder->start == decoder->buf->len)
    {
      g_byte_array_set_size (decoder->buf, 0);
      decoder->start = 0;
    }
  return GPTD_FRAME_OK;
}

gboolean
gptd_frame_decoder_finish (GptdFrameDecoder *decoder, GError **error)
{
  g_return_val_if_fail (decoder != NULL, FALSE);

  if (decoder->failure != NULL)
    {
      if (error != NULL)
        *error = g_error_copy (decoder->failure);
      return FALSE;
    }
  gsize left = decoder->buf->len - decoder->start;
  if (left > 0)
    {
      g_set_error (error, GPTD_FRAME_ERROR, GPTD_FRAME_ERROR_TRUNCATED,
                   "The stream ended inside the frame at byte %" G_GUINT64_FORMAT
                   " (%" G_GSIZE_FORMAT " bytes of it received)", decoder->offset, left);
      return FALSE;
    }
  return TRUE;
}

guint64
gptd_frame_decoder_get_offset (const GptdFrameDecoder *decoder)
{
  g_return_val_if_fail (decoder != NULL, 0);
  return decoder->offset;
}

gsize
gptd_frame_decoder_get_buffered (const GptdFrameDecoder *decoder)
{
  g_return_val_if_fail (decoder != NULL, 0);
  return decoder->buf->len - decoder->start;
}

/* ---- Blocking file descriptor I/O --------------------------------------------- */

static gboolean
write_all (int fd, const guint8 *data, gsize length, GError **error)
{
  while (length > 0)
    {
      ssize_t n = write (fd, data, length);
      if (n < 0)
        {
          if (errno == EINTR)
            continue;
          int saved = errno;
          g_set_error (error, GPTD_FRAME_ERROR, GPTD_FRAME_ERROR_IO,
                       "Writing a frame failed: %s", g_strerror (saved));
          return FALSE;
        }
      data += n;
      length -= (gsize) n;
    }
  return TRUE;
}

/* Reads exactly @length bytes; returns how many were read before end of stream
 * (less than @length only at the end), or -1 with @error set. */
static gssize
read_all (int fd, guint8 *data, gsize length, GError **error)
{
  gsize got = 0;
  while (got < length)
    {
      ssize_t n = read (fd, data + got, length - got);
      if (n < 0)
        {
          if (errno == EINTR)
            continue;
          int saved = errno;
          g_set_error (error, GPTD_FRAME_ERROR, GPTD_FRAME_ERROR_IO,
                       "Reading a frame failed: %s", g_strerror (saved));
          return -1;
        }
      if (n == 0)
        break;
      got += (gsize) n;
    }
  return (gssize) got;
}

gboolean
gptd_frame_write_fd (int fd, const ProtobufCMessage *msg, GError **error)
{
  g_return_val_if_fail (fd >= 0, FALSE);
  g_return_val_if_fail (msg != NULL, FALSE);

  g_autoptr (GBytes) frame = gptd_frame_encode (msg, 0, error);
  if (frame == NULL)
    return FALSE;
  gsize size;
  const guint8 *data = g_bytes_get_data (frame, &size);
  return write_all (fd, data, size, error);
}

ProtobufCMessage *
gptd_frame_read_fd (int                               fd,
                    const ProtobufCMessageDescriptor *descriptor,
                    gsize                             max_size,
                    GError                          **error)
{
  g_return_val_if_fail (fd >= 0, NULL);
  g_return_val_if_fail (descriptor != NULL, NULL);

  guint8 header[GPTD_FRAME_HEADER_SIZE];
  gssize n = read_all (fd, header, sizeof header, error);
  if (n < 0)
    return NULL;
  if (n == 0)
    {
      g_set_error (error, GPTD_FRAME_ERROR, GPTD_FRAME_ERROR_CLOSED,
                   "The connection was closed");
      return NULL;
    }
  if ((gsize) n < sizeof header)
    {
      g_set_error (error, GPTD_FRAME_ERROR, GPTD_FRAME_ERROR_TRUNCATED,
                   "The stream ended inside a frame header (%" G_GSSIZE_FORMAT " of 4 bytes)", n);
      return NULL;
    }
  guint32 len = read_be32 (header);
  gsize limit = effective_max (max_size);
  if (len > limit)
    {
      g_set_error (error, GPTD_FRAME_ERROR, GPTD_FRAME_ERROR_TOO_LARGE,
                   "A frame announces %u bytes, over the limit of %" G_GSIZE_FORMAT " bytes",
                   len, limit);
      return NULL;
    }
  g_autofree guint8 *payload = g_malloc (len ? len : 1);
  n = read_all (fd, payload, len, error);
  if (n < 0)
    return NULL;
  if ((gsize) n < len)
    {
      g_set_error (error, GPTD_FRAME_ERROR, GPTD_FRAME_ERROR_TRUNCATED,
                   "The stream ended inside a frame (%" G_GSSIZE_FORMAT " of %u bytes)", n, len);
      return NULL;
    }
  return gptd_frame_unpack (descriptor, payload, len, error);
}
