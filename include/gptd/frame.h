/* gptd/frame.h: length-prefixed protobuf frames.
 *
 * Control messages (Request, Response, Event) travel on the daemon's Unix socket
 * and on the pipe between the daemon and its workers as frames: a 4-byte
 * big-endian payload length followed by the packed message. A frame whose length
 * is over a fixed maximum is refused before any of its payload is buffered.
 *
 * Reading is incremental: a GptdFrameDecoder takes the bytes as they arrive, in
 * chunks of any size (one libuv read may hold half a header, or three frames and a
 * bit of a fourth), and hands out whole payloads in order. Writing and blocking
 * reads on plain file descriptors are provided for clients and workers, which do
 * not run an event loop.
 *
 * Errors are reported in the GPTD_FRAME_ERROR domain.
 */
#pragma once

#include <glib.h>
#include <protobuf-c/protobuf-c.h>

G_BEGIN_DECLS

/**
 * GPTD_FRAME_HEADER_SIZE:
 *
 * The size of a frame header: the payload length as 4 big-endian bytes.
 */
#define GPTD_FRAME_HEADER_SIZE 4

/**
 * GPTD_FRAME_MAX_SIZE:
 *
 * The default and largest allowed payload size of a frame (16 MiB).
 */
#define GPTD_FRAME_MAX_SIZE (16u * 1024u * 1024u)

/**
 * GPTD_FRAME_ERROR:
 *
 * The error domain of frame encoding and decoding.
 */
#define GPTD_FRAME_ERROR (gptd_frame_error_quark ())
GQuark gptd_frame_error_quark (void);

/**
 * GptdFrameError:
 * @GPTD_FRAME_ERROR_TOO_LARGE: a frame's length is over the maximum.
 * @GPTD_FRAME_ERROR_MALFORMED: a payload is not a valid packed message of the
 *   expected type.
 * @GPTD_FRAME_ERROR_TRUNCATED: the stream ended inside a frame.
 * @GPTD_FRAME_ERROR_IO: reading or writing the file descriptor failed.
 * @GPTD_FRAME_ERROR_CLOSED: the peer closed the stream between frames.
 *
 * Error codes of the %GPTD_FRAME_ERROR domain.
 */
typedef enum {
  GPTD_FRAME_ERROR_TOO_LARGE,
  GPTD_FRAME_ERROR_MALFORMED,
  GPTD_FRAME_ERROR_TRUNCATED,
  GPTD_FRAME_ERROR_IO,
  GPTD_FRAME_ERROR_CLOSED,
} GptdFrameError;

/**
 * gptd_frame_encode:
 * @msg: the message to pack
 * @max_size: the largest payload allowed, 0 for %GPTD_FRAME_MAX_SIZE
 * @error: return location for a #GError
 *
 * Packs @msg into a frame: the 4-byte big-endian length, then the packed bytes.
 *
 * Returns: (transfer full): the frame, or %NULL with %GPTD_FRAME_ERROR_TOO_LARGE
 *   when the packed message is over @max_size
 */
GBytes *gptd_frame_encode (const ProtobufCMessage *msg, gsize max_size, GError **error);

/**
 * gptd_frame_unpack:
 * @descriptor: the expected message type
 * @payload: the payload of one frame (without its header)
 * @length: the length of @payload
 * @error: return location for a #GError
 *
 * Unpacks one frame payload. Free the result with
 * protobuf_c_message_free_unpacked().
 *
 * Returns: (transfer full): the message, or %NULL with
 *   %GPTD_FRAME_ERROR_MALFORMED
 */
ProtobufCMessage *gptd_frame_unpack (const ProtobufCMessageDescriptor *descriptor,
                                     const guint8                     *payload,
                                     gsize                             length,
                                     GError                          **error);

/**
 * GptdFrameDecoder:
 *
 * An incremental frame decoder; opaque.
 */
typedef struct _GptdFrameDecoder GptdFrameDecoder;

/**
 * GptdFrameStatus:
 * @GPTD_FRAME_NEED_MORE: no whole frame is buffered yet.
 * @GPTD_FRAME_OK: a whole frame was returned.
 * @GPTD_FRAME_FAILED: the stream is unusable (an oversized length); the error
 *   is set and every later call fails the same way.
 *
 * What gptd_frame_decoder_next() found.
 */
typedef enum {
  GPTD_FRAME_NEED_MORE,
  GPTD_FRAME_OK,
  GPTD_FRAME_FAILED,
} GptdFrameStatus;

/**
 * gptd_frame_decoder_new:
 * @max_size: the largest payload accepted, 0 for %GPTD_FRAME_MAX_SIZE
 *
 * Returns: (transfer full): a new decoder with nothing buffered
 */
GptdFrameDecoder *gptd_frame_decoder_new (gsize max_size);

/**
 * gptd_frame_decoder_free:
 * @decoder: (nullable): a decoder
 *
 * Frees @decoder and whatever it has buffered.
 */
void gptd_frame_decoder_free (GptdFrameDecoder *decoder);

/**
 * gptd_frame_decoder_feed:
 * @decoder: a decoder
 * @data: the bytes that arrived
 * @length: how many
 *
 * Appends bytes read from the stream. Call gptd_frame_decoder_next() until it
 * stops returning %GPTD_FRAME_OK after each feed, so at most one partial frame is
 * ever buffered. Bytes fed after the decoder failed are dropped.
 */
void gptd_frame_decoder_feed (GptdFrameDecoder *decoder, const void *data, gsize length);

/**
 * gptd_frame_decoder_next:
 * @decoder: a decoder
 * @payload: (out) (transfer full): the next frame's payload, when %GPTD_FRAME_OK
 * @error: return location for a #GError
 *
 * Takes the next whole frame from the buffered bytes. A header announcing a
 * payload over the maximum fails the decoder at once, before the payload is
 * waited for, with %GPTD_FRAME_ERROR_TOO_LARGE naming the length and the byte
 * offset of the frame in the stream.
 *
 * Returns: what was found
 */
GptdFrameStatus gptd_frame_decoder_next (GptdFrameDecoder *decoder,
                                         GBytes          **payload,
                                         GError          **error);

/**
 * gptd_frame_decoder_finish:
 * @decoder: a decoder
 * @error: return location for a #GError
 *
 * Tells the decoder the stream has ended. Call it after draining every frame.
 *
 * Returns: %TRUE when the stream ended between frames; %FALSE with
 *   %GPTD_FRAME_ERROR_TRUNCATED when part of a frame is left over, or with the
 *   decoder's error when it had failed
 */
gboolean gptd_frame_decoder_finish (GptdFrameDecoder *decoder, GError **error);

/**
 * gptd_frame_decoder_get_offset:
 * @decoder: a decoder
 *
 * Returns: the number of stream bytes consumed by the frames returned so far
 */
guint64 gptd_frame_decoder_get_offset (const GptdFrameDecoder *decoder);

/**
 * gptd_frame_decoder_get_buffered:
 * @decoder: a decoder
 *
 * Returns: the number of bytes fed but not yet returned as frames
 */
gsize gptd_frame_decoder_get_buffered (const GptdFrameDecoder *decoder);

/**
 * gptd_frame_write_fd:
 * @fd: a blocking file descriptor
 * @msg: the message to send
 * @error: return location for a #GError
 *
 * Writes @msg as one frame to @fd, retrying short writes and EINTR. Not
 * synchronised: callers that write from several threads hold a lock around it.
 *
 * Returns: %TRUE on success
 */
gboolean gptd_frame_write_fd (int fd, const ProtobufCMessage *msg, GError **error);

/**
 * gptd_frame_read_fd:
 * @fd: a blocking file descriptor
 * @descriptor: the expected message type
 * @max_size: the largest payload accepted, 0 for %GPTD_FRAME_MAX_SIZE
 * @error: return location for a #GError
 *
 * Reads exactly one frame from @fd and unpacks it.
 *
 * Returns: (transfer full): the message, or %NULL with %GPTD_FRAME_ERROR_CLOSED
 *   when the stream ended before a header, %GPTD_FRAME_ERROR_TRUNCATED when it
 *   ended inside a frame, or another %GPTD_FRAME_ERROR code
 */
ProtobufCMessage *gptd_frame_read_fd (int                               fd,
                                      const ProtobufCMessageDescriptor *descriptor,
                                      gsize                             max_size,
                                      GError                          **error);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (GptdFrameDecoder, gptd_frame_decoder_free)

G_END_DECLS
