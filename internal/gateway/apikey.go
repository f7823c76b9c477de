package gateway

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"embed"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/ordermesh/ordermesh/internal/apperr"
	"github.com/ordermesh/ordermesh/internal/platform/identity"
	"github.com/ordermesh/ordermesh/internal/platform/sqldb"
)

//go:embed migrations
var migrations embed.FS

// Migrations are the gateway's tables (API keys).
func Migrations() sqldb.Migrations { return sqldb.Embedded("gateway", migrations) }

// APIKeyPrefix starts every ordermesh API key.
const APIKeyPrefix = "om_"

// APIKey describes a key; the key itself is never stored.
type APIKey struct {
	ID        string     `json:"id"`
	Subject   string     `json:"subject"`
	Scopes    []string   `json:"scopes"`
	CreatedAt time.Time  `json:"created_at"`
	RevokedAt *time.Time `json:"revoked_at,omitempty"`
}

// CreateAPIKey stores a new key for subject with scopes and returns it:
// the only time the key is seen.
func CreateAPIKey(ctx context.Context, db *sqldb.DB, subject string, scopes []string) (key string, info APIKey, err error) {
	if subject == "" || len(subject) > 100 {
		return "", APIKey{}, errors.New("--sub: give the subject the key acts as (1-100 characters)")
	}
	if err := CheckScopes(scopes); err != nil {
		return "", APIKey{}, fmt.Errorf("--scopes: %w", err)
	}
	secret := make([]byte, 24)
	rand.Read(secret)
	idb := make([]byte, 6)
	rand.Read(idb)
	key = APIKeyPrefix + base64.RawURLEncoding.EncodeToString(secret)
	info = APIKey{ID: "ak_" + hex.EncodeToString(idb), Subject: subject, Scopes: scopes, CreatedAt: time.Now().UTC()}
	_, err = db.Exec(ctx, `INSERT INTO api_keys (id, hash, subject, scopes, created_at) VALUES (?, ?, ?, ?, ?)`,
		info.ID, hashKey(key), subject, strings.Join(scopes, " "), info.CreatedAt.Format(time.RFC3339Nano))
	if err != nil {
		return "", APIKey{}, fmt.Errorf("store API key: %w", err)
	}
	return key, info, nil
}

// ListAPIKeys returns every key's description, newest first.
func ListAPIKeys(ctx context.Context, db *sqldb.DB) ([]APIKey, error) {
	rows, err := db.Query(ctx, `SELECT id, subject, scopes, created_at, revoked_at FROM api_keys ORDER BY created_at DESC`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var keys []APIKey
	for rows.Next() {
		var k APIKey
		var scopes, created string
		var revoked sql.NullString
		if err := rows.Scan(&k.ID, &k.Subject, &scopes, &created, &revoked); err != nil {
			return nil, err
		}
		k.Scopes = strings.Fields(scopes)
		k.CreatedAt, _ = time.Parse(time.RFC3339Nano, created)
		if revoked.Valid {
			t, _ := time.Parse(time.RFC3339Nano, revoked.String)
			k.RevokedAt = &t
		}
		keys = append(keys, k)
	}
	return keys, rows.Err()
}

// RevokeAPIKey revokes key id; gateways stop accepting it within
// apiKeyCacheTTL.
func RevokeAPIKey(ctx context.Context, db *sqldb.DB, id string) error {
	res, err := db.Exec(ctx, `UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL`, time.Now().UTC().Format(time.RFC3339Nano), id)
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("no active API key %q (see `ordermesh apikey list`)", id)
	}
	return nil
}

func hashKey(key string) string {
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:])
}

// apiKeyCacheTTL is how long a looked-up key (valid or not) is remembered.
const apiKeyCacheTTL = 10 * time.Second

// maxCachedKeys bounds the cache; it is emptied when full.
const maxCachedKeys = 10000

// APIKeys resolves keys to identities against the gateway's database, with
// a short cache so a busy key costs one query per TTL.
type APIKeys struct {
	db    *sqldb.DB
	mu    sync.Mutex
	cache map[string]cachedKey
}

type cachedKey struct {
	id      identity.Identity
	ok      bool
	expires time.Time
}

// NewAPIKeys returns a resolver over db (migrated with Migrations).
func NewAPIKeys(db *sqldb.DB) *APIKeys {
	return &APIKeys{db: db, cache: map[string]cachedKey{}}
}

// Lookup returns the identity of an active key, or an Unauthorized error.
func (k *APIKeys) Lookup(ctx context.Context, key string) (identity.Identity, error) {
	h := hashKey(key)
	k.mu.Lock()
	c, hit := k.cache[h]
	k.mu.Unlock()
	if !hit || time.Now().After(c.expires) {
		var sub, scopes string
		var id string
		err := k.db.QueryRow(ctx, `SELECT id, subject, scopes FROM api_keys WHERE hash = ? AND revoked_at IS NULL`, h).Scan(&id, &sub, &scopes)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			c = cachedKey{}
		case err != nil:
			return identity.Identity{}, apperr.New(apperr.Unavailable, "", "API key store: %v", err)
		default:
			c = cachedKey{ok: true, id: identity.Identity{Subject: sub, Scopes: strings.Fields(scopes), Via: "apikey", KeyID: id}}
		}
		c.expires = time.Now().Add(apiKeyCacheTTL)
		k.mu.Lock()
		if len(k.cache) >= maxCachedKeys {
			clear(k.cache)
		}
		k.cache[h] = c
		k.mu.Unlock()
	}
	if !c.ok {
		return identity.Identity{}, apperr.New(apperr.Unauthorized, "Authorization", "unknown or revoked API key")
	}
	return c.id, nil
}
