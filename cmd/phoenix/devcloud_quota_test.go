package main

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	gcopenstack "github.com/gophercloud/gophercloud/v2/openstack"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/quotasets"
	"github.com/gophercloud/gophercloud/v2/openstack/identity/v3/projects"
	"github.com/gophercloud/gophercloud/v2/openstack/image/v2/images"

	"github.com/phoenix-ops/phoenix/controller"
	"github.com/phoenix-ops/phoenix/provisioner"
	"github.com/phoenix-ops/phoenix/provisioner/openstack"
)

// quotaProject is the development cloud's project for this test alone,
// and quotaCloud its clouds.yaml entry (user phoenix): filling its quota
// refuses no create of the scenarios running beside it in project phoenix.
const (
	quotaProject = "phoenix-quota"
	quotaCloud   = "devcloud-quota"
)

// TestDevcloudQuotaFull runs a real phoenix daemon on a group of two
// (max_surge 1, max_unavailable 0) in project phoenix-quota. Once it has
// converged, the admin sets the project's instance quota to exactly what
// it uses, and a new gold image is published: Nova refuses the surge
// server, and the daemon must wait — both old servers ACTIVE, none
// deleted — and say why in its status. With the quota raised again it
// rolls out the new image. Nova is checked itself, and the independent
// monitor watches the bound and the availability throughout.
func TestDevcloudQuotaFull(t *testing.T) {
	t.Parallel() // with the other scenarios: a project of its own
	run := startDevcloudRun(t, "e2e-quota")
	ctx, group, imageName, tag := run.ctx, run.group, run.image, run.tag
	// The run's own connections are to project phoenix: this test's are
	// to phoenix-quota, whose images are its own (private).
	provider := namedProvider(t, ctx, run.cloudsFile, quotaCloud)
	glance, err := gcopenstack.NewImageV2(provider, gophercloud.EndpointOpts{})
	if err != nil {
		t.Fatal(err)
	}
	cloud, err := openstack.New(ctx, openstack.Options{Cloud: quotaCloud, CloudsFile: run.cloudsFile})
	if err != nil {
		t.Fatal(err)
	}
	quota := projectQuota(t, ctx, run.cloudsFile, quotaProject)

	// Last first: the servers go after the quota is back and the daemon
	// has stopped, the images after the daemon has stopped (an image
	// deleted under a running daemon would start a rollout back).
	t.Cleanup(func() {
		list, _ := cloud.ListServers(context.Background(), tag)
		for _, s := range list {
			_ = cloud.DeleteServer(context.Background(), s.ID)
		}
	})
	t.Cleanup(quota.restore)
	var published []string
	t.Cleanup(func() {
		for _, id := range published {
			_ = images.Delete(context.Background(), glance, id).ExtractErr()
		}
	})

	cfg := run.config(t, `
    count: 2
    rollout: {max_surge: 1, max_unavailable: 0, min_ready: 1s, create_backoff_max: 10s}
    health:
      http: {port: 18080, path: /healthz}
      interval: 1s
      timeout: 1s
      healthy_threshold: 2
      grace: 60s
`)
	forDaemon(t, cfg, quotaCloud)
	imageA, _ := publishImageTimed(t, ctx, glance, imageName)
	published = append(published, imageA)

	mon := startDevcloudMonitor(t, ctx, run.cloudsFile, quotaCloud,
		watchedGroup{Name: group, Count: 2, Surge: 1, HealthPath: "/healthz"})
	d := startLoggedDaemon(t, run.bin, cfg, run.cloudsFile, "--poll", "1s", "--log-level", "info")

	// 1. Converged on image A.
	waitFor(t, 5*time.Minute, "the group built on image A", func() bool {
		return groupAtRest(d.status(t), imageA) && onNovaThrottled(t, ctx, cloud, tag, 2, imageA)
	})
	old := groupServers(t, ctx, cloud, tag)
	assertGroup(t, old, 2, imageA, group)
	if t.Failed() {
		t.FailNow()
	}

	// 2. The quota full, a new image: Nova refuses the surge server.
	used := quota.fill(t)
	t.Logf("instance quota of %s set to its use: %d (was %d)", quotaProject, used, quota.before.Instances.Limit)
	switch {
	case used < 2:
		t.Errorf("project %s uses %d instances, fewer than the group's 2", quotaProject, used)
	case used > 2:
		// The quota is the use all the same: full for this group too.
		t.Logf("project %s uses %d instances, %d beyond the group's (left by an earlier run cut short?)", quotaProject, used, used-2)
	}
	waitNextSecond() // Glance's created_at has second precision
	imageB, publishedAt := publishImageTimed(t, ctx, glance, imageName)
	published = append(published, imageB)

	var waiting string
	waitFor(t, 3*time.Minute, "the daemon to report the wait for quota", func() bool {
		st := d.status(t)
		if len(st.Groups) != 1 {
			return false
		}
		waiting = st.Groups[0].Status.Waiting
		return strings.HasPrefix(waiting, "quota")
	})
	t.Logf("%.1fs after the publication the status says: waiting %q", time.Since(publishedAt).Seconds(), waiting)
	// The cloud's own words, Nova's 403, reach the status.
	if !strings.Contains(waiting, "Quota exceeded for instances") {
		t.Errorf("the status waits for %q, want Nova's refusal (Quota exceeded for instances ...)", waiting)
	}
	if len(d.logLines("waiting for quota")) == 0 {
		t.Errorf("the daemon's log says nothing of the wait for quota")
	}

	// Several more looks, across a few of the daemon's create retries
	// (create_backoff_max 10s): it deletes nothing, keeps waiting, and the
	// old servers keep serving.
	for i := range 8 {
		st := d.status(t)
		g := st.Groups[0]
		if !strings.HasPrefix(g.Status.Waiting, "quota") || g.Halted != "" || g.DesiredImage.ID != imageB {
			t.Errorf("look %d: the group no longer waits for quota: waiting %q, halted %q, desired image %s (want %s)",
				i, g.Status.Waiting, g.Halted, g.DesiredImage.ID, imageB)
		}
		now := groupServers(t, ctx, cloud, tag)
		for _, o := range old {
			j := slices.IndexFunc(now, func(s provisioner.Server) bool { return s.ID == o.ID })
			switch {
			case j < 0:
				t.Fatalf("look %d: old server %s was deleted while the quota was full", i, o.Name)
			case now[j].Status != provisioner.StatusActive || now[j].TaskState != "" || now[j].Metadata[controller.MetaPhase] != "":
				t.Fatalf("look %d: old server %s is %s, task %q, phase %q while the quota is full", i, o.Name,
					now[j].Status, now[j].TaskState, now[j].Metadata[controller.MetaPhase])
			}
		}
		if len(now) != 2 {
			t.Fatalf("look %d: the group holds %d servers while the quota is full, want the old 2", i, len(now))
		}
		time.Sleep(3 * time.Second) // polling the daemon and Nova, as an operator would
	}

	// 3. The quota raised again: the rollout goes on to image B.
	quota.restore()
	raised := time.Now()
	waitFor(t, 5*time.Minute, "the group converged on image B once the quota was raised", func() bool {
		return groupAtRest(d.status(t), imageB) && onNovaThrottled(t, ctx, cloud, tag, 2, imageB)
	})
	t.Logf("converged on image B %v after the quota was raised", time.Since(raised).Round(time.Second))
	freed := d.logLines("quota freed")
	if len(freed) == 0 {
		t.Errorf("the daemon's log says nothing of the end of the wait for quota")
	}
	for _, l := range freed {
		t.Logf("daemon: %s", l)
	}
	after := groupServers(t, ctx, cloud, tag)
	assertGroup(t, after, 2, imageB, group)
	for _, s := range after {
		if slices.ContainsFunc(old, func(o provisioner.Server) bool { return o.ID == s.ID }) {
			t.Errorf("server %s of image A survived the rollout", s.Name)
		}
	}
	if st := d.status(t); st.Groups[0].Status.Waiting != "" {
		t.Errorf("the status still waits after the rollout: %q", st.Groups[0].Status.Waiting)
	}
	mon.Check(t)
}

// onNovaThrottled is onNova at most twice a second: waitFor polls fast.
func onNovaThrottled(t *testing.T, ctx context.Context, cloud *openstack.Cloud, tag string, n int, image string) bool {
	t.Helper()
	defer time.Sleep(500 * time.Millisecond) // polling Nova
	return onNova(t, ctx, cloud, tag, n, image)
}

// instanceQuota sets a project's Nova instance quota as the admin
// (devcloud-admin) and puts the limit it had back.
type instanceQuota struct {
	compute *gophercloud.ServiceClient
	project string
	before  quotasets.QuotaDetailSet
	t       *testing.T
}

func projectQuota(t *testing.T, ctx context.Context, cloudsFile, projectName string) *instanceQuota {
	t.Helper()
	admin := namedProvider(t, ctx, cloudsFile, "devcloud-admin")
	compute, err := gcopenstack.NewComputeV2(admin, gophercloud.EndpointOpts{})
	if err != nil {
		t.Fatal(err)
	}
	identity, err := gcopenstack.NewIdentityV3(admin, gophercloud.EndpointOpts{})
	if err != nil {
		t.Fatal(err)
	}
	pages, err := projects.List(identity, projects.ListOpts{Name: projectName}).AllPages(ctx)
	if err != nil {
		t.Fatal(err)
	}
	list, err := projects.ExtractProjects(pages)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 {
		t.Skipf("GAP: the development cloud has no project %s (found %d): run examples/devcloud/up.sh of this version", projectName, len(list))
	}
	q := &instanceQuota{compute: compute, project: list[0].ID, t: t}
	if q.before, err = quotasets.GetDetail(ctx, compute, q.project).Extract(); err != nil {
		t.Fatal(err)
	}
	return q
}

func (q *instanceQuota) set(t *testing.T, n int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := quotasets.Update(ctx, q.compute, q.project, quotasets.UpdateOpts{Instances: &n}).Extract(); err != nil {
		t.Fatalf("set the instance quota of %s to %d: %v", quotaProject, n, err)
	}
}

// fill sets the instance limit to the use, and returns it. Nova refuses
// a limit below the use, so the use is read again after the limit is
// set: a delete that lands in between frees a place.
func (q *instanceQuota) fill(t *testing.T) int {
	t.Helper()
	used := q.inUse(t)
	for range 5 {
		q.set(t, used)
		now := q.inUse(t)
		if now == used {
			return used
		}
		used = now
	}
	t.Fatalf("the instance use of %s kept changing", quotaProject)
	return 0
}

func (q *instanceQuota) inUse(t *testing.T) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	now, err := quotasets.GetDetail(ctx, q.compute, q.project).Extract()
	if err != nil {
		t.Fatal(err)
	}
	return now.Instances.InUse
}

// restore puts the limit the project had before back; idempotent.
func (q *instanceQuota) restore() { q.set(q.t, q.before.Instances.Limit) }
