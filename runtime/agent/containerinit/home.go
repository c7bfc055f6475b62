package containerinit

import (
	"io"
	"os"

	"github.com/moby/sys/user"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// passwdPath is the image's user database, read inside the container's root.
const passwdPath = "/etc/passwd"

// maxPasswdSize bounds what is read of a passwd file the image controls.
const maxPasswdSize = 4 << 20

// defaultHome is HOME for a user the image does not list, as runc sets it.
const defaultHome = "/"

// setDefaultHome gives the process HOME from the image's /etc/passwd when its environment has
// none, as runc does: Docker leaves HOME to the runtime. It runs inside the container's root,
// before the credentials change (the file may be readable by root only).
func setDefaultHome(p *specs.Process) {
	if _, ok := envValue(p.Env, "HOME"); ok {
		return
	}
	p.Env = append(p.Env, "HOME="+homeOf(passwdPath, int(p.User.UID)))
}

// homeOf returns the home directory of uid in the passwd file at path, or defaultHome when the
// file or the entry is missing or unusable.
func homeOf(path string, uid int) string {
	// Non-blocking: the image may put a FIFO there; only a regular file is read.
	f, err := os.OpenFile(path, os.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return defaultHome
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		return defaultHome
	}
	return homeIn(io.LimitReader(f, maxPasswdSize), uid)
}

// homeIn returns the home of the first entry of uid in a passwd file, as getpwuid does.
func homeIn(r io.Reader, uid int) string {
	users, err := user.ParsePasswdFilter(r, func(u user.User) bool { return u.Uid == uid })
	if err != nil || len(users) == 0 || users[0].Home == "" {
		return defaultHome
	}
	return users[0].Home
}
