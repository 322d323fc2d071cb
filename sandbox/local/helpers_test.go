package local_test

import "github.com/agentrun/agent/sandbox/local"

func localOptions(tpl, rt string) local.Options { return local.Options{Template: tpl, Runtime: rt} }
