package daemon

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-retryablehttp"
	"go.uber.org/zap"

	"github.com/phoenix-ops/phoenix/controller"
	"github.com/phoenix-ops/phoenix/controller/config"
	"github.com/phoenix-ops/phoenix/controller/plan"
)

// Notice is what the daemon POSTs to the configured URLs when a rollout
// starts, completes or halts.
type Notice struct {
	Time    time.Time `json:"time"`
	Kind    string    `json:"kind"` // started, completed, halted, image-stale, image-fresh, quota-blocked, quota-freed, image-promoted, image-withdrawn, promote-failed
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
// goroutine posts each notice to every target with a few bounded retries.
//
// A notify URL often is a credential (a chat webhook's token sits in its
// path or query), so no log line, status or error names more of a target
// than its scheme and host (config.RedactURL).
type Notifier struct {
	client *retryablehttp.Client
	log    *zap.Logger
	queue  chan Notice
	wg     sync.WaitGroup
	mu     sync.Mutex
	closed bool
	// targets are read for each notice, so a reload applies to the next.
	targets []config.NotifyTarget

	// What became of the notices, for /metrics (one count per URL).
	delivered, failed, dropped atomic.Int64
}

// NewNotifier starts a notifier; Close stops it after the queued notices
// were tried.
func NewNotifier(targets []config.NotifyTarget, log *zap.Logger) *Notifier {
	if log == nil {
		log = zap.NewNop()
	}
	c := retryablehttp.NewClient()
	c.RetryMax = 3
	c.RetryWaitMin = 200 * time.Millisecond
	c.RetryWaitMax = 2 * time.Second
	c.HTTPClient.Timeout = 10 * time.Second
	c.Logger = nil
	// The last answer or error as it is, not retryablehttp's summary,
	// which quotes the URL.
	c.ErrorHandler = retryablehttp.PassthroughErrorHandler
	n := &Notifier{targets: slices.Clone(targets), client: c, log: log, queue: make(chan Notice, 256)}
	n.wg.Add(1)
	go n.run()
	return n
}

// SetTargets replaces the targets, for a reload: the notices queued
// already go to the new ones.
func (n *Notifier) SetTargets(targets []config.NotifyTarget) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.targets = slices.Clone(targets)
}

func (n *Notifier) currentTargets() []config.NotifyTarget {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.targets
}

// Emit implements controller.EventSink: rollout starts, convergences and halts
// become notices.
func (n *Notifier) Emit(e controller.Event) {
	if n == nil || len(n.currentTargets()) == 0 {
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
	case controller.EventImagePromoted, controller.EventImageWithdrawn, controller.EventPromoteFailed:
		no.Kind, no.Reason = e.Type, e.Message
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
		for _, t := range n.currentTargets() {
			if err := n.post(t.Address(), body); err != nil {
				n.failed.Add(1)
				n.log.Warn("notice not delivered", zap.String("url", t.Redacted()), zap.String("kind", no.Kind),
					zap.String("group", no.Group), zap.Error(withoutURL(err, t.Address())))
				continue
			}
			n.delivered.Add(1)
		}
	}
}

func (n *Notifier) post(address string, body []byte) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, err := retryablehttp.NewRequestWithContext(ctx, http.MethodPost, address, bytes.NewReader(body))
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
		return fmt.Errorf("HTTP %d after %d attempts", resp.StatusCode, n.client.RetryMax+1)
	}
	return nil
}

// counts says how many notices were delivered, failed and dropped.
func (n *Notifier) counts() (delivered, failed, dropped int64) {
	return n.delivered.Load(), n.failed.Load(), n.dropped.Load()
}

// withoutURL is err for a log line: net/http quotes the whole URL in its
// errors ("Post \"https://…/hooks/TOKEN\": dial tcp …"), so the URL
// error's cause is kept and anything of the address past its host that
// is still in the text is cut out.
func withoutURL(err error, address string) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	msg := err.Error()
	if address != "" {
		msg = strings.ReplaceAll(msg, address, config.RedactURL(address))
	}
	if u, perr := url.Parse(address); perr == nil {
		pw, _ := u.User.Password()
		for _, part := range []string{u.User.String(), pw, u.RawQuery, u.EscapedPath(), u.Path, u.Fragment} {
			if len(part) > 1 {
				msg = strings.ReplaceAll(msg, part, "…")
			}
		}
	}
	return errors.New(msg)
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
