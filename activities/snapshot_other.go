//go:build !unix

package activities

// openFlags: elsewhere openRegular's Lstat and Stat alone keep a snapshot
// to regular files.
const openFlags = 0
