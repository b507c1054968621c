/* gptd/safetensors.h: reading and writing safetensors files.
 *
 * A safetensors file is an 8-byte little-endian header length N, N bytes of
 * JSON header (an object mapping each tensor name to its dtype, shape and
 * data_offsets, plus an optional "__metadata__" object of strings), then the
 * data area holding every tensor's bytes, little-endian, row-major.
 *
 * The reader maps the file and validates the whole header before anything is
 * used: the header length is bounded (at most GPTD_SAFETENSORS_MAX_HEADER and
 * within the file), the JSON parses, every entry has a known dtype, a shape and
 * data_offsets with begin <= end, its byte size equals the product of its shape
 * times the dtype size, no two tensors overlap, the tensors cover the data area
 * exactly (as the format requires: no holes, nothing after the last tensor),
 * and "__metadata__" maps strings to strings. Each problem has its own error
 * code, and messages name the file and the tensor.
 *
 * The writer collects named tensors and metadata and writes them atomically and
 * durably (see gptd/atomic-file.h). Only little-endian hosts are supported.
 */
#pragma once

#include <glib.h>
#include <stddef.h>

G_BEGIN_DECLS

/**
 * GPTD_SAFETENSORS_ERROR:
 *
 * The error domain of safetensors reading and writing.
 */
#define GPTD_SAFETENSORS_ERROR (gptd_safetensors_error_quark ())

/**
 * gptd_safetensors_error_quark:
 *
 * Returns: the quark of %GPTD_SAFETENSORS_ERROR.
 */
GQuark gptd_safetensors_error_quark (void);

/**
 * GptdSafetensorsError:
 * @GPTD_SAFETENSORS_ERROR_IO: the file cannot be opened, read, mapped or written
 * @GPTD_SAFETENSORS_ERROR_TRUNCATED: the file is shorter than its header length
 *   field, or shorter than the data its tensors need
 * @GPTD_SAFETENSORS_ERROR_HEADER_SIZE: the header length is zero, larger than
 *   %GPTD_SAFETENSORS_MAX_HEADER or beyond the end of the file
 * @GPTD_SAFETENSORS_ERROR_JSON: the header is not a JSON object
 * @GPTD_SAFETENSORS_ERROR_ENTRY: a tensor entry lacks or has a malformed dtype,
 *   shape or data_offsets
 * @GPTD_SAFETENSORS_ERROR_DTYPE: a dtype is unknown, or cannot be converted to
 *   float32 where that is asked for
 * @GPTD_SAFETENSORS_ERROR_OFFSETS: data_offsets have begin > end or lie outside
 *   the data area
 * @GPTD_SAFETENSORS_ERROR_SIZE: a tensor's byte size is not the product of its
 *   shape times its dtype size
 * @GPTD_SAFETENSORS_ERROR_OVERLAP: two tensors share bytes
 * @GPTD_SAFETENSORS_ERROR_GAP: bytes of the data area belong to no tensor
 * @GPTD_SAFETENSORS_ERROR_METADATA: "__metadata__" is not an object of strings
 * @GPTD_SAFETENSORS_ERROR_NOT_FOUND: a tensor asked for is not in the file
 * @GPTD_SAFETENSORS_ERROR_SHAPE: a tensor's shape is not the one asked for
 * @GPTD_SAFETENSORS_ERROR_DUPLICATE: a writer was given two tensors of one name
 *
 * Error codes of %GPTD_SAFETENSORS_ERROR.
 */
typedef enum {
  GPTD_SAFETENSORS_ERROR_IO,
  GPTD_SAFETENSORS_ERROR_TRUNCATED,
  GPTD_SAFETENSORS_ERROR_HEADER_SIZE,
  GPTD_SAFETENSORS_ERROR_JSON,
  GPTD_SAFETENSORS_ERROR_ENTRY,
  GPTD_SAFETENSORS_ERROR_DTYPE,
  GPTD_SAFETENSORS_ERROR_OFFSETS,
  GPTD_SAFETENSORS_ERROR_SIZE,
  GPTD_SAFETENSORS_ERROR_OVERLAP,
  GPTD_SAFETENSORS_ERROR_GAP,
  GPTD_SAFETENSORS_ERROR_METADATA,
  GPTD_SAFETENSORS_ERROR_NOT_FOUND,
  GPTD_SAFETENSORS_ERROR_SHAPE,
  GPTD_SAFETENSORS_ERROR_DUPLICATE,
} GptdSafetensorsError;

/**
 * GPTD_SAFETENSORS_MAX_HEADER:
 *
 * The largest JSON header accepted, in bytes (100 MB, as the reference
 * implementation allows).
 */
#define GPTD_SAFETENSORS_MAX_HEADER ((guint64) 100000000)

/**
 * GPTD_SAFETENSORS_MAX_DIMS:
 *
 * The largest number of dimensions a tensor may have.
 */
#define GPTD_SAFETENSORS_MAX_DIMS 8

/**
 * GPTD_SAFETENSORS_DTYPE_MAP:
 *
 * Every dtype of the safetensors format: X (ENUM_SUFFIX, "NAME", SIZE_IN_BYTES).
 */
#define GPTD_SAFETENSORS_DTYPE_MAP(X) \
  X (BOOL,    "BOOL",    1)           \
  X (U8,      "U8",      1)           \
  X (I8,      "I8",      1)           \
  X (F8_E5M2, "F8_E5M2", 1)           \
  X (F8_E4M3, "F8_E4M3", 1)           \
  X (I16,     "I16",     2)           \
  X (U16,     "U16",     2)           \
  X (F16,     "F16",     2)           \
  X (BF16,    "BF16",    2)           \
  X (I32,     "I32",     4)           \
  X (U32,     "U32",     4)           \
  X (F32,     "F32",     4)           \
  X (F64,     "F64",     8)           \
  X (I64,     "I64",     8)           \
  X (U64,     "U64",     8)

/**
 * GptdSafetensorsDtype:
 *
 * The element type of a tensor, one value per entry of
 * %GPTD_SAFETENSORS_DTYPE_MAP (GPTD_SAFETENSORS_DTYPE_F32, ...). F32, F16,
 * BF16 and F64 can be read as float32; the others are validated but not
 * converted.
 */
typedef enum {
#define GPTD__SAFETENSORS_DTYPE_ENUM(name, str, size) GPTD_SAFETENSORS_DTYPE_##name,
  GPTD_SAFETENSORS_DTYPE_MAP (GPTD__SAFETENSORS_DTYPE_ENUM)
#undef GPTD__SAFETENSORS_DTYPE_ENUM
} GptdSafetensorsDtype;

/**
 * gptd_safetensors_dtype_to_string:
 * @dtype: a dtype
 *
 * Returns: the name of @dtype in safetensors headers ("F32", ...).
 */
const char *gptd_safetensors_dtype_to_string (GptdSafetensorsDtype dtype);

/**
 * gptd_safetensors_dtype_from_string:
 * @str: a dtype name as in safetensors headers
 * @dtype: (out): the dtype
 *
 * Returns: %TRUE when @str names a known dtype.
 */
gboolean gptd_safetensors_dtype_from_string (const char           *str,
                                             GptdSafetensorsDtype *dtype);

/**
 * gptd_safetensors_dtype_size:
 * @dtype: a dtype
 *
 * Returns: the size of one element of @dtype in bytes.
 */
size_t gptd_safetensors_dtype_size (GptdSafetensorsDtype dtype);

/**
 * GptdSafetensorsTensor:
 * @name: the tensor's name
 * @dtype: its element type
 * @n_dims: number of dimensions (0 for a scalar)
 * @shape: its shape, @n_dims entries used
 * @n_elements: product of the shape (1 for a scalar)
 * @data: its bytes in the mapped file; not necessarily aligned to the
 *   element size, so read them with memcpy() or the converting readers
 * @n_bytes: @n_elements times the dtype size
 * @offset: the offset of @data from the start of the data area
 *
 * One tensor of an open file, valid until the file is freed.
 */
typedef struct {
  const char          *name;
  GptdSafetensorsDtype dtype;
  guint                n_dims;
  size_t               shape[GPTD_SAFETENSORS_MAX_DIMS];
  size_t               n_elements;
  const void          *data;
  size_t               n_bytes;
  guint64              offset;
} GptdSafetensorsTensor;

/**
 * GptdSafetensors:
 *
 * An open, validated, memory-mapped safetensors file; opaque.
 */
typedef struct _GptdSafetensors GptdSafetensors;

/**
 * gptd_safetensors_open:
 * @path: the file to open
 * @error: return location for a #GError
 *
 * Maps @path and validates its header and tensor layout completely. The file
 * must not be truncated while it is open (files written by gptd are replaced
 * by rename, which leaves an open mapping intact).
 *
 * Returns: (transfer full): the open file, or %NULL with @error set
 */
GptdSafetensors *gptd_safetensors_open (const char *path, GError **error);

/**
 * gptd_safetensors_free:
 * @st: (nullable): an open file
 *
 * Unmaps and frees @st; tensor data pointers become invalid.
 */
void gptd_safetensors_free (GptdSafetensors *st);

/**
 * gptd_safetensors_get_path:
 * @st: an open file
 *
 * Returns: (transfer none): the path @st was opened from.
 */
const char *gptd_safetensors_get_path (const GptdSafetensors *st);

/**
 * gptd_safetensors_get_n_tensors:
 * @st: an open file
 *
 * Returns: the number of tensors in @st.
 */
guint gptd_safetensors_get_n_tensors (const GptdSafetensors *st);

/**
 * gptd_safetensors_get_tensor:
 * @st: an open file
 * @index: a tensor index, below gptd_safetensors_get_n_tensors()
 *
 * Tensors are numbered in order of their names (strcmp order).
 *
 * Returns: (transfer none): the tensor at @index.
 */
const GptdSafetensorsTensor *gptd_safetensors_get_tensor (const GptdSafetensors *st,
                                                          guint                  index);

/**
 * gptd_safetensors_lookup:
 * @st: an open file
 * @name: a tensor name
 *
 * Returns: (transfer none) (nullable): the tensor called @name, or %NULL.
 */
const GptdSafetensorsTensor *gptd_safetensors_lookup (const GptdSafetensors *st,
                                                      const char            *name);

/**
 * gptd_safetensors_tensor_to_f32:
 * @st: an open file
 * @tensor: a tensor of @st
 * @dst: (out caller-allocates): room for @tensor->n_elements floats
 * @error: return location for a #GError
 *
 * Copies @tensor into @dst as float32, converting F16, BF16 and F64. Other
 * dtypes give %GPTD_SAFETENSORS_ERROR_DTYPE naming the file, tensor and dtype.
 *
 * Returns: %TRUE on success
 */
gboolean gptd_safetensors_tensor_to_f32 (const GptdSafetensors       *st,
                                         const GptdSafetensorsTensor *tensor,
                                         float                       *dst,
                                         GError                     **error);

/**
 * gptd_safetensors_read_f32:
 * @st: an open file
 * @name: a tensor name
 * @n_dims: the expected number of dimensions
 * @shape: (array length=n_dims) (nullable): the expected shape, or %NULL to
 *   accept any shape
 * @dst: (out caller-allocates): room for the tensor as float32 (the product
 *   of @shape when it is given)
 * @error: return location for a #GError
 *
 * Looks up @name, checks its shape and copies it into @dst as float32 (see
 * gptd_safetensors_tensor_to_f32()). A missing tensor gives
 * %GPTD_SAFETENSORS_ERROR_NOT_FOUND, a different shape
 * %GPTD_SAFETENSORS_ERROR_SHAPE; both name the file and the tensor.
 *
 * Returns: %TRUE on success
 */
gboolean gptd_safetensors_read_f32 (const GptdSafetensors *st,
                                    const char            *name,
                                    guint                  n_dims,
                                    const size_t          *shape,
                                    float                 *dst,
                                    GError               **error);

/**
 * gptd_safetensors_get_metadata:
 * @st: an open file
 * @key: a metadata key
 *
 * Returns: (transfer none) (nullable): the value of @key in "__metadata__".
 */
const char *gptd_safetensors_get_metadata (const GptdSafetensors *st,
                                           const char            *key);

/**
 * gptd_safetensors_get_metadata_table:
 * @st: an open file
 *
 * Returns: (transfer none): all of "__metadata__" as a string to string table
 *   (empty when the file has none).
 */
GHashTable *gptd_safetensors_get_metadata_table (const GptdSafetensors *st);

/**
 * gptd_safetensors_f16_to_f32:
 * @src: IEEE binary16 values (little-endian; need not be aligned)
 * @dst: (out caller-allocates): @n floats
 * @n: number of values
 *
 * Converts half-precision values exactly, including subnormals, infinities
 * and NaNs.
 */
void gptd_safetensors_f16_to_f32 (const void *src, float *dst, size_t n);

/**
 * gptd_safetensors_bf16_to_f32:
 * @src: bfloat16 values (little-endian; need not be aligned)
 * @dst: (out caller-allocates): @n floats
 * @n: number of values
 *
 * Converts bfloat16 values exactly.
 */
void gptd_safetensors_bf16_to_f32 (const void *src, float *dst, size_t n);

/**
 * GptdSafetensorsWriter:
 *
 * Collects tensors and metadata to write one safetensors file; opaque.
 */
typedef struct _GptdSafetensorsWriter GptdSafetensorsWriter;

/**
 * gptd_safetensors_writer_new:
 *
 * Returns: (transfer full): an empty writer.
 */
GptdSafetensorsWriter *gptd_safetensors_writer_new (void);

/**
 * gptd_safetensors_writer_free:
 * @writer: (nullable): a writer
 *
 * Frees @writer (not the tensor data it was given).
 */
void gptd_safetensors_writer_free (GptdSafetensorsWriter *writer);

/**
 * gptd_safetensors_writer_add:
 * @writer: a writer
 * @name: the tensor name (not "__metadata__")
 * @dtype: the element type of @data
 * @n_dims: number of dimensions, at most %GPTD_SAFETENSORS_MAX_DIMS
 * @shape: (array length=n_dims): the shape
 * @data: (transfer none): the tensor's bytes, little-endian, row-major; they
 *   are read by gptd_safetensors_writer_write() and must stay valid until then
 *
 * Adds a tensor. Giving a name twice makes gptd_safetensors_writer_write()
 * fail with %GPTD_SAFETENSORS_ERROR_DUPLICATE.
 */
void gptd_safetensors_writer_add (GptdSafetensorsWriter *writer,
                                  const char            *name,
                                  GptdSafetensorsDtype   dtype,
                                  guint                  n_dims,
                                  const size_t          *shape,
                                  const void            *data);

/**
 * gptd_safetensors_writer_add_f32:
 * @writer: a writer
 * @name: the tensor name
 * @n_dims: number of dimensions
 * @shape: (array length=n_dims): the shape
 * @data: (transfer none): the values; must stay valid until written
 *
 * Adds a float32 tensor (see gptd_safetensors_writer_add()).
 */
void gptd_safetensors_writer_add_f32 (GptdSafetensorsWriter *writer,
                                      const char            *name,
                                      guint                  n_dims,
                                      const size_t          *shape,
                                      const float           *data);

/**
 * gptd_safetensors_writer_set_metadata:
 * @writer: a writer
 * @key: a metadata key
 * @value: its value
 *
 * Sets a "__metadata__" entry, replacing an earlier value of @key.
 */
void gptd_safetensors_writer_set_metadata (GptdSafetensorsWriter *writer,
                                           const char            *key,
                                           const char            *value);

/**
 * gptd_safetensors_writer_set_keep_order:
 * @writer: a writer
 * @keep_order: %TRUE to write tensors in the order they were added
 *
 * By default tensors are laid out by decreasing dtype size, then by name, so
 * that every tensor is aligned to its element size; with @keep_order they are
 * laid out in the order they were added.
 */
void gptd_safetensors_writer_set_keep_order (GptdSafetensorsWriter *writer,
                                             gboolean               keep_order);

/**
 * gptd_safetensors_writer_write:
 * @writer: a writer
 * @path: the file to write
 * @error: return location for a #GError
 *
 * Writes the collected tensors and metadata to @path atomically and durably.
 * The header is padded with spaces so that the data area starts at a multiple
 * of 8 bytes. On failure @path keeps its old content. Errors from writing
 * the file are in the %G_FILE_ERROR domain (see gptd/atomic-file.h).
 *
 * Returns: %TRUE on success
 */
gboolean gptd_safetensors_writer_write (GptdSafetensorsWriter *writer,
                                        const char            *path,
                                        GError               **error);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (GptdSafetensors, gptd_safetensors_free)
G_DEFINE_AUTOPTR_CLEANUP_FUNC (GptdSafetensorsWriter, gptd_safetensors_writer_free)

G_END_DECLS
