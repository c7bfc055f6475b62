package guestimage

// ValidateVmlinux is validateVmlinux for the external tests (integration_test.go), which cannot
// be in this package: they use internal/testguest, which imports it.
var ValidateVmlinux = validateVmlinux
