package trigger

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"go.uber.org/zap"
)

// Defaults for the Handler's zero fields.
const (
	DefaultWindow  = 5 * time.Minute
	DefaultMaxBody = 64 << 10
	// maxRemembered bounds the replay memory; past it the oldest ids are
	// forgotten early.
	maxRemembered = 100_000
)

// ErrUnknownTarget is what a Dispatcher's error wraps when the event names
// a group, image or server the running configuration does not have.
var ErrUnknownTarget = errors.New("unknown target")

// Dispatcher acts on a verified, parsed event. It returns an error wrapping
// ErrUnknownTarget when the event names a group, image or server the
// running configuration does not have (→ 422), or another error (→ 503,
// logged) when it cannot act now.
//
// Dispatch runs inside the HTTP request with its context: it should hand
// the work off (start or queue a rollout) and return, not wait for the
// rollout to finish.
type Dispatcher interface {
	Dispatch(ctx context.Context, e Event) error
}

// Handler serves POST /v1/events. Its fields are read on every request;
// set them before serving and do not copy a Handler once it has served
// (it holds the replay memory).
type Handler struct {
	// Secret returns the current secret (it may be reloaded); nil or empty
	// makes every POST a 503 "webhook not configured", and so does a nil
	// Dispatcher.
	Secret func() []byte
	// Previous returns the secret being rotated out, or nil: an event
	// signed with it is accepted too (and logged as such, so that the
	// senders still using it can be found).
	Previous   func() []byte
	Dispatcher Dispatcher
	// Now is the clock; default time.Now.
	Now func() time.Time
	// Window is how far a timestamp may be from now, either way; default
	// DefaultWindow. Accepted ids are remembered for twice as long.
	Window time.Duration
	// MaxBody is the largest body accepted, in bytes; default
	// DefaultMaxBody.
	MaxBody int64
	// Log receives one line per refusal or acceptance; default nop.
	Log *zap.Logger
	// Refused, when set, hears the status of every request not answered
	// 202, so that metrics can count refusals by code.
	Refused func(status int)

	replay replayMemory
}

// RefusalCodes are every status ServeHTTP refuses or defers a request
// with, for metrics that start each code at zero.
var RefusalCodes = []int{
	http.StatusBadRequest, http.StatusUnauthorized, http.StatusMethodNotAllowed, http.StatusConflict,
	http.StatusRequestEntityTooLarge, http.StatusUnprocessableEntity, http.StatusServiceUnavailable,
}

// answer is a response: status and either an error message or the id.
type answer struct {
	status int
	msg    string // the error, for a refusal
}

// ServeHTTP applies the rules in order: 405 for a method other than POST,
// 503 while no secret is configured, 413 for a body over MaxBody, 401 for
// a missing, malformed or wrong signature or a timestamp outside the
// window, 400 for a body that is not one JSON object, 422 for an invalid
// event, 409 for an id already accepted, 503 (Retry-After: 1) for an id
// whose dispatch by another request is under way, then Dispatch: 422 when it names
// an unknown target, 503 when it fails otherwise, and 202 once it took the
// event. Nothing is dispatched for a refused request.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	log := h.Log
	if log == nil {
		log = zap.NewNop()
	}
	log = log.With(zap.String("remote", r.RemoteAddr))
	refuse := func(status int, msg string, extra ...zap.Field) {
		log.Info("event refused", append([]zap.Field{zap.Int("status", status), zap.String("reason", msg)}, extra...)...)
		h.refused(status)
		writeJSON(w, status, map[string]string{"error": msg})
	}

	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		refuse(http.StatusMethodNotAllowed, fmt.Sprintf("method %s not allowed: POST an event", r.Method))
		return
	}
	var secret []byte
	if h.Secret != nil {
		secret = h.Secret()
	}
	if len(secret) == 0 || h.Dispatcher == nil {
		refuse(http.StatusServiceUnavailable, "webhook not configured")
		return
	}
	limit := h.MaxBody
	if limit <= 0 {
		limit = DefaultMaxBody
	}
	if r.ContentLength > limit {
		refuse(http.StatusRequestEntityTooLarge, fmt.Sprintf("body larger than %d bytes", limit))
		return
	}
	// Content-Length may be absent or lie: count what arrives.
	src := r.Body
	if src == nil {
		src = http.NoBody
	}
	body, err := io.ReadAll(io.LimitReader(src, limit+1))
	if err != nil {
		refuse(http.StatusBadRequest, "cannot read the body")
		return
	}
	if int64(len(body)) > limit {
		refuse(http.StatusRequestEntityTooLarge, fmt.Sprintf("body larger than %d bytes", limit))
		return
	}
	now, window := h.now(), h.window()
	secrets := [][]byte{secret}
	if h.Previous != nil {
		secrets = append(secrets, h.Previous())
	}
	which, err := VerifyAny(secrets, now, window, r.Header.Get(HeaderTimestamp), r.Header.Get(HeaderSignature), body)
	if err != nil {
		refuse(http.StatusUnauthorized, err.Error())
		return
	}
	if which > 0 {
		log = log.With(zap.Bool("signed_with_previous_secret", true))
	}
	e, err := Parse(body)
	if secs, ok := parseTimestamp(r.Header.Get(HeaderTimestamp)); ok && err == nil {
		e.SignedAt = time.Unix(secs, 0)
	}
	if err != nil {
		status := http.StatusUnprocessableEntity
		var pe *ParseError
		if errors.As(err, &pe) && pe.Syntax {
			status = http.StatusBadRequest
		}
		refuse(status, err.Error())
		return
	}
	idField := zap.String("event_id", e.ID)
	seq, ok, pending := h.replay.reserve(e.ID, now, 2*window)
	switch {
	case pending:
		// Another request with this id is being dispatched, and may
		// still fail: a 409 now would tell this sender its event got
		// through when it may not. It learns the outcome by sending again.
		w.Header().Set("Retry-After", "1")
		refuse(http.StatusServiceUnavailable, fmt.Sprintf("event %s is still being acted on: send it again to learn whether it was accepted", e.ID), idField)
		return
	case !ok:
		refuse(http.StatusConflict, fmt.Sprintf("event %s was already accepted", e.ID), idField)
		return
	}
	if err := h.Dispatcher.Dispatch(r.Context(), e); err != nil {
		// Forget the id: the event changed nothing, so the sender may
		// send it again once the cause is fixed.
		h.replay.release(e.ID, seq)
		if errors.Is(err, ErrUnknownTarget) {
			refuse(http.StatusUnprocessableEntity, err.Error(), idField)
			return
		}
		log.Warn("event not dispatched", zap.Int("status", http.StatusServiceUnavailable), idField,
			zap.String("type", e.Type), zap.Error(err))
		h.refused(http.StatusServiceUnavailable)
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "cannot act on the event now; send it again later"})
		return
	}
	h.replay.confirm(e.ID, seq)
	log.Info("event accepted", zap.Int("status", http.StatusAccepted), idField, zap.String("type", e.Type),
		zap.Strings("groups", e.Groups), zap.String("image", e.Image), zap.String("server", e.Server), zap.String("reason", e.Reason))
	writeJSON(w, http.StatusAccepted, map[string]string{"id": e.ID, "status": "accepted"})
}

func (h *Handler) refused(status int) {
	if h.Refused != nil {
		h.Refused(status)
	}
}

func (h *Handler) now() time.Time {
	if h.Now != nil {
		return h.Now()
	}
	return time.Now()
}

func (h *Handler) window() time.Duration {
	if h.Window > 0 {
		return h.Window
	}
	return DefaultWindow
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, _ := json.Marshal(v)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

// replayMemory remembers accepted event ids until a replay of their
// request could no longer pass the timestamp check, bounded in size.
type replayMemory struct {
	mu    sync.Mutex
	byID  map[string]remembered
	queue []remembered // in order of reservation; entries may be stale
	seq   uint64
	max   int // 0: maxRemembered
}

type remembered struct {
	id    string
	until time.Time
	seq   uint64
	// pending: reserved, its dispatch not yet done; confirm clears it,
	// release forgets the id.
	pending bool
}

// reserve records id until now+keep (inclusive: Verify accepts a
// timestamp exactly one window away), pending, and reports ok; or, if it
// is remembered already, reports !ok and whether that reservation is
// still pending (its dispatch under way, its outcome unknown). The seq
// returned identifies this reservation for confirm and release.
func (m *replayMemory) reserve(id string, now time.Time, keep time.Duration) (seq uint64, ok, pending bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.byID == nil {
		m.byID = map[string]remembered{}
	}
	limit := m.max
	if limit <= 0 {
		limit = maxRemembered
	}
	m.forget(now, limit)
	if r, ok := m.byID[id]; ok && !now.After(r.until) {
		return 0, false, r.pending
	}
	m.forget(now, limit-1) // room for id
	m.seq++
	r := remembered{id: id, until: now.Add(keep), seq: m.seq, pending: true}
	m.byID[id] = r
	m.queue = append(m.queue, r)
	return r.seq, true, false
}

// confirm records that the reservation seq of id was accepted: a repeat
// is a replay from now on.
func (m *replayMemory) confirm(id string, seq uint64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if r, ok := m.byID[id]; ok && r.seq == seq {
		r.pending = false
		m.byID[id] = r
	}
}

// release forgets the reservation seq of id, if it is still the current
// one.
func (m *replayMemory) release(id string, seq uint64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if r, ok := m.byID[id]; ok && r.seq == seq {
		delete(m.byID, id)
	}
}

// forget drops expired ids from the front of the queue, and the oldest
// live ones while more than room are remembered. Released ids leave stale
// queue entries behind; the queue is kept within twice the limit so that
// many failed dispatches cannot grow it without bound.
func (m *replayMemory) forget(now time.Time, room int) {
	for len(m.queue) > 0 {
		front := m.queue[0]
		cur, live := m.byID[front.id]
		live = live && cur.seq == front.seq
		if live && !now.After(front.until) && len(m.byID) <= room && len(m.queue) <= 2*(room+1) {
			return
		}
		if live {
			delete(m.byID, front.id)
		}
		m.queue[0] = remembered{}
		m.queue = m.queue[1:]
	}
}

// len reports how many ids are remembered; for tests.
func (m *replayMemory) len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.byID)
}
