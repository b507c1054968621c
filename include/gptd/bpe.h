/* bpe.h: byte-level byte-pair-encoding tokenizer (GPT-2 style).
 *
 * A GptdBpe is an immutable vocabulary: 256 byte tokens, the tokens made by
 * merging pairs of tokens, and special tokens such as <|endoftext|>. It is loaded
 * from OpenAI's encoder.json + vocab.bpe (or the same content named vocab.json +
 * merges.txt, as in a model directory), from a tiktoken .tiktoken rank file, or
 * trained from text with GptdBpeTrainer.
 *
 * Encoding follows tiktoken's `gpt2` encoding exactly: the text is split into
 * pieces by the GPT-2 pre-tokenization pattern
 *
 *   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
 *
 * and each piece is merged byte pair by byte pair, always merging the adjacent
 * pair whose concatenation has the lowest rank (leftmost first on ties). A token's
 * rank is its id. A GptdBpe may be used from several threads at once.
 *
 * Ids are guint32 values; arrays of ids are GArrays of guint32.
 */
#ifndef GPTD_BPE_H
#define GPTD_BPE_H

#include <glib.h>

G_BEGIN_DECLS

/**
 * GPTD_BPE_ERROR:
 *
 * The error domain of the BPE tokenizer; codes are #GptdBpeError values.
 */
#define GPTD_BPE_ERROR (gptd_bpe_error_quark ())
GQuark gptd_bpe_error_quark (void);

/**
 * GptdBpeError:
 * @GPTD_BPE_ERROR_NOT_FOUND: no vocabulary under the given name or path.
 * @GPTD_BPE_ERROR_VOCAB: a vocabulary file is malformed or truncated; the
 *   message names the file and the line.
 * @GPTD_BPE_ERROR_IO: a file could not be read or written.
 * @GPTD_BPE_ERROR_INVALID_UTF8: the text is not valid UTF-8; the message names
 *   the byte offset.
 * @GPTD_BPE_ERROR_SPECIAL_TOKEN: the text contains a special token where special
 *   tokens are not allowed; the message names the byte offset.
 * @GPTD_BPE_ERROR_UNKNOWN_ID: an id outside the vocabulary was decoded.
 * @GPTD_BPE_ERROR_TRAIN: training parameters are invalid.
 *
 * Error codes in the #GPTD_BPE_ERROR domain.
 */
typedef enum {
  GPTD_BPE_ERROR_NOT_FOUND,
  GPTD_BPE_ERROR_VOCAB,
  GPTD_BPE_ERROR_IO,
  GPTD_BPE_ERROR_INVALID_UTF8,
  GPTD_BPE_ERROR_SPECIAL_TOKEN,
  GPTD_BPE_ERROR_UNKNOWN_ID,
  GPTD_BPE_ERROR_TRAIN,
} GptdBpeError;

/* X-macro list of the special-token modes: enum suffix, name in pipelines. */
#define GPTD_BPE_SPECIAL_MODE_MAP(X) \
  X (ERROR, "error")                 \
  X (ALLOWED, "allowed")             \
  X (TEXT, "text")

/**
 * GptdBpeSpecialMode:
 * @GPTD_BPE_SPECIAL_ERROR: text containing a special token's string is an error
 *   (tiktoken's encode() with its defaults).
 * @GPTD_BPE_SPECIAL_ALLOWED: a special token's string becomes its single id
 *   (tiktoken's allowed_special="all").
 * @GPTD_BPE_SPECIAL_TEXT: a special token's string is encoded as ordinary text
 *   (tiktoken's encode_ordinary()).
 *
 * How encoding treats the strings of special tokens found in the text.
 */
typedef enum {
#define GPTD_BPE_SPECIAL_ENUM_(suffix, name) GPTD_BPE_SPECIAL_##suffix,
  GPTD_BPE_SPECIAL_MODE_MAP (GPTD_BPE_SPECIAL_ENUM_)
#undef GPTD_BPE_SPECIAL_ENUM_
} GptdBpeSpecialMode;

/**
 * GptdBpeInvalidMode:
 * @GPTD_BPE_INVALID_ERROR: invalid UTF-8 is an error naming its byte offset.
 * @GPTD_BPE_INVALID_REPLACE: each maximal invalid subsequence is replaced by
 *   U+FFFD, as Unicode recommends (and Python's errors="replace" does).
 *
 * How encoding treats text that is not valid UTF-8.
 */
typedef enum {
  GPTD_BPE_INVALID_ERROR,
  GPTD_BPE_INVALID_REPLACE,
} GptdBpeInvalidMode;

/**
 * gptd_bpe_special_mode_from_string:
 * @name: "error", "allowed" or "text"
 * @mode: (out): the mode
 *
 * Returns: %TRUE when @name names a mode.
 */
gboolean gptd_bpe_special_mode_from_string (const char *name, GptdBpeSpecialMode *mode);

/**
 * gptd_bpe_special_mode_to_string:
 * @mode: a #GptdBpeSpecialMode
 *
 * Returns: (transfer none): the mode's name as pipelines spell it.
 */
const char *gptd_bpe_special_mode_to_string (GptdBpeSpecialMode mode);

/**
 * GptdBpe:
 *
 * An immutable, reference-counted vocabulary; opaque.
 */
typedef struct _GptdBpe GptdBpe;

/**
 * gptd_bpe_load:
 * @vocab: a vocabulary name or path
 * @error: return location for a #GError
 *
 * Loads a vocabulary. @vocab is
 * - a directory holding encoder.json + vocab.bpe, or vocab.json + merges.txt;
 * - a .tiktoken rank file (base64 token, space, rank per line); the special token
 *   <|endoftext|> is added after the highest rank;
 * - a name without a slash, such as "gpt2", looked up as a directory or a
 *   NAME.tiktoken file in $GPTD_DATA_DIR and then in the installed data
 *   directory (GPTD_DATADIR).
 *
 * In encoder.json, tokens that are neither single bytes nor made by a merge in
 * vocab.bpe are special tokens; they must look like <|...|> or [...].
 *
 * Returns: (transfer full): the vocabulary, or %NULL with @error set
 *   (GPTD_BPE_ERROR_NOT_FOUND, _VOCAB naming file and line, or _IO).
 */
GptdBpe *gptd_bpe_load (const char *vocab, GError **error);

/**
 * gptd_bpe_locate:
 * @vocab: a vocabulary name or path, as for gptd_bpe_load()
 * @error: return location for a #GError
 *
 * Finds the vocabulary gptd_bpe_load() would load, without reading it: for
 * checking a pipeline before it runs.
 *
 * Returns: (transfer full): the directory or file, or %NULL with
 *   %GPTD_BPE_ERROR_NOT_FOUND naming the places searched.
 */
char *gptd_bpe_locate (const char *vocab, GError **error);

/**
 * gptd_bpe_ref:
 * @bpe: a #GptdBpe
 *
 * Returns: (transfer full): @bpe, with one more reference.
 */
GptdBpe *gptd_bpe_ref (GptdBpe *bpe);

/**
 * gptd_bpe_unref:
 * @bpe: (nullable): a #GptdBpe
 *
 * Drops a reference; frees the vocabulary when it was the last.
 */
void gptd_bpe_unref (GptdBpe *bpe);

/**
 * gptd_bpe_get_n_vocab:
 * @bpe: a #GptdBpe
 *
 * Returns: one more than the highest id, special tokens included (50257 for GPT-2).
 */
guint gptd_bpe_get_n_vocab (const GptdBpe *bpe);

/**
 * gptd_bpe_get_special_id:
 * @bpe: a #GptdBpe
 * @text: a special token's string, e.g. "<|endoftext|>"
 *
 * Returns: the id of the special token, or -1 when @bpe has no such special token.
 */
gint64 gptd_bpe_get_special_id (const GptdBpe *bpe, const char *text);

/**
 * gptd_bpe_get_token:
 * @bpe: a #GptdBpe
 * @id: a token id
 * @len: (out): the number of bytes
 *
 * Returns: (transfer none) (nullable): the bytes of token @id (not
 *   NUL-terminated, not necessarily UTF-8), or %NULL when @id is not a token.
 */
const guint8 *gptd_bpe_get_token (const GptdBpe *bpe, guint32 id, gsize *len);

/**
 * gptd_bpe_get_source:
 * @bpe: a #GptdBpe
 *
 * Returns: (transfer none): where the vocabulary came from (a path, or
 *   "trained"), for messages.
 */
const char *gptd_bpe_get_source (const GptdBpe *bpe);

/**
 * GptdBpeEncodeOptions:
 * @special: how special tokens in the text are treated.
 * @invalid: how invalid UTF-8 is treated.
 * @base_offset: added to the byte offsets that error messages report, for text
 *   that is a part of a larger document.
 *
 * Options of gptd_bpe_encode(); all-zero means tiktoken's encode() defaults:
 * special tokens and invalid UTF-8 are errors.
 */
typedef struct {
  GptdBpeSpecialMode special;
  GptdBpeInvalidMode invalid;
  guint64 base_offset;
  /*< private >*/
  gpointer reserved[4];
} GptdBpeEncodeOptions;

/**
 * gptd_bpe_encode:
 * @bpe: a #GptdBpe
 * @text: UTF-8 text (need not be NUL-terminated)
 * @len: length of @text in bytes
 * @options: (nullable): options, or %NULL for the defaults
 * @ids: (element-type guint32): array the ids are appended to
 * @error: return location for a #GError
 *
 * Encodes @text exactly as tiktoken's gpt2 encoding does and appends the ids to
 * @ids. On error @ids is left as it was. Texts of 4 GiB or more must be encoded
 * in parts cut with gptd_bpe_split_point().
 *
 * Returns: %TRUE on success; %FALSE with GPTD_BPE_ERROR_INVALID_UTF8 or
 *   GPTD_BPE_ERROR_SPECIAL_TOKEN (each naming a byte offset).
 */
gboolean gptd_bpe_encode (const GptdBpe              *bpe,
                          const char                 *text,
                          gsize                       len,
                          const GptdBpeEncodeOptions *options,
                          GArray                     *ids,
                          GError                    **error);

/**
 * gptd_bpe_split_point:
 * @bpe: a #GptdBpe
 * @text: the text received so far of a longer document
 * @len: length of @text in bytes
 * @special: the special-token mode that will be used to encode it
 *
 * Finds where text that arrives in chunks can be cut: encoding text[0, n) and
 * then the rest of the document separately gives exactly the ids of encoding the
 * whole document, whatever follows @text. The cut is the start of the last
 * pre-tokenizer piece (or earlier, before an incomplete UTF-8 character or the
 * beginning of a special token's string). Carry text[n, len) over to the next chunk.
 *
 * Returns: n, between 0 and @len.
 */
gsize gptd_bpe_split_point (const GptdBpe     *bpe,
                            const char        *text,
                            gsize              len,
                            GptdBpeSpecialMode special);

/**
 * gptd_bpe_decode:
 * @bpe: a #GptdBpe
 * @ids: token ids
 * @n_ids: number of ids
 * @out: string the token bytes are appended to (they need not form valid UTF-8)
 * @error: return location for a #GError
 *
 * Appends the bytes of each token to @out (tiktoken's decode_bytes).
 *
 * Returns: %TRUE on success; %FALSE with GPTD_BPE_ERROR_UNKNOWN_ID (@out is then
 *   left as it was).
 */
gboolean gptd_bpe_decode (const GptdBpe  *bpe,
                          const guint32  *ids,
                          gsize           n_ids,
                          GString        *out,
                          GError        **error);

/**
 * GptdBpeDecoder:
 *
 * Incremental decoder for streaming generation: it emits only complete UTF-8
 * characters, holding back the bytes of a character that the next token may
 * complete. Opaque.
 */
typedef struct _GptdBpeDecoder GptdBpeDecoder;

/**
 * gptd_bpe_decoder_new:
 * @bpe: a #GptdBpe (a reference is taken)
 *
 * Returns: (transfer full): a new decoder.
 */
GptdBpeDecoder *gptd_bpe_decoder_new (GptdBpe *bpe);

/**
 * gptd_bpe_decoder_push:
 * @decoder: a #GptdBpeDecoder
 * @id: the next token id
 * @out: string the newly completed characters are appended to
 * @error: return location for a #GError
 *
 * Feeds one token. Appends to @out every character that is now complete (valid
 * UTF-8); bytes that can no longer become a valid character are appended as
 * U+FFFD.
 *
 * Returns: %TRUE on success; %FALSE with GPTD_BPE_ERROR_UNKNOWN_ID.
 */
gboolean gptd_bpe_decoder_push (GptdBpeDecoder *decoder,
                                guint32         id,
                                GString        *out,
                                GError        **error);

/**
 * gptd_bpe_decoder_finish:
 * @decoder: a #GptdBpeDecoder
 * @out: string the rest is appended to
 *
 * Ends the stream: bytes still held back (an incomplete character) are appended
 * as U+FFFD. The decoder can then be used for a new stream.
 */
void gptd_bpe_decoder_finish (GptdBpeDecoder *decoder, GString *out);

/**
 * gptd_bpe_decoder_free:
 * @decoder: (nullable): a #GptdBpeDecoder
 */
void gptd_bpe_decoder_free (GptdBpeDecoder *decoder);

/**
 * GptdBpeTrainer:
 *
 * Collects pre-tokenized text and trains a byte-level BPE vocabulary. Opaque.
 */
typedef struct _GptdBpeTrainer GptdBpeTrainer;

/**
 * gptd_bpe_trainer_new:
 * @special: (nullable) (array zero-terminated=1): special tokens, e.g.
 *   {"<|endoftext|>", NULL}; each must look like <|...|> or [...]
 * @error: return location for a #GError
 *
 * Creates a trainer. Occurrences of the special tokens in the training text
 * separate it like document boundaries and are not learned from.
 *
 * Returns: (transfer full): a trainer, or %NULL with GPTD_BPE_ERROR_TRAIN.
 */
GptdBpeTrainer *gptd_bpe_trainer_new (const char *const *special, GError **error);

/**
 * gptd_bpe_trainer_add_text:
 * @trainer: a #GptdBpeTrainer
 * @text: UTF-8 text (one document, or a part of one cut at a
 *   gptd_bpe_split_point())
 * @len: length of @text in bytes
 * @error: return location for a #GError
 *
 * Pre-tokenizes @text and counts its pieces.
 *
 * Returns: %TRUE on success; %FALSE with GPTD_BPE_ERROR_INVALID_UTF8.
 */
gboolean gptd_bpe_trainer_add_text (GptdBpeTrainer *trainer,
                                    const char     *text,
                                    gsize           len,
                                    GError        **error);

/**
 * gptd_bpe_trainer_train:
 * @trainer: a #GptdBpeTrainer
 * @vocab_size: the size of the vocabulary to make, special tokens included
 * @error: return location for a #GError
 *
 * Learns merges until the vocabulary has @vocab_size tokens (or no pair occurs
 * twice any more). Ids 0-255 are the bytes in GPT-2's order, then each merge makes
 * the next id, then come the special tokens. Each step merges the most frequent
 * adjacent pair; ties go to the pair with the smaller left id, then the smaller
 * right id. Pair counts are updated incrementally and kept in a priority queue.
 *
 * Returns: (transfer full): the new vocabulary, or %NULL with GPTD_BPE_ERROR_TRAIN.
 */
GptdBpe *gptd_bpe_trainer_train (GptdBpeTrainer *trainer,
                                 guint           vocab_size,
                                 GError        **error);

/**
 * gptd_bpe_trainer_free:
 * @trainer: (nullable): a #GptdBpeTrainer
 */
void gptd_bpe_trainer_free (GptdBpeTrainer *trainer);

/**
 * gptd_bpe_save:
 * @bpe: a #GptdBpe
 * @dir: directory to write encoder.json and vocab.bpe into (created if missing)
 * @error: return location for a #GError
 *
 * Saves the vocabulary in GPT-2's format, so that gptd_bpe_load(@dir) loads it
 * again. Each file is replaced atomically.
 *
 * Returns: %TRUE on success; %FALSE with GPTD_BPE_ERROR_IO.
 */
gboolean gptd_bpe_save (const GptdBpe *bpe, const char *dir, GError **error);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (GptdBpe, gptd_bpe_unref)
G_DEFINE_AUTOPTR_CLEANUP_FUNC (GptdBpeDecoder, gptd_bpe_decoder_free)
G_DEFINE_AUTOPTR_CLEANUP_FUNC (GptdBpeTrainer, gptd_bpe_trainer_free)

G_END_DECLS

#endif /* GPTD_BPE_H */
