/* harness.c: GptdHarness, one stage under test without a pipeline file (see
 * gptd/harness.h).
 *
 * The harness builds the pipeline a test would otherwise write by hand: one feeder
 * stage per input of the stage under test, which pushes the messages queued with
 * gptd_harness_push(), and one collector stage per output, which keeps what it
 * receives (or asks for the epochs queued with gptd_harness_request_epoch() first).
 * Feeders and collectors are stage types of the harness itself, registered beside
 * the plugins in a registry of the harness's own; they find their harness through
 * a process-wide table of live harnesses, keyed by an id given as a parameter. The
 * pipeline is loaded and run by the ordinary loader and runner, so the stage under
 * test sees exactly what it sees in a pipeline.
 */
#include "config.h"

#include <string.h>

#include <gio/gio.h>
#include <glib/gstdio.h>
#include <gptd/harness.h>
#include <gptd/message-json.h>
#include <gptd/pipeline.h>
#include <gptd/registry.h>
#include <gptd/runner.h>

/* A message kept packed: its type and its bytes. */
typedef struct {
  const ProtobufCMessageDescriptor *desc;
  GBytes *bytes;
} Packed;

static void
packed_free (gpointer data)
{
  Packed *p = data;
  g_bytes_unref (p->bytes);
  g_free (p);
}

static Packed *
packed_new (const ProtobufCMessage *msg)
{
  Packed *p = g_new0 (Packed, 1);
  gsize size = protobuf_c_message_get_packed_size (msg);
  guint8 *buf = g_malloc (MAX (size, 1));
  protobuf_c_message_pack (msg, buf);
  p->desc = msg->descriptor;
  p->bytes = g_bytes_new_take (buf, size);
  return p;
}

static ProtobufCMessage *
packed_unpack (const Packed *p)
{
  gsize size;
  const guint8 *data = g_bytes_get_data (p->bytes, &size);
  return protobuf_c_message_unpack (p->desc, NULL, size, data);
}

struct _GptdHarness {
  guint id;
  GptdRegistry *registry;
  const GptdStageType *type;
  char **params;
  char *run_dir;
  gboolean own_run_dir;
  gboolean resume;
  gboolean ran;
  /* The descriptor registering a type given directly, and its table of types. */
  GptdPluginDescriptor *direct;
  const GptdStageType **direct_types;
  GHashTable *inputs;   /* pad name -> GPtrArray of Packed */
  GHashTable *outputs;  /* pad name -> GQueue of Packed */
  GHashTable *epochs;   /* pad name -> GPtrArray of Packed Gptd__EpochRequest */
  GMutex lock;          /* outputs, logs, progress: written by stage threads */
  GPtrArray *logs;      /* NULL-terminated */
  guint n_progress;
  Gptd__Progress *last_progress;
};

/* Deletes the temporary run directory and what the stage wrote there; symbolic
 * links are removed, not followed. */
static void
remove_tree (const char *path)
{
  g_autoptr (GDir) dir = g_dir_open (path, 0, NULL);
  const char *name;
  while (dir && (name = g_dir_read_name (dir)) != NULL)
    {
      g_autofree char *child = g_build_filename (path, name, NULL);
      if (g_file_test (child, G_FILE_TEST_IS_DIR) &&
          !g_file_test (child, G_FILE_TEST_IS_SYMLINK))
        remove_tree (child);
      else
        g_unlink (child);
    }
  g_rmdir (path);
}

/* ---- The table of live harnesses ------------------------------------------ */

static GMutex table_lock;
static GHashTable *table;   /* id -> GptdHarness */
static guint next_id = 1;

static GptdHarness *
table_lookup (const GptdParams *params, GError **error)
{
  guint id = (guint) gptd_params_get_int (params, "harness");
  g_mutex_lock (&table_lock);
  GptdHarness *h = table ? g_hash_table_lookup (table, GUINT_TO_POINTER (id)) : NULL;
  g_mutex_unlock (&table_lock);
  if (h == NULL)
    g_set_error (error, GPTD_STAGE_ERROR, GPTD_STAGE_ERROR_FAILED,
                 "no test harness %u in this process", id);
  return h;
}

/* ---- The harness's stage types ----------------------------------------------- */

typedef struct {
  GptdHarness *harness;
  char *pad;
} Helper;

static const GptdParamSpec helper_params[] = {
  { "harness", GPTD_PARAM_INT, NULL, 0, 0, NULL, "the harness's id", GPTD_PARAM_REQUIRED },
  { "pad", GPTD_PARAM_STRING, NULL, 0, 0, NULL, "the pad of the stage under test",
    GPTD_PARAM_REQUIRED },
  { NULL }
};
static const GptdPadSpec any_pad[] = { { "default", "*", 0 }, { NULL } };
static const GptdPadSpec any_epochs_pad[] = { { "default", "*", GPTD_PAD_EPOCHS }, { NULL } };

static gpointer
helper_create (GptdStageContext *ctx, const GptdParams *params, GError **error)
{
  GptdHarness *h = table_lookup (params, error);
  if (h == NULL)
    return NULL;
  Helper *self = g_new0 (Helper, 1);
  self->harness = h;
  self->pad = g_strdup (gptd_params_get_string (params, "pad"));
  return self;
}

static void
helper_destroy (gpointer data)
{
  Helper *self = data;
  if (self == NULL)
    return;
  g_free (self->pad);
  g_free (self);
}

/* The feeder: pushes the messages queued for one input. */
static gboolean
feeder_run (gpointer data, GptdStageContext *ctx, GError **error)
{
  Helper *self = data;
  GPtrArray *queued = g_hash_table_lookup (self->harness->inputs, self->pad);
  for (guint i = 0; queued && i < queued->len; i++)
    {
      ProtobufCMessage *msg = packed_unpack (queued->pdata[i]);
      g_assert (msg != NULL);
      gboolean ok = gptd_stage_push (ctx, 0, msg, error);
      protobuf_c_message_free_unpacked (msg, NULL);
      if (!ok)
        return FALSE;
    }
  return TRUE;
}

static void
collect (Helper *self, const ProtobufCMessage *msg)
{
  GptdHarness *h = self->harness;
  g_mutex_lock (&h->lock);
  GQueue *q = g_hash_table_lookup (h->outputs, self->pad);
  g_queue_push_tail (q, packed_new (msg));
  g_mutex_unlock (&h->lock);
}

/* The collector: keeps every message. */
static gboolean
collector_process (gpointer data, GptdStageContext *ctx, guint input,
                   const ProtobufCMessage *msg, GError **error)
{
  collect (data, msg);
  return TRUE;
}

/* The epoch collector: sends each queued request, keeps the batches and the
 * EndOfEpoch. */
static gboolean
epoch_collector_run (gpointer data, GptdStageContext *ctx, GError **error)
{
  Helper *self = data;
  GPtrArray *requests = g_hash_table_lookup (self->harness->epochs, self->pad);
  for (guint i = 0; requests && i < requests->len; i++)
    {
      Gptd__EpochRequest *req = (Gptd__EpochRequest *) packed_unpack (requests->pdata[i]);
      gboolean ok = gptd_stage_request_epoch (ctx, 0, req, error);
      protobuf_c_message_free_unpacked (&req->base, NULL);
      if (!ok)
        return FALSE;
      for (;;)
        {
          ProtobufCMessage *msg = NULL;
          GptdPullResult r = gptd_stage_pull (ctx, 0, &msg, error);
          if (r == GPTD_PULL_ERROR)
            return FALSE;
          if (r == GPTD_PULL_END_OF_STREAM)
            return TRUE;
          collect (self, msg);
          protobuf_c_message_free_unpacked (msg, NULL);
          if (r == GPTD_PULL_END_OF_EPOCH)
            break;
        }
    }
  return TRUE;
}

static const GptdStageType feeder_type = {
  .name = "gptd-harness-feeder",
  .description = "Pushes the messages a test queued for one input",
  .params = helper_params,
  .outputs = any_pad,
  .create = helper_create,
  .run = feeder_run,
  .destroy = helper_destroy,
};

static const GptdStageType collector_type = {
  .name = "gptd-harness-collector",
  .description = "Keeps what one output sends",
  .params = helper_params,
  .inputs = any_pad,
  .create = helper_create,
  .process = collector_process,
  .destroy = helper_destroy,
};

static const GptdStageType epoch_collector_type = {
  .name = "gptd-harness-epoch-collector",
  .description = "Asks one output for the epochs a test queued and keeps them",
  .params = helper_params,
  .inputs = any_epochs_pad,
  .create = helper_create,
  .run = epoch_collector_run,
  .destroy = helper_destroy,
};

static const GptdStageType *const harness_types[] = {
  &feeder_type, &collector_type, &epoch_collector_type, NULL
};
static const GptdPluginDescriptor harness_descriptor = {
  GPTD_PLUGIN_ABI_MAJOR, GPTD_PLUGIN_ABI_MINOR, "gptd-harness",
  "The stages a test harness wraps around the stage under test", PACKAGE_VERSION, "MIT",
  harness_types, { NULL }
};

/* ---- Creating ---------------------------------------------------------------- */

static const GptdPadSpec *
find_pad (const GptdPadSpec *pads, const char *name)
{
  for (const GptdPadSpec *p = pads; p && p->name; p++)
    if (strcmp (p->name, name) == 0)
      return p;
  return NULL;
}

static GptdHarness *
harness_new (GptdRegistry *registry, const GptdStageType *type, const char *const *params,
             GError **error)
{
  g_autoptr (GptdRegistry) owned = registry;
  if (!gptd_registry_add_descriptor (registry, &harness_descriptor, "(harness)", error))
    return NULL;

  /* The keys are checked here, to report them as the loader would, without the
   * pipeline around them. */
  g_autofree char *cwd = g_get_current_dir ();
  g_autoptr (GptdParams) checked = gptd_params_new (type, params, cwd, error);
  if (checked == NULL)
    return NULL;
  if (type->check && !type->check (checked, error))
    return NULL;

  GptdHarness *h = g_new0 (GptdHarness, 1);
  h->registry = g_steal_pointer (&owned);
  h->type = type;
  h->params = g_strdupv ((char **) params);
  g_mutex_init (&h->lock);
  h->inputs = g_hash_table_new_full (g_str_hash, g_str_equal, g_free,
                                     (GDestroyNotify) g_ptr_array_unref);
  h->outputs = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  h->epochs = g_hash_table_new_full (g_str_hash, g_str_equal, g_free,
                                     (GDestroyNotify) g_ptr_array_unref);
  for (const GptdPadSpec *p = type->outputs; p && p->name; p++)
    g_hash_table_insert (h->outputs, g_strdup (p->name), g_queue_new ());
  h->logs = g_ptr_array_new_with_free_func (g_free);
  g_ptr_array_add (h->logs, NULL);

  g_mutex_lock (&table_lock);
  if (table == NULL)
    table = g_hash_table_new (NULL, NULL);
  h->id = next_id++;
  g_hash_table_insert (table, GUINT_TO_POINTER (h->id), h);
  g_mutex_unlock (&table_lock);
  return h;
}

GptdHarness *
gptd_harness_new (const char *type_name, const char *const *params, GError **error)
{
  g_return_val_if_fail (type_name != NULL, NULL);
  GptdRegistry *registry = gptd_registry_new ();
  if (!gptd_registry_scan (registry, error))
    {
      gptd_registry_free (registry);
      return NULL;
    }
  const GptdStageType *type = gptd_registry_lookup (registry, type_name);
  if (type == NULL)
    {
      const char *near = gptd_registry_suggest (registry, type_name);
      g_set_error (error, GPTD_REGISTRY_ERROR, GPTD_REGISTRY_ERROR_NOT_FOUND,
                   "no stage type '%s' in the plugins of GPTD_PLUGIN_PATH and %s%s%s%s",
                   type_name, GPTD_PLUGINDIR, near ? " (did you mean '" : "",
                   near ? near : "", near ? "'?)" : "");
      gptd_registry_free (registry);
      return NULL;
    }
  return harness_new (registry, type, params, error);
}

GptdHarness *
gptd_harness_new_for_type (const GptdStageType *type, const char *const *params,
                           GError **error)
{
  g_return_val_if_fail (type != NULL, NULL);
  GptdRegistry *registry = gptd_registry_new ();
  /* The registry keeps pointing at the descriptor: it lives as long as the harness. */
  g_autofree const GptdStageType **types = g_new0 (const GptdStageType *, 2);
  types[0] = type;
  g_autofree GptdPluginDescriptor *direct = g_new0 (GptdPluginDescriptor, 1);
  *direct = (GptdPluginDescriptor){ GPTD_PLUGIN_ABI_MAJOR, GPTD_PLUGIN_ABI_MINOR, "test",
                                    "A stage type under test", PACKAGE_VERSION, "MIT",
                                    types, { NULL } };
  if (!gptd_registry_add_descriptor (registry, direct, "(test)", error))
    {
      gptd_registry_free (registry);
      return NULL;
    }
  GptdHarness *h = harness_new (registry, type, params, error);
  if (h == NULL)
    return NULL;
  h->direct = g_steal_pointer (&direct);
  h->direct_types = g_steal_pointer (&types);
  return h;
}

void
gptd_harness_free (GptdHarness *h)
{
  if (h == NULL)
    return;
  g_mutex_lock (&table_lock);
  g_hash_table_remove (table, GUINT_TO_POINTER (h->id));
  g_mutex_unlock (&table_lock);
  gptd_registry_free (h->registry);
  g_free (h->direct);
  g_free (h->direct_types);
  g_strfreev (h->params);
  if (h->own_run_dir && h->run_dir)
    remove_tree (h->run_dir);
  g_free (h->run_dir);
  g_hash_table_unref (h->inputs);
  GHashTableIter iter;
  gpointer value;
  g_hash_table_iter_init (&iter, h->outputs);
  while (g_hash_table_iter_next (&iter, NULL, &value))
    g_queue_free_full (value, packed_free);
  g_hash_table_unref (h->outputs);
  g_hash_table_unref (h->epochs);
  g_ptr_array_unref (h->logs);
  if (h->last_progress)
    protobuf_c_message_free_unpacked (&h->last_progress->base, NULL);
  g_mutex_clear (&h->lock);
  g_free (h);
}

void
gptd_harness_message_free (GptdHarnessMessage *message)
{
  if (message)
    protobuf_c_message_free_unpacked (message, NULL);
}

void
gptd_harness_set_run_dir (GptdHarness *h, const char *run_dir)
{
  g_return_if_fail (h != NULL && run_dir != NULL && !h->ran);
  if (h->own_run_dir && h->run_dir)
    remove_tree (h->run_dir);
  g_free (h->run_dir);
  h->run_dir = g_strdup (run_dir);
  h->own_run_dir = FALSE;
}

const GptdPluginDescriptor *
gptd_harness_get_plugin (GptdHarness *h)
{
  g_return_val_if_fail (h != NULL, NULL);
  return gptd_registry_lookup_plugin (h->registry, h->type->name, NULL);
}

const char *
gptd_harness_get_run_dir (GptdHarness *h)
{
  g_return_val_if_fail (h != NULL, NULL);
  if (h->run_dir == NULL)
    {
      g_autoptr (GError) error = NULL;
      h->run_dir = g_dir_make_tmp ("gptd-harness-XXXXXX", &error);
      if (h->run_dir == NULL)
        g_error ("gptd harness: cannot make a temporary run directory: %s", error->message);
      h->own_run_dir = TRUE;
    }
  return h->run_dir;
}

void
gptd_harness_set_resume (GptdHarness *h, gboolean resume)
{
  g_return_if_fail (h != NULL && !h->ran);
  h->resume = resume;
}

/* ---- Feeding and collecting -------------------------------------------------- */

gboolean
gptd_harness_push (GptdHarness *h, const char *input, const ProtobufCMessage *message)
{
  g_return_val_if_fail (h != NULL && input != NULL && message != NULL && !h->ran, FALSE);
  const GptdPadSpec *pad = find_pad (h->type->inputs, input);
  if (pad == NULL)
    {
      g_critical ("gptd harness: stage type %s has no input '%s'", h->type->name, input);
      return FALSE;
    }
  if (strcmp (pad->message_type, "*") != 0 &&
      strcmp (pad->message_type, message->descriptor->name) != 0)
    {
      g_critical ("gptd harness: input '%s' of stage type %s takes %s, not %s", input,
                  h->type->name, pad->message_type, message->descriptor->name);
      return FALSE;
    }
  GPtrArray *queued = g_hash_table_lookup (h->inputs, input);
  if (queued == NULL)
    {
      queued = g_ptr_array_new_with_free_func (packed_free);
      g_hash_table_insert (h->inputs, g_strdup (input), queued);
    }
  g_ptr_array_add (queued, packed_new (message));
  return TRUE;
}

void
gptd_harness_request_epoch (GptdHarness *h, const char *output,
                            const Gptd__EpochRequest *request)
{
  g_return_if_fail (h != NULL && output != NULL && request != NULL && !h->ran);
  if (find_pad (h->type->outputs, output) == NULL)
    {
      g_critical ("gptd harness: stage type %s has no output '%s'", h->type->name, output);
      return;
    }
  GPtrArray *requests = g_hash_table_lookup (h->epochs, output);
  if (requests == NULL)
    {
      requests = g_ptr_array_new_with_free_func (packed_free);
      g_hash_table_insert (h->epochs, g_strdup (output), requests);
    }
  g_ptr_array_add (requests, packed_new (&request->base));
}

static void
on_event (const Gptd__Event *event, gpointer user_data)
{
  GptdHarness *h = user_data;
  g_mutex_lock (&h->lock);
  if (event->body_case == GPTD__EVENT__BODY_LOG &&
      strcmp (event->log->stage, h->type->name) == 0)
    {
      g_autofree char *level = gptd_enum_json_name (&gptd__log_level__descriptor,
                                                    event->log->level);
      h->logs->pdata[h->logs->len - 1] =
        g_strdup_printf ("%s: %s", level ? level : "?", event->log->message);
      g_ptr_array_add (h->logs, NULL);
    }
  else if (event->body_case == GPTD__EVENT__BODY_PROGRESS &&
           strcmp (event->progress->stage, h->type->name) == 0)
    {
      h->n_progress++;
      if (h->last_progress)
        protobuf_c_message_free_unpacked (&h->last_progress->base, NULL);
      Packed *copy = packed_new (&event->progress->base);
      h->last_progress = (Gptd__Progress *) packed_unpack (copy);
      packed_free (copy);
    }
  g_mutex_unlock (&h->lock);
}

/* The pipeline around the stage under test, named after its type. */
static char *
harness_pipeline (GptdHarness *h)
{
  const char *name = h->type->name;
  g_autoptr (GKeyFile) kf = g_key_file_new ();
  g_key_file_set_string (kf, "pipeline", "name", "harness");
  g_autofree char *group = g_strdup_printf ("stage %s", name);
  g_key_file_set_string (kf, group, "type", name);
  for (guint i = 0; h->params && h->params[i]; i++)
    {
      const char *eq = strchr (h->params[i], '=');
      g_autofree char *key = g_strndup (h->params[i], eq - h->params[i]);
      g_key_file_set_string (kf, group, key, eq + 1);
    }
  for (const GptdPadSpec *p = h->type->inputs; p && p->name; p++)
    {
      if ((p->flags & GPTD_PAD_OPTIONAL) && !g_hash_table_contains (h->inputs, p->name))
        continue;
      g_autofree char *feeder = g_strdup_printf ("gptd-harness-in-%s", p->name);
      g_autofree char *fgroup = g_strdup_printf ("stage %s", feeder);
      g_key_file_set_string (kf, fgroup, "type", feeder_type.name);
      g_key_file_set_uint64 (kf, fgroup, "harness", h->id);
      g_key_file_set_string (kf, fgroup, "pad", p->name);
      g_autofree char *key = strcmp (p->name, "default") == 0 ?
        g_strdup ("input") : g_strdup_printf ("input.%s", p->name);
      g_key_file_set_string (kf, group, key, feeder);
    }
  for (const GptdPadSpec *p = h->type->outputs; p && p->name; p++)
    {
      g_autofree char *cgroup = g_strdup_printf ("stage gptd-harness-out-%s", p->name);
      g_key_file_set_string (kf, cgroup, "type",
                             g_hash_table_contains (h->epochs, p->name) ?
                             epoch_collector_type.name : collector_type.name);
      g_key_file_set_uint64 (kf, cgroup, "harness", h->id);
      g_key_file_set_string (kf, cgroup, "pad", p->name);
      g_autofree char *link = strcmp (p->name, "default") == 0 ?
        g_strdup (name) : g_strdup_printf ("%s.%s", name, p->name);
      g_key_file_set_string (kf, cgroup, "input", link);
    }
  return g_key_file_to_data (kf, NULL, NULL);
}

gboolean
gptd_harness_run (GptdHarness *h, GError **error)
{
  g_return_val_if_fail (h != NULL, FALSE);
  g_return_val_if_fail (!h->ran, FALSE);
  h->ran = TRUE;
  g_autofree char *text = harness_pipeline (h);
  g_autofree char *cwd = g_get_current_dir ();
  g_autofree char *filename = g_build_filename (cwd, "harness.pipeline", NULL);
  g_autoptr (GptdPipeline) pipeline = gptd_pipeline_load_data (h->registry, text, -1,
                                                               filename, NULL, NULL, error);
  if (pipeline == NULL)
    return FALSE;
  g_autoptr (GptdRunner) runner = gptd_runner_new (pipeline, gptd_harness_get_run_dir (h),
                                                   on_event, h);
  gptd_runner_set_resume (runner, h->resume);
  g_autoptr (GError) local = NULL;
  if (gptd_runner_run (runner, &local))
    return TRUE;
  /* The runner names the stage; the stage under test is the only one that fails. */
  g_autofree char *prefix = g_strdup_printf ("stage %s: ", h->type->name);
  const char *message = local->message;
  if (g_str_has_prefix (message, prefix))
    message += strlen (prefix);
  g_set_error_literal (error, local->domain, local->code, message);
  return FALSE;
}

guint
gptd_harness_get_n_outputs (GptdHarness *h, const char *output)
{
  g_return_val_if_fail (h != NULL && output != NULL, 0);
  g_mutex_lock (&h->lock);
  GQueue *q = g_hash_table_lookup (h->outputs, output);
  guint n = q ? q->length : 0;
  g_mutex_unlock (&h->lock);
  return n;
}

GptdHarnessMessage *
gptd_harness_pull (GptdHarness *h, const char *output)
{
  g_return_val_if_fail (h != NULL && output != NULL, NULL);
  g_mutex_lock (&h->lock);
  GQueue *q = g_hash_table_lookup (h->outputs, output);
  Packed *p = q ? g_queue_pop_head (q) : NULL;
  g_mutex_unlock (&h->lock);
  if (q == NULL)
    g_critical ("gptd harness: stage type %s has no output '%s'", h->type->name, output);
  if (p == NULL)
    return NULL;
  ProtobufCMessage *msg = packed_unpack (p);
  packed_free (p);
  return msg;
}

const char *const *
gptd_harness_get_logs (GptdHarness *h)
{
  g_return_val_if_fail (h != NULL, NULL);
  return (const char *const *) h->logs->pdata;
}

guint
gptd_harness_get_n_progress (GptdHarness *h)
{
  g_return_val_if_fail (h != NULL, 0);
  return h->n_progress;
}

const Gptd__Progress *
gptd_harness_get_last_progress (GptdHarness *h)
{
  g_return_val_if_fail (h != NULL, NULL);
  return h->last_progress;
}
