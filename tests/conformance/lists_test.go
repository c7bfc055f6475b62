package main

import (
	"regexp"
	"strings"
	"testing"
)

func TestParseList(t *testing.T) {
	for _, tc := range []struct {
		name, text string
		want       list
		err        string
	}{
		{name: "empty", text: "", want: list{}},
		{name: "comments and blanks", text: "# a comment\n\n  # another\n", want: list{}},
		{name: "entries", text: "TestA needs a registry\nTestB_c  starts its own dockerd  \n",
			want: list{"TestA": "needs a registry", "TestB_c": "starts its own dockerd"}},
		{name: "no reason", text: "TestA\n", err: "TestA has no reason"},
		{name: "not a test", text: "TestA/sub a subtest\n", err: "is not a test name"},
		{name: "regexp in name", text: "Test.* everything\n", err: "is not a test name"},
		{name: "duplicate", text: "TestA one\nTestA two\n", err: "listed twice"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseList("l.txt", tc.text)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
			for k, v := range tc.want {
				if got[k] != v {
					t.Errorf("%s: reason %q, want %q", k, got[k], v)
				}
			}
		})
	}
}

// The lists in the tree parse, and no test is in two of them.
func TestListsInTree(t *testing.T) {
	ls, err := loadLists()
	if err != nil {
		t.Fatal(err)
	}
	if len(ls.notRun) == 0 {
		t.Error("not-run.txt is empty")
	}
}

func TestListsCheck(t *testing.T) {
	ls := &lists{notRun: list{"TestA": "x"}, vmDifferences: list{"TestB": "y"}, knownFailures: list{"TestA": "z"}}
	if err := ls.check(); err == nil || !strings.Contains(err.Error(), "TestA is in both") {
		t.Fatalf("check() = %v, want a TestA conflict", err)
	}
}

func TestExactRegexp(t *testing.T) {
	re := regexp.MustCompile(exactRegexp([]string{"TestB", "TestA"}))
	for name, want := range map[string]bool{"TestA": true, "TestB": true, "TestAB": false, "XTestA": false, "TestC": false} {
		if got := re.MatchString(name); got != want {
			t.Errorf("%s: match %v, want %v", name, got, want)
		}
	}
	if exactRegexp(nil) != "" {
		t.Error("no names should give no regexp")
	}
}

func TestVerdict(t *testing.T) {
	ls := &lists{vmDifferences: list{"TestVM": "host network", "TestDev": hostDependent + "device numbers"}, knownFailures: list{"TestBug": "docker update"}, engineLimits: list{"TestEngine": "no features"}}
	for _, tc := range []struct {
		runtime, test, action string
		ok                    bool
		note                  string
	}{
		{"kata", "TestOther", "pass", true, ""},
		{"kata", "TestOther", "skip", true, ""},
		{"kata", "TestOther", "fail", false, "unexpected failure"},
		{"kata", "TestVM", "fail", true, "differs from runc by design: host network"},
		{"kata", "TestVM", "pass", false, "now passes: remove from vm-differences.txt"},
		{"kata", "TestDev", "pass", true, "passes on this host by chance"},
		{"kata", "TestDev", "fail", true, "differs from runc by design"},
		{"kata", "TestBug", "fail", true, "known failure: docker update"},
		{"kata", "TestBug", "pass", false, "now passes: remove from known-failures.txt"},
		{"kata", "TestBug", "skip", true, ""},
		{"kata", "TestEngine", "fail", true, "limit of Docker's engine: no features"},
		{"kata", "TestEngine", "pass", false, "now passes (the engine lifted its limit?)"},
		// Under runc the lists do not apply: every test that runs must pass.
		{"runc", "TestBug", "fail", false, "unexpected failure"},
		{"runc", "TestVM", "pass", true, ""},
	} {
		e, reason := ls.expect(tc.runtime, tc.test)
		ok, note := verdict(e, reason, tc.action)
		if ok != tc.ok || !strings.HasPrefix(note, tc.note) {
			t.Errorf("%s %s %s: (%v, %q), want (%v, %q...)", tc.runtime, tc.test, tc.action, ok, note, tc.ok, tc.note)
		}
	}
}

func TestErrorLines(t *testing.T) {
	out := []string{
		"=== RUN   TestX",
		"    kill_test.go:80: timeout hit after 10s: waiting for container State.Status to be 'exited', currently 'running'",
		"--- FAIL: TestX (10.00s)",
	}
	got := errorLines(out, 8)
	if len(got) != 1 || !strings.HasPrefix(got[0], "kill_test.go:80: timeout hit") {
		t.Fatalf("errorLines = %q", got)
	}
}
