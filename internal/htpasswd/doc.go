// Package htpasswd parses Apache htpasswd files and produces bcrypt lines
// for them, the format that registry:2 uses for Basic authentication.
//
// Each line is USER:HASH. Blank lines and lines that start with '#' are
// skipped. Parse rejects a file whose syntax is broken as a whole, naming the
// line, because a half-loaded user set is harder to notice than a server that
// refuses the file. A line whose hash uses another scheme (MD5 $apr1$, {SHA},
// crypt, plain text) only disables that user and is listed in
// File.Rejected, so the other users can still log in.
//
// Neither errors nor Rejected entries contain a hash.
package htpasswd
