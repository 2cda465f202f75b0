package plan

import (
	"strings"
	"testing"
	"time"
)

func TestPromotion(t *testing.T) {
	const after = time.Hour
	// ready sets every current server's ready-at, ago before t0.
	ready := func(spec string, ago ...time.Duration) []Server {
		s := fleet(spec)
		for i := range s {
			if s[i].ImageID == "new" && i < len(ago) {
				s[i].ReadyAt = t0.Add(-ago[i])
			}
		}
		return s
	}
	staged := func(tweak func(*Target)) Target {
		tg := target(2, 1, 0)
		tg.Promote = &Promote{Tag: "staged-ok", After: after}
		if tweak != nil {
			tweak(&tg)
		}
		return tg
	}
	cases := []struct {
		name    string
		target  Target
		servers []Server
		now     bool
		done    bool
		untag   string
		waiting string // a part of the reason
		due     time.Time
	}{
		{name: "healthy for after since the last server became ready: tag it now",
			target: staged(nil), servers: ready("cc", 3*time.Hour, after), now: true, due: t0},
		{name: "the wait runs from the last server ready",
			target: staged(nil), servers: ready("cc", 3*time.Hour, 20*time.Minute), waiting: "the group has run it healthy for 20m of 1h", due: t0.Add(40 * time.Minute)},
		{name: "a watch longer than after is waited out",
			target: staged(func(tg *Target) { tg.Watch = 2 * time.Hour }), servers: ready("cc", 3*time.Hour, 90*time.Minute), waiting: "for 1h30m of 2h", due: t0.Add(30 * time.Minute)},
		{name: "no wait: tagged once converged and healthy",
			target: staged(func(tg *Target) { tg.Promote.After = 0 }), servers: ready("cc", time.Second, time.Second), now: true, due: t0.Add(-time.Second)},
		{name: "not converged: an old server still serves",
			target: staged(nil), servers: ready("cco", 3*time.Hour, 2*time.Hour), waiting: "has not converged"},
		{name: "a server failing its check now: not available, so not converged",
			target: staged(nil), servers: func() []Server {
				s := ready("cc", 3*time.Hour, 2*time.Hour)
				s[1].Health, s[1].UnhealthySince = Unhealthy, t0 // failing its check, not yet for long
				return s
			}(), waiting: "not converged"},
		{name: "a server of unknown health (after a restart, before its probes)",
			target: staged(nil), servers: func() []Server {
				s := ready("cc", 3*time.Hour, 2*time.Hour)
				s[1].Health = HealthUnknown
				return s
			}(), waiting: "not converged"},
		{name: "a server ready, its record not written yet",
			target: staged(nil), servers: ready("cc", 3*time.Hour), waiting: "server srv-c01 is ready, its record not written yet"},
		{name: "the image carries the tag already: nothing to do",
			target: staged(func(tg *Target) { tg.ImageTags = []string{"gold", "staged-ok"} }), servers: ready("cc", 3*time.Hour, 2*time.Hour), done: true},
		{name: "the group recorded tagging it (Glance's answer cached): nothing to do",
			target: staged(func(tg *Target) {
				tg.PromotedImage = PromotedImage{ImageID: "new", Tag: "staged-ok", At: t0.Add(-time.Minute)}
			}),
			servers: ready("cc", 3*time.Hour, 2*time.Hour), done: true},
		{name: "Glance refused the last tag: tried again, and said why",
			target: staged(func(tg *Target) { tg.PromoteFailed = "refused by the cloud (HTTP 403): modify_image" }), servers: ready("cc", 3*time.Hour, 2*time.Hour),
			now: true, waiting: "the last tag failed, trying again: refused by the cloud (HTTP 403)", due: t0.Add(-time.Hour)},
		{name: "a halted rollout never promotes",
			target: staged(func(tg *Target) { tg.Halted = "3 new servers failed" }), servers: ready("cc", 3*time.Hour, 2*time.Hour), waiting: "the rollout halted: 3 new servers failed"},
		{name: "rolling back: the way back is not promoted, the rejected image loses the tag the group added",
			target: staged(func(tg *Target) {
				tg.RollingBack, tg.Rejected = true, Ref{ImageID: "bad", Revision: "rev"}
				tg.PromotedImage = PromotedImage{ImageID: "bad", Tag: "staged-ok"}
			}), servers: ready("cc", 3*time.Hour, 2*time.Hour), untag: "bad", waiting: "rolling back from image bad, which is never promoted"},
		{name: "a rejected image someone else tagged keeps its tag",
			target: staged(func(tg *Target) {
				tg.RollingBack, tg.Rejected = true, Ref{ImageID: "bad", Revision: "rev"}
				tg.PromotedImage = PromotedImage{ImageID: "older", Tag: "staged-ok"}
			}), servers: ready("cc", 3*time.Hour, 2*time.Hour), waiting: "rolling back"},
		{name: "a record of another tag is not this gate's",
			target: staged(func(tg *Target) {
				tg.RollingBack, tg.Rejected = true, Ref{ImageID: "bad", Revision: "rev"}
				tg.PromotedImage = PromotedImage{ImageID: "bad", Tag: "canary-ok"}
			}), servers: ready("cc", 3*time.Hour, 2*time.Hour), waiting: "rolling back"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := Plan(tc.target, tc.servers, t0)
			p := d.Status.Promotion
			if p == nil {
				t.Fatal("no promotion for a group with promote")
			}
			if p.Now != tc.now || p.Done != tc.done || p.Untag != tc.untag || !strings.Contains(p.Waiting, tc.waiting) || (tc.waiting == "") != (p.Waiting == "") {
				t.Errorf("promotion %+v; want now %v, done %v, untag %q, waiting %q", *p, tc.now, tc.done, tc.untag, tc.waiting)
			}
			if !p.Due.Equal(tc.due) {
				t.Errorf("due %s, want %s", p.Due, tc.due)
			}
			if p.Tag != "staged-ok" || p.ImageID != "new" {
				t.Errorf("promotion of %s with %s, want new with staged-ok", p.ImageID, p.Tag)
			}
		})
	}
	if d := Plan(target(2, 1, 0), ready("cc", time.Hour, time.Hour), t0); d.Status.Promotion != nil {
		t.Errorf("a group without promote: %+v", *d.Status.Promotion)
	}
	// The round waiting for the tag wakes at its due time.
	d := Plan(staged(nil), ready("cc", 3*time.Hour, 50*time.Minute), t0)
	if d.RequeueAfter <= 0 || d.RequeueAfter > 10*time.Minute {
		t.Errorf("requeue after %s while the tag is due in 10m", d.RequeueAfter)
	}
	// A round writing the ready records looks again soon, not at the
	// group's interval: the wait runs from them.
	d = Plan(staged(nil), ready("cc", 3*time.Hour), t0)
	if d.RequeueAfter <= 0 || d.RequeueAfter > recordSettle {
		t.Errorf("requeue after %s while a ready record is being written", d.RequeueAfter)
	}
}

func TestSpan(t *testing.T) {
	for d, want := range map[time.Duration]string{
		45 * time.Second: "45s", 90 * time.Second: "1m30s", 20 * time.Minute: "20m", time.Hour: "1h",
		70 * time.Minute: "1h10m", 90*time.Minute + 5*time.Second: "1h30m5s", 10 * time.Hour: "10h",
	} {
		if got := Span(d); got != want {
			t.Errorf("Span(%s) = %q, want %q", d, got, want)
		}
	}
}
