package notifications

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Kind is what a notification is about.
type Kind string

const (
	KindImage    Kind = "image"
	KindInstance Kind = "instance"
)

// Notification is what Phoenix takes from one message.
type Notification struct {
	EventType string // as published: "image.activate", "instance.power_off.end", "compute.instance.delete.end"
	Kind      Kind
	Publisher string    // publisher_id, e.g. "nova-compute:host1"
	At        time.Time // the message's timestamp (UTC); zero when absent or unreadable
	MessageID string
	ImageID   string // image events: the image; instance events: the server's image when carried
	ServerID  string // instance events: the instance UUID
	// State is, for instance events, the vm state in lower case
	// ("active", "stopped", "deleted", "error"); for image events, the
	// image's status ("active", "deleted").
	State     string
	TaskState string            // instance events, "" when none
	Tags      []string          // server tags (instance) or image tags (image), when the payload carries them
	Metadata  map[string]string // instance events: the server's metadata, when carried
}

// Settled says whether the notification reports a state reached (a
// server ACTIVE, stopped, gone, in ERROR; an image changed) rather than a
// step under way: a .start event, or an update whose task is still
// running (scheduling, spawning, deleting). Nova sends several of the
// latter for every server it builds or deletes; waking on them costs a
// list each and tells Phoenix nothing it can act on yet.
func (n Notification) Settled() bool {
	if n.Kind != KindInstance {
		return true
	}
	if strings.HasSuffix(n.EventType, ".start") {
		return false
	}
	return !strings.HasSuffix(n.EventType, ".update") || n.TaskState == ""
}

var (
	// ErrMalformed: the body cannot be parsed as an oslo.messaging
	// notification, or an event Phoenix acts on lacks what it needs.
	ErrMalformed = errors.New("malformed notification")
	// ErrIgnored: a well-formed notification of an event type Phoenix
	// does not act on.
	ErrIgnored = errors.New("notification of an event type Phoenix ignores")
)

// imageEvents are the Glance events that can change which image a group
// should run. image.create comes before the image has data and
// image.upload's payload is not an image; activate follows both.
var imageEvents = map[string]bool{
	"image.activate": true,
	"image.update":   true,
	"image.delete":   true,
}

// kindOf says whether Phoenix acts on eventType.
func kindOf(eventType string) (Kind, bool) {
	switch {
	case imageEvents[eventType]:
		return KindImage, true
	case strings.HasPrefix(eventType, "instance."), strings.HasPrefix(eventType, "compute.instance."):
		return KindInstance, true
	}
	return "", false
}

// Decode reads one AMQP message body. Errors wrap ErrMalformed or
// ErrIgnored; with either, the Notification holds what could be read
// (the event type at least, when there was one), for logging.
func Decode(body []byte) (Notification, error) {
	msg, err := unwrap(body)
	if err != nil {
		return Notification{}, err
	}
	eventType, ok := stringField(msg, "event_type")
	if !ok || eventType == "" {
		return Notification{}, malformed("", "no event_type")
	}
	n := Notification{
		EventType: eventType,
		MessageID: optionalString(msg, "message_id"),
		Publisher: optionalString(msg, "publisher_id"),
		At:        parseTimestamp(optionalString(msg, "timestamp")),
	}
	kind, ok := kindOf(eventType)
	if !ok {
		return n, fmt.Errorf("notification %s: %w", shorten(eventType), ErrIgnored)
	}
	n.Kind = kind
	payload, err := object(msg["payload"])
	if err != nil {
		return n, malformed(eventType, "payload: %v", err)
	}
	switch {
	case kind == KindImage:
		err = readImage(&n, payload)
	case strings.HasPrefix(eventType, "compute."):
		err = readLegacyInstance(&n, payload)
	default:
		err = readVersionedInstance(&n, payload)
	}
	return n, err
}

// envelopeMajor is the oslo.messaging envelope version Decode reads:
// 2.x, as oslo's messagingv2 driver writes (oslo itself accepts its own
// major version with any minor version up to its own).
const envelopeMajor = "2"

// unwrap returns the oslo message as a JSON object: the body itself
// (the 1.0 format of the older "messaging" driver), or the JSON string
// in its 2.0 envelope {"oslo.version": "2.0", "oslo.message": "..."}.
func unwrap(body []byte) (map[string]json.RawMessage, error) {
	outer, err := object(body)
	if err != nil {
		return nil, malformed("", "body: %v", err)
	}
	version, hasVersion := outer["oslo.version"]
	inner, hasMessage := outer["oslo.message"]
	if !hasVersion || !hasMessage {
		// Like oslo: without both keys it is no envelope.
		return outer, nil
	}
	var v string
	if err := json.Unmarshal(version, &v); err != nil {
		return nil, malformed("", "oslo.version is not a string")
	}
	if major, _, _ := strings.Cut(v, "."); major != envelopeMajor {
		return nil, malformed("", "oslo.version %s is not %s.x", shorten(v), envelopeMajor)
	}
	var text string
	if err := json.Unmarshal(inner, &text); err != nil {
		return nil, malformed("", "oslo.message is not a string")
	}
	msg, err := object([]byte(text))
	if err != nil {
		return nil, malformed("", "oslo.message: %v", err)
	}
	return msg, nil
}

// readImage takes a Glance image payload (glance.notifier's
// format_image_notification): id, status, tags, name, properties, ...
func readImage(n *Notification, p map[string]json.RawMessage) error {
	id, ok := stringField(p, "id")
	if !ok || id == "" {
		return malformed(n.EventType, "payload has no image id")
	}
	n.ImageID = id
	n.State = strings.ToLower(optionalString(p, "status"))
	n.Tags = stringList(p["tags"])
	return nil
}

// readVersionedInstance takes a Nova versioned payload:
// {"nova_object.name": "InstanceActionPayload", "nova_object.data": {...}},
// where the data carries uuid, state, task_state, image_uuid, tags and
// metadata (tags only in some payloads, any field may be null).
func readVersionedInstance(n *Notification, p map[string]json.RawMessage) error {
	raw, ok := p["nova_object.data"]
	if !ok {
		return malformed(n.EventType, "payload has no nova_object.data")
	}
	data, err := object(raw)
	if err != nil {
		return malformed(n.EventType, "nova_object.data: %v", err)
	}
	uuid, ok := stringField(data, "uuid")
	if !ok || uuid == "" {
		return malformed(n.EventType, "payload has no server uuid")
	}
	n.ServerID = uuid
	n.State = strings.ToLower(optionalString(data, "state"))
	if n.State == "" {
		// InstanceUpdatePayload also says it in its state_update.
		if su, err := object(data["state_update"]); err == nil {
			if d, err := object(su["nova_object.data"]); err == nil {
				n.State = strings.ToLower(optionalString(d, "state"))
			}
		}
	}
	n.TaskState = strings.ToLower(optionalString(data, "task_state"))
	n.ImageID = optionalString(data, "image_uuid")
	n.Tags = stringList(data["tags"])
	n.Metadata = stringMap(data["metadata"])
	return nil
}

// readLegacyInstance takes a Nova legacy (unversioned) payload, built by
// nova.notifications.info_from_instance: instance_id, state (the vm
// state), state_description (the task state, "" when none),
// image_ref_url (a Glance URL ending in the image id, or the bare id, or
// null) and image_meta (the image's properties, with base_image_ref),
// metadata.
func readLegacyInstance(n *Notification, p map[string]json.RawMessage) error {
	id, ok := stringField(p, "instance_id")
	if !ok || id == "" {
		return malformed(n.EventType, "payload has no instance_id")
	}
	n.ServerID = id
	n.State = strings.ToLower(optionalString(p, "state"))
	n.TaskState = strings.ToLower(optionalString(p, "state_description"))
	n.ImageID = imageFromURL(optionalString(p, "image_ref_url"))
	if n.ImageID == "" {
		if meta, err := object(p["image_meta"]); err == nil {
			n.ImageID = optionalString(meta, "base_image_ref")
		}
	}
	n.Tags = stringList(p["tags"])
	n.Metadata = stringMap(p["metadata"])
	return nil
}

// imageFromURL returns the last path segment of a Glance image URL
// ("http://glance:9292/v2/images/<id>"), or ref itself when it is a
// bare id.
func imageFromURL(ref string) string {
	ref = strings.TrimRight(ref, "/")
	if i := strings.LastIndexByte(ref, '/'); i >= 0 {
		ref = ref[i+1:]
	}
	return ref
}

// timestampLayouts: oslo writes str(datetime.utcnow()) ("2026-12-06
// 13:31:12.123456", no fraction when it is zero); some tools write ISO
// 8601. A fraction is accepted after the seconds by every layout.
var timestampLayouts = []string{
	"2006-01-02 15:04:05",
	"2006-01-02T15:04:05",
	time.RFC3339Nano,
}

// parseTimestamp reads an oslo timestamp as UTC; zero when absent or
// unreadable, since nothing Phoenix decides depends on it.
func parseTimestamp(s string) time.Time {
	if s == "" {
		return time.Time{}
	}
	for _, layout := range timestampLayouts {
		if t, err := time.Parse(layout, s); err == nil {
			return t.UTC()
		}
	}
	return time.Time{}
}

// object reads raw as a JSON object; null and other types are errors.
func object(raw []byte) (map[string]json.RawMessage, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return nil, errors.New("missing")
	}
	if raw[0] != '{' {
		return nil, errors.New("not a JSON object")
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, fmt.Errorf("not JSON: %w", err)
	}
	return m, nil
}

// stringField returns m[key] when it is a JSON string.
func stringField(m map[string]json.RawMessage, key string) (string, bool) {
	raw, ok := m[key]
	if !ok {
		return "", false
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", false
	}
	return s, true
}

// optionalString returns m[key] when it is a string, else "" (absent,
// null, or of another type: lenient, for fields Phoenix can do without).
func optionalString(m map[string]json.RawMessage, key string) string {
	s, _ := stringField(m, key)
	return s
}

// stringList reads a JSON array, keeping its strings; nil otherwise.
func stringList(raw json.RawMessage) []string {
	var items []json.RawMessage
	if len(raw) == 0 || json.Unmarshal(raw, &items) != nil || len(items) == 0 {
		return nil
	}
	out := make([]string, 0, len(items))
	for _, it := range items {
		var s string
		if json.Unmarshal(it, &s) == nil {
			out = append(out, s)
		}
	}
	return out
}

// stringMap reads a JSON object of metadata; a value that is not a
// string keeps its JSON text. nil when absent, null or empty.
func stringMap(raw json.RawMessage) map[string]string {
	m, err := object(raw)
	if err != nil || len(m) == 0 {
		return nil
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		var s string
		if json.Unmarshal(v, &s) == nil {
			out[k] = s
		} else {
			out[k] = string(v)
		}
	}
	return out
}

// malformed names the event type (when known) and what was wrong.
func malformed(eventType, format string, args ...any) error {
	what := fmt.Sprintf(format, args...)
	if eventType == "" {
		return fmt.Errorf("notification: %s: %w", what, ErrMalformed)
	}
	return fmt.Errorf("notification %s: %s: %w", shorten(eventType), what, ErrMalformed)
}

// shorten bounds what a message puts into an error or a log line.
func shorten(s string) string {
	const max = 80
	if len(s) > max {
		s = s[:max] + "…"
	}
	return strconv.Quote(s)
}
