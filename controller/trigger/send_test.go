package trigger

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-retryablehttp"
)

func testClient() *retryablehttp.Client {
	c := retryablehttp.NewClient()
	c.RetryMax = 2
	c.RetryWaitMin, c.RetryWaitMax = time.Millisecond, time.Millisecond
	c.Logger = nil
	c.ErrorHandler = retryablehttp.PassthroughErrorHandler
	return c
}

func TestSend(t *testing.T) {
	f := newFixture()
	f.clock.t = time.Now()
	srv := httptest.NewServer(f.h)
	defer srv.Close()
	ctx := context.Background()
	e := Event{ID: "evt-send", Type: TypeSecurityPatch, Groups: []string{"web"}, Reason: "CVE-2026-31337", Time: testNow}

	status, body, err := Send(ctx, testClient(), srv.URL+"/v1/events", testSecret, e, time.Now())
	if err != nil || status != http.StatusAccepted || body != `{"id":"evt-send","status":"accepted"}` {
		t.Fatalf("Send = %d, %q, %v; want 202 accepted", status, body, err)
	}
	got := f.d.dispatched()
	if len(got) != 1 || !sameEvent(got[0], e) {
		t.Fatalf("dispatched %+v, want %+v", got, e)
	}
	status, body, err = Send(ctx, testClient(), srv.URL+"/v1/events", testSecret, e, time.Now())
	if err != nil || status != http.StatusConflict || !strings.Contains(body, "already accepted") {
		t.Fatalf("again: Send = %d, %q, %v; want 409", status, body, err)
	}
	status, body, err = Send(ctx, testClient(), srv.URL+"/v1/events", []byte("wrong"), Event{ID: "evt-2", Type: TypeImagePublished}, time.Now())
	if err != nil || status != http.StatusUnauthorized || strings.Contains(body, "wrong") {
		t.Fatalf("wrong secret: Send = %d, %q, %v; want 401", status, body, err)
	}
}

func TestSendRefusesInvalidEvent(t *testing.T) {
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { hits.Add(1) }))
	defer srv.Close()
	_, _, err := Send(context.Background(), testClient(), srv.URL, testSecret, Event{ID: "evt-1", Type: TypeSecurityPatch, Groups: []string{"web"}}, time.Now())
	var pe *ParseError
	if !errors.As(err, &pe) || pe.Field != "reason" {
		t.Fatalf("got %v, want a ParseError on reason", err)
	}
	if hits.Load() != 0 {
		t.Fatal("an invalid event was sent")
	}
}

// TestSendRetryAfterLostAnswer: the first attempt reaches the handler but
// its answer is lost; the retry is a 409, which tells the caller the event
// was accepted, and the event was dispatched once.
func TestSendRetryAfterLostAnswer(t *testing.T) {
	f := newFixture()
	f.clock.t = time.Now()
	var attempts atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if attempts.Add(1) == 1 {
			f.h.ServeHTTP(httptest.NewRecorder(), r)
			panic(http.ErrAbortHandler) // drop the connection without an answer
		}
		f.h.ServeHTTP(w, r)
	}))
	defer srv.Close()
	e := Event{ID: "evt-lost", Type: TypeImagePublished}
	status, _, err := Send(context.Background(), testClient(), srv.URL, testSecret, e, time.Now())
	if err != nil || status != http.StatusConflict {
		t.Fatalf("Send = %d, %v; want 409 after the retry", status, err)
	}
	if n := len(f.d.dispatched()); n != 1 || attempts.Load() != 2 {
		t.Fatalf("dispatched %d times in %d attempts, want once in 2", n, attempts.Load())
	}
}

func TestSendNoAnswer(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close()
	_, _, err := Send(context.Background(), testClient(), strings.Replace(url, "http://", "http://user:pw@", 1), testSecret, Event{ID: "evt-1", Type: TypeImagePublished}, time.Now())
	if err == nil || !strings.Contains(err.Error(), "send event evt-1") {
		t.Fatalf("got %v, want an error naming the event", err)
	}
	if strings.Contains(err.Error(), ":pw@") {
		t.Errorf("%q shows the URL's password", err)
	}
}
