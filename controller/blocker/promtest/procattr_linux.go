package promtest

import "syscall"

// sysProcAttr has the kernel kill Prometheus if the test binary dies
// without running its cleanups (a test timeout's panic, a SIGKILL), so no
// stray Prometheus outlives the test.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
