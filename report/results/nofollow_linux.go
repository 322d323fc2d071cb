package results

import "syscall"

// syscallNoFollow makes opening a symlink fail instead of following it.
const syscallNoFollow = syscall.O_NOFOLLOW
