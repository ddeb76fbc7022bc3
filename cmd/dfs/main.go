// Command dfs is Cairn's command-line tool: it starts a whole local
// cluster in one process (dfs up) and works on a cluster's files.
//
//	dfs up [--dir DIR] [--masters 1] [--chunkservers 6]
//	dfs put LOCAL|- REMOTE        dfs get REMOTE LOCAL|-
//	dfs cat REMOTE...             dfs ls [-l] [REMOTE...]
//	dfs mkdir [-p] REMOTE...      dfs rm [-r] REMOTE...
//	dfs mv SRC DST                dfs stat REMOTE...
//	dfs status
//
// Every command but up talks to the masters named by --master (a comma-
// separated list), or by $CAIRN_MASTERS, or else to the cluster last
// started by dfs up in --dir: it records its master addresses in
// DIR/masters.addrs. The default DIR is $CAIRN_DIR, or ~/.cairn.
//
// Exit status is 0 on success and 1 on any error, bad usage included;
// messages go to standard error as "dfs: CMD OPERAND: what failed".
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
