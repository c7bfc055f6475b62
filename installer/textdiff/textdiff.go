// Package textdiff renders the difference between two small texts as a unified diff, the format
// of `diff -u` and `git diff`, for showing a planned daemon.json edit before it is made.
package textdiff

import (
	udiff "github.com/aymanbagabas/go-udiff"
)

// Unified returns the unified diff of a and b under the names oldName and newName, with three
// lines of context as diff -u, or "" when they are equal. A text that does not end in a newline
// is marked as diff does. The diff itself is github.com/aymanbagabas/go-udiff (gopls's diff).
func Unified(oldName, newName, a, b string) string {
	if a == b {
		return ""
	}
	return udiff.Unified(oldName, newName, a, b)
}
