// Package harness runs real tailgate topologies on loopback: the built
// binary as agent and gateway processes started from the shipped profiles
// (configs/) with environment overrides only, an in-process OTLP sink that
// records what reaches the backend, and a trace generator with ground truth.
//
// `make run` (test/cmd/localrun) and the end-to-end tests (test/e2e) share it.
package harness
