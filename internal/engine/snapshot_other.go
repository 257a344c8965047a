//go:build !unix

package engine

// openFlags: elsewhere openRegular's Lstat and Stat alone keep a snapshot
// to regular files.
const openFlags = 0
