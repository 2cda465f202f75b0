package daemon

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-retryablehttp"
	"go.uber.org/zap"

	"github.com/phoenix-ops/phoenix/controller"
	"github.com/phoenix-ops/phoenix/controller/plan"
)

// Notice is what the daemon POSTs to the configured URLs when a rollout
// starts, completes or halts.
type Notice struct {
	Time    time.Time `json:"time"`
	Kind    string    `json:"kind"` // started, completed, halted, image-stale, image-fresh, quota-blocked, quota-freed
	Rollout string    `json:"rollout"`
	Group   string    `json:"group"`
	// ToImage is the desired image; Reason says why it halted, or the
	// rollout's summary when it started.
	ToImage string       `json:"to_image,omitempty"`
	Reason  string       `json:"reason,omitempty"`
	Status  *plan.Status `json:"status,omitempty"`
}

// Notifier sends notices without ever holding up a rollout: Emit only
// queues (and drops, saying so in the log, when the queue is full), and a
// goroutine posts each notice to every URL with a few bounded retries.
type Notifier struct {
	urls   []string
	client *retryablehttp.Client
	log    *zap.Logger
	queue  chan Notice
	wg     sync.WaitGroup
	mu     sync.Mutex
	closed bool

	// What became of the notices, for /metrics (one count per URL).
	delivered, failed, dropped atomic.Int64
}

// NewNotifier starts a notifier; Close stops it after the queued notices
// were tried.
func NewNotifier(urls []string, log *zap.Logger) *Notifier {
	if log == nil {
		log = zap.NewNop()
	}
	c := retryablehttp.NewClient()
	c.RetryMax = 3
	c.RetryWaitMin = 200 * time.Millisecond
	c.RetryWaitMax = 2 * time.Second
	c.HTTPClient.Timeout = 10 * time.Second
	c.Logger = nil
	n := &Notifier{urls: urls, client: c, log: log, queue: make(chan Notice, 256)}
	n.wg.Add(1)
	go n.run()
	return n
}

// Emit implements controller.EventSink: rollout starts, convergences and halts
// become notices.
func (n *Notifier) Emit(e controller.Event) {
	if n == nil || len(n.urls) == 0 {
		return
	}
	no := Notice{Time: e.Time, Rollout: e.Rollout, Group: e.Group, ToImage: e.Image, Status: e.Status}
	switch e.Type {
	case controller.EventRollout:
		no.Kind, no.Reason = "started", e.Message
	case controller.EventConverged:
		no.Kind = "completed"
	case controller.EventImageStale:
		no.Kind, no.Reason = "image-stale", e.Message
	case controller.EventImageFresh:
		no.Kind, no.Reason = "image-fresh", e.Message
	case controller.EventRolledBack:
		no.Kind, no.Reason = controller.EventRolledBack, cmp.Or(e.Message, e.Reason)
	case controller.EventQuotaBlocked:
		// The message carries the cloud's own words about the quota.
		no.Kind, no.Reason = "quota-blocked", cmp.Or(e.Message, e.Reason)
	case controller.EventDeferred:
		no.Kind, no.Reason = "deferred", e.Message
	case controller.EventUndeferred:
		no.Kind, no.Reason = "undeferred", e.Message
	case controller.EventQuotaFreed:
		no.Kind, no.Reason = "quota-freed", e.Message
	case controller.EventHalted:
		// The message names the image, the revision, the reason and what
		// to do; the bare reason when there is none.
		no.Kind, no.Reason = "halted", cmp.Or(e.Message, e.Reason)
	default:
		return
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return
	}
	select {
	case n.queue <- no:
	default:
		n.dropped.Add(1)
		n.log.Warn("notice queue full: a notice is dropped", zap.String("kind", no.Kind), zap.String("group", no.Group))
	}
}

func (n *Notifier) run() {
	defer n.wg.Done()
	for no := range n.queue {
		body, err := json.Marshal(no)
		if err != nil {
			continue
		}
		for _, u := range n.urls {
			if err := n.post(u, body); err != nil {
				n.failed.Add(1)
				n.log.Warn("notice not delivered", zap.String("url", redacted(u)), zap.String("kind", no.Kind), zap.String("group", no.Group), zap.Error(err))
				continue
			}
			n.delivered.Add(1)
		}
	}
}

func (n *Notifier) post(url string, body []byte) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, err := retryablehttp.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := n.client.Do(req)
	if err != nil {
		return err
	}
	_ = resp.Body.Close()
	if resp.StatusCode >= 300 {
		return fmt.Errorf("HTTP %d", resp.StatusCode)
	}
	return nil
}

// counts says how many notices were delivered, failed and dropped.
func (n *Notifier) counts() (delivered, failed, dropped int64) {
	return n.delivered.Load(), n.failed.Load(), n.dropped.Load()
}

// Close stops taking notices and waits (bounded by the retries) for the
// queued ones to be tried.
func (n *Notifier) Close() {
	if n == nil {
		return
	}
	n.mu.Lock()
	if !n.closed {
		n.closed = true
		close(n.queue)
	}
	n.mu.Unlock()
	n.wg.Wait()
}

// redacted is a notify URL for a log line: a password in it is not.
func redacted(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(a notify URL that does not parse)"
	}
	return u.Redacted()
}
