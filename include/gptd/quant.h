/* gptd/quant.h: weight formats for inference: a GPT-2 model's linear layers
 * and output head in bfloat16 or in 8-bit blocks (llama.cpp's Q8_0), made
 * from the float32 weights when a model is loaded or saved once in a model
 * directory of their own (docs/quantization.md describes the file layout).
 *
 * The format is used by the KV-cache path (gptd_gpt_forward_cached()),
 * which is what generation runs; training and gptd_gpt_forward() keep
 * using the float32 weights.  Layer norms, biases and the position
 * embeddings stay float32; so does the token embedding, except that a model
 * whose head is tied to it looks its rows up in the quantized head.
 */
#pragma once

#include <glib.h>

#include <gptd/nn.h>

G_BEGIN_DECLS

/**
 * GPTD_QUANT_ERROR:
 *
 * Error domain of weight formats and quantized model files.  Errors in this
 * domain use #GptdQuantError; reading a file can also give
 * %GPTD_SAFETENSORS_ERROR, %GPTD_GPT_FILE_ERROR or %G_FILE_ERROR.
 */
#define GPTD_QUANT_ERROR (gptd_quant_error_quark ())

/**
 * gptd_quant_error_quark:
 *
 * Returns: the quark of %GPTD_QUANT_ERROR.
 */
GQuark gptd_quant_error_quark (void);

/**
 * GptdQuantError:
 * @GPTD_QUANT_ERROR_FORMAT: an unknown weight format name, or a format
 *   other than the one a quantized directory holds
 * @GPTD_QUANT_ERROR_SHAPE: the model cannot take the format (q8 needs every
 *   input width to be a multiple of 32)
 * @GPTD_QUANT_ERROR_VALUE: a weight is not finite or too large for the
 *   format's scale
 * @GPTD_QUANT_ERROR_FILE: a quantized model file is missing a tensor, has an
 *   unexpected one, a wrong shape, dtype or block count, or bad metadata
 *
 * Error codes of %GPTD_QUANT_ERROR.
 */
typedef enum {
  GPTD_QUANT_ERROR_FORMAT,
  GPTD_QUANT_ERROR_SHAPE,
  GPTD_QUANT_ERROR_VALUE,
  GPTD_QUANT_ERROR_FILE,
} GptdQuantError;

/**
 * GPTD_WEIGHT_FORMAT_MAP:
 *
 * Every weight format: X (ENUM_SUFFIX, "name", bits per weight).
 */
#define GPTD_WEIGHT_FORMAT_MAP(X) \
  X (FP32, "fp32", 32)            \
  X (BF16, "bf16", 16)            \
  X (Q8, "q8", 8.5)

/**
 * GptdWeightFormat:
 *
 * The format of a model's linear layers for inference, one value per entry
 * of %GPTD_WEIGHT_FORMAT_MAP: %GPTD_WEIGHT_FORMAT_FP32 (float32, the
 * default), %GPTD_WEIGHT_FORMAT_BF16 (bfloat16, rounded to nearest even) and
 * %GPTD_WEIGHT_FORMAT_Q8 (blocks of 32 int8 values with one half-precision
 * scale each, 8.5 bits per weight).
 */
typedef enum {
#define GPTD__WEIGHT_FORMAT_ENUM(name, str, bits) GPTD_WEIGHT_FORMAT_##name,
  GPTD_WEIGHT_FORMAT_MAP (GPTD__WEIGHT_FORMAT_ENUM)
#undef GPTD__WEIGHT_FORMAT_ENUM
} GptdWeightFormat;

/**
 * gptd_weight_format_to_string:
 * @format: a format
 *
 * Returns: its name ("fp32", "bf16", "q8")
 */
const char *gptd_weight_format_to_string (GptdWeightFormat format);

/**
 * gptd_weight_format_from_string:
 * @name: a format name
 * @format: (out): the format
 * @error: return location for a #GError
 *
 * Returns: %FALSE with %GPTD_QUANT_ERROR_FORMAT listing the names when
 *   @name is none of them
 */
gboolean gptd_weight_format_from_string (const char       *name,
                                         GptdWeightFormat *format,
                                         GError          **error);

/**
 * gptd_weight_format_bits:
 * @format: a format
 *
 * Returns: the bits stored per weight, scales included (32, 16, 8.5)
 */
double gptd_weight_format_bits (GptdWeightFormat format);

/**
 * gptd_gpt_set_weight_format:
 * @model: a model
 * @format: the format for inference
 * @error: return location for a #GError
 *
 * Makes @model's KV-cache path use @format for every linear layer (the
 * attention's c_attn and c_proj, the MLP's c_fc and c_proj) and the output
 * head, converting the current float32 weights.  %GPTD_WEIGHT_FORMAT_FP32
 * drops the converted copy, and the model computes exactly as before.
 * Changes made to the float32 weights afterwards are not seen until this is
 * called again.
 *
 * Returns: %FALSE with %GPTD_QUANT_ERROR_SHAPE when q8 is asked for a model
 *   whose n_embd is not a multiple of 32, %GPTD_QUANT_ERROR_VALUE for a
 *   weight that is not finite, or %GPTD_NN_ERROR_NO_MEMORY; the model is
 *   then unchanged
 */
gboolean gptd_gpt_set_weight_format (GptdGpt          *model,
                                     GptdWeightFormat  format,
                                     GError          **error);

/**
 * gptd_gpt_get_weight_format:
 * @model: a model
 *
 * Returns: the format its KV-cache path uses
 */
GptdWeightFormat gptd_gpt_get_weight_format (const GptdGpt *model);

/**
 * gptd_gpt_get_weight_bytes:
 * @model: a model
 *
 * Returns: the bytes of weights one decoded token reads: every linear
 *   layer and the head in the model's format, and the float32 layer norms,
 *   biases and one row each of the token and position embeddings
 */
size_t gptd_gpt_get_weight_bytes (const GptdGpt *model);

/**
 * gptd_quant_get_kernels_name:
 *
 * Returns: the name of the matrix kernels this CPU runs: "avx512-vnni",
 *   "avx512", "avx2" or "scalar" (the environment variable
 *   GPTD_QUANT_KERNELS may name a lower one)
 */
const char *gptd_quant_get_kernels_name (void);

/**
 * GPTD_QUANT_METADATA_FORMAT:
 *
 * The metadata key of a quantized model.safetensors that names its format.
 */
#define GPTD_QUANT_METADATA_FORMAT "gptd.weights"

/**
 * gptd_gpt_quant_dir_save:
 * @model: a model whose format is bf16 or q8
 * @dir: the directory to write (created with its parents if needed)
 * @vocab_json: (nullable): a tokenizer vocabulary to copy to vocab.json
 * @merges_txt: (nullable): tokenizer merges to copy to merges.txt
 * @error: return location for a #GError
 *
 * Writes @model's weights in its format as model.safetensors (the layout of
 * docs/quantization.md: the converted matrices output-major, everything
 * else float32), config.json and the tokenizer files, each atomically.
 *
 * Returns: %TRUE on success
 */
gboolean gptd_gpt_quant_dir_save (GptdGpt    *model,
                                  const char *dir,
                                  const char *vocab_json,
                                  const char *merges_txt,
                                  GError    **error);

/**
 * gptd_gpt_dir_get_weight_format:
 * @dir: a model directory
 * @format: (out): the format its model.safetensors holds
 * @error: return location for a #GError
 *
 * Reads the metadata of @dir's model.safetensors: fp32 when it names no
 * format.  A checkpoint root (no config.json) is fp32.
 *
 * Returns: %FALSE when the file cannot be read or names an unknown format
 */
gboolean gptd_gpt_dir_get_weight_format (const char       *dir,
                                         GptdWeightFormat *format,
                                         GError          **error);

/**
 * gptd_gpt_quant_dir_load:
 * @dir: a directory written by gptd_gpt_quant_dir_save()
 * @error: return location for a #GError
 *
 * Loads a quantized model: every stored tensor is checked (names, dtypes,
 * shapes, block counts, scales finite) before any is used.  The model's
 * float32 weights are the dequantized values, and its format is the stored
 * one, with the stored values as they are.
 *
 * Returns: (transfer full): the model, or %NULL with @error set
 */
GptdGpt *gptd_gpt_quant_dir_load (const char *dir, GError **error);

/**
 * gptd_gpt_dir_load_with_format:
 * @dir: a model directory or checkpoint root
 * @format: the format wanted, or -1 for the stored one
 * @error: return location for a #GError
 *
 * Loads an ordinary (float32) directory with gptd_gpt_dir_load() and
 * converts it to @format, or a quantized one with
 * gptd_gpt_quant_dir_load(), which must then hold @format.
 *
 * Returns: (transfer full): the model, or %NULL with @error set
 */
GptdGpt *gptd_gpt_dir_load_with_format (const char *dir, int format,
                                        GError **error);

G_END_DECLS
