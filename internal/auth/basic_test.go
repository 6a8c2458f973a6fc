package auth

import (
	"encoding/base64"
	"testing"
)

func TestParseBasic(t *testing.T) {
	enc := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	tests := []struct {
		name     string
		header   string
		user     string
		password string
		ok       bool
	}{
		{"simple", "Basic " + enc("alice:pw"), "alice", "pw", true},
		{"lower-case scheme", "basic " + enc("alice:pw"), "alice", "pw", true},
		{"upper-case scheme", "BASIC " + enc("alice:pw"), "alice", "pw", true},
		{"extra spaces", "Basic   " + enc("alice:pw"), "alice", "pw", true},
		{"colon in password", "Basic " + enc("alice:p:w:"), "alice", "p:w:", true},
		{"empty password", "Basic " + enc("alice:"), "alice", "", true},
		{"utf-8", "Basic " + enc("zoë:pässword"), "zoë", "pässword", true},
		{"no colon", "Basic " + enc("alice"), "", "", false},
		{"empty user", "Basic " + enc(":pw"), "", "", false},
		{"empty", "", "", "", false},
		{"scheme only", "Basic", "", "", false},
		{"scheme and space", "Basic ", "", "", false},
		{"bearer", "Bearer " + enc("alice:pw"), "", "", false},
		{"no space", "Basic" + enc("alice:pw"), "", "", false},
		{"invalid base64", "Basic !!!", "", "", false},
		{"unpadded base64", "Basic " + base64.RawStdEncoding.EncodeToString([]byte("alice:p")), "", "", false},
		{"url alphabet", "Basic " + base64.URLEncoding.EncodeToString([]byte("a:\xfb\xff")), "", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			user, password, ok := ParseBasic(tt.header)
			if ok != tt.ok || user != tt.user || password != tt.password {
				t.Errorf("ParseBasic(%q) = %q, %q, %v; want %q, %q, %v",
					tt.header, user, password, ok, tt.user, tt.password, tt.ok)
			}
		})
	}
}
