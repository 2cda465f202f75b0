package trigger

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Event types.
const (
	TypeImagePublished      = "image.published"      // re-resolve image selectors now
	TypeSecurityPatch       = "security.patch"       // rebuild named groups, or all groups using an image, now
	TypeInstanceCompromised = "instance.compromised" // take one server out of traffic, rebuild everything sharing its image+revision
)

// Types lists the event types in the order the documentation gives them.
var types = []string{TypeImagePublished, TypeSecurityPatch, TypeInstanceCompromised}

// Limits on field values.
const (
	maxIDLen     = 128
	maxReasonLen = 255 // characters; it ends up in Nova metadata, whose values stop at 255
	maxNameLen   = 255 // image and server names or IDs
	maxGroupLen  = 40  // as in the configuration
	maxGroups    = 100
)

// Event is one accepted event.
type Event struct {
	// ID names the event: 1 to 128 characters of A-Z a-z 0-9 . _ : -.
	// Sending the same ID again is refused as a replay (409), which makes a
	// retried send safe.
	ID string `json:"id"`
	// Type is one of TypeImagePublished, TypeSecurityPatch and
	// TypeInstanceCompromised.
	Type string `json:"type"`
	// Time is when the sender made the event; optional and informational.
	// (omitzero rather than omitempty: omitempty never leaves out a struct,
	// so a zero time would be sent as year 1.)
	Time time.Time `json:"time,omitzero"`
	// Groups names the groups a security.patch rebuilds.
	Groups []string `json:"groups,omitempty"`
	// Image is, for security.patch, an image ID or name: every group whose
	// current servers run it or whose selector names it is rebuilt. For
	// image.published it is optional and informational.
	Image string `json:"image,omitempty"`
	// Server is the server ID an instance.compromised event is about.
	Server string `json:"server,omitempty"`
	// Servers names, for security.patch, exactly the servers to replace
	// (by ID), instead of groups or an image.
	Servers []string `json:"servers,omitempty"`
	// Urgent, for security.patch, makes the rebuild skip holds,
	// maintenance windows and blockers: a critical CVE is not made to
	// wait. (A compromise never waits.)
	Urgent bool `json:"urgent,omitempty"`
	// Reason is free text such as a CVE id, at most 255 characters;
	// required for security.patch and instance.compromised.
	Reason string `json:"reason,omitempty"`
	// SignedAt is the timestamp the sender signed (its header, to the
	// second), set by the Handler once the signature holds.
	SignedAt time.Time `json:"-"`
}

// At is the moment the event speaks of, as its sender signed it: a rebuild
// it asks for designates the servers created before then, so that a replay
// of a captured event designates only servers that predate the original.
// It is the body's time when that falls within the signed second (Send
// puts it there), and otherwise the end of that second: a server created
// within it is taken to predate the event, since letting a twin of a
// compromised server escape costs more than one rebuild too many. Zero
// when the event was not signed.
func (e Event) At() time.Time {
	switch {
	case e.SignedAt.IsZero():
		return time.Time{}
	case !e.Time.Before(e.SignedAt) && e.Time.Before(e.SignedAt.Add(time.Second)):
		return e.Time
	}
	return e.SignedAt.Add(time.Second)
}

// ParseError says what is wrong with an event body. Syntax is true for a
// body that is not valid JSON (or not an object, or trailing data) — the
// HTTP answer is 400; otherwise (valid JSON, wrong/missing fields) it is
// 422. Field names the JSON field ("groups", "reason"...) when one is at
// fault.
type ParseError struct {
	Syntax  bool
	Field   string
	Message string
}

func (e *ParseError) Error() string {
	if e.Field != "" {
		return "event: " + e.Field + ": " + e.Message
	}
	return "event: " + e.Message
}

func syntaxError(format string, args ...any) *ParseError {
	return &ParseError{Syntax: true, Message: fmt.Sprintf(format, args...)}
}

func fieldError(field, format string, args ...any) *ParseError {
	return &ParseError{Field: field, Message: fmt.Sprintf(format, args...)}
}

// Parse decodes and validates one event body: strict JSON (unknown fields
// refused, exactly one JSON value), type-specific required fields
// (security.patch needs groups or image, at least one; instance.compromised
// needs server; both need reason). Errors: *ParseError.
//
// Strict means more than encoding/json's defaults: field names must match
// exactly (encoding/json would take "ID" for "id"), a field given twice is
// refused rather than the last one winning, and a field that has no meaning
// for the event's type (groups on an instance.compromised event, say) is
// refused rather than ignored, so a sender never believes it narrowed or
// widened an event when it did not.
func Parse(body []byte) (Event, error) {
	fields, err := splitObject(body)
	if err != nil {
		return Event{}, err
	}
	var e Event
	targets := map[string]any{
		"id": &e.ID, "type": &e.Type, "time": &e.Time, "groups": &e.Groups,
		"image": &e.Image, "server": &e.Server, "reason": &e.Reason,
		"servers": &e.Servers, "urgent": &e.Urgent,
	}
	for _, f := range fields {
		if err := json.Unmarshal(f.value, targets[f.name]); err != nil {
			return Event{}, fieldError(f.name, "%s", valueProblem(f.name))
		}
	}
	if err := e.validate(); err != nil {
		return Event{}, err
	}
	return e, nil
}

type rawField struct {
	name  string
	value json.RawMessage
}

// splitObject checks that body is exactly one JSON object and returns its
// members in order, refusing unknown and repeated names.
func splitObject(body []byte) ([]rawField, error) {
	if len(bytes.TrimSpace(body)) == 0 {
		return nil, syntaxError("empty body: expected one JSON object")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	var whole json.RawMessage
	if err := dec.Decode(&whole); err != nil {
		return nil, syntaxError("not valid JSON: %s", jsonProblem(err))
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, syntaxError("trailing data after the JSON object")
	}
	if whole[0] != '{' {
		return nil, syntaxError("expected a JSON object, got %s", jsonKind(whole[0]))
	}
	// whole is valid JSON now: walk its top level.
	dec = json.NewDecoder(bytes.NewReader(whole))
	if _, err := dec.Token(); err != nil { // {
		return nil, syntaxError("not valid JSON: %s", jsonProblem(err))
	}
	var fields []rawField
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, syntaxError("not valid JSON: %s", jsonProblem(err))
		}
		name, _ := tok.(string)
		var value json.RawMessage
		if err := dec.Decode(&value); err != nil {
			return nil, syntaxError("not valid JSON: %s", jsonProblem(err))
		}
		switch {
		case !slices.Contains(fieldNames, name):
			return nil, fieldError(name, "unknown field (known: %s)", strings.Join(fieldNames, ", "))
		case seen[name]:
			return nil, fieldError(name, "given twice")
		}
		seen[name] = true
		fields = append(fields, rawField{name, value})
	}
	return fields, nil
}

var fieldNames = []string{"id", "type", "time", "groups", "image", "server", "servers", "urgent", "reason"}

func jsonKind(first byte) string {
	switch first {
	case '[':
		return "an array"
	case '"':
		return "a string"
	case 'n':
		return "null"
	case 't', 'f':
		return "a boolean"
	default:
		return "a number"
	}
}

// jsonProblem words a decoding error without quoting the body.
func jsonProblem(err error) string {
	var se *json.SyntaxError
	switch {
	case errors.As(err, &se):
		return fmt.Sprintf("%s (at byte %d)", strings.TrimPrefix(se.Error(), "json: "), se.Offset)
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return "unexpected end of input"
	default:
		return strings.TrimPrefix(err.Error(), "json: ")
	}
}

// valueProblem words why a member's value has the wrong shape.
func valueProblem(field string) string {
	switch field {
	case "time":
		return "expected an RFC 3339 time such as \"2026-05-14T09:30:00Z\""
	case "groups":
		return "expected a list of group names"
	case "servers":
		return "expected a list of server IDs"
	case "urgent":
		return "expected true or false"
	default:
		return "expected a string"
	}
}

func (e *Event) validate() error {
	switch {
	case e.ID == "":
		return fieldError("id", "required")
	case len(e.ID) > maxIDLen:
		return fieldError("id", "%d characters, at most %d allowed", len(e.ID), maxIDLen)
	case strings.IndexFunc(e.ID, func(r rune) bool { return !idChar(r) }) >= 0:
		return fieldError("id", "%q: only A-Z a-z 0-9 . _ : - are allowed", e.ID)
	}
	if e.Type == "" {
		return fieldError("type", "required: one of %s", strings.Join(types, ", "))
	}
	if !slices.Contains(types, e.Type) {
		return fieldError("type", "%q is not an event type: expected one of %s", e.Type, strings.Join(types, ", "))
	}
	if len(e.Groups) > maxGroups {
		return fieldError("groups", "%d groups, at most %d allowed", len(e.Groups), maxGroups)
	}
	for i, g := range e.Groups {
		if !validGroup(g) {
			return fieldError("groups", "groups[%d] %q: a group name is 1 to %d lower-case letters, digits and inner dashes", i, g, maxGroupLen)
		}
		if slices.Contains(e.Groups[:i], g) {
			return fieldError("groups", "groups[%d] %q given twice", i, g)
		}
	}
	if len(e.Servers) > maxGroups {
		return fieldError("servers", "%d servers, at most %d allowed", len(e.Servers), maxGroups)
	}
	for i, id := range e.Servers {
		if strings.TrimSpace(id) == "" {
			return fieldError("servers", "servers[%d] is empty: expected a server ID", i)
		}
		if err := checkText("servers", id, maxNameLen); err != nil {
			return err
		}
		if slices.Contains(e.Servers[:i], id) {
			return fieldError("servers", "servers[%d] %q given twice", i, id)
		}
	}
	if e.Type != TypeSecurityPatch {
		switch {
		case len(e.Servers) > 0:
			return fieldError("servers", "not used by %s events (a security.patch names servers to replace)", e.Type)
		case e.Urgent:
			return fieldError("urgent", "not used by %s events (a compromised server never waits)", e.Type)
		}
	}
	if err := checkText("image", e.Image, maxNameLen); err != nil {
		return err
	}
	if err := checkText("server", e.Server, maxNameLen); err != nil {
		return err
	}
	if err := checkText("reason", e.Reason, maxReasonLen); err != nil {
		return err
	}
	hasReason := strings.TrimSpace(e.Reason) != ""
	switch e.Type {
	case TypeImagePublished:
		if len(e.Groups) > 0 {
			return fieldError("groups", "not used by %s events: every group whose selector matches is re-resolved", e.Type)
		}
		if e.Server != "" {
			return fieldError("server", "not used by %s events", e.Type)
		}
	case TypeSecurityPatch:
		if len(e.Servers) > 0 && (len(e.Groups) > 0 || e.Image != "") {
			return fieldError("servers", "names exactly the servers to replace: it goes without groups and image")
		}
		if len(e.Groups) == 0 && e.Image == "" && len(e.Servers) == 0 {
			return fieldError("groups", "%s needs groups, image, both, or servers", e.Type)
		}
		if e.Server != "" {
			return fieldError("server", "not used by %s events (a compromised server is an %s event)", e.Type, TypeInstanceCompromised)
		}
		if !hasReason {
			return fieldError("reason", "required for %s events: it is recorded on every server replaced", e.Type)
		}
	case TypeInstanceCompromised:
		if e.Server == "" {
			return fieldError("server", "required for %s events: the ID of the compromised server", e.Type)
		}
		if len(e.Groups) > 0 {
			return fieldError("groups", "not used by %s events: the server's own group is rebuilt", e.Type)
		}
		if e.Image != "" {
			return fieldError("image", "not used by %s events: the server's own image is rebuilt", e.Type)
		}
		if !hasReason {
			return fieldError("reason", "required for %s events: it is recorded on every server replaced", e.Type)
		}
	}
	return nil
}

func idChar(r rune) bool {
	return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == ':' || r == '-'
}

// validGroup is the configuration's rule for group names:
// ^[a-z0-9]([a-z0-9-]{0,38}[a-z0-9])?$.
func validGroup(g string) bool {
	if g == "" || len(g) > maxGroupLen || g[0] == '-' || g[len(g)-1] == '-' {
		return false
	}
	for _, r := range g {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-') {
			return false
		}
	}
	return true
}

// checkText bounds a free-text field and refuses control characters,
// which have no place in a name or a reason and would garble the logs and
// server metadata the value ends up in.
func checkText(field, s string, limit int) error {
	if n := utf8.RuneCountInString(s); n > limit {
		return fieldError(field, "%d characters, at most %d allowed", n, limit)
	}
	if strings.IndexFunc(s, unicode.IsControl) >= 0 {
		return fieldError(field, "control characters are not allowed")
	}
	return nil
}
