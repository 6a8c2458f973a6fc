package auth

import (
	"fmt"
	"testing"

	"golang.org/x/crypto/bcrypt"
)

// BenchmarkAuthenticate checks one user's credentials at bcrypt costs 4
// (bcrypt.MinCost), 5 (bench/compare.sh) and 10 (flotilla htpasswd's
// default). Each cost runs a cache hit, a cache miss and an unknown user.
// The miss disables the cache, so every check runs bcrypt. The unknown
// user costs a comparison against the dummy hash at the cost last seen.
func BenchmarkAuthenticate(b *testing.B) {
	const name, password = "alice", "wonderland"
	for _, cost := range []int{bcrypt.MinCost, 5, 10} {
		h, err := bcrypt.GenerateFromPassword([]byte(password), cost)
		if err != nil {
			b.Fatal(err)
		}
		user := User{Name: name, Hash: string(h), Version: 1}
		lookup := func(n string) (User, bool) {
			if n == name {
				return user, true
			}
			return User{}, false
		}
		b.Run(fmt.Sprintf("cost=%d/hit", cost), func(b *testing.B) {
			a := New(lookup, Options{})
			if _, err := a.Authenticate(name, password); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				if _, err := a.Authenticate(name, password); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(fmt.Sprintf("cost=%d/hit-parallel", cost), func(b *testing.B) {
			a := New(lookup, Options{})
			if _, err := a.Authenticate(name, password); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := a.Authenticate(name, password); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
		b.Run(fmt.Sprintf("cost=%d/miss", cost), func(b *testing.B) {
			a := New(lookup, Options{CacheSize: -1})
			b.ReportAllocs()
			for range b.N {
				if _, err := a.Authenticate(name, password); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(fmt.Sprintf("cost=%d/unknown-user", cost), func(b *testing.B) {
			a := New(lookup, Options{})
			a.lastCost.Store(int32(cost))
			b.ReportAllocs()
			for range b.N {
				if _, err := a.Authenticate("mallory", password); err == nil {
					b.Fatal("unknown user authenticated")
				}
			}
		})
	}
}
