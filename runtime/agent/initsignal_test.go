package agent

import (
	"syscall"
	"testing"
)

func TestCaughtIn(t *testing.T) {
	status := []byte("Name:\ttop\nSigBlk:\t0000000000000000\nSigIgn:\t0000000000000000\nSigCgt:\t0000000003807a27\n")
	for sig, want := range map[syscall.Signal]bool{
		syscall.SIGHUP: true, syscall.SIGTERM: true, syscall.SIGCHLD: false, syscall.SIGUSR1: true, syscall.SIGWINCH: false,
	} {
		got, err := caughtIn(status, sig)
		if err != nil || got != want {
			t.Errorf("%v: %v, %v; want %v", sig, got, err, want)
		}
	}
	if _, err := caughtIn([]byte("Name:\tx\n"), syscall.SIGTERM); err == nil {
		t.Error("a status without SigCgt gave no error")
	}
	if _, err := caughtIn([]byte("SigCgt:\tzz\n"), syscall.SIGTERM); err == nil {
		t.Error("a malformed SigCgt gave no error")
	}
}
