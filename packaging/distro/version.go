package distro

import (
	"fmt"
	"regexp"
	"strings"
	"time"
)

// describeRe is `git describe --tags --always --dirty` on a tagged tree: v1.2.3, v1.2.3-4-gabcdef0,
// each maybe -dirty.
var describeRe = regexp.MustCompile(`^v?(\d+\.\d+\.\d+(?:[~.][0-9A-Za-z.]+)?)(?:-(\d+)-g([0-9a-f]+))?(-dirty)?$`)

// hashRe is the same on a tree with no tag: the abbreviated commit, maybe -dirty.
var hashRe = regexp.MustCompile(`^([0-9a-f]{4,40})(-dirty)?$`)

// PackageVersion turns git describe's output into a version both dpkg and rpm order right: a tag
// stays itself, commits after it sort after it (1.2.3+4.gabcdef0), and a tree with no tag is
// 0.0.0+git<commit time>.<hash> so later commits sort later. A dirty tree gets ".dirty".
func PackageVersion(describe string, commit time.Time) (string, error) {
	describe = strings.TrimSpace(describe)
	if m := describeRe.FindStringSubmatch(describe); m != nil {
		v := m[1]
		if m[2] != "" {
			v += "+" + m[2] + ".g" + m[3]
		}
		if m[4] != "" {
			v += dirtySuffix(v)
		}
		return v, nil
	}
	if m := hashRe.FindStringSubmatch(describe); m != nil {
		v := "0.0.0+git" + commit.UTC().Format("20060102150405") + "." + m[1]
		if m[2] != "" {
			v += ".dirty"
		}
		return v, nil
	}
	return "", fmt.Errorf("version %q is neither a tag like v1.2.3 (git describe) nor a commit hash: pass a version such as 1.2.3", describe)
}

func dirtySuffix(v string) string {
	if strings.Contains(v, "+") {
		return ".dirty"
	}
	return "+dirty"
}
