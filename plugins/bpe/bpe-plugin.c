/* bpe-plugin.c: the bpe plugin's entry point — registers bpe-tokenizer,
 * bpe-trainer, token-writer and token-reader. Each stage lives in its own file. */
#include "config.h"

#include <gptd/plugin.h>
#include "bpe-plugin.h"

GPTD_PLUGIN_DEFINE ("bpe", "Byte-pair encoding: tokenizer, vocabulary trainer, token files",
                    PACKAGE_VERSION, "MIT", &gptd__bpe_tokenizer_type, &gptd__bpe_trainer_type,
                    &gptd__token_writer_type, &gptd__token_reader_type);
