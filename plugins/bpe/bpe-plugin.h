/* bpe-plugin.h: the stage types of the bpe plugin (bpe.so), and the carry
 * buffer that the tokenizer and the trainer use to cut streamed documents only
 * where the pre-tokenizer would. */
#ifndef GPTD_BPE_PLUGIN_H
#define GPTD_BPE_PLUGIN_H

#include <gptd/bpe.h>
#include <gptd/stage.h>

extern const GptdStageType gptd__bpe_tokenizer_type;
extern const GptdStageType gptd__bpe_trainer_type;
extern const GptdStageType gptd__token_writer_type;
extern const GptdStageType gptd__token_reader_type;

/* The part of a document received so far and not yet handed on. */
typedef struct {
  GString *buf;      /* text not yet handed on */
  guint64  offset;   /* offset of buf in its source */
  char    *source;   /* the document's source; NULL between documents */
  char    *label;    /* the document's label, or NULL */
  char    *record;   /* the document's record (JSON object), or NULL */
  guint64  prompt_bytes; /* bytes of the document's prompt; 0 for none */
  gboolean held;     /* a document with a prompt is kept whole: nothing handed on yet */
  guint64  index;
  gboolean open;     /* a document has begun and not ended */
  guint64  n_docs;   /* documents begun */
} GptdBpeCarry;

void gptd_bpe_carry_init (GptdBpeCarry *carry);
void gptd_bpe_carry_clear (GptdBpeCarry *carry);

/* A piece of a document ready to encode. */
typedef struct {
  char    *text;      /* owned by whoever takes the segment */
  gsize    len;
  guint64  offset;    /* in the source */
  gboolean begins;    /* first segment of its document */
  gboolean last;      /* last segment of its document */
  guint64  n_doc;     /* 1-based number of its document in the stream */
  char    *source;    /* owned, like text */
  char    *label;     /* owned; NULL when the document has none */
  guint64  index;
  char    *record;    /* owned; the document's record on its first segment, else NULL */
  guint64  prompt_bytes; /* on the first segment: bytes of the document's prompt */
} GptdBpeSegment;

/* Frees what a segment owns. */
void gptd_bpe_segment_clear (GptdBpeSegment *seg);

/* Feeds @doc; appends to @segments (GptdBpeSegment) what can be encoded now: text
 * cut at gptd_bpe_split_point() (everything when @doc is its source's last chunk).
 * A chunk of another source than the open document's ends that document first.
 * A document with a prompt (prompt_bytes > 0) is handed on whole, as one segment,
 * so that its prompt can be encoded on its own. */
void gptd_bpe_carry_feed (GptdBpeCarry *carry, const GptdBpe *bpe, GptdBpeSpecialMode special,
                          const Gptd__Document *doc, GArray *segments);

/* Ends the open document, if any (the input ended without its last chunk). */
void gptd_bpe_carry_end (GptdBpeCarry *carry, GArray *segments);

#endif /* GPTD_BPE_PLUGIN_H */
