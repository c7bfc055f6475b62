package agentproto

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// OpRestored tells the agent of a VM restored from a template that it runs as a new machine
// (Request.Restored): every clone of a template continues from the same memory, so each would
// otherwise produce the same random numbers and keep the template's clock.
const OpRestored = "restored"

// RestoreEntropyLen is how many random bytes the host hands a restored guest: a full reseed of
// the kernel's generator (256 bits) and then some.
const RestoreEntropyLen = 64

// Restored is what a restored guest gets from the host.
type Restored struct {
	// Entropy is RestoreEntropyLen bytes from the host's generator, credited to the guest's
	// generator, which then reseeds.
	Entropy []byte `json:"entropy"`
	// UnixNano is the host's wall clock when the request was sent.
	UnixNano int64 `json:"unixNano"`
}

// Validate rejects a request the agent must not apply.
func (r *Restored) Validate() error {
	if r == nil {
		return errors.New("restored: the request carries no entropy and no time")
	}
	if len(r.Entropy) != RestoreEntropyLen {
		return fmt.Errorf("restored: %d bytes of entropy, want %d", len(r.Entropy), RestoreEntropyLen)
	}
	if r.UnixNano <= 0 {
		return fmt.Errorf("restored: host time %d is not after 1970", r.UnixNano)
	}
	return nil
}

// Restored reseeds the guest's random number generator with entropy (RestoreEntropyLen bytes
// from the host's) and sets its clock to the host's: call it first on a VM restored from a
// template, before anything runs in it.
func (c *Client) Restored(ctx context.Context, entropy []byte) error {
	r := Restored{Entropy: entropy, UnixNano: time.Now().UnixNano()}
	if err := r.Validate(); err != nil {
		return err
	}
	_, err := c.call(ctx, Request{Op: OpRestored, Restored: &r})
	return err
}
