package notifications

import (
	"errors"
	"testing"
)

// FuzzDecode: Decode never panics, every error says which of the two it
// is, and a decoded instance event names its server, an image event its
// image.
func FuzzDecode(f *testing.F) {
	for _, msg := range []string{versionedPowerOff, versionedUpdate, legacyDelete, glanceActivate} {
		f.Add(envelope(f, msg))
		f.Add([]byte(msg))
	}
	for _, s := range []string{
		``,
		`null`,
		`{}`,
		`{"oslo.version": "2.0", "oslo.message": "{}"}`,
		`{"oslo.version": "2.0", "oslo.message": "{\"event_type\": \"instance.update\", \"payload\": {\"nova_object.data\": {\"uuid\": \"\"}}}"}`,
		`{"event_type": "image.delete", "payload": {"id": null}}`,
		`{"event_type": "compute.instance.update", "payload": {"instance_id": "x", "metadata": [1, 2]}}`,
		`{"event_type": "image.upload", "payload": "full"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		n, err := Decode(body)
		if err != nil {
			if errors.Is(err, ErrMalformed) == errors.Is(err, ErrIgnored) {
				t.Fatalf("error %v wraps neither or both of ErrMalformed and ErrIgnored", err)
			}
			return
		}
		switch n.Kind {
		case KindInstance:
			if n.ServerID == "" {
				t.Fatalf("instance event without a server id: %+v", n)
			}
		case KindImage:
			if n.ImageID == "" {
				t.Fatalf("image event without an image id: %+v", n)
			}
		default:
			t.Fatalf("decoded a notification of kind %q: %+v", n.Kind, n)
		}
		if n.EventType == "" {
			t.Fatalf("decoded a notification without event type: %+v", n)
		}
	})
}
