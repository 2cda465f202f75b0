package rabbittest

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/google/uuid"
)

// Message is the dict an oslo.messaging Notifier sends (before the
// driver envelopes it): message_id, publisher_id, event_type, priority,
// payload, timestamp as str(utcnow()), and the request context as
// _context_ keys. It returns the message and its id.
func Message(eventType, publisher string, payload any) (map[string]any, string) {
	id := uuid.NewString()
	return map[string]any{
		"message_id":          id,
		"publisher_id":        publisher,
		"event_type":          eventType,
		"priority":            "INFO",
		"payload":             payload,
		"timestamp":           time.Now().UTC().Format("2006-01-02 15:04:05.000000"),
		"_context_request_id": "req-" + uuid.NewString(),
		"_context_is_admin":   true,
	}, id
}

// Envelope is msg as the messagingv2 driver puts it on the wire:
// {"oslo.version": "2.0", "oslo.message": "<msg as a JSON string>"}.
func Envelope(t testing.TB, msg map[string]any) []byte {
	t.Helper()
	inner, err := json.Marshal(msg)
	if err != nil {
		t.Fatalf("oslo message: %v", err)
	}
	body, err := json.Marshal(map[string]string{"oslo.version": "2.0", "oslo.message": string(inner)})
	if err != nil {
		t.Fatalf("oslo envelope: %v", err)
	}
	return body
}
