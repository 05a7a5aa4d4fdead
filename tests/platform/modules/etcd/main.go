// etcd for the platform suite: the upstream server's own entry point (go.etcd.io/etcd/server/v3's
// etcdmain), which the etcd binary's main package calls too; that package lives in the root module
// go.etcd.io/etcd/v3, whose go.mod points its siblings at local paths.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
