// Command etcd is upstream etcd built from its pinned Go module, so that the
// test environment and the lab need no prebuilt binary.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
