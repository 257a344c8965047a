//go:build unix

package engine

import "syscall"

// openFlags open a snapshot without following a symlink, and without
// blocking on a FIFO until a writer comes.
const openFlags = syscall.O_NOFOLLOW | syscall.O_NONBLOCK
