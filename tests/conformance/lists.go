package main

import (
	"bufio"
	_ "embed"
	"fmt"
	"regexp"
	"sort"
	"strings"
)

// The four lists, one test a line: the test's name, then its reason. Blank lines and lines
// starting with # are comments.
var (
	//go:embed not-run.txt
	notRunText string
	//go:embed vm-differences.txt
	vmDifferencesText string
	//go:embed known-failures.txt
	knownFailuresText string
	//go:embed engine-limits.txt
	engineLimitsText string
)

// list maps a top-level test name to the reason it is listed.
type list map[string]string

var testName = regexp.MustCompile(`^Test[A-Za-z0-9_]*$`)

// parseList reads one list; a name that is not a Go test name, a missing reason or a name listed
// twice is an error (the lists become regular expressions).
func parseList(name, text string) (list, error) {
	l := list{}
	sc := bufio.NewScanner(strings.NewReader(text))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		test, reason, _ := strings.Cut(line, " ")
		reason = strings.TrimSpace(reason)
		if !testName.MatchString(test) {
			return nil, fmt.Errorf("%s:%d: %q is not a test name", name, n, test)
		}
		if reason == "" {
			return nil, fmt.Errorf("%s:%d: %s has no reason", name, n, test)
		}
		if _, dup := l[test]; dup {
			return nil, fmt.Errorf("%s:%d: %s is listed twice", name, n, test)
		}
		l[test] = reason
	}
	return l, sc.Err()
}

// lists are the four lists, checked against each other.
type lists struct {
	notRun, vmDifferences, knownFailures, engineLimits list
}

func loadLists() (*lists, error) {
	var ls lists
	var err error
	if ls.notRun, err = parseList("not-run.txt", notRunText); err != nil {
		return nil, err
	}
	if ls.vmDifferences, err = parseList("vm-differences.txt", vmDifferencesText); err != nil {
		return nil, err
	}
	if ls.knownFailures, err = parseList("known-failures.txt", knownFailuresText); err != nil {
		return nil, err
	}
	if ls.engineLimits, err = parseList("engine-limits.txt", engineLimitsText); err != nil {
		return nil, err
	}
	return &ls, ls.check()
}

// check refuses a test listed in two lists: each test has one status.
func (ls *lists) check() error {
	seen := map[string]string{}
	for _, l := range []struct {
		name string
		l    list
	}{{"not-run.txt", ls.notRun}, {"vm-differences.txt", ls.vmDifferences}, {"known-failures.txt", ls.knownFailures}, {"engine-limits.txt", ls.engineLimits}} {
		for test := range l.l {
			if other, ok := seen[test]; ok {
				return fmt.Errorf("%s is in both %s and %s", test, other, l.name)
			}
			seen[test] = l.name
		}
	}
	return nil
}

// exactRegexp matches exactly the given top-level test names (for -test.run and -test.skip).
func exactRegexp(names []string) string {
	if len(names) == 0 {
		return ""
	}
	sorted := append([]string(nil), names...)
	sort.Strings(sorted)
	for i, n := range sorted {
		sorted[i] = regexp.QuoteMeta(n)
	}
	return "^(" + strings.Join(sorted, "|") + ")$"
}

// expectation is what a test's result must be for the run to pass.
type expectation int

const (
	expectPass expectation = iota
	expectVMDifference
	expectKnownFailure
	// expectEngineLimit: fails because of what Docker's engine does with a runtimeType runtime.
	expectEngineLimit
)

// expect gives a test's expectation under a runtime: under runc every test that runs must pass.
func (ls *lists) expect(runtime, test string) (expectation, string) {
	if runtime != "kata" {
		return expectPass, ""
	}
	if r, ok := ls.vmDifferences[test]; ok {
		return expectVMDifference, r
	}
	if r, ok := ls.knownFailures[test]; ok {
		return expectKnownFailure, r
	}
	if r, ok := ls.engineLimits[test]; ok {
		return expectEngineLimit, r
	}
	return expectPass, ""
}

// hostDependent starts the reason of a VM difference whose test compares what the guest shows
// with the host's own state (device numbers, mount tables): it fails or passes depending on what
// the host happens to have, and may do either.
const hostDependent = "[depends on the host] "

// verdict says whether a result is fine given the expectation, and the note to print.
func verdict(e expectation, reason, action string) (ok bool, note string) {
	switch {
	case action == "skip":
		return true, ""
	case e == expectPass && action == "pass":
		return true, ""
	case e == expectPass:
		return false, "unexpected failure"
	case action == "pass" && e == expectKnownFailure:
		return false, "now passes: remove from known-failures.txt"
	case action == "pass" && e == expectEngineLimit:
		return false, "now passes (the engine lifted its limit?): remove from engine-limits.txt"
	case action == "pass" && strings.HasPrefix(reason, hostDependent):
		return true, "passes on this host by chance: " + reason
	case action == "pass":
		return false, "now passes: remove from vm-differences.txt (and README's Differences from runc)"
	case e == expectKnownFailure:
		return true, "known failure: " + reason
	case e == expectEngineLimit:
		return true, "limit of Docker's engine: " + reason
	default:
		return true, "differs from runc by design: " + reason
	}
}
