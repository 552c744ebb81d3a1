// The cert-manager release whose CustomResourceDefinitions the live tests
// install, so that the mtls component's Issuers and Certificates are
// applied to a real API server and checked against cert-manager's own
// schemas (cert-manager itself does not run: the tests make the Secrets).
// Nothing is built from it: scripts/install-cert-manager-crds.sh copies
// deploy/crds out of the module.
module github.com/tailgate-dev/tailgate/build/tools/cert-manager

go 1.26.0

require github.com/cert-manager/cert-manager v1.21.2
