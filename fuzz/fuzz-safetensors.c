/* fuzz/fuzz-safetensors.c: safetensors files, and the two readers built on them:
 * model weights (into a tiny GPT-2 of two layers, width 8) and training states
 * (into that model and its AdamW). The input is the file. Every tensor a file
 * declares is read as float32 when it opens. */
#include "config.h"

#include <gptd/gpt2-file.h>
#include <gptd/nn.h>
#include <gptd/safetensors.h>

#include "fuzz-util.h"

static GptdGpt *model;
static GptdAdamW *opt;

static void
make_model (void)
{
  GptdGptConfig c = { .n_layer = 2, .n_head = 2, .n_embd = 8, .context_length = 4,
                      .vocab_size = 5, .n_out = 5, .qkv_bias = TRUE, .tie_embeddings = TRUE,
                      .dropout = 0.0f, .layer_norm_epsilon = 1e-5f };
  g_autoptr (GError) error = NULL;
  model = gptd_gpt_new (&c, &error);
  g_assert (model != NULL);
  GptdAdamWParams params;
  gptd_adamw_params_init (&params);
  opt = gptd_adamw_new (model, &params, &error);
  g_assert (opt != NULL);
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  fuzz_init_logging ();
  if (model == NULL)
    make_model ();
  g_autofree char *path = fuzz_write ("fuzz.safetensors", data, size);

  g_autoptr (GError) error = NULL;
  g_autoptr (GptdSafetensors) st = gptd_safetensors_open (path, &error);
  if (st != NULL)
    {
      for (guint i = 0; i < gptd_safetensors_get_n_tensors (st); i++)
        {
          const GptdSafetensorsTensor *t = gptd_safetensors_get_tensor (st, i);
          if (t->n_elements > (1u << 20))
            continue;
          g_autofree float *buf = g_new (float, t->n_elements + 1);
          g_autoptr (GError) e2 = NULL;
          gptd_safetensors_tensor_to_f32 (st, t, buf, &e2);
        }
    }
  else
    g_assert (error != NULL);
  g_clear_error (&error);

  gptd_gpt_dir_load_weights (model, path, &error);
  g_clear_error (&error);
  GptdTrainingInfo info = { 0 };
  if (gptd_training_state_load (path, model, opt, &info, &error))
    {
      g_assert (info.step >= 0 && info.epoch >= 0 && info.batch_index >= 0);
      gptd_training_info_clear (&info);
    }
  return 0;
}
