// Package auth checks HTTP Basic credentials against the registry's users.
//
// The Authenticator looks users up through a function, so it works with any
// user store; a node passes a lookup into its replicated state. It returns one
// generic error for every failure, and it spends one bcrypt comparison on an
// unknown user as on a wrong password, so neither the answer nor the time
// tells whether a user exists.
//
// bcrypt is slow by design, tens of milliseconds per check at cost 10, so a
// successful check is cached. The cache key is an HMAC of the credentials
// under a random per-process key, so the cache holds no password, and an
// entry is valid only while the user's Version is unchanged.
package auth
