/* gptd/message-json.h: any protobuf message as JSON.
 *
 * The conversion walks the message's ProtobufCMessageDescriptor, so it works for
 * every message type, including those a plugin defines: each field present is a JSON
 * member named as in the .proto file; scalars become numbers or booleans (64-bit
 * integers stay numbers, except unsigned ones above 2^63 - 1, which JSON readers
 * keeping integers as int64 cannot hold: those become decimal strings, as in
 * protobuf's own JSON mapping), enums their value name in lower case without the enum's own prefix
 * (RUN_STATE_RUNNING is "running", LOG_LEVEL_INFO "info": see gptd_enum_json_name()), strings
 * strings, bytes a string when they are valid UTF-8 and otherwise an object
 * {"base64": "..."}, nested messages objects, repeated fields arrays, and a oneof
 * only its chosen member. Non-finite doubles (NaN losses) become null. proto3 fields
 * holding their default value (0, "", false) are left out unless @all_fields is set.
 *
 * Used by the `dump` stage, the event log (events.jsonl) and every `--json` output.
 */
#ifndef GPTD_MESSAGE_JSON_H
#define GPTD_MESSAGE_JSON_H

#include <glib.h>
#include <json-glib/json-glib.h>
#include <protobuf-c/protobuf-c.h>

G_BEGIN_DECLS

/**
 * gptd_message_to_json:
 * @message: a message
 * @all_fields: include proto3 fields that hold their default value
 *
 * Returns: (transfer full): a JSON object node for @message.
 */
JsonNode *gptd_message_to_json (const ProtobufCMessage *message, gboolean all_fields);

/**
 * gptd_enum_json_name:
 * @desc: an enum descriptor
 * @value: one of its values
 *
 * The JSON name of an enum value: its name in lower case, without the prefix made
 * of the enum's name (RunState's RUN_STATE_SUCCEEDED is "succeeded").
 *
 * Returns: (transfer full) (nullable): the name, or %NULL for an unknown value.
 */
char *gptd_enum_json_name (const ProtobufCEnumDescriptor *desc, int value);

/**
 * gptd_enum_from_json_name:
 * @desc: an enum descriptor
 * @name: a JSON name ("succeeded") or a full value name ("RUN_STATE_SUCCEEDED", as
 *   files written by earlier versions hold)
 *
 * Returns: (nullable): the value, or %NULL for a name of no value.
 */
const ProtobufCEnumValue *gptd_enum_from_json_name (const ProtobufCEnumDescriptor *desc,
                                                    const char *name);

/**
 * gptd_message_to_json_string:
 * @message: a message
 * @all_fields: as for gptd_message_to_json()
 * @pretty: indent the output over several lines
 *
 * Returns: (transfer full): the JSON text; without @pretty it is one line and has
 * no trailing newline.
 */
char *gptd_message_to_json_string (const ProtobufCMessage *message, gboolean all_fields,
                                   gboolean pretty);

G_END_DECLS

#endif /* GPTD_MESSAGE_JSON_H */
