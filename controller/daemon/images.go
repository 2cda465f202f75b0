package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/phoenix-ops/phoenix/controller"
	"github.com/phoenix-ops/phoenix/provisioner"
)

// watchImages resolves every distinct image selector once per interval
// (and at once when poked), and wakes the groups whose desired image
// changed: a newly published gold image starts their rollout.
func (d *Daemon) watchImages() {
	defer d.wg.Done()
	for {
		d.watchOnce()
		timer := time.NewTimer(jittered(d.interval()))
		select {
		case <-d.stop:
			timer.Stop()
			return
		case <-d.watchNow:
		case <-timer.C:
		}
		timer.Stop()
	}
}

func (d *Daemon) pokeWatch() {
	select {
	case d.watchNow <- struct{}{}:
	default:
	}
}

func (d *Daemon) watchOnce() {
	d.mu.Lock()
	bySelector := map[string][]*worker{}
	selectors := map[string]provisioner.ImageSelector{}
	for _, w := range d.workers {
		if _, ok := w.rec.(placed); ok {
			continue // each location resolves its own image, every round
		}
		sel := controller.Selector(w.group.Image)
		k := selectorKey(sel)
		bySelector[k] = append(bySelector[k], w)
		selectors[k] = sel
	}
	d.mu.Unlock()
	var errs []error
	for k, sel := range selectors {
		changed, err := d.images.refresh(d.hard, sel)
		if err != nil {
			if !errors.Is(err, provisioner.ErrNotFound) {
				errs = append(errs, err)
			}
			continue
		}
		if changed {
			for _, w := range bySelector[k] {
				w.poke()
			}
		}
	}
	d.watchStages()
	d.mu.Lock()
	d.watchErr = errors.Join(errs...)
	if d.watchErr == nil {
		d.watchOK = d.opts.Now()
	}
	d.mu.Unlock()
}

// the image watch, so that a reconcile of a group at rest asks Glance
// nothing and one Glance list per selector serves every group using it.
type imageCache struct {
	cloud provisioner.Cloud
	mu    sync.Mutex
	ttl   time.Duration
	byKey map[string]cachedImage
}

type cachedImage struct {
	img provisioner.Image
	at  time.Time
}

func newImageCache(cloud provisioner.Cloud) *imageCache {
	return &imageCache{cloud: cloud, byKey: map[string]cachedImage{}}
}

func (c *imageCache) setTTL(d time.Duration) {
	c.mu.Lock()
	c.ttl = d
	c.mu.Unlock()
}

func selectorKey(sel provisioner.ImageSelector) string {
	b, _ := json.Marshal(sel)
	return string(b)
}

// resolve answers from the cache while it is fresh, else asks the cloud.
func (c *imageCache) resolve(ctx context.Context, sel provisioner.ImageSelector) (provisioner.Image, error) {
	k := selectorKey(sel)
	c.mu.Lock()
	e, ok := c.byKey[k]
	fresh := ok && time.Since(e.at) < c.ttl
	c.mu.Unlock()
	if fresh {
		return e.img, nil
	}
	_, err := c.refresh(ctx, sel)
	if err != nil {
		return provisioner.Image{}, err
	}
	return c.cached(sel), nil
}

// refresh resolves sel now and says whether the answer changed.
func (c *imageCache) refresh(ctx context.Context, sel provisioner.ImageSelector) (bool, error) {
	img, err := c.cloud.Images.ResolveImage(ctx, sel)
	if err != nil {
		return false, err
	}
	k := selectorKey(sel)
	c.mu.Lock()
	defer c.mu.Unlock()
	prev, ok := c.byKey[k]
	c.byKey[k] = cachedImage{img: img, at: time.Now()}
	return !ok || prev.img.ID != img.ID, nil
}

func (c *imageCache) cached(sel provisioner.ImageSelector) provisioner.Image {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.byKey[selectorKey(sel)].img
}

// invalidate makes the next resolve of every selector ask the cloud.
func (c *imageCache) invalidate() {
	c.mu.Lock()
	for k, e := range c.byKey {
		e.at = time.Time{}
		c.byKey[k] = e
	}
	c.mu.Unlock()
}

// watchStages finds, for each group that requires a tag another group
// promotes, the newest image its selector would take without that tag:
// when it is newer than the one the group runs, the group's status says
// it waits for the tag, and how far the promoting group is.
func (d *Daemon) watchStages() {
	d.mu.Lock()
	byName := map[string]*worker{}
	for _, w := range d.workers {
		if _, ok := w.rec.(placed); !ok {
			byName[w.group.Name] = w
		}
	}
	groups := slices.Clone(d.cfg.Groups)
	d.mu.Unlock()
	for _, w := range byName {
		stage := ""
		for _, st := range controller.Stages(groups, w.group) {
			img, err := d.images.resolve(d.hard, st.Without)
			w.mu.Lock()
			runs := w.image
			w.mu.Unlock()
			if err != nil || img.ID == runs.ID || !img.Created.After(runs.Created) {
				continue
			}
			how := fmt.Sprintf("group %s promotes it, reconciled by another replica", st.From.Name)
			if from, ok := byName[st.From.Name]; ok {
				how = from.promoting(img.ID)
			}
			stage = fmt.Sprintf("image %s (%s) is waiting for tag %s: %s", img.Name, img.ID, st.Tag, how)
			break
		}
		w.mu.Lock()
		w.stage = stage
		w.mu.Unlock()
	}
}

// promoting says how far this group, a stage, is with image id.
func (w *worker) promoting(id string) string {
	w.mu.Lock()
	defer w.mu.Unlock()
	p := w.last.Status.Promotion
	switch {
	case p == nil || p.ImageID != id:
		return fmt.Sprintf("group %s does not run it yet", w.group.Name)
	case p.Done:
		return fmt.Sprintf("group %s promoted it; Glance shows the tag at the next look", w.group.Name)
	case strings.HasPrefix(p.Waiting, "the group "):
		return fmt.Sprintf("group %s %s", w.group.Name, strings.TrimPrefix(p.Waiting, "the group "))
	case p.Waiting != "":
		return fmt.Sprintf("group %s: %s", w.group.Name, p.Waiting)
	}
	return fmt.Sprintf("group %s promotes it now", w.group.Name)
}
