/* gpt2-lora-file.h: the LoRA parts of model directories (gpt2-lora-file.c),
 * used by gpt2-file.c.
 */
#pragma once

#include <gptd/nn.h>

/* Returns @json (a config.json text, consumed) with "lora_rank" and
 * "lora_alpha" added when @model has adapters. */
char *gptd__lora_json_add_keys (char *json, const GptdGpt *model);

/* Reads "lora_rank" and "lora_alpha" of a config.json text; both 0 when
 * absent.  FALSE with GPTD_GPT_FILE_ERROR_CONFIG naming @path and the keys
 * when only one is given or either is out of range. */
gboolean gptd__lora_json_read_keys (const char *json, gsize length,
                                    const char *path, int *rank, float *alpha,
                                    GError **error);

/* Whether @dir is an adapter directory (adapter_config.json and no
 * model.safetensors). */
gboolean gptd__gpt_dir_is_adapter (const char *dir);

/* Loads an adapter directory: its base, the adapters, merged. */
GptdGpt *gptd__gpt_dir_load_adapter (const char *dir, GError **error);
