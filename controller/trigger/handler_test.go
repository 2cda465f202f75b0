package trigger

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// recorder is a Dispatcher that records what it is given and answers
// err, or ErrUnknownTarget for any group named "nope".
type recorder struct {
	mu     sync.Mutex
	events []Event
	err    error
}

func (d *recorder) Dispatch(_ context.Context, e Event) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.events = append(d.events, e)
	for _, g := range e.Groups {
		if g == "nope" {
			return fmt.Errorf("group %q: %w", g, ErrUnknownTarget)
		}
	}
	return d.err
}

func (d *recorder) dispatched() []Event {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]Event(nil), d.events...)
}

func (d *recorder) reset() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.events = nil
}

// testClock is an injected clock the test moves by hand.
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *testClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

type fixture struct {
	h     *Handler
	d     *recorder
	clock *testClock
	logs  *observer.ObservedLogs

	mu      sync.Mutex
	refused []int // the statuses Handler.Refused heard
}

func (f *fixture) refusals() []int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]int(nil), f.refused...)
}

func newFixture() *fixture {
	core, logs := observer.New(zapcore.DebugLevel)
	f := &fixture{d: &recorder{}, clock: &testClock{t: testNow}, logs: logs}
	f.h = &Handler{
		Secret:     func() []byte { return testSecret },
		Dispatcher: f.d,
		Now:        f.clock.Now,
		Window:     5 * time.Minute,
		MaxBody:    1024,
		Log:        zap.New(core),
		Refused: func(status int) {
			f.mu.Lock()
			defer f.mu.Unlock()
			f.refused = append(f.refused, status)
		},
	}
	return f
}

// signed is a POST of body signed at the given time.
func signed(body string, at time.Time) *http.Request {
	r := httptest.NewRequest(http.MethodPost, "/v1/events", strings.NewReader(body))
	r.Header.Set("Content-Type", "application/json")
	ts, sig := Sign(testSecret, at, []byte(body))
	r.Header.Set(HeaderTimestamp, ts)
	r.Header.Set(HeaderSignature, sig)
	return r
}

func (f *fixture) serve(r *http.Request) *httptest.ResponseRecorder {
	w := httptest.NewRecorder()
	f.h.ServeHTTP(w, r)
	return w
}

const patchBody = `{"id":"evt-1","type":"security.patch","groups":["web","api"],"reason":"CVE-2026-31337"}`

func TestHandlerRefuses(t *testing.T) {
	tests := []struct {
		name   string
		setup  func(t *testing.T, f *fixture) // runs before the request
		req    func() *http.Request
		status int
		msg    string
	}{
		{name: "wrong signature", status: 401, msg: "signature does not match",
			req: func() *http.Request {
				r := signed(patchBody, testNow)
				_, sig := Sign([]byte("not the secret"), testNow, []byte(patchBody))
				r.Header.Set(HeaderSignature, sig)
				return r
			}},
		{name: "body changed after signing", status: 401, msg: "signature does not match",
			req: func() *http.Request {
				r := signed(strings.Replace(patchBody, `"web",`, "", 1), testNow)
				_, sig := Sign(testSecret, testNow, []byte(patchBody))
				r.Header.Set(HeaderSignature, sig)
				return r
			}},
		{name: "missing signature header", status: 401, msg: "missing X-Phoenix-Signature",
			req: func() *http.Request {
				r := signed(patchBody, testNow)
				r.Header.Del(HeaderSignature)
				return r
			}},
		{name: "missing timestamp", status: 401, msg: "missing X-Phoenix-Timestamp",
			req: func() *http.Request {
				r := signed(patchBody, testNow)
				r.Header.Del(HeaderTimestamp)
				return r
			}},
		{name: "malformed timestamp", status: 401, msg: "malformed X-Phoenix-Timestamp",
			req: func() *http.Request {
				r := signed(patchBody, testNow)
				r.Header.Set(HeaderTimestamp, testNow.Format(time.RFC3339))
				return r
			}},
		{name: "stale timestamp", status: 401, msg: "old, outside the 5m0s window",
			req: func() *http.Request { return signed(patchBody, testNow.Add(-5*time.Minute-time.Second)) }},
		{name: "timestamp too far in the future", status: 401, msg: "in the future",
			req: func() *http.Request { return signed(patchBody, testNow.Add(5*time.Minute+time.Second)) }},
		{name: "replayed id", status: 409, msg: "event evt-1 was already accepted",
			setup: func(t *testing.T, f *fixture) {
				if w := f.serve(signed(patchBody, testNow.Add(-time.Minute))); w.Code != 202 {
					t.Fatalf("first send: %d %s", w.Code, w.Body)
				}
				f.d.reset()
			},
			req: func() *http.Request { return signed(patchBody, testNow) }},
		{name: "replayed request", status: 409, msg: "already accepted",
			setup: func(t *testing.T, f *fixture) {
				if w := f.serve(signed(patchBody, testNow)); w.Code != 202 {
					t.Fatalf("first send: %d %s", w.Code, w.Body)
				}
				f.clock.Advance(4 * time.Minute)
				f.d.reset()
			},
			req: func() *http.Request { return signed(patchBody, testNow) }},
		{name: "oversized body", status: 413, msg: "body larger than 1024 bytes",
			req: func() *http.Request {
				return signed(`{"id":"big","type":"image.published","reason":"`+strings.Repeat("x", 1024)+`"}`, testNow)
			}},
		{name: "oversized body, Content-Length lies", status: 413, msg: "body larger than 1024 bytes",
			req: func() *http.Request {
				r := signed(`{"id":"big","type":"image.published","reason":"`+strings.Repeat("x", 1024)+`"}`, testNow)
				r.ContentLength = 10
				return r
			}},
		{name: "oversized body, no Content-Length", status: 413, msg: "body larger than 1024 bytes",
			req: func() *http.Request {
				r := signed(`{"id":"big","type":"image.published","reason":"`+strings.Repeat("x", 1024)+`"}`, testNow)
				r.ContentLength = -1
				return r
			}},
		{name: "no body", status: 401, msg: "signature does not match",
			req: func() *http.Request {
				r := signed(patchBody, testNow)
				r.Body = nil
				return r
			}},
		{name: "malformed JSON", status: 400, msg: "not valid JSON",
			req: func() *http.Request { return signed(`{"id":"evt-1","type":`, testNow) }},
		{name: "not an object", status: 400, msg: "expected a JSON object",
			req: func() *http.Request { return signed(`["evt-1"]`, testNow) }},
		{name: "trailing garbage", status: 400, msg: "trailing data",
			req: func() *http.Request { return signed(patchBody+`garbage`, testNow) }},
		{name: "two objects", status: 400, msg: "trailing data",
			req: func() *http.Request { return signed(patchBody+patchBody, testNow) }},
		{name: "unknown field", status: 422, msg: "priority: unknown field",
			req: func() *http.Request {
				return signed(`{"id":"evt-1","type":"image.published","priority":"high"}`, testNow)
			}},
		{name: "unknown type", status: 422, msg: `"server.rebooted" is not an event type`,
			req: func() *http.Request { return signed(`{"id":"evt-1","type":"server.rebooted"}`, testNow) }},
		{name: "missing reason", status: 422, msg: "reason: required",
			req: func() *http.Request {
				return signed(`{"id":"evt-1","type":"security.patch","groups":["web"]}`, testNow)
			}},
		{name: "unknown group", status: 422, msg: `group "nope": unknown target`,
			req: func() *http.Request {
				return signed(`{"id":"evt-1","type":"security.patch","groups":["nope"],"reason":"CVE-2026-31337"}`, testNow)
			}},
		{name: "method GET", status: 405, msg: "method GET not allowed",
			req: func() *http.Request { return httptest.NewRequest(http.MethodGet, "/v1/events", nil) }},
		{name: "method PUT, signed", status: 405, msg: "method PUT not allowed",
			req: func() *http.Request {
				r := signed(patchBody, testNow)
				r.Method = http.MethodPut
				return r
			}},
		{name: "no secret configured", status: 503, msg: "webhook not configured",
			setup: func(t *testing.T, f *fixture) { f.h.Secret = func() []byte { return nil } },
			req:   func() *http.Request { return signed(patchBody, testNow) }},
		{name: "empty secret", status: 503, msg: "webhook not configured",
			setup: func(t *testing.T, f *fixture) { f.h.Secret = func() []byte { return []byte{} } },
			req:   func() *http.Request { return signed(patchBody, testNow) }},
		{name: "no secret function", status: 503, msg: "webhook not configured",
			setup: func(t *testing.T, f *fixture) { f.h.Secret = nil },
			req:   func() *http.Request { return signed(patchBody, testNow) }},
		{name: "dispatcher cannot act", status: 503, msg: "cannot act on the event now",
			setup: func(t *testing.T, f *fixture) { f.d.err = errors.New("reconciler stopped") },
			req:   func() *http.Request { return signed(patchBody, testNow) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture()
			if tt.setup != nil {
				tt.setup(t, f)
			}
			f.logs.TakeAll()
			before := len(f.refusals())
			r := tt.req()
			w := f.serve(r)
			if w.Code != tt.status {
				t.Fatalf("status %d, want %d (%s)", w.Code, tt.status, w.Body)
			}
			// Metrics hear each refusal once, with a code they start at zero.
			if got := f.refusals()[before:]; !slices.Equal(got, []int{tt.status}) || !slices.Contains(RefusalCodes, tt.status) {
				t.Errorf("Refused heard %v, want [%d] (one of RefusalCodes %v)", got, tt.status, RefusalCodes)
			}
			if ct := w.Header().Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q", ct)
			}
			var answer map[string]string
			if err := json.Unmarshal(w.Body.Bytes(), &answer); err != nil || len(answer) != 1 {
				t.Fatalf("answer %q, want {\"error\": ...} (%v)", w.Body, err)
			}
			if !strings.Contains(answer["error"], tt.msg) {
				t.Errorf("error %q, want it to contain %q", answer["error"], tt.msg)
			}
			if tt.status == 405 && w.Header().Get("Allow") != "POST" {
				t.Errorf("Allow: %q, want POST", w.Header().Get("Allow"))
			}
			// Only the dispatcher's own refusals reach it; everything else
			// is refused before.
			want := 0
			if tt.name == "unknown group" || tt.name == "dispatcher cannot act" {
				want = 1
			}
			if got := f.d.dispatched(); len(got) != want {
				t.Errorf("dispatched %d events (%v), want %d", len(got), got, want)
			}
			checkLogs(t, f.logs, r, tt.status)
		})
	}
}

// checkLogs checks the refusal was logged with its status and the remote
// address, and that no line holds the signature, the secret or the body.
func checkLogs(t *testing.T, logs *observer.ObservedLogs, r *http.Request, status int) {
	t.Helper()
	entries := logs.TakeAll()
	if len(entries) != 1 {
		t.Fatalf("%d log entries, want 1: %v", len(entries), entries)
	}
	e := entries[0]
	ctx := e.ContextMap()
	if ctx["status"] != int64(status) || ctx["remote"] != r.RemoteAddr || ctx["reason"] == nil && status != 503 {
		t.Errorf("log %q %v lacks status, remote address or reason", e.Message, ctx)
	}
	if status != 503 && e.Level != zapcore.InfoLevel {
		t.Errorf("refusal logged at %s, want info", e.Level)
	}
	line := fmt.Sprint(e.Message, ctx)
	for _, secret := range []string{string(testSecret), r.Header.Get(HeaderSignature), `"type":`} {
		if secret != "" && strings.Contains(line, secret) {
			t.Errorf("log %q holds %q", line, secret)
		}
	}
}

func TestHandlerAccepts(t *testing.T) {
	f := newFixture()
	w := f.serve(signed(patchBody, testNow.Add(-time.Minute)))
	if w.Code != http.StatusAccepted {
		t.Fatalf("status %d (%s), want 202", w.Code, w.Body)
	}
	var answer map[string]string
	if err := json.Unmarshal(w.Body.Bytes(), &answer); err != nil {
		t.Fatal(err)
	}
	if answer["id"] != "evt-1" || answer["status"] != "accepted" || len(answer) != 2 {
		t.Errorf("answer %v", answer)
	}
	if got := f.refusals(); len(got) != 0 {
		t.Errorf("an accepted event counted as refused: %v", got)
	}
	want := Event{ID: "evt-1", Type: TypeSecurityPatch, Groups: []string{"web", "api"}, Reason: "CVE-2026-31337"}
	got := f.d.dispatched()
	if len(got) != 1 || !sameEvent(got[0], want) {
		t.Fatalf("dispatched %+v, want once %+v", got, want)
	}
	// The signed time, not the arrival, to the second: a replay of the
	// same request designates what the original did.
	if signedAt := testNow.Add(-time.Minute).Truncate(time.Second); !got[0].SignedAt.Equal(signedAt) {
		t.Errorf("signed at %v, want the header's %v", got[0].SignedAt, signedAt)
	}
	entries := f.logs.FilterMessage("event accepted").All()
	if len(entries) != 1 || entries[0].ContextMap()["event_id"] != "evt-1" {
		t.Errorf("accepted log: %v", entries)
	}
}

func TestHandlerDefaults(t *testing.T) {
	d := &recorder{}
	h := &Handler{Secret: func() []byte { return testSecret }, Dispatcher: d}
	now := time.Now()
	w := httptest.NewRecorder()
	h.ServeHTTP(w, signed(patchBody, now))
	if w.Code != 202 {
		t.Fatalf("status %d (%s)", w.Code, w.Body)
	}
	// Default window five minutes.
	w = httptest.NewRecorder()
	h.ServeHTTP(w, signed(strings.Replace(patchBody, "evt-1", "evt-2", 1), now.Add(-6*time.Minute)))
	if w.Code != 401 {
		t.Fatalf("six minutes old: status %d (%s)", w.Code, w.Body)
	}
	// Default limit 64 KiB.
	big := `{"id":"big","type":"image.published","image":"` + strings.Repeat("x", 64<<10) + `"}`
	w = httptest.NewRecorder()
	h.ServeHTTP(w, signed(big, now))
	if w.Code != 413 {
		t.Fatalf("64 KiB body: status %d (%s)", w.Code, w.Body)
	}
}

// TestHandlerReplayMemory moves the clock: an id is refused while a
// request carrying it could still pass the timestamp check, and accepted
// again after.
func TestHandlerReplayMemory(t *testing.T) {
	f := newFixture()
	// Signed as far in the future as the window allows: replayable until
	// testNow + 10 minutes.
	if w := f.serve(signed(patchBody, testNow.Add(5*time.Minute))); w.Code != 202 {
		t.Fatalf("first: %d %s", w.Code, w.Body)
	}
	f.clock.Advance(10 * time.Minute)
	if w := f.serve(signed(patchBody, testNow.Add(5*time.Minute))); w.Code != 409 {
		t.Fatalf("the captured request 10m later, at the edge of its window: %d %s, want 409", w.Code, w.Body)
	}
	f.clock.Advance(time.Second)
	if w := f.serve(signed(patchBody, testNow.Add(5*time.Minute))); w.Code != 401 {
		t.Fatalf("the captured request 10m1s later: %d %s, want 401", w.Code, w.Body)
	}
	if w := f.serve(signed(patchBody, f.clock.Now())); w.Code != 202 {
		t.Fatalf("same id signed anew 10m1s later: %d %s, want 202", w.Code, w.Body)
	}
	if n := len(f.d.dispatched()); n != 2 {
		t.Fatalf("dispatched %d, want 2", n)
	}
}

// TestHandlerFailedDispatchMayBeRetried: an event the dispatcher could not
// act on leaves no trace, so the same id goes through once it can.
func TestHandlerFailedDispatchMayBeRetried(t *testing.T) {
	f := newFixture()
	f.d.err = errors.New("busy")
	if w := f.serve(signed(patchBody, testNow)); w.Code != 503 {
		t.Fatalf("status %d, want 503", w.Code)
	}
	f.d.err = nil
	if w := f.serve(signed(patchBody, testNow)); w.Code != 202 {
		t.Fatalf("retry: status %d (%s), want 202", w.Code, w.Body)
	}
	unknown := `{"id":"evt-2","type":"security.patch","groups":["nope"],"reason":"CVE-2026-31337"}`
	if w := f.serve(signed(unknown, testNow)); w.Code != 422 {
		t.Fatalf("unknown group: status %d, want 422", w.Code)
	}
	if w := f.serve(signed(unknown, testNow)); w.Code != 422 {
		t.Fatalf("unknown group again: status %d, want 422 (not 409)", w.Code)
	}
}

// blocking is a Dispatcher that holds every call until release is closed.
type blocking struct {
	entered chan struct{}
	release chan struct{}
	err     error
	mu      sync.Mutex
	n       int
}

func (b *blocking) Dispatch(ctx context.Context, _ Event) error {
	b.mu.Lock()
	b.n++
	b.mu.Unlock()
	b.entered <- struct{}{}
	<-b.release
	return b.err
}

// TestHandlerConcurrentDuplicates sends one request many times at once:
// exactly one is dispatched, and every other, answered while that dispatch
// is under way, is a 503 with Retry-After — not a 409, which tells a
// sender its event got through when the dispatch may yet fail (a sender
// that gave up waiting and sent again would take it for success, and the
// event would be lost). Sent again afterwards it gets the outcome.
func TestHandlerConcurrentDuplicates(t *testing.T) {
	for _, fail := range []bool{false, true} {
		t.Run(fmt.Sprintf("dispatch fails %v", fail), func(t *testing.T) {
			const n = 16
			d := &blocking{entered: make(chan struct{}, n), release: make(chan struct{})}
			if fail {
				d.err = errors.New("busy")
			}
			f := newFixture()
			f.h.Dispatcher = d
			type reply struct {
				code       int
				retryAfter string
			}
			replies := make(chan reply, n)
			var wg sync.WaitGroup
			for range n {
				wg.Go(func() {
					w := f.serve(signed(patchBody, testNow))
					replies <- reply{w.Code, w.Header().Get("Retry-After")}
				})
			}
			<-d.entered // one is inside Dispatch ...
			for range n - 1 {
				// ... and all others answered meanwhile
				if r := <-replies; r.code != http.StatusServiceUnavailable || r.retryAfter == "" {
					t.Errorf("status %d (Retry-After %q) while the first is dispatched, want 503 with Retry-After", r.code, r.retryAfter)
				}
			}
			close(d.release)
			wg.Wait()
			want := http.StatusAccepted
			if fail {
				want = http.StatusServiceUnavailable
			}
			if r := <-replies; r.code != want {
				t.Errorf("dispatched request: status %d, want %d", r.code, want)
			}
			if d.n != 1 {
				t.Errorf("dispatched %d times, want 1", d.n)
			}
			// Sent again once the first is done: a 409 if it was
			// accepted; a dispatch of its own if it failed (the id was
			// released).
			d.release, d.err = make(chan struct{}), nil
			close(d.release)
			wantAgain := http.StatusConflict
			if fail {
				wantAgain = http.StatusAccepted
			}
			if c := f.serve(signed(patchBody, testNow)).Code; c != wantAgain {
				t.Errorf("sent again afterwards: status %d, want %d", c, wantAgain)
			}
			// Accepted now, either way: a repeat is a replay.
			if c := f.serve(signed(patchBody, testNow)).Code; c != http.StatusConflict {
				t.Errorf("sent once more: status %d, want 409", c)
			}
		})
	}
}

func TestReplayMemoryBounded(t *testing.T) {
	m := &replayMemory{max: 3}
	keep := time.Hour
	for i := range 5 {
		if _, ok, _ := m.reserve(fmt.Sprint("id", i), testNow, keep); !ok {
			t.Fatalf("id%d refused", i)
		}
	}
	if m.len() != 3 {
		t.Fatalf("remembers %d ids, want 3", m.len())
	}
	// The newest are still refused (and refusing evicts nothing) ...
	for _, id := range []string{"id4", "id3", "id2", "id2"} {
		if _, ok, _ := m.reserve(id, testNow, keep); ok {
			t.Errorf("%s reserved twice", id)
		}
	}
	// ... the oldest were forgotten early.
	if _, ok, _ := m.reserve("id0", testNow, keep); !ok {
		t.Error("id0 still remembered")
	}
	if _, ok, _ := m.reserve("id3", testNow, keep); ok {
		t.Error("id3 forgotten before id2")
	}
	// Released entries leave stale queue entries; the queue stays bounded.
	for i := range 100 {
		seq, _, _ := m.reserve(fmt.Sprint("x", i), testNow, keep)
		m.release(fmt.Sprint("x", i), seq)
	}
	if len(m.queue) > 2*m.max {
		t.Errorf("queue holds %d entries for a limit of %d", len(m.queue), m.max)
	}
	// Everything expires.
	if _, ok, _ := m.reserve("late", testNow.Add(keep), keep); !ok || m.len() != 1 {
		t.Errorf("after keep: %d ids remembered, want 1", m.len())
	}
}

func TestReleaseKeepsNewerReservation(t *testing.T) {
	m := &replayMemory{}
	seq, _, _ := m.reserve("a", testNow, time.Minute)
	// Expired, then reserved again by someone else.
	later := testNow.Add(time.Minute + time.Second)
	if _, ok, _ := m.reserve("a", later, time.Minute); !ok {
		t.Fatal("expired id refused")
	}
	m.release("a", seq) // the old reservation's release must not undo the new one
	if _, ok, _ := m.reserve("a", later, time.Minute); ok {
		t.Fatal("release of an old reservation forgot the new one")
	}
}

// During a rotation an event signed with either secret is accepted, and
// the log says which senders still use the previous one; once it is
// removed, the previous secret is refused like any other.
func TestHandlerRotation(t *testing.T) {
	previous := []byte("the-previous-webhook-key-0123456789")
	var rotating bool
	f := newFixture()
	f.h.Previous = func() []byte {
		if rotating {
			return previous
		}
		return nil
	}
	sign := func(id string, key []byte) *http.Request {
		body := strings.Replace(patchBody, "evt-1", id, 1)
		r := signed(body, testNow)
		ts, sig := Sign(key, testNow, []byte(body))
		r.Header.Set(HeaderTimestamp, ts)
		r.Header.Set(HeaderSignature, sig)
		return r
	}
	tests := []struct {
		name     string
		rotating bool
		key      []byte
		status   int
		previous bool // logged as signed with the previous secret
	}{
		{"current, no rotation", false, testSecret, http.StatusAccepted, false},
		{"previous, no rotation", false, previous, http.StatusUnauthorized, false},
		{"current, rotating", true, testSecret, http.StatusAccepted, false},
		{"previous, rotating", true, previous, http.StatusAccepted, true},
		{"neither, rotating", true, []byte("some-other-key-0123456789abcdef0123"), http.StatusUnauthorized, false},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rotating = tt.rotating
			f.logs.TakeAll()
			w := f.serve(sign(fmt.Sprintf("rot-%d", i), tt.key))
			if w.Code != tt.status {
				t.Fatalf("HTTP %d %s, want %d", w.Code, w.Body, tt.status)
			}
			logged := f.logs.FilterField(zap.Bool("signed_with_previous_secret", true)).Len() > 0
			if logged != tt.previous {
				t.Errorf("logged as signed with the previous secret: %v, want %v", logged, tt.previous)
			}
		})
	}
}
