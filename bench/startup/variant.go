package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/kata-deploy/kata-deploy/internal/runtimecache"
	"github.com/kata-deploy/kata-deploy/internal/testenv"
	"github.com/kata-deploy/kata-deploy/runtime/config"
	"github.com/kata-deploy/kata-deploy/runtime/sandbox"
)

// A variant is kata with a changed runtime configuration, registered with the test engine under
// a runtime name of its own and measured beside kata (start-up and density) when its flag is set.
type variant struct {
	kind    string // as printed, e.g. kata+template
	runtime string // the runtime name registered
	mutate  func(*config.Config)
	// pool: its containers take clones from a pool of clones (poolSize waiting).
	pool bool
	// enabled and maxRunc read its flags: whether it is measured, its target kind/runc ratio.
	enabled func(options) bool
	maxRunc func(options) float64
	// templated: its containers run in clones of a VM template, so -max-template-pss-mib applies.
	templated bool
	// densityIntro introduces its density table in the report.
	densityIntro string
}

// poolSize is the pool of the kata+pool variant: one waiting clone.
const poolSize = 1

// poolFillTimeout bounds the wait for the pool to hold a waiting clone, where the benchmark
// waits for one (after the warm-up round, before each density figure). A variable for tests.
var poolFillTimeout = 2 * time.Minute

// variants, in the order measured and printed.
var variants = []variant{
	{
		kind: kindTemplate, runtime: templateRuntimeName,
		mutate:       func(c *config.Config) { c.Factory.Template = true },
		enabled:      func(o options) bool { return o.template },
		maxRunc:      func(o options) float64 { return o.maxTmplRunc },
		templated:    true,
		densityIntro: "The same with VM templating (kata+template):",
	},
	{
		kind: kindPool, runtime: poolRuntimeName,
		mutate:    func(c *config.Config) { c.Factory.Template, c.Factory.Pool = true, poolSize },
		pool:      true,
		enabled:   func(o options) bool { return o.pool },
		maxRunc:   func(o options) float64 { return o.maxPoolRunc },
		templated: true,
		densityIntro: "The same with a pool of one waiting clone (kata+pool); the waiting clone itself is not " +
			"counted: add its QEMU's PSS once (last column, read with the containers; the benchmark waits " +
			"for the pool to hold it before each figure).",
	},
	{
		kind: kindSmallTB, runtime: smallTBRuntimeName,
		mutate: func(c *config.Config) {
			c.Factory.Template, c.Hypervisor.TCGTranslationMiB = true, smallTBMiB
		},
		enabled:      func(o options) bool { return o.smallTB > 0 },
		maxRunc:      func(options) float64 { return 0 },
		templated:    true,
		densityIntro: "The same with VM templating and a bounded translation buffer (kata+template+tb, `[hypervisor] tcg_translation_buffer`, under TCG only):",
	},
}

// smallTBMiB is kata+template+tb's translation buffer (-template-tb), set from the flag.
var smallTBMiB int

// cacheDir is the runtime's cache (templates, the pool of clones) under the test state directory.
// A variable for tests.
var cacheDir = runtimecache.Dir(testenv.StateDir)

// setUpVariants registers the variants o asks for, with no template and no pool yet (what an
// earlier run left is removed): the warm-up round builds them. The returned function unregisters
// them, stops and removes the pool and removes the templates.
func setUpVariants(ctx context.Context, k *testenv.Kata, o options) (on []variant, cleanup func() error, err error) {
	for _, v := range variants {
		if v.enabled(o) {
			on = append(on, v)
		}
	}
	if len(on) == 0 {
		return nil, func() error { return nil }, nil
	}
	if err := removeCache(ctx); err != nil {
		return nil, nil, err
	}
	var unregister []func()
	cleanup = func() error {
		for _, u := range unregister {
			u()
		}
		// Not ctx: an interrupted run removes them too. A filler may hold the pool for a while.
		c, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		return removeCache(c)
	}
	for _, v := range on {
		u, err := k.RegisterVariant(v.runtime, v.mutate)
		if err != nil {
			return nil, nil, errors.Join(fmt.Errorf("registering %s: %w", v.runtime, err), cleanup())
		}
		unregister = append(unregister, u)
	}
	return on, cleanup, nil
}

// removeCache stops and removes the pool of clones and removes the templates.
func removeCache(ctx context.Context) error {
	if err := removePool(ctx); err != nil {
		return err
	}
	return os.RemoveAll(runtimecache.TemplatesDir(cacheDir))
}

func removePool(ctx context.Context) error {
	if err := sandbox.RemovePool(ctx, cacheDir); err != nil {
		return fmt.Errorf("removing the pool of clones: %w", err)
	}
	return nil
}

// fillLog is where the pool's fillers write (the shim's fill log).
func fillLog() string { return filepath.Join(runtimecache.PoolDir(cacheDir), "fill.log") }

// waitingClone waits until the pool holds a waiting clone and returns its QEMU's pid. When none
// comes within poolFillTimeout the error carries the end of the fill log.
func waitingClone(ctx context.Context) (int, error) {
	deadline := time.Now().Add(poolFillTimeout)
	for {
		slots, err := runtimecache.PoolSlots(cacheDir)
		if err != nil {
			return 0, err
		}
		for _, s := range slots {
			if s.State != runtimecache.SlotStateReady {
				continue
			}
			b, err := os.ReadFile(filepath.Join(s.Dir, runtimecache.SlotVM, "qemu.pid"))
			if err != nil {
				continue // taken or removed meanwhile
			}
			if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && pid > 0 {
				return pid, nil
			}
		}
		if time.Now().After(deadline) {
			log := tail(fillLog())
			if log == "" {
				log = "(empty or missing)"
			}
			return 0, fmt.Errorf("no clone waits in the pool of clones after %s; %s says:\n%s", poolFillTimeout, fillLog(), log)
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}
