package rabbittest

import "syscall"

// sysProcAttr has the kernel kill RabbitMQ and its epmd if the test
// binary dies without running its cleanups (a test timeout's panic, a
// SIGKILL), so no stray beam.smp or epmd outlives the test. It holds
// because the broker is started so that the Erlang VM replaces the
// start script (exec), staying this process's child.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
