/* fuzz/fuzz-frame.c: the frame decoder and the unpacking of requests, as the
 * daemon reads a client's socket. The first byte says where the rest is cut into
 * two reads; every whole frame is unpacked as a Request. */
#include "config.h"

#include <gptd/frame.h>

#include "gptd.pb-c.h"
#include "fuzz-util.h"

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  fuzz_init_logging ();
  if (size == 0)
    return 0;
  size_t cut = data[0] % size;
  data++, size--;
  cut = MIN (cut, size);
  g_autoptr (GptdFrameDecoder) dec = gptd_frame_decoder_new (1 << 20);
  for (int part = 0; part < 2; part++)
    {
      if (part == 0)
        gptd_frame_decoder_feed (dec, data, cut);
      else
        gptd_frame_decoder_feed (dec, data + cut, size - cut);
      for (;;)
        {
          g_autoptr (GBytes) payload = NULL;
          g_autoptr (GError) error = NULL;
          GptdFrameStatus st = gptd_frame_decoder_next (dec, &payload, &error);
          if (st == GPTD_FRAME_FAILED)
            {
              g_assert (error != NULL);
              return 0;
            }
          if (st != GPTD_FRAME_OK)
            break;
          gsize n;
          const guint8 *p = g_bytes_get_data (payload, &n);
          ProtobufCMessage *msg = gptd_frame_unpack (&gptd__request__descriptor, p, n, NULL);
          if (msg != NULL)
            {
              /* A request packs again as it came, within the frame limit. */
              g_autoptr (GBytes) again = gptd_frame_encode (msg, 0, NULL);
              protobuf_c_message_free_unpacked (msg, NULL);
            }
        }
    }
  g_autoptr (GError) error = NULL;
  gptd_frame_decoder_finish (dec, &error);
  return 0;
}
