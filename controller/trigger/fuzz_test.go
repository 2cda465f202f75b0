package trigger

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// seedBodies are bodies every fuzz target starts from: the examples and
// a few edge cases.
func seedBodies(f *testing.F) [][]byte {
	f.Helper()
	seeds := [][]byte{
		[]byte(patchBody),
		[]byte(`{"id":"e1","type":"image.published","time":"2026-05-14T09:30:00+02:00"}`),
		[]byte(`{"id":"e1","type":"instance.compromised","server":"s1","reason":"IDS"}`),
		[]byte(`{"id":"e1","type":"security.patch","groups":["nope"],"reason":"r"}`),
		[]byte(`{"id":"e1","type":"security.patch","groups":["fail"],"reason":"r"}`),
		[]byte(`{"id":"e1","type":"security.patch","image":"i","reason":"\u00e9\ud83d\ude00"}`),
		[]byte(`{"id":"e1","type":"image.published","id":"e2"}`),
		[]byte(`{"id":"e1","type":"image.published"} {}`),
		[]byte(`{"id":"e1","type":"image.published","time":"0000-01-01T00:00:00+01:00"}`),
		[]byte(`{"id":"e1","type":"image.published","time":"9999-12-31T23:59:59.999999999-23:59"}`),
		[]byte(`[]`), []byte(`null`), []byte(``), []byte(`{`),
	}
	files, _ := filepath.Glob("../../examples/events/*.json")
	for _, file := range files {
		b, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		seeds = append(seeds, b)
	}
	return seeds
}

// FuzzParse: Parse never panics, refuses only with a *ParseError, and an
// event it accepts marshals to a body it accepts as the same event.
func FuzzParse(f *testing.F) {
	for _, b := range seedBodies(f) {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		e, err := Parse(body)
		if err != nil {
			var pe *ParseError
			if !errors.As(err, &pe) || pe.Message == "" {
				t.Fatalf("error %v (%T) is not a *ParseError with a message", err, err)
			}
			return
		}
		again, err := json.Marshal(e)
		if err != nil {
			t.Fatalf("accepted %+v but cannot marshal it: %v", e, err)
		}
		e2, err := Parse(again)
		if err != nil {
			t.Fatalf("accepted %q as %+v, refused its re-encoding %s: %v", body, e, again, err)
		}
		if !sameEvent(e, e2) {
			t.Fatalf("%q parsed as %+v, its re-encoding %s as %+v", body, e, again, e2)
		}
	})
}

// FuzzVerify: Verify never panics, wraps ErrUnauthorized, never reveals
// the expected signature, and accepts only the signature Sign computes for
// that timestamp and body, within the window.
func FuzzVerify(f *testing.F) {
	ts, sig := Sign(testSecret, testNow, []byte(patchBody))
	for i, b := range seedBodies(f) {
		f.Add(testSecret, b, testNow.Unix(), int64(i*30), ts, sig, uint8(i%4))
	}
	f.Add([]byte{}, []byte(patchBody), testNow.Unix(), int64(0), ts, sig, uint8(1))
	f.Add(testSecret, []byte(patchBody), testNow.Unix(), int64(0), "0"+ts, sig, uint8(0))
	f.Add(testSecret, []byte(patchBody), int64(-1<<62), int64(1<<62), "999999999999999999", sig, uint8(3))
	const window = 5 * time.Minute
	f.Fuzz(func(t *testing.T, secret, body []byte, nowUnix, skew int64, ts, sig string, mode uint8) {
		now := time.Unix(nowUnix, 0)
		vts, vsig := Sign(secret, now.Add(time.Duration(skew)*time.Second), body)
		switch mode % 4 {
		case 1: // signed properly
			ts, sig = vts, vsig
		case 2: // a proper timestamp, the fuzzer's signature
			ts = vts
		case 3: // the fuzzer's timestamp, a signature over another
			sig = vsig
		}
		err := Verify(secret, now, window, ts, sig, body)
		if err != nil {
			if !errors.Is(err, ErrUnauthorized) {
				t.Fatalf("error %v does not wrap ErrUnauthorized", err)
			}
			if secs, ok := parseTimestamp(ts); ok && len(secret) > 0 {
				_, want := Sign(secret, time.Unix(secs, 0), body)
				if want != sig && strings.Contains(err.Error(), strings.TrimPrefix(want, signaturePrefix)) {
					t.Fatalf("error %q reveals the expected signature", err)
				}
			}
			if len(secret) >= 8 && strings.Contains(err.Error(), string(secret)) {
				t.Fatalf("error %q reveals the secret", err)
			}
			return
		}
		if len(secret) == 0 {
			t.Fatal("accepted a request with no secret")
		}
		secs, err := strconv.ParseInt(ts, 10, 64)
		if err != nil {
			t.Fatalf("accepted timestamp %q", ts)
		}
		wantTS, wantSig := Sign(secret, time.Unix(secs, 0), body)
		if ts != wantTS || sig != wantSig {
			t.Fatalf("accepted %q, %q; Sign gives %q, %q", ts, sig, wantTS, wantSig)
		}
		if d := now.Sub(time.Unix(secs, 0)); d > window || d < -window {
			t.Fatalf("accepted a timestamp %s away", d)
		}
	})
}

// fuzzDispatcher refuses group "nope" as unknown and fails on group
// "fail".
type fuzzDispatcher struct {
	mu     sync.Mutex
	events []Event
}

func (d *fuzzDispatcher) Dispatch(_ context.Context, e Event) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.events = append(d.events, e)
	for _, g := range e.Groups {
		switch g {
		case "nope":
			return ErrUnknownTarget
		case "fail":
			return errors.New("cannot act")
		}
	}
	return nil
}

// FuzzHandler: ServeHTTP never panics, always answers one of the
// documented statuses with a JSON body, and dispatches only events that
// passed every check. Each request dispatches at most once, and exactly
// when its status says so (202, and the dispatcher's own 422 and 503); a
// refused request leaves no trace — the same body, signed properly, is
// not then taken for a replay; an accepted one sent again is a 409.
func FuzzHandler(f *testing.F) {
	for i, b := range seedBodies(f) {
		f.Add("POST", b, true, int64(i*20), "", "", int64(len(b)), i%3 == 0)
	}
	f.Add("GET", []byte(patchBody), true, int64(0), "", "", int64(-1), false)
	f.Add("POST", []byte(patchBody), false, int64(0), "1778752800", "sha256=00", int64(-1), false)
	f.Add("POST", []byte(patchBody), true, int64(400), "", "", int64(1<<40), true)
	f.Fuzz(func(t *testing.T, method string, body []byte, sign bool, skew int64, ts, sig string, contentLength int64, replay bool) {
		d := &fuzzDispatcher{}
		h := &Handler{
			Secret:     func() []byte { return testSecret },
			Dispatcher: d,
			Now:        func() time.Time { return testNow },
			MaxBody:    4096,
		}
		if sign {
			ts, sig = Sign(testSecret, testNow.Add(time.Duration(skew)*time.Second), body)
		}
		serve := func(method, ts, sig string, contentLength int64) *httptest.ResponseRecorder {
			r := httptest.NewRequest(http.MethodPost, "/v1/events", strings.NewReader(string(body)))
			r.Method = method
			r.ContentLength = contentLength
			r.Header.Set(HeaderTimestamp, ts)
			r.Header.Set(HeaderSignature, sig)
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			return w
		}
		dispatched := func() []Event {
			d.mu.Lock()
			defer d.mu.Unlock()
			return append([]Event(nil), d.events...)
		}
		// check judges one answer and the dispatches it made.
		check := func(w *httptest.ResponseRecorder, before int) {
			t.Helper()
			switch w.Code {
			case 202, 400, 401, 405, 409, 413, 422, 503:
			default:
				t.Fatalf("status %d", w.Code)
			}
			var answer map[string]string
			if err := json.Unmarshal(w.Body.Bytes(), &answer); err != nil || w.Header().Get("Content-Type") != "application/json" {
				t.Fatalf("answer %q is not JSON (%v)", w.Body, err)
			}
			if w.Code != 202 && answer["error"] == "" {
				t.Fatalf("status %d without an error message: %q", w.Code, w.Body)
			}
			if strings.Contains(w.Body.String(), string(testSecret)) {
				t.Fatalf("answer %q holds the secret", w.Body)
			}
			events := dispatched()
			switch n := len(events) - before; {
			case n > 1:
				t.Fatalf("one request dispatched %d events", n)
			case n == 1:
				e, err := Parse(body)
				if err != nil || Verify(testSecret, testNow, DefaultWindow, ts, sig, body) != nil {
					t.Fatalf("dispatched %+v from a request that fails Parse (%v) or Verify", events, err)
				}
				if !sameEvent(events[before], e) {
					t.Fatalf("dispatched %+v for %q", events[before], body)
				}
				// The dispatcher's answer decides the status.
				want := 202
				for _, g := range e.Groups {
					if g == "nope" {
						want = 422
						break
					}
					if g == "fail" {
						want = 503
						break
					}
				}
				if w.Code != want {
					t.Fatalf("dispatched %+v, answered %d, want %d", e, w.Code, want)
				}
			case w.Code == 202 || w.Code == 503:
				t.Fatalf("status %d without a dispatch", w.Code)
			}
		}

		w := serve(method, ts, sig, contentLength)
		check(w, 0)
		first := w.Code
		if replay {
			n := len(dispatched())
			w = serve(method, ts, sig, contentLength)
			check(w, n)
			if first == 202 && w.Code != 409 {
				t.Fatalf("an accepted request sent again answered %d, want 409", w.Code)
			}
			if first != 202 && first != 409 && w.Code != first {
				t.Fatalf("a request answered %d, then %d when sent again", first, w.Code)
			}
		}
		if first != 202 && first != 409 && !replay {
			// The refusal reserved nothing: the same body, signed now and
			// sent properly, is judged afresh.
			fts, fsig := Sign(testSecret, testNow, body)
			n := len(dispatched())
			w = serve(http.MethodPost, fts, fsig, int64(len(body)))
			ts, sig = fts, fsig
			check(w, n)
			if w.Code == 409 {
				t.Fatalf("refused with %d, then the same body signed properly was taken for a replay", first)
			}
		}
	})
}
