/* message-json.c: any protobuf-c message as JSON, by walking its descriptor. */
#include "config.h"

#include <math.h>
#include <string.h>

#include <gptd/message-json.h>

static const ProtobufCFieldDescriptor *
oneof_chosen (const ProtobufCMessage *m, const ProtobufCFieldDescriptor *f)
{
  /* All members of a oneof share the quantifier (the case) offset; the chosen one's
   * number is stored there. */
  guint32 chosen = *(const guint32 *) ((const char *) m + f->quantifier_offset);
  return chosen == f->id ? f : NULL;
}

/* The prefix of an enum's value names: its short name in upper snake case and an
 * underscore (RunState: "RUN_STATE_"). */
static char *
enum_prefix (const ProtobufCEnumDescriptor *desc)
{
  GString *p = g_string_new (NULL);
  for (const char *c = desc->short_name; *c; c++)
    {
      if (g_ascii_isupper (*c) && c != desc->short_name)
        g_string_append_c (p, '_');
      g_string_append_c (p, g_ascii_toupper (*c));
    }
  g_string_append_c (p, '_');
  return g_string_free (p, FALSE);
}

char *
gptd_enum_json_name (const ProtobufCEnumDescriptor *desc, int value)
{
  g_return_val_if_fail (desc != NULL, NULL);
  const ProtobufCEnumValue *ev = protobuf_c_enum_descriptor_get_value (desc, value);
  if (ev == NULL)
    return NULL;
  g_autofree char *prefix = enum_prefix (desc);
  const char *name = ev->name;
  if (g_str_has_prefix (name, prefix) && name[strlen (prefix)] != '\0')
    name += strlen (prefix);
  return g_ascii_strdown (name, -1);
}

const ProtobufCEnumValue *
gptd_enum_from_json_name (const ProtobufCEnumDescriptor *desc, const char *name)
{
  g_return_val_if_fail (desc != NULL && name != NULL, NULL);
  const ProtobufCEnumValue *ev = protobuf_c_enum_descriptor_get_value_by_name (desc, name);
  if (ev != NULL)
    return ev;
  for (unsigned i = 0; i < desc->n_values; i++)
    {
      g_autofree char *j = gptd_enum_json_name (desc, desc->values[i].value);
      if (j != NULL && strcmp (j, name) == 0)
        return &desc->values[i];
    }
  return NULL;
}

static JsonNode *
bytes_node (const ProtobufCBinaryData *b)
{
  if (b->len == 0 || (g_utf8_validate ((const char *) b->data, b->len, NULL) &&
                      memchr (b->data, '\0', b->len) == NULL))
    {
      JsonNode *n = json_node_new (JSON_NODE_VALUE);
      g_autofree char *s = g_strndup ((const char *) b->data, b->len);
      json_node_set_string (n, s);
      return n;
    }
  g_autoptr (JsonBuilder) jb = json_builder_new ();
  json_builder_begin_object (jb);
  json_builder_set_member_name (jb, "base64");
  g_autofree char *enc = g_base64_encode (b->data, b->len);
  json_builder_add_string_value (jb, enc);
  json_builder_end_object (jb);
  return json_builder_get_root (jb);
}

static JsonNode *
double_node (double v)
{
  JsonNode *n = json_node_new (JSON_NODE_VALUE);
  if (isfinite (v))
    json_node_set_double (n, v);
  else
    json_node_init_null (n);
  return n;
}

static JsonNode *
int_node (gint64 v)
{
  JsonNode *n = json_node_new (JSON_NODE_VALUE);
  json_node_set_int (n, v);
  return n;
}

/* An unsigned 64-bit value: a number up to G_MAXINT64 (what json-glib and most
 * readers hold as an integer), a decimal string above. */
static JsonNode *
uint64_node (guint64 v)
{
  if (v <= (guint64) G_MAXINT64)
    return int_node ((gint64) v);
  JsonNode *n = json_node_new (JSON_NODE_VALUE);
  char buf[24];
  g_snprintf (buf, sizeof buf, "%" G_GUINT64_FORMAT, v);
  json_node_set_string (n, buf);
  return n;
}

/* One value of field @f stored at @p. */
static JsonNode *
value_node (const ProtobufCFieldDescriptor *f, const void *p, gboolean all_fields)
{
  switch (f->type)
    {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
      return int_node (*(const gint32 *) p);
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
      return int_node (*(const guint32 *) p);
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
      return int_node (*(const gint64 *) p);
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
      return uint64_node (*(const guint64 *) p);
    case PROTOBUF_C_TYPE_FLOAT:
      return double_node (*(const float *) p);
    case PROTOBUF_C_TYPE_DOUBLE:
      return double_node (*(const double *) p);
    case PROTOBUF_C_TYPE_BOOL:
      {
        JsonNode *n = json_node_new (JSON_NODE_VALUE);
        json_node_set_boolean (n, *(const protobuf_c_boolean *) p);
        return n;
      }
    case PROTOBUF_C_TYPE_ENUM:
      {
        int v = *(const int *) p;
        const ProtobufCEnumValue *ev =
          protobuf_c_enum_descriptor_get_value (f->descriptor, v);
        if (ev == NULL)
          return int_node (v);
        JsonNode *n = json_node_new (JSON_NODE_VALUE);
        g_autofree char *name = gptd_enum_json_name (f->descriptor, v);
        json_node_set_string (n, name);
        return n;
      }
    case PROTOBUF_C_TYPE_STRING:
      {
        const char *s = *(char *const *) p;
        JsonNode *n = json_node_new (JSON_NODE_VALUE);
        json_node_set_string (n, s ? s : "");
        return n;
      }
    case PROTOBUF_C_TYPE_BYTES:
      return bytes_node (p);
    case PROTOBUF_C_TYPE_MESSAGE:
      {
        const ProtobufCMessage *m = *(const ProtobufCMessage *const *) p;
        if (m == NULL)
          return json_node_new (JSON_NODE_NULL);
        return gptd_message_to_json (m, all_fields);
      }
    }
  return json_node_new (JSON_NODE_NULL);
}

static gsize
value_size (const ProtobufCFieldDescriptor *f)
{
  switch (f->type)
    {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
      return 4;
    case PROTOBUF_C_TYPE_FLOAT:
      return sizeof (float);
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
      return 8;
    case PROTOBUF_C_TYPE_DOUBLE:
      return sizeof (double);
    case PROTOBUF_C_TYPE_BOOL:
      return sizeof (protobuf_c_boolean);
    case PROTOBUF_C_TYPE_ENUM:
      return sizeof (int);
    case PROTOBUF_C_TYPE_STRING:
      return sizeof (char *);
    case PROTOBUF_C_TYPE_BYTES:
      return sizeof (ProtobufCBinaryData);
    case PROTOBUF_C_TYPE_MESSAGE:
      return sizeof (ProtobufCMessage *);
    }
  return 0;
}

/* TRUE when a proto3 (LABEL_NONE) field holds its type's zero value. */
static gboolean
is_zero (const ProtobufCFieldDescriptor *f, const void *p)
{
  switch (f->type)
    {
    case PROTOBUF_C_TYPE_STRING:
      {
        const char *s = *(char *const *) p;
        return s == NULL || *s == '\0';
      }
    case PROTOBUF_C_TYPE_BYTES:
      return ((const ProtobufCBinaryData *) p)->len == 0;
    case PROTOBUF_C_TYPE_MESSAGE:
      return *(const void *const *) p == NULL;
    case PROTOBUF_C_TYPE_FLOAT:
      return *(const float *) p == 0.0f && !signbit (*(const float *) p);
    case PROTOBUF_C_TYPE_DOUBLE:
      return *(const double *) p == 0.0 && !signbit (*(const double *) p);
    default:
      {
        static const guint8 zeros[8] = { 0 };
        return memcmp (p, zeros, value_size (f)) == 0;
      }
    }
}

JsonNode *
gptd_message_to_json (const ProtobufCMessage *message, gboolean all_fields)
{
  g_return_val_if_fail (message != NULL, NULL);
  const ProtobufCMessageDescriptor *d = message->descriptor;
  JsonObject *obj = json_object_new ();
  for (unsigned i = 0; i < d->n_fields; i++)
    {
      const ProtobufCFieldDescriptor *f = &d->fields[i];
      const char *base = (const char *) message;
      const void *p = base + f->offset;

      if (f->label == PROTOBUF_C_LABEL_REPEATED)
        {
          size_t n = *(const size_t *) (base + f->quantifier_offset);
          if (n == 0 && !all_fields)
            continue;
          JsonArray *arr = json_array_sized_new (n);
          const char *items = *(char *const *) p;
          gsize sz = value_size (f);
          for (size_t k = 0; k < n; k++)
            json_array_add_element (arr, value_node (f, items + k * sz, all_fields));
          json_object_set_array_member (obj, f->name, arr);
          continue;
        }
      if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF)
        {
          if (oneof_chosen (message, f) == NULL)
            continue;
        }
      else if (f->label == PROTOBUF_C_LABEL_OPTIONAL && f->quantifier_offset &&
               f->type != PROTOBUF_C_TYPE_MESSAGE && f->type != PROTOBUF_C_TYPE_STRING)
        {
          if (!*(const protobuf_c_boolean *) (base + f->quantifier_offset))
            continue;
        }
      else if (f->type == PROTOBUF_C_TYPE_MESSAGE && *(const void *const *) p == NULL)
        continue;
      else if (!all_fields && f->label == PROTOBUF_C_LABEL_NONE && is_zero (f, p))
        continue;
      json_object_set_member (obj, f->name, value_node (f, p, all_fields));
    }
  JsonNode *node = json_node_new (JSON_NODE_OBJECT);
  json_node_take_object (node, obj);
  return node;
}

char *
gptd_message_to_json_string (const ProtobufCMessage *message, gboolean all_fields,
                             gboolean pretty)
{
  g_autoptr (JsonNode) node = gptd_message_to_json (message, all_fields);
  g_return_val_if_fail (node != NULL, NULL);
  return json_to_string (node, pretty);
}
