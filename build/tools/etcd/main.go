// Command etcd is etcd's own server entry point, built from the module proxy
// at the version pinned in go.mod. Debian's etcd (3.4) is too old for the
// pinned kube-apiserver (it lacks watch progress requests).
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
