package notifications

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"
)

// The bodies below are written after the shapes documented by Nova
// (doc/notification_samples, nova.notifications.base), Glance
// (glance.notifier.format_image_notification) and oslo.messaging (the
// 2.0 envelope, _context_ keys, str(utcnow()) timestamps).

const (
	serverID = "178b0921-8f85-4257-88b6-2e743b5a975c"
	imageID  = "155d900f-4e14-4e4c-a73d-069cbf4541e6"
)

// versionedPowerOff is a whole instance.power_off.end as nova-compute
// sends it with notification_format=versioned, before enveloping.
const versionedPowerOff = `{
  "message_id": "0ea3b1a4-4e51-4c38-9c4b-0cf2d7bd1a3e",
  "publisher_id": "nova-compute:host1",
  "event_type": "instance.power_off.end",
  "priority": "INFO",
  "timestamp": "2026-12-06 13:31:12.123456",
  "_context_request_id": "req-5b6c791d-5709-4f36-8fbe-c3e02869e35d",
  "_context_user": "fake",
  "_context_project_id": "6f70656e737461636b20342065766572",
  "_context_is_admin": true,
  "_context_roles": ["admin", "member", "reader"],
  "payload": {
    "nova_object.name": "InstanceActionPayload",
    "nova_object.namespace": "nova",
    "nova_object.version": "1.9",
    "nova_object.data": {
      "architecture": "x86_64",
      "availability_zone": "nova",
      "block_devices": [],
      "created_at": "2026-12-06T13:20:00Z",
      "deleted_at": null,
      "display_name": "web-1",
      "display_description": "web-1",
      "fault": null,
      "flavor": {
        "nova_object.name": "FlavorPayload",
        "nova_object.namespace": "nova",
        "nova_object.version": "1.4",
        "nova_object.data": {"flavorid": "a22d5517-147c-4147-a0d1-e698df5cd4e3", "name": "m1.small", "vcpus": 1, "memory_mb": 2048, "root_gb": 20}
      },
      "host": "host1",
      "host_name": "web-1",
      "image_uuid": "155d900f-4e14-4e4c-a73d-069cbf4541e6",
      "ip_addresses": [],
      "kernel_id": "",
      "key_name": null,
      "launched_at": "2026-12-06T13:21:00Z",
      "locked": false,
      "locked_reason": null,
      "metadata": {"phoenix.group": "web", "phoenix.revision": "7"},
      "node": "host1",
      "os_type": null,
      "power_state": "shutdown",
      "progress": 0,
      "ramdisk_id": "",
      "request_id": "req-5b6c791d-5709-4f36-8fbe-c3e02869e35d",
      "reservation_id": "r-npxv0e40",
      "shares": [],
      "state": "stopped",
      "task_state": null,
      "tenant_id": "6f70656e737461636b20342065766572",
      "terminated_at": null,
      "updated_at": "2026-12-06T13:31:12Z",
      "user_id": "fake",
      "uuid": "178b0921-8f85-4257-88b6-2e743b5a975c"
    }
  }
}`

// versionedUpdate is an instance.update from nova-api after a tag was
// set: no top-level state, the state in state_update.
const versionedUpdate = `{
  "message_id": "9f0b9d3c-2f5e-4f1e-9a59-1c7c1a8f4b11",
  "publisher_id": "nova-api:api1",
  "event_type": "instance.update",
  "priority": "INFO",
  "timestamp": "2026-12-06 13:40:00",
  "payload": {
    "nova_object.name": "InstanceUpdatePayload",
    "nova_object.namespace": "nova",
    "nova_object.version": "2.1",
    "nova_object.data": {
      "uuid": "178b0921-8f85-4257-88b6-2e743b5a975c",
      "image_uuid": "155d900f-4e14-4e4c-a73d-069cbf4541e6",
      "task_state": "Powering-Off",
      "tags": ["phoenix:web", "tier:front"],
      "metadata": {"phoenix.group": "web", "weight": 3},
      "state_update": {
        "nova_object.name": "InstanceStateUpdatePayload",
        "nova_object.namespace": "nova",
        "nova_object.version": "1.0",
        "nova_object.data": {"old_state": "active", "state": "ACTIVE", "old_task_state": null, "new_task_state": "powering-off"}
      }
    }
  }
}`

// legacyDelete is a compute.instance.delete.end as nova-compute sends it
// with notification_format=unversioned (or both), on the notifications
// topic.
const legacyDelete = `{
  "message_id": "4c1b5d2e-6a1b-4d0f-8f51-8b6f1b2f0a77",
  "publisher_id": "compute.host1",
  "event_type": "compute.instance.delete.end",
  "priority": "INFO",
  "timestamp": "2026-12-06 13:45:01.000001",
  "_context_request_id": "req-0d7c2f51-4a1b-4a7e-9b3c-5c1f9d1e2a33",
  "payload": {
    "tenant_id": "6f70656e737461636b20342065766572",
    "user_id": "fake",
    "instance_id": "178b0921-8f85-4257-88b6-2e743b5a975c",
    "display_name": "web-1",
    "reservation_id": "r-npxv0e40",
    "hostname": "web-1",
    "instance_type": "m1.small",
    "instance_type_id": 2,
    "instance_flavor_id": "2",
    "architecture": null,
    "memory_mb": 2048,
    "disk_gb": 20,
    "vcpus": 1,
    "root_gb": 20,
    "ephemeral_gb": 0,
    "host": "host1",
    "node": "host1",
    "availability_zone": "nova",
    "cell_name": "",
    "created_at": "2026-12-06 13:20:00+00:00",
    "terminated_at": "2026-12-06T13:45:00.000000",
    "deleted_at": "2026-12-06T13:45:00.000000",
    "launched_at": "2026-12-06T13:21:00.000000",
    "image_ref_url": "http://192.0.2.10:9292/images/155d900f-4e14-4e4c-a73d-069cbf4541e6",
    "os_type": null,
    "kernel_id": "",
    "ramdisk_id": "",
    "state": "deleted",
    "state_description": "",
    "progress": "",
    "access_ip_v4": null,
    "access_ip_v6": null,
    "fixed_ips": [],
    "image_meta": {"base_image_ref": "155d900f-4e14-4e4c-a73d-069cbf4541e6", "min_disk": "20"},
    "metadata": {"phoenix.group": "web"}
  }
}`

// glanceActivate is an image.activate from glance-api.
const glanceActivate = `{
  "message_id": "e3f1c2a0-7b1d-4c9e-8f0a-2b3c4d5e6f70",
  "publisher_id": "image.localhost",
  "event_type": "image.activate",
  "priority": "INFO",
  "timestamp": "2026-12-06 13:31:12.5",
  "_context_request_id": "req-1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d",
  "payload": {
    "id": "155d900f-4e14-4e4c-a73d-069cbf4541e6",
    "name": "ubuntu-24.04-gold-20261206",
    "status": "active",
    "created_at": "2026-12-06T13:30:00Z",
    "updated_at": "2026-12-06T13:31:12Z",
    "min_disk": 0,
    "min_ram": 0,
    "protected": false,
    "checksum": "d41d8cd98f00b204e9800998ecf8427e",
    "owner": "6f70656e737461636b20342065766572",
    "disk_format": "qcow2",
    "container_format": "bare",
    "size": 1048576,
    "virtual_size": null,
    "is_public": false,
    "visibility": "shared",
    "properties": {"os_distro": "ubuntu"},
    "tags": ["gold", "patched"],
    "deleted": false,
    "deleted_at": null
  }
}`

// envelope wraps an oslo message as the messagingv2 driver does.
func envelope(t testing.TB, msg string) []byte {
	t.Helper()
	var compact bytes.Buffer
	if err := json.Compact(&compact, []byte(msg)); err != nil {
		t.Fatalf("test message is not JSON: %v", err)
	}
	b, err := json.Marshal(map[string]string{"oslo.version": "2.0", "oslo.message": compact.String()})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// with replaces the text old (which must occur once) in msg.
func with(t testing.TB, msg, old, new string) string {
	t.Helper()
	if strings.Count(msg, old) != 1 {
		t.Fatalf("%q occurs %d times", old, strings.Count(msg, old))
	}
	return strings.Replace(msg, old, new, 1)
}

func TestDecode(t *testing.T) {
	at := func(s string) time.Time {
		tm, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			t.Fatal(err)
		}
		return tm
	}
	powerOff := Notification{
		EventType: "instance.power_off.end",
		Kind:      KindInstance,
		Publisher: "nova-compute:host1",
		At:        at("2026-12-06T13:31:12.123456Z"),
		MessageID: "0ea3b1a4-4e51-4c38-9c4b-0cf2d7bd1a3e",
		ImageID:   imageID,
		ServerID:  serverID,
		State:     "stopped",
		Metadata:  map[string]string{"phoenix.group": "web", "phoenix.revision": "7"},
	}
	activate := Notification{
		EventType: "image.activate",
		Kind:      KindImage,
		Publisher: "image.localhost",
		At:        at("2026-12-06T13:31:12.5Z"),
		MessageID: "e3f1c2a0-7b1d-4c9e-8f0a-2b3c4d5e6f70",
		ImageID:   imageID,
		State:     "active",
		Tags:      []string{"gold", "patched"},
	}
	legacy := Notification{
		EventType: "compute.instance.delete.end",
		Kind:      KindInstance,
		Publisher: "compute.host1",
		At:        at("2026-12-06T13:45:01.000001Z"),
		MessageID: "4c1b5d2e-6a1b-4d0f-8f51-8b6f1b2f0a77",
		ImageID:   imageID,
		ServerID:  serverID,
		State:     "deleted",
		Metadata:  map[string]string{"phoenix.group": "web"},
	}
	change := func(n Notification, f func(*Notification)) Notification {
		f(&n)
		return n
	}

	tests := []struct {
		name string
		body []byte
		want Notification
	}{
		{"versioned, enveloped", envelope(t, versionedPowerOff), powerOff},
		{"versioned, bare 1.0 message", []byte(versionedPowerOff), powerOff},
		{"versioned update: state from state_update, tags, task state, metadata that is no string",
			envelope(t, versionedUpdate), Notification{
				EventType: "instance.update",
				Kind:      KindInstance,
				Publisher: "nova-api:api1",
				At:        at("2026-12-06T13:40:00Z"),
				MessageID: "9f0b9d3c-2f5e-4f1e-9a59-1c7c1a8f4b11",
				ImageID:   imageID,
				ServerID:  serverID,
				State:     "active",
				TaskState: "powering-off",
				Tags:      []string{"phoenix:web", "tier:front"},
				Metadata:  map[string]string{"phoenix.group": "web", "weight": "3"},
			}},
		{"versioned error event at priority ERROR",
			envelope(t, with(t, with(t, versionedPowerOff, `"instance.power_off.end"`, `"instance.create.error"`), `"priority": "INFO"`, `"priority": "ERROR"`)),
			change(powerOff, func(n *Notification) { n.EventType = "instance.create.error" })},
		{"versioned: null state, image, metadata; no timestamp",
			envelope(t, with(t, with(t, with(t, with(t, versionedPowerOff,
				`"state": "stopped"`, `"state": null`),
				`"image_uuid": "155d900f-4e14-4e4c-a73d-069cbf4541e6"`, `"image_uuid": null`),
				`"metadata": {"phoenix.group": "web", "phoenix.revision": "7"}`, `"metadata": null`),
				`"timestamp": "2026-12-06 13:31:12.123456",`, ``)),
			change(powerOff, func(n *Notification) {
				n.State, n.ImageID, n.Metadata, n.At = "", "", nil, time.Time{}
			})},
		{"unreadable timestamp is no reason to drop the message",
			envelope(t, with(t, versionedPowerOff, `"2026-12-06 13:31:12.123456"`, `"yesterday"`)),
			change(powerOff, func(n *Notification) { n.At = time.Time{} })},
		{"legacy, enveloped", envelope(t, legacyDelete), legacy},
		{"legacy, bare 1.0 message", []byte(legacyDelete), legacy},
		{"legacy: image from image_meta when image_ref_url is null, task state from state_description",
			envelope(t, with(t, with(t, legacyDelete,
				`"image_ref_url": "http://192.0.2.10:9292/images/155d900f-4e14-4e4c-a73d-069cbf4541e6"`, `"image_ref_url": null`),
				`"state_description": ""`, `"state_description": "deleting"`)),
			change(legacy, func(n *Notification) { n.TaskState = "deleting" })},
		{"legacy: image_ref_url that is the bare id",
			envelope(t, with(t, legacyDelete,
				`"http://192.0.2.10:9292/images/155d900f-4e14-4e4c-a73d-069cbf4541e6"`, `"`+imageID+`"`)),
			legacy},
		{"legacy: other event type, no image at all",
			envelope(t, with(t, with(t, with(t, legacyDelete,
				`"compute.instance.delete.end"`, `"compute.instance.power_off.end"`),
				`"image_ref_url": "http://192.0.2.10:9292/images/155d900f-4e14-4e4c-a73d-069cbf4541e6"`, `"image_ref_url": null`),
				`"image_meta": {"base_image_ref": "155d900f-4e14-4e4c-a73d-069cbf4541e6", "min_disk": "20"}`, `"image_meta": {}`)),
			change(legacy, func(n *Notification) { n.EventType, n.ImageID = "compute.instance.power_off.end", "" })},
		{"glance activate", envelope(t, glanceActivate), activate},
		{"glance update", envelope(t, with(t, glanceActivate, `"image.activate"`, `"image.update"`)),
			change(activate, func(n *Notification) { n.EventType = "image.update" })},
		{"glance delete",
			envelope(t, with(t, with(t, with(t, glanceActivate, `"image.activate"`, `"image.delete"`),
				`"status": "active"`, `"status": "deleted"`), `"tags": ["gold", "patched"]`, `"tags": []`)),
			change(activate, func(n *Notification) { n.EventType, n.State, n.Tags = "image.delete", "deleted", nil })},
		{"envelope of a newer minor version",
			bytes.Replace(envelope(t, glanceActivate), []byte(`"2.0"`), []byte(`"2.1"`), 1), activate},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Decode(tt.body)
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Decode\n got %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestDecodeRefuses(t *testing.T) {
	tests := []struct {
		name      string
		body      []byte
		want      error
		eventType string // what the Notification still says
	}{
		{"empty body", nil, ErrMalformed, ""},
		{"not JSON", []byte("hello"), ErrMalformed, ""},
		{"truncated JSON", envelope(t, glanceActivate)[:100], ErrMalformed, ""},
		{"a JSON array", []byte(`[{"event_type": "image.activate"}]`), ErrMalformed, ""},
		{"JSON null", []byte(`null`), ErrMalformed, ""},
		{"oslo.message not a string", []byte(`{"oslo.version": "2.0", "oslo.message": {"event_type": "image.activate"}}`), ErrMalformed, ""},
		{"oslo.message not JSON", []byte(`{"oslo.version": "2.0", "oslo.message": "{\"event_type\": "}`), ErrMalformed, ""},
		{"oslo.version not a string", []byte(`{"oslo.version": 2.0, "oslo.message": "{}"}`), ErrMalformed, ""},
		{"unknown envelope version", bytes.Replace(envelope(t, glanceActivate), []byte(`"2.0"`), []byte(`"3.0"`), 1), ErrMalformed, ""},
		{"no event_type", []byte(`{"publisher_id": "x", "payload": {}}`), ErrMalformed, ""},
		{"event_type not a string", []byte(`{"event_type": 7, "payload": {}}`), ErrMalformed, ""},
		{"instance event without uuid",
			envelope(t, with(t, versionedPowerOff, `"uuid": "178b0921-8f85-4257-88b6-2e743b5a975c"`, `"uuid": null`)),
			ErrMalformed, "instance.power_off.end"},
		{"instance event with an empty uuid",
			envelope(t, with(t, versionedPowerOff, `"uuid": "178b0921-8f85-4257-88b6-2e743b5a975c"`, `"uuid": ""`)),
			ErrMalformed, "instance.power_off.end"},
		{"instance event with a null payload", []byte(`{"event_type": "instance.update", "payload": null}`), ErrMalformed, "instance.update"},
		{"instance event without payload", []byte(`{"event_type": "instance.update"}`), ErrMalformed, "instance.update"},
		{"instance event with a string payload", []byte(`{"event_type": "instance.update", "payload": "boom"}`), ErrMalformed, "instance.update"},
		{"versioned instance event without nova_object.data",
			[]byte(`{"event_type": "instance.update", "payload": {"uuid": "` + serverID + `"}}`), ErrMalformed, "instance.update"},
		{"versioned instance event with nova_object.data a list",
			[]byte(`{"event_type": "instance.update", "payload": {"nova_object.data": []}}`), ErrMalformed, "instance.update"},
		{"legacy instance event without instance_id",
			envelope(t, with(t, legacyDelete, `"instance_id": "178b0921-8f85-4257-88b6-2e743b5a975c",`, ``)),
			ErrMalformed, "compute.instance.delete.end"},
		{"legacy instance event with a numeric instance_id",
			envelope(t, with(t, legacyDelete, `"instance_id": "178b0921-8f85-4257-88b6-2e743b5a975c"`, `"instance_id": 42`)),
			ErrMalformed, "compute.instance.delete.end"},
		{"image event without id",
			envelope(t, with(t, glanceActivate, `"id": "155d900f-4e14-4e4c-a73d-069cbf4541e6",`, ``)),
			ErrMalformed, "image.activate"},

		{"glance upload error, whose payload is a sentence",
			[]byte(`{"event_type": "image.upload", "publisher_id": "image.localhost", "priority": "ERROR", "payload": "Image storage media is full"}`),
			ErrIgnored, "image.upload"},
		{"glance image.create", envelope(t, with(t, glanceActivate, `"image.activate"`, `"image.create"`)), ErrIgnored, "image.create"},
		{"glance member event", []byte(`{"event_type": "image.member.create", "payload": {"image_id": "x", "member_id": "y"}}`), ErrIgnored, "image.member.create"},
		{"nova service.update", []byte(`{"event_type": "service.update", "payload": {"nova_object.data": {}}}`), ErrIgnored, "service.update"},
		{"nova compute.metrics.update", []byte(`{"event_type": "compute.metrics.update", "payload": {}}`), ErrIgnored, "compute.metrics.update"},
		{"nova legacy scheduler event", []byte(`{"event_type": "scheduler.select_destinations.start", "payload": {}}`), ErrIgnored, "scheduler.select_destinations.start"},
		{"an event type that only looks like one", []byte(`{"event_type": "instancex.update", "payload": {}}`), ErrIgnored, "instancex.update"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Decode(tt.body)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Decode = %+v, %v; want an error wrapping %v", got, err, tt.want)
			}
			other := ErrIgnored
			if tt.want == ErrIgnored {
				other = ErrMalformed
			}
			if errors.Is(err, other) {
				t.Errorf("error %v wraps both", err)
			}
			if got.EventType != tt.eventType {
				t.Errorf("EventType = %q, want %q", got.EventType, tt.eventType)
			}
		})
	}
}

// TestDecodeDevcloud decodes the messages captured from the development
// cloud (Nova with notification_format=both, Glance), when they are
// there: every one is a notification Decode can read, and the ones
// Phoenix acts on name their server or image.
func TestDecodeDevcloud(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "devcloud", "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	var bodies []string
	for _, f := range files {
		// The capture's index names each body's exchange and routing key;
		// it is no message.
		if base := strings.ToLower(filepath.Base(f)); strings.Contains(base, "index") || strings.Contains(base, "manifest") || strings.HasPrefix(base, "_") {
			continue
		}
		bodies = append(bodies, f)
	}
	if len(bodies) == 0 {
		t.Skip("no captured messages in testdata/devcloud")
	}
	seen := map[string]int{}
	for _, f := range bodies {
		body, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		n, err := Decode(body)
		switch {
		case errors.Is(err, ErrIgnored):
			seen["ignored "+n.EventType]++
			continue
		case err != nil:
			t.Errorf("%s: %v", f, err)
			continue
		}
		seen[n.EventType]++
		switch n.Kind {
		case KindInstance:
			if n.ServerID == "" {
				t.Errorf("%s: %s without a server id", f, n.EventType)
			}
		case KindImage:
			if n.ImageID == "" {
				t.Errorf("%s: %s without an image id", f, n.EventType)
			}
		default:
			t.Errorf("%s: %s of kind %q", f, n.EventType, n.Kind)
		}
		if n.MessageID == "" || n.Publisher == "" || n.At.IsZero() {
			t.Errorf("%s: %s lacks its message id, publisher or time: %+v", f, n.EventType, n)
		}
	}
	types := make([]string, 0, len(seen))
	for k := range seen {
		types = append(types, k)
	}
	sort.Strings(types)
	for _, k := range types {
		t.Logf("%3d × %s", seen[k], k)
	}
}

func TestImageFromURL(t *testing.T) {
	for ref, want := range map[string]string{
		"":                                     "",
		imageID:                                imageID,
		"http://glance:9292/images/" + imageID: imageID,
		"https://glance/v2/images/" + imageID + "/": imageID,
	} {
		if got := imageFromURL(ref); got != want {
			t.Errorf("imageFromURL(%q) = %q, want %q", ref, got, want)
		}
	}
}

// Settled tells a state reached from a step under way, for the events
// the development cloud published.
func TestSettled(t *testing.T) {
	for _, tc := range []struct {
		n    Notification
		want bool
	}{
		{Notification{Kind: KindInstance, EventType: "instance.create.end", State: "active"}, true},
		{Notification{Kind: KindInstance, EventType: "compute.instance.create.start", State: "building", TaskState: "scheduling"}, false},
		{Notification{Kind: KindInstance, EventType: "instance.update", State: "building", TaskState: "spawning"}, false},
		{Notification{Kind: KindInstance, EventType: "compute.instance.update", State: "active"}, true},
		{Notification{Kind: KindInstance, EventType: "instance.power_off.end", State: "stopped"}, true},
		{Notification{Kind: KindInstance, EventType: "instance.delete.start", State: "active", TaskState: "deleting"}, false},
		{Notification{Kind: KindInstance, EventType: "compute.instance.delete.end", State: "deleted"}, true},
		{Notification{Kind: KindImage, EventType: "image.update", State: "active"}, true},
	} {
		if got := tc.n.Settled(); got != tc.want {
			t.Errorf("%s (%s/%s): settled %v, want %v", tc.n.EventType, tc.n.State, tc.n.TaskState, got, tc.want)
		}
	}
}
