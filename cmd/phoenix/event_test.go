package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/phoenix-ops/phoenix/cmd/internal/cli"
	"github.com/phoenix-ops/phoenix/controller/trigger"
)

// eventRecorder is a Dispatcher that records events and knows the groups
// of examples/demo.yaml.
type eventRecorder struct {
	mu     sync.Mutex
	events []trigger.Event
}

func (d *eventRecorder) Dispatch(_ context.Context, e trigger.Event) error {
	for _, g := range e.Groups {
		if g != "web" && g != "api" && g != "worker" {
			return fmt.Errorf("group %q: %w", g, trigger.ErrUnknownTarget)
		}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.events = append(d.events, e)
	return nil
}

func (d *eventRecorder) all() []trigger.Event {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]trigger.Event(nil), d.events...)
}

type eventDaemon struct {
	url        string // the server's root
	secretFile string
	d          *eventRecorder
	hits       atomic.Int32
}

// newEventDaemon serves a trigger.Handler at /v1/events, as the daemon
// does, with a secret written to a 0600 file.
func newEventDaemon(t *testing.T) *eventDaemon {
	t.Helper()
	secret := []byte("event-test-secret-9f8e7d6c5b4a3f2e1d0c")
	ed := &eventDaemon{d: &eventRecorder{}, secretFile: filepath.Join(t.TempDir(), "webhook.secret")}
	if err := os.WriteFile(ed.secretFile, append(secret, '\n'), 0o600); err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/v1/events", &trigger.Handler{Secret: func() []byte { return secret }, Dispatcher: ed.d})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ed.hits.Add(1)
		mux.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	ed.url = srv.URL
	return ed
}

// runEvent runs `phoenix event ARGS...` in-process and returns its
// output, its exit code and the error message main would print.
func runEvent(t *testing.T, output string, args ...string) (string, int, string) {
	t.Helper()
	cmd := newEventCommand(&cli.Globals{Output: output, LogLevel: "warn"})
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs(args)
	cmd.SilenceUsage, cmd.SilenceErrors = true, true
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := cmd.ExecuteContext(ctx)
	if err == nil {
		return out.String(), cli.ExitOK, ""
	}
	var ee *cli.ExitError
	if errors.As(err, &ee) {
		return out.String(), ee.Code, err.Error()
	}
	return out.String(), cli.ExitUsage, err.Error()
}

var uuidRE = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)

func TestEventSendAccepted(t *testing.T) {
	ed := newEventDaemon(t)
	examplePatch := filepath.Join("..", "..", "examples", "events", "security.patch.json")
	fileTime := time.Date(2026, 5, 14, 10, 2, 17, 0, time.UTC)
	tests := []struct {
		name   string
		output string
		args   []string
		want   trigger.Event // ID "" means a new UUID
		out    string        // the line printed; %s is the id
	}{
		{"flags", "text",
			[]string{"--type", "security.patch", "--group", "web", "--group", "api", "--reason", "CVE-2026-31337", "--id", "patch-1"},
			trigger.Event{ID: "patch-1", Type: trigger.TypeSecurityPatch, Groups: []string{"web", "api"}, Reason: "CVE-2026-31337"},
			"accepted event %s\n"},
		{"new UUID", "text",
			[]string{"--type", "instance.compromised", "--server", "5c0e8b1a-3f4d-4e27-a9c6-1b2d3e4f5a60", "--reason", "IDS alert 42"},
			trigger.Event{Type: trigger.TypeInstanceCompromised, Server: "5c0e8b1a-3f4d-4e27-a9c6-1b2d3e4f5a60", Reason: "IDS alert 42"},
			"accepted event %s\n"},
		{"json", "json",
			[]string{"--type", "image.published", "--image", "ubuntu-24.04-gold", "--id", "img-1"},
			trigger.Event{ID: "img-1", Type: trigger.TypeImagePublished, Image: "ubuntu-24.04-gold"},
			`{"id":"%s","status":"accepted"}` + "\n"},
		{"file", "text",
			[]string{"--file", examplePatch},
			trigger.Event{ID: "7d3f6a0e-5b1c-4f2a-9e8d-2c4b6a1f0e93", Type: trigger.TypeSecurityPatch, Groups: []string{"web", "api"},
				Reason: "CVE-2026-31337: remote code execution in the TLS stack", Time: fileTime},
			"accepted event %s\n"},
		{"file again: already accepted", "text",
			[]string{"--file", examplePatch},
			trigger.Event{},
			"event 7d3f6a0e-5b1c-4f2a-9e8d-2c4b6a1f0e93 was already accepted\n"},
		{"file again as JSON", "json",
			[]string{"--file", examplePatch},
			trigger.Event{},
			`{"id":"7d3f6a0e-5b1c-4f2a-9e8d-2c4b6a1f0e93","status":"already accepted"}` + "\n"},
		{"file with a new id", "text",
			[]string{"--file", examplePatch, "--id", "patch-2"},
			trigger.Event{ID: "patch-2", Type: trigger.TypeSecurityPatch, Groups: []string{"web", "api"},
				Reason: "CVE-2026-31337: remote code execution in the TLS stack", Time: fileTime},
			"accepted event %s\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := len(ed.d.all())
			args := append([]string{"send", "--url", ed.url + "/v1/events", "--secret-file", ed.secretFile}, tt.args...)
			out, code, msg := runEvent(t, tt.output, args...)
			if code != cli.ExitOK {
				t.Fatalf("exit %d: %s\n%s", code, msg, out)
			}
			got := ed.d.all()[before:]
			if tt.want.Type == "" { // a repeat: nothing new dispatched
				if len(got) != 0 {
					t.Fatalf("dispatched %+v again", got)
				}
				if out != tt.out {
					t.Fatalf("printed %q, want %q", out, tt.out)
				}
				return
			}
			if len(got) != 1 {
				t.Fatalf("dispatched %d events, want 1", len(got))
			}
			e := got[0]
			if tt.want.ID == "" && !uuidRE.MatchString(e.ID) {
				t.Errorf("id %q, want a new UUID", e.ID)
			}
			if tt.want.ID == "" {
				tt.want.ID = e.ID
			}
			switch {
			case !tt.want.Time.IsZero(): // the file's
				if !e.Time.Equal(tt.want.Time) {
					t.Errorf("time %s, want %s", e.Time, tt.want.Time)
				}
			case time.Since(e.Time) > time.Minute:
				t.Errorf("time %s, want now", e.Time)
			}
			if time.Since(e.SignedAt) > time.Minute {
				t.Errorf("signed at %s, want now", e.SignedAt)
			}
			e.Time, tt.want.Time, e.SignedAt = time.Time{}, time.Time{}, time.Time{}
			if fmt.Sprintf("%+v", e) != fmt.Sprintf("%+v", tt.want) {
				t.Errorf("dispatched %+v, want %+v", e, tt.want)
			}
			if want := fmt.Sprintf(tt.out, e.ID); out != want {
				t.Errorf("printed %q, want %q", out, want)
			}
		})
	}
}

func TestEventSendRefused(t *testing.T) {
	ed := newEventDaemon(t)
	wrongSecret := filepath.Join(t.TempDir(), "wrong.secret")
	if err := os.WriteFile(wrongSecret, []byte("not-the-secret-but-as-long-as-one-0123"), 0o600); err != nil {
		t.Fatal(err)
	}
	badFile := filepath.Join(t.TempDir(), "bad.json")
	if err := os.WriteFile(badFile, []byte(`{"id":"x","type":"security.patch","groups":["web"],"reason":"r","priority":"high"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	noID := filepath.Join(t.TempDir(), "noid.json")
	if err := os.WriteFile(noID, []byte(`{"type":"security.patch","groups":["nope"],"reason":"CVE-2026-31337"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	url := ed.url + "/v1/events"
	tests := []struct {
		name string
		args []string
		code int
		msg  string // a substring of the message
		sent bool   // whether the daemon was asked at all
	}{
		{"no reason", []string{"--url", url, "--secret-file", ed.secretFile, "--type", "security.patch", "--group", "web"},
			cli.ExitUsage, "--reason: event: reason: required", false},
		{"no target", []string{"--url", url, "--secret-file", ed.secretFile, "--type", "security.patch", "--reason", "r"},
			cli.ExitUsage, "--group: event: groups: security.patch needs groups, image, both, or servers", false},
		{"bad type", []string{"--url", url, "--secret-file", ed.secretFile, "--type", "image.deleted"},
			cli.ExitUsage, `--type: event: type: "image.deleted" is not an event type`, false},
		{"bad group name", []string{"--url", url, "--secret-file", ed.secretFile, "--type", "security.patch", "--group", "Web", "--reason", "r"},
			cli.ExitUsage, `groups[0] "Web"`, false},
		{"bad id", []string{"--url", url, "--secret-file", ed.secretFile, "--type", "image.published", "--id", "a b"},
			cli.ExitUsage, "--id: event: id:", false},
		{"no type", []string{"--url", url, "--secret-file", ed.secretFile, "--reason", "r"},
			cli.ExitUsage, "--type or --file is required", false},
		{"file and flags", []string{"--url", url, "--secret-file", ed.secretFile, "--file", badFile, "--reason", "r"},
			cli.ExitUsage, "--file and --reason exclude each other", false},
		{"file with unknown field", []string{"--url", url, "--secret-file", ed.secretFile, "--file", badFile},
			cli.ExitUsage, "bad.json: event: priority: unknown field", false},
		{"file missing", []string{"--url", url, "--secret-file", ed.secretFile, "--file", "nonexistent.json"},
			cli.ExitUsage, "nonexistent.json", false},
		{"no url", []string{"--secret-file", ed.secretFile, "--type", "image.published"},
			cli.ExitUsage, "--url is required", false},
		{"bad url", []string{"--url", "phoenix.internal:8443", "--secret-file", ed.secretFile, "--type", "image.published"},
			cli.ExitUsage, "expected an http:// or https:// URL", false},
		{"no secret file", []string{"--url", url, "--type", "image.published"},
			cli.ExitUsage, "--secret-file is required", false},
		{"secret file missing", []string{"--url", url, "--secret-file", "/nonexistent/webhook.secret", "--type", "image.published"},
			cli.ExitUsage, "/nonexistent/webhook.secret", false},
		{"unknown group", []string{"--url", url, "--secret-file", ed.secretFile, "--type", "security.patch", "--group", "billing", "--reason", "CVE-2026-31337"},
			cli.ExitNotDone, `HTTP 422 Unprocessable Entity: group "billing": unknown target`, true},
		{"file without id, unknown group", []string{"--url", url, "--secret-file", ed.secretFile, "--file", noID},
			cli.ExitNotDone, `group "nope": unknown target`, true},
		{"wrong secret", []string{"--url", url, "--secret-file", wrongSecret, "--type", "image.published"},
			cli.ExitNotDone, "HTTP 401 Unauthorized: unauthorized: signature does not match", true},
		{"wrong path", []string{"--url", ed.url + "/v2/events", "--secret-file", ed.secretFile, "--type", "image.published"},
			cli.ExitNotDone, "HTTP 404 Not Found", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hits := ed.hits.Load()
			out, code, msg := runEvent(t, "text", append([]string{"send"}, tt.args...)...)
			if code != tt.code || !strings.Contains(msg, tt.msg) {
				t.Fatalf("exit %d %q, want %d with %q\n%s", code, msg, tt.code, tt.msg, out)
			}
			if sent := ed.hits.Load() != hits; sent != tt.sent {
				t.Errorf("sent %v, want %v", sent, tt.sent)
			}
			if strings.Contains(msg, "event-test-secret") {
				t.Errorf("message %q shows the secret", msg)
			}
		})
	}
	if got := ed.d.all(); len(got) != 0 {
		t.Fatalf("dispatched %+v", got)
	}
}

// TestEventSendURLWithoutPath: a URL naming only the daemon gets the path
// /v1/events.
func TestEventSendURLWithoutPath(t *testing.T) {
	ed := newEventDaemon(t)
	out, code, msg := runEvent(t, "json", "send", "--url", ed.url, "--secret-file", ed.secretFile, "--type", "image.published", "--id", "img-2")
	if code != cli.ExitOK {
		t.Fatalf("exit %d: %s", code, msg)
	}
	var answer map[string]string
	if err := json.Unmarshal([]byte(out), &answer); err != nil || answer["id"] != "img-2" {
		t.Fatalf("printed %q", out)
	}
}
