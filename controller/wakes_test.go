package controller

import (
	"context"
	"testing"

	"github.com/phoenix-ops/phoenix/controller/notifications"
)

// A notification rings the group it names, by tag or metadata; one that
// names none, or an image's, rings every group.
func TestWakesRingTheNamedGroup(t *testing.T) {
	for _, tc := range []struct {
		name string
		n    notifications.Notification
		want map[string]bool
	}{
		{"by tag", notifications.Notification{Kind: notifications.KindInstance, ServerID: "s", Tags: []string{"x", GroupTag("web")}}, map[string]bool{"web": true}},
		{"by metadata", notifications.Notification{Kind: notifications.KindInstance, ServerID: "s", Metadata: map[string]string{MetaGroup: "db"}}, map[string]bool{"db": true}},
		{"no group named", notifications.Notification{Kind: notifications.KindInstance, ServerID: "s"}, map[string]bool{"web": true, "db": true}},
		{"an image", notifications.Notification{Kind: notifications.KindImage, ImageID: "i"}, map[string]bool{"web": true, "db": true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := NewWakes()
			chans := map[string]<-chan struct{}{"web": w.of("web"), "db": w.of("db")}
			w.Notified(context.Background(), tc.n)
			w.Notified(context.Background(), tc.n) // a second ring while woken is one wake
			for g, c := range chans {
				got := 0
				for len(c) > 0 {
					<-c
					got++
				}
				if want := map[bool]int{true: 1}[tc.want[g]]; got != want {
					t.Errorf("group %s woken %d times, want %d", g, got, want)
				}
			}
		})
	}
	var none *Wakes
	if none.of("web") != nil {
		t.Error("no Wakes: want a nil channel (never ready)")
	}
}
