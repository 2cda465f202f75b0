package controller

import (
	"slices"

	"github.com/phoenix-ops/phoenix/controller/config"
	"github.com/phoenix-ops/phoenix/provisioner"
)

// Stage is a tag a group's selector requires that another group, a stage
// before it, promotes; Without is the selector without that tag: the
// newest image it finds is the one waiting for the tag.
type Stage struct {
	Tag     string
	From    config.Group
	Without provisioner.ImageSelector
}

// Stages are the stages before g among groups. A selector left with
// nothing to select by but the tag is skipped: without it, it would find
// every image.
func Stages(groups []config.Group, g config.Group) []Stage {
	sel := Selector(g.Image)
	if sel.ID != "" {
		return nil
	}
	var out []Stage
	for _, tag := range sel.Tags {
		i := slices.IndexFunc(groups, func(o config.Group) bool {
			return o.Name != g.Name && o.Promote != nil && o.Promote.Tag == tag && o.Placement == nil
		})
		if i < 0 {
			continue
		}
		without := sel
		without.Tags = slices.DeleteFunc(slices.Clone(sel.Tags), func(t string) bool { return t == tag })
		without.Newest = true
		if without.Name == "" && len(without.Properties) == 0 && len(without.Tags) == 0 {
			continue
		}
		out = append(out, Stage{Tag: tag, From: groups[i], Without: without})
	}
	return out
}
