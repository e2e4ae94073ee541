package auth

import (
	"github.com/golang-jwt/jwt/v5"

	"github.com/portico-gw/portico/shared/jwtkey"
)

// keyEntry is one verification key; shared/jwtkey defines it, and the
// rules of which key fits which algorithm, for the control plane too.
type keyEntry = jwtkey.Key

// selectKey returns what jwt/v5 should verify with: one key, or a
// VerificationKeySet that it tries in turn.
func selectKey(entries []keyEntry, alg, kid string) (any, error) {
	var c collector
	if kid != "" {
		named := false
		for i := range entries {
			if entries[i].KID == kid {
				named = true
				if entries[i].Usable(alg) {
					c.add(entries[i].Key)
				}
			}
		}
		// A key that carries the kid is the only one the issuer meant; if it
		// does not fit alg, trying others would defeat the kid.
		if named {
			if c.n == 0 {
				return nil, fail(ErrUnknownKey, "key "+quoteKID(kid)+" does not fit "+alg)
			}
			return c.result(), nil
		}
	}
	for i := range entries {
		// A key without a kid may be the one a kid-bearing token names (a PEM
		// key has no kid), so it stays a candidate; a key with another kid
		// does not.
		if (kid == "" || entries[i].KID == "") && entries[i].Usable(alg) {
			c.add(entries[i].Key)
		}
	}
	if c.n == 0 {
		if kid != "" {
			return nil, fail(ErrUnknownKey, "no key "+quoteKID(kid)+" for "+alg)
		}
		return nil, fail(ErrUnknownKey, "no key for "+alg)
	}
	return c.result(), nil
}

// collector avoids allocating a key set in the common one-key case.
type collector struct {
	n     int
	first any
	set   []jwt.VerificationKey
}

func (c *collector) add(k any) {
	switch c.n {
	case 0:
		c.first = k
	case 1:
		c.set = append(c.set, c.first, k)
	default:
		c.set = append(c.set, k)
	}
	c.n++
}

func (c *collector) result() any {
	if c.n == 1 {
		return c.first
	}
	return jwt.VerificationKeySet{Keys: c.set}
}

// parseInlineKeys turns an issuer's configured keys into entries with the
// same function the control plane validates them with (jwtkey.ParseAll), so
// that a key accepted at write time always loads here.
func parseInlineKeys(keys, algs []string, hmac bool) ([]keyEntry, error) {
	return jwtkey.ParseAll(keys, algs, hmac)
}
