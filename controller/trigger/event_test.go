package trigger

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestParseAccepts(t *testing.T) {
	tests := []struct {
		name string
		body string
		want Event
	}{
		{"image published", `{"id":"e1","type":"image.published","image":"ubuntu-24.04-gold"}`,
			Event{ID: "e1", Type: TypeImagePublished, Image: "ubuntu-24.04-gold"}},
		{"image published bare", `{"id":"e1","type":"image.published"}`,
			Event{ID: "e1", Type: TypeImagePublished}},
		{"patch by groups", `{"id":"a.b_c:d-1","type":"security.patch","groups":["web","api"],"reason":"CVE-2026-31337"}`,
			Event{ID: "a.b_c:d-1", Type: TypeSecurityPatch, Groups: []string{"web", "api"}, Reason: "CVE-2026-31337"}},
		{"patch by image", `{"id":"e2","type":"security.patch","image":"3f1e9a52","reason":"CVE-2026-31337"}`,
			Event{ID: "e2", Type: TypeSecurityPatch, Image: "3f1e9a52", Reason: "CVE-2026-31337"}},
		{"urgent patch", `{"id":"e7","type":"security.patch","groups":["web"],"urgent":true,"reason":"CVE-2026-0001"}`,
			Event{ID: "e7", Type: TypeSecurityPatch, Groups: []string{"web"}, Urgent: true, Reason: "CVE-2026-0001"}},
		{"patch of named servers", `{"id":"e8","type":"security.patch","servers":["5c0e","77aa"],"reason":"CVE-2026-0002"}`,
			Event{ID: "e8", Type: TypeSecurityPatch, Servers: []string{"5c0e", "77aa"}, Reason: "CVE-2026-0002"}},
		{"compromised", "\n {\"id\":\"e3\",\"type\":\"instance.compromised\",\"server\":\"5c0e\",\"reason\":\"IDS alert 42\"}\n\n",
			Event{ID: "e3", Type: TypeInstanceCompromised, Server: "5c0e", Reason: "IDS alert 42"}},
		{"time", `{"id":"e4","type":"image.published","time":"2026-05-14T09:30:00Z"}`,
			Event{ID: "e4", Type: TypeImagePublished, Time: time.Date(2026, 5, 14, 9, 30, 0, 0, time.UTC)}},
		{"null fields are absent", `{"id":"e5","type":"image.published","groups":null,"image":null}`,
			Event{ID: "e5", Type: TypeImagePublished}},
		{"reason 255 characters", `{"id":"e6","type":"security.patch","groups":["web"],"reason":"` + strings.Repeat("é", 255) + `"}`,
			Event{ID: "e6", Type: TypeSecurityPatch, Groups: []string{"web"}, Reason: strings.Repeat("é", 255)}},
		{"id 128 characters", `{"id":"` + strings.Repeat("x", 128) + `","type":"image.published"}`,
			Event{ID: strings.Repeat("x", 128), Type: TypeImagePublished}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse([]byte(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			if !sameEvent(got, tt.want) {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestParseRefuses(t *testing.T) {
	tests := []struct {
		name   string
		body   string
		syntax bool
		field  string
		msg    string // a substring of the message
	}{
		{"empty", "", true, "", "empty body"},
		{"spaces", "  \n", true, "", "empty body"},
		{"not JSON", "id=1", true, "", "not valid JSON"},
		{"truncated", `{"id":"e1"`, true, "", "not valid JSON"},
		{"array", `[{"id":"e1"}]`, true, "", "expected a JSON object, got an array"},
		{"null", `null`, true, "", "got null"},
		{"string", `"event"`, true, "", "got a string"},
		{"trailing object", `{"id":"e1","type":"image.published"}{}`, true, "", "trailing data"},
		{"trailing garbage", `{"id":"e1","type":"image.published"} x`, true, "", "trailing data"},
		{"unknown field", `{"id":"e1","type":"image.published","group":"web"}`, false, "group", "unknown field"},
		{"field in other case", `{"ID":"e1","type":"image.published"}`, false, "ID", "unknown field"},
		{"field twice", `{"id":"e1","type":"image.published","id":"e2"}`, false, "id", "given twice"},
		{"id missing", `{"type":"image.published"}`, false, "id", "required"},
		{"id empty", `{"id":"","type":"image.published"}`, false, "id", "required"},
		{"id a number", `{"id":7,"type":"image.published"}`, false, "id", "expected a string"},
		{"id too long", `{"id":"` + strings.Repeat("x", 129) + `","type":"image.published"}`, false, "id", "at most 128"},
		{"id with slash", `{"id":"a/b","type":"image.published"}`, false, "id", "only A-Z"},
		{"id with space", `{"id":"a b","type":"image.published"}`, false, "id", "only A-Z"},
		{"type missing", `{"id":"e1"}`, false, "type", "required"},
		{"type unknown", `{"id":"e1","type":"image.deleted"}`, false, "type", `"image.deleted" is not an event type`},
		{"time not a time", `{"id":"e1","type":"image.published","time":"yesterday"}`, false, "time", "RFC 3339"},
		{"time a number", `{"id":"e1","type":"image.published","time":1778750000}`, false, "time", "RFC 3339"},
		{"groups a string", `{"id":"e1","type":"security.patch","groups":"web","reason":"r"}`, false, "groups", "list of group names"},
		{"group bad name", `{"id":"e1","type":"security.patch","groups":["Web"],"reason":"r"}`, false, "groups", `groups[0] "Web"`},
		{"group empty", `{"id":"e1","type":"security.patch","groups":["web",""],"reason":"r"}`, false, "groups", `groups[1] ""`},
		{"group twice", `{"id":"e1","type":"security.patch","groups":["web","web"],"reason":"r"}`, false, "groups", "given twice"},
		{"patch without target", `{"id":"e1","type":"security.patch","reason":"r"}`, false, "groups", "needs groups, image, both, or servers"},
		{"patch with empty groups", `{"id":"e1","type":"security.patch","groups":[],"reason":"r"}`, false, "groups", "needs groups, image, both, or servers"},
		{"patch without reason", `{"id":"e1","type":"security.patch","groups":["web"]}`, false, "reason", "required"},
		{"patch with blank reason", `{"id":"e1","type":"security.patch","groups":["web"],"reason":"  "}`, false, "reason", "required"},
		{"patch with server", `{"id":"e1","type":"security.patch","groups":["web"],"server":"s","reason":"r"}`, false, "server", "not used"},
		{"reason too long", `{"id":"e1","type":"security.patch","groups":["web"],"reason":"` + strings.Repeat("x", 256) + `"}`, false, "reason", "at most 255"},
		{"reason with newline", `{"id":"e1","type":"security.patch","groups":["web"],"reason":"a\nb"}`, false, "reason", "control characters"},
		{"compromised without server", `{"id":"e1","type":"instance.compromised","reason":"r"}`, false, "server", "required"},
		{"compromised without reason", `{"id":"e1","type":"instance.compromised","server":"s"}`, false, "reason", "required"},
		{"compromised with groups", `{"id":"e1","type":"instance.compromised","server":"s","groups":["web"],"reason":"r"}`, false, "groups", "not used"},
		{"compromised with image", `{"id":"e1","type":"instance.compromised","server":"s","image":"i","reason":"r"}`, false, "image", "not used"},
		{"published with groups", `{"id":"e1","type":"image.published","groups":["web"]}`, false, "groups", "not used"},
		{"published with server", `{"id":"e1","type":"image.published","server":"s"}`, false, "server", "not used"},
		{"image too long", `{"id":"e1","type":"image.published","image":"` + strings.Repeat("i", 256) + `"}`, false, "image", "at most 255"},
		{"servers a string", `{"id":"e1","type":"security.patch","servers":"s1","reason":"r"}`, false, "servers", "list of server IDs"},
		{"servers with groups", `{"id":"e1","type":"security.patch","servers":["s1"],"groups":["web"],"reason":"r"}`, false, "servers", "without groups and image"},
		{"servers with image", `{"id":"e1","type":"security.patch","servers":["s1"],"image":"i","reason":"r"}`, false, "servers", "without groups and image"},
		{"server empty", `{"id":"e1","type":"security.patch","servers":["s1",""],"reason":"r"}`, false, "servers", "servers[1] is empty"},
		{"server twice", `{"id":"e1","type":"security.patch","servers":["s1","s1"],"reason":"r"}`, false, "servers", "given twice"},
		{"servers on compromised", `{"id":"e1","type":"instance.compromised","server":"s","servers":["s1"],"reason":"r"}`, false, "servers", "not used"},
		{"urgent a string", `{"id":"e1","type":"security.patch","groups":["web"],"urgent":"yes","reason":"r"}`, false, "urgent", "true or false"},
		{"urgent on compromised", `{"id":"e1","type":"instance.compromised","server":"s","urgent":true,"reason":"r"}`, false, "urgent", "never waits"},
		{"urgent on published", `{"id":"e1","type":"image.published","urgent":true}`, false, "urgent", "not used"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.body))
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("got %v, want a *ParseError", err)
			}
			if pe.Syntax != tt.syntax || pe.Field != tt.field || !strings.Contains(pe.Error(), tt.msg) {
				t.Fatalf("got %+v (%q), want syntax %v, field %q, message containing %q", *pe, pe.Error(), tt.syntax, tt.field, tt.msg)
			}
		})
	}
}

// TestExampleEvents keeps examples/events honest: every sample parses.
func TestExampleEvents(t *testing.T) {
	files, err := filepath.Glob("../../examples/events/*.json")
	if err != nil {
		t.Fatal(err)
	}
	types := map[string]bool{}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			body, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			e, err := Parse(body)
			if err != nil {
				t.Fatal(err)
			}
			types[e.Type] = true
			if base := filepath.Base(f); !strings.HasPrefix(base, e.Type+".") && !strings.HasPrefix(base, e.Type+"-") {
				t.Errorf("%s holds a %s event; name it after its type", f, e.Type)
			}
		})
	}
	for _, typ := range []string{TypeImagePublished, TypeSecurityPatch, TypeInstanceCompromised} {
		if !types[typ] {
			t.Errorf("no example of a %s event in examples/events", typ)
		}
	}
}

// sameEvent compares events, times by instant (a parsed offset is a new
// *time.Location each time).
func sameEvent(a, b Event) bool {
	if !a.Time.Equal(b.Time) {
		return false
	}
	a.Time, b.Time = time.Time{}, time.Time{}
	a.SignedAt, b.SignedAt = time.Time{}, time.Time{}
	if len(a.Groups) == 0 && len(b.Groups) == 0 {
		a.Groups, b.Groups = nil, nil
	}
	return reflect.DeepEqual(a, b)
}

func TestEventAt(t *testing.T) {
	signed := time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name string
		e    Event
		want time.Time
	}{
		{"unsigned", Event{Time: signed}, time.Time{}},
		{"body time within the signed second", Event{SignedAt: signed, Time: signed.Add(250 * time.Millisecond)}, signed.Add(250 * time.Millisecond)},
		{"no body time: the end of the signed second", Event{SignedAt: signed}, signed.Add(time.Second)},
		{"body time an hour earlier", Event{SignedAt: signed, Time: signed.Add(-time.Hour)}, signed.Add(time.Second)},
		{"body time after the signed second", Event{SignedAt: signed, Time: signed.Add(2 * time.Second)}, signed.Add(time.Second)},
	} {
		if got := tc.e.At(); !got.Equal(tc.want) {
			t.Errorf("%s: At = %v, want %v", tc.name, got, tc.want)
		}
	}
}
