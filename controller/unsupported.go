package controller

import (
	"fmt"

	"github.com/phoenix-ops/phoenix/controller/config"
)

// unsupported stops a group, before anything is touched, when its
// configuration asks for what this Phoenix accepts in a file but cannot
// do yet: going on would replace servers in a way the operator did not
// ask for (a stateful server without its volume, a rebuild that
// replaces instead).
func unsupported(g config.Group) error {
	var what string
	switch {
	case g.Stateful != nil:
		what = "stateful (moving data volumes to the replacement)"
	case g.Backup.Volumes == config.VolumesSnapshot:
		what = "backup.volumes snapshot"
	default:
		return nil
	}
	return fmt.Errorf("%w: group %s asks for %s, which this version of Phoenix does not do yet; nothing was touched", ErrStuck, g.Name, what)
}
